"""The node's logic as plain classes (no rclpy): CameraInfo pairing, one-slot buffer, throttled problem log,
statistics, reusable object ids and the per-frame processing step. Every sequence rule (new frame_id, stamp
backwards or repeated, gaps) and the tracker belong to `seqpose_core.runner`; `node.py` only wires these to
topics, services and parameters.
"""

import dataclasses
import math
import threading
import time
from collections import deque

import numpy as np

from seqpose_core.stages.config import with_settings


# --------------------------------------------------------------------------------------------- camera info
class StampedCache:
    """The last few values of a stamped topic by stamp (CameraInfo; the odometry of seqpose_ros.camera_motion). An
    image is paired with the value whose stamp is closest to its own within `tolerance` seconds (drivers stamp
    both alike, or nearly: image_transport's CameraSubscriber pairs them exactly, message_filters'
    ApproximateTime nearly). The two arrive on separate subscriptions, so the image can be handled before its
    value: `pair` waits a little for it. When none is close enough, the latest is used and the caller is told how
    far apart the stamps were (it warns)."""

    def __init__(self, size=30):
        self._items = deque(maxlen=size)  # (stamp, value), arrival order
        self._condition = threading.Condition()

    def add(self, stamp, value):
        with self._condition:
            self._items.append((float(stamp), value))
            self._condition.notify_all()

    def _closest(self, stamp):
        best = None
        for item_stamp, value in self._items:
            distance = abs(item_stamp - stamp)
            if best is None or distance < best[0]:
                best = (distance, item_stamp, value)
        return best

    def pair(self, stamp, tolerance=0.0, wait=0.0, clock=time.monotonic):
        """(CameraInfo value or None, stamp distance in seconds or None when paired within tolerance).

        Waits up to `wait` seconds for a CameraInfo within tolerance when none is there yet and no CameraInfo
        newer than the image has arrived (a newer one means its own will not come any more)."""
        stamp = float(stamp)
        deadline = clock() + max(float(wait), 0.0)
        with self._condition:
            while True:
                best = self._closest(stamp)
                if best is not None and best[0] <= tolerance + 1e-9:
                    return best[2], None
                newest = max((s for s, _ in self._items), default=None)
                remaining = deadline - clock()
                if remaining <= 0 or (newest is not None and newest > stamp + tolerance):
                    break
                self._condition.wait(min(remaining, 0.02))
            if not self._items:
                return None, None
            latest_stamp, latest = self._items[-1]
            return latest, abs(latest_stamp - stamp)

    def get(self, stamp, tolerance=0.0):
        """The CameraInfo paired with `stamp` (within tolerance), else the latest (no waiting)."""
        return self.pair(stamp, tolerance)[0]

    def latest(self):
        with self._condition:
            return self._items[-1][1] if self._items else None


# --------------------------------------------------------------------------------------------- one-slot buffer
class LatestSlot:
    """Holds at most one item: a newer `put` replaces an item the worker has not taken yet (counted as
    dropped), so a slow model never builds a queue and always works on the newest frame."""

    def __init__(self):
        self._item = None
        self._closed = False
        self._condition = threading.Condition()
        self.dropped = 0

    def put(self, item):
        """Returns True when an unprocessed item was replaced."""
        with self._condition:
            replaced = self._item is not None
            if replaced:
                self.dropped += 1
            self._item = item
            self._condition.notify()
            return replaced

    def take(self, timeout=None):
        """The newest item (removing it), or None after `timeout` seconds or once closed."""
        with self._condition:
            if self._item is None and not self._closed:
                self._condition.wait(timeout)
            item, self._item = self._item, None
            return item

    def clear(self):
        with self._condition:
            self._item = None

    def close(self):
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    @property
    def closed(self):
        return self._closed


class SequenceGaps:
    """Frames lost before they reached the node (best-effort depth-1 reader overwritten while the executor
    was busy, or lost in transport): gaps in each publisher's publication sequence numbers."""

    def __init__(self):
        self._last = {}
        self.lost = 0

    def update(self, publisher, sequence):
        if sequence is None:
            return 0
        last = self._last.get(publisher)
        self._last[publisher] = sequence
        if last is None or sequence <= last:  # first message, or the publisher restarted
            return 0
        missing = sequence - last - 1
        self.lost += missing
        return missing


# --------------------------------------------------------------------------------------------- logging
class ProblemLog:
    """Throttles problem messages per kind: the first occurrence is logged at once, repeats at most every
    `period` seconds with the number suppressed in between (a camera with a wrong encoding would otherwise
    log at 30 Hz)."""

    def __init__(self, period=5.0, clock=time.monotonic):
        self.period = float(period)
        self.clock = clock
        self._last = {}
        self._suppressed = {}
        self.counts = {}

    def report(self, kind, text):
        """The line to log now, or None when throttled."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.period:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return None
        suppressed = self._suppressed.pop(kind, 0)
        self._last[kind] = now
        if suppressed:
            text += f' ({suppressed} more like this in the last {now - last:.1f} s)'
        return text


# --------------------------------------------------------------------------------------------- statistics
class Stats:
    """Counters and a latency window for /diagnostics."""

    def __init__(self, window=100, clock=time.monotonic):
        self.clock = clock
        self.received = 0
        self.processed = 0
        self.skipped = 0
        self.resets = 0
        self.with_motion = 0  # frames given the camera motion since the previous one (odometry)
        self.latencies = deque(maxlen=window)  # seconds, image received -> detections published
        self._last_snapshot = (clock(), 0, 0)

    def snapshot(self, dropped, lost=0):
        now = self.clock()
        then, received_then, processed_then = self._last_snapshot
        elapsed = max(now - then, 1e-9)
        self._last_snapshot = (now, self.received, self.processed)
        latencies = np.asarray(self.latencies) * 1000.0
        return {
            'input rate (Hz)': (self.received - received_then) / elapsed,
            'processed rate (Hz)': (self.processed - processed_then) / elapsed,
            'latency mean (ms)': float(latencies.mean()) if latencies.size else math.nan,
            'latency max (ms)': float(latencies.max()) if latencies.size else math.nan,
            'frames received': self.received,
            'frames processed': self.processed,
            'frames dropped (newer frame arrived)': dropped,
            'frames lost before the node (DDS reader queue)': lost,
            'frames skipped (bad input)': self.skipped,
            'memory resets': self.resets,
            'frames with camera motion': self.with_motion,
        }


# --------------------------------------------------------------------------------------------- object ids
class ReusableIds:
    """Small reusable object ids over the runner tracker's never-reused track ids: a track keeps its id while it
    lives, and once the tracker has forgotten it the id is free for the next new object (smallest free first).

    Why: every TF child frame name ever broadcast stays in every tf2 buffer for the life of the listener; with
    one name per track id (a looping scene creates a new track every few seconds) the set grows without
    bound. With reused ids the names are `<class>_<id>` with id <= the most objects tracked at once."""

    def __init__(self, first=1):
        self.first = int(first)
        self._by_track = {}

    def reset(self):
        self._by_track = {}

    def update(self, live_track_ids, track_ids):
        """Free the ids of tracks not in `live_track_ids`; give `track_ids` (this frame's) their ids.
        Returns {track_id: object id}."""
        live = set(live_track_ids) | set(track_ids)
        self._by_track = {t: i for t, i in self._by_track.items() if t in live}
        used = set(self._by_track.values())
        candidate = self.first
        for track_id in track_ids:
            if track_id in self._by_track:
                continue
            while candidate in used:
                candidate += 1
            self._by_track[track_id] = candidate
            used.add(candidate)
        return dict(self._by_track)

    @property
    def in_use(self):
        return len(self._by_track)


# --------------------------------------------------------------------------------------------- processing
class Pipeline:
    """runner.step (the runner decides resets and skips, advances the temporal memory once per processed frame
    and gives every detection its track id) -> reusable object ids (`extras['object_id']`).

    The runner is a seqpose_core.runner.StreamRunner (or any object with `step(Frame) -> StepResult`,
    `reset()` and `configure(**inference_settings)`). All calls come from one worker thread, except
    `request_reset` and `configure`, which are safe from any thread (applied between frames).
    """

    def __init__(self, runner):
        self.runner = runner
        self.ids = ReusableIds()
        self._reset_requested = None
        self._pending_settings = {}
        self._lock = threading.Lock()

    def configure(self, **values):
        """Inference settings by dotted name (the node's runner parameters: score_threshold, mode,
        support_plane.enabled, ...); applied before the next frame. Names and values are checked now."""
        with self._lock:
            pending = {**self._pending_settings, **values}
            with_settings(self.runner.cfg, pending)  # ConfigError (a ValueError) naming what is wrong
            self._pending_settings = pending

    def _apply_settings(self):
        with self._lock:
            settings, self._pending_settings = self._pending_settings, {}
        if not settings:
            return ''
        mode = self.runner.cfg.mode
        self.runner.configure(**settings)
        if self.runner.cfg.mode != mode:  # the runner reset its memory and tracks
            self.ids.reset()
            return f'mode changed to {self.runner.cfg.mode}'
        return ''

    def request_reset(self, reason):
        """Reset memory + tracks before the next frame (service calls and parameter changes come from other
        threads than the worker: the reset itself happens on the worker, between frames)."""
        with self._lock:
            self._reset_requested = reason

    def reset_now(self, reason=''):
        self.runner.reset()
        self.ids.reset()
        return reason

    def process(self, frame):
        """One seqpose_core.runner.Frame -> its StepResult, the detections with extras['object_id'], and the
        reset reason (a requested reset or a mode change counts) in result.reset_reason."""
        reset_reason = self._apply_settings()
        with self._lock:
            requested, self._reset_requested = self._reset_requested, None
        if requested:
            reset_reason = self.reset_now(requested)
        result = self.runner.step(frame)
        if result.skip_reason:
            return dataclasses.replace(result, reset_reason=reset_reason)
        if result.reset_reason:
            self.ids.reset()
            reset_reason = result.reset_reason
        ids = self.ids.update(result.live_track_ids, [d.track_id for d in result.detections if d.track_id >= 0])
        for detection in result.detections:
            if detection.track_id >= 0:
                detection.extras['object_id'] = ids[detection.track_id]
        return dataclasses.replace(result, reset_reason=reset_reason)
