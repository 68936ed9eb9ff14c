"""Start seqpose_node (and optionally RViz).

    ros2 launch seqpose_ros seqpose.launch.py image_topic:=/camera/color/image_raw \
        camera_info_topic:=/camera/color/camera_info device:=cuda:0

The node's topics are relative (image, camera_info, detections, markers, debug_image): `namespace` moves the
node, its outputs, its TF frame prefix and RViz together. Launch arguments left empty ('') do not touch the
parameters: the params file decides. Arguments that are given are passed with their declared type (a
checkpoint named `2024` stays a string).

seqpose_node is a lifecycle node. By default (autostart:=true) this file configures it as soon as it is up and
activates it once it is inactive after that first configure (launch_ros's LifecycleNode with ChangeState events);
autostart:=false leaves it unconfigured for a lifecycle manager (`ros2 lifecycle set /seqpose_node configure`).
"""

from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

from launch import LaunchDescription

SHARE = FindPackageShare('seqpose_ros')

ARGUMENTS = (
    (
        'image_topic',
        '/camera/color/image_raw',
        'sensor_msgs/Image input (its /compressed is used with '
        'image_transport:=compressed); relative names resolve in the '
        'namespace',
    ),
    ('camera_info_topic', '/camera/color/camera_info', 'sensor_msgs/CameraInfo of the image'),
    (
        'odometry_topic',
        '',
        "nav_msgs/Odometry of the camera (its pose in the odometry frame, child_frame_id the image's frame): the "
        "camera motion for the memory and the world fusion; '' = the params file's use_odometry (default: none)",
    ),
    ('namespace', '', 'Namespace of the node and its outputs (detections, markers, debug_image, TF prefix, RViz)'),
    (
        'params_file',
        PathJoinSubstitution([SHARE, 'config', 'seqpose.yaml']),
        'Parameter file (ros__parameters under /** or /**/seqpose_node)',
    ),
    ('checkpoint', '', "SeqPose checkpoint; '' = the params file's (there '' = the embedded default model)"),
    ('device', '', "cpu | cuda | cuda:N; '' = the params file's (falls back to CPU with a warning)"),
    (
        'backend',
        '',
        "torch | onnxruntime (the exported graphs; on a CPU robot the node keeps up better); '' = the params file's",
    ),
    (
        'image_qos',
        '',
        "best_available | sensor_data | reliable | system_default; '' = the params file's "
        '(best_available: every frame of a reliable camera, best effort with a best-effort one)',
    ),
    ('image_transport', '', "raw | compressed; '' = the params file's"),
    ('camera_model', '', "auto | raw | rectified; '' = the params file's"),
    ('use_sim_time', '', "true | false: use /clock (bag replay with --clock); '' = the params file's"),
    (
        'fastdds_profile',
        '',
        "Fast DDS XML profile for the node (FASTDDS_DEFAULT_PROFILES_FILE); 'shm' = the "
        "shipped shared-memory profile (config/fastdds_shm_profile.xml); '' = stock DDS",
    ),
    ('launch_rviz', 'false', 'Also start RViz with rviz_config (skipped with one log line when rviz2 is missing)'),
    ('rviz_config', PathJoinSubstitution([SHARE, 'config', 'seqpose.rviz']), 'RViz configuration'),
    ('log_level', 'info', 'debug | info | warn | error | fatal'),
    (
        'autostart',
        'true',
        'true: configure and activate the lifecycle node at once; false: leave it unconfigured for a lifecycle '
        'manager (ros2 lifecycle set <node> configure, then activate)',
    ),
)

# launch argument -> parameter type; passed only when the argument is not empty
TYPED_PARAMETERS = (
    ('checkpoint', str),
    ('device', str),
    ('backend', str),
    ('image_qos', str),
    ('image_transport', str),
    ('camera_model', str),
    ('use_sim_time', bool),
)


def _bool(name, text):
    lowered = text.strip().lower()
    if lowered in ('true', '1', 'yes', 'on'):
        return True
    if lowered in ('false', '0', 'no', 'off'):
        return False
    raise ValueError(f'launch argument {name}:={text!r}: expected true or false')


def parameter_overrides(values):
    """{parameter: typed value} for the launch arguments that were given (non-empty), in `values`
    ({argument: text}); empty ones are left to the params file."""
    overrides = {}
    for name, kind in TYPED_PARAMETERS:
        text = values.get(name, '')
        if text == '':
            continue
        overrides[name] = _bool(name, text) if kind is bool else text
    return overrides


def _rviz_available():
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:
        return False
    try:
        get_package_prefix('rviz2')
    except PackageNotFoundError:
        return False
    return True


def lifecycle_actions(node, autostart):
    """The actions that bring the lifecycle `node` (a launch_ros LifecycleNode) to active: a configure request as
    soon as it is up, and an activate request when its first successful configure ends (configuring -> inactive;
    handled once, so a later deactivate or a manual cleanup + configure is left alone). None without autostart."""
    if not autostart:
        return []

    def change(transition):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition))

    return [
        RegisterEventHandler(
            OnStateTransition(
                target_lifecycle_node=node,
                start_state='configuring',
                goal_state='inactive',
                entities=[change(Transition.TRANSITION_ACTIVATE)],
                handle_once=True,
            )
        ),
        change(Transition.TRANSITION_CONFIGURE),
    ]


def _launch_setup(context):
    def value(name):
        return LaunchConfiguration(name).perform(context)

    overrides = parameter_overrides({name: value(name) for name, _ in TYPED_PARAMETERS})
    parameters = [value('params_file')]
    if overrides:
        # after the params file, so a given argument wins; ParameterValue keeps the declared type
        parameters.append({name: ParameterValue(v, value_type=type(v)) for name, v in overrides.items()})
    parameters.append({'autostart': False})  # this file drives the lifecycle (its autostart argument)
    image_topic = value('image_topic')
    remappings = [
        ('image', image_topic),
        ('image/compressed', image_topic.rstrip('/') + '/compressed'),
        ('camera_info', value('camera_info_topic')),
    ]
    if value('odometry_topic'):
        remappings.append(('odom', value('odometry_topic')))
        parameters.append({'use_odometry': True})
    env = {}
    profile = value('fastdds_profile')
    if profile:
        if profile == 'shm':
            profile = PathJoinSubstitution([SHARE, 'config', 'fastdds_shm_profile.xml']).perform(context)
        env['FASTDDS_DEFAULT_PROFILES_FILE'] = profile
    namespace = value('namespace')
    node = LifecycleNode(
        package='seqpose_ros',
        executable='seqpose_node',
        name='seqpose_node',
        namespace=namespace,
        output='screen',
        emulate_tty=True,
        parameters=parameters,
        remappings=remappings,
        additional_env=env or None,
        arguments=['--ros-args', '--log-level', value('log_level')],
    )
    actions = [node, *lifecycle_actions(node, _bool('autostart', value('autostart')))]
    if _bool('launch_rviz', value('launch_rviz')):
        if _rviz_available():
            # RViz in the same namespace: the config's relative topics (debug_image, markers) resolve there
            rviz_parameters = {}
            if 'use_sim_time' in overrides:
                rviz_parameters['use_sim_time'] = overrides['use_sim_time']
            actions.append(
                Node(
                    package='rviz2',
                    executable='rviz2',
                    name='seqpose_rviz',
                    namespace=namespace,
                    arguments=['-d', value('rviz_config')],
                    parameters=[rviz_parameters],
                    output='screen',
                )
            )
        else:
            actions.append(
                LogInfo(
                    msg='launch_rviz:=true but RViz is not installed (package rviz2 not found; '
                    'sudo apt install ros-$ROS_DISTRO-rviz2): starting seqpose_node without it'
                )
            )
    return actions


def generate_launch_description():
    arguments = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, default, description in ARGUMENTS
    ]
    return LaunchDescription(arguments + [OpaqueFunction(function=_launch_setup)])
