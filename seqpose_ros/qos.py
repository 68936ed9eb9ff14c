"""Image subscription QoS for `seqpose_node`: the profile of each `image_qos` setting and how a
best_available subscription follows the publishers on its topic."""

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy


def image_qos_profile(name, depth=2):
    """The subscription QoS for the image_qos parameter. best_available: reliable against reliable publishers
    (every frame arrives, the usual camera driver default), best effort as soon as one publisher is best
    effort (the node follows the publishers: `follow_publishers`). Depth 2: the callback only hands the
    message to the one-slot buffer, so no queue builds; 1 would drop a frame whenever two arrive together."""
    reliability = {
        'best_available': ReliabilityPolicy.BEST_AVAILABLE,
        'sensor_data': ReliabilityPolicy.BEST_EFFORT,
        'reliable': ReliabilityPolicy.RELIABLE,
        'system_default': ReliabilityPolicy.SYSTEM_DEFAULT,
    }[name]
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth, durability=DurabilityPolicy.VOLATILE, reliability=reliability
    )


def best_available_reliability(publisher_reliabilities):
    """What a best_available subscription should be for the publishers now on its topic: RELIABLE when
    there are publishers and all are reliable, BEST_EFFORT when any is best effort, None when there are none
    (keep the current one). rmw resolves BEST_AVAILABLE only once, when the subscription is created: a node
    started before its camera would stay reliable and never match a best-effort camera."""
    policies = [ReliabilityPolicy(p) if not isinstance(p, ReliabilityPolicy) else p for p in publisher_reliabilities]
    if not policies:
        return None
    if any(p == ReliabilityPolicy.BEST_EFFORT for p in policies):
        return ReliabilityPolicy.BEST_EFFORT
    return ReliabilityPolicy.RELIABLE
