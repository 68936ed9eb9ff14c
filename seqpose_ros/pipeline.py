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

    def find(self, stamp, tolerance=0.0):
        """The value whose stamp is closest to `stamp` within `tolerance`, else None (never another one)."""
        with self._condition:
            best = self._closest(float(stamp))
        return best[2] if best is not None and best[0] <= tolerance + 1e-9 else None

    def latest(self):
        with self._condition:
            return self._items[-1][1] if self._items else None

    def latest_stamp(self):
        with self._condition:
            return self._items[-1][0] if self._items else None

    def clear(self):
        with self._condition:
            self._items.clear()


class Paired:
    """What a CameraInfoPairing call hands back: `ready`, [(image item, CameraInfo value)] to process, in stamp
    order; `dropped`, [(image stamp, why)] for images that will never get their CameraInfo."""

    def __init__(self, ready=(), dropped=()):
        self.ready, self.dropped = list(ready), list(dropped)

    def __iadd__(self, other):
        self.ready += other.ready
        self.dropped += other.dropped
        return self


class CameraInfoPairing:
    """Each image waits for the CameraInfo with its own stamp (within `tolerance`, default 5 ms), as
    image_transport's CameraSubscriber and message_filters' ExactTime pair them: the two come on separate
    topics, and with large raw images the CameraInfo of a frame often arrives after its image (up to 2 s late
    at 1 Hz, 0.4 s at 10 Hz, over stock DDS). A CameraInfo with another stamp is never used for an image, so
    a stale or wrong one cannot pair with the frames that follow it.

    An image is dropped (returned in `dropped`, the caller counts and reports it) when its CameraInfo has not
    come within `wait` seconds of the image's arrival, or when a newer image got its CameraInfo first (the
    older one's was lost: processing it afterwards would run the stream backwards). At most `max_pending`
    images wait at once (the oldest is dropped). `expire()` drops the images that waited too long; the other
    calls expire too. Thread-safe (the callbacks and a timer may call from several threads)."""

    def __init__(self, wait=3.0, tolerance=0.005, clock=time.monotonic, infos=100, max_pending=60):
        self.wait, self.tolerance, self.clock, self.max_pending = float(wait), float(tolerance), clock, max_pending
        self.infos = StampedCache(size=infos)
        self._pending = []  # (stamp, arrival time, item), arrival order
        self._lock = threading.Lock()
        self.dropped = 0  # images that never got their CameraInfo

    def _release(self, index, info):
        """Hand pending image `index` out with `info`; the images that came before it are given up."""
        stamp, _, item = self._pending[index]
        older = [(s, 'superseded') for s, _, _ in self._pending[:index] if s < stamp]
        self._pending = [p for p in self._pending[:index] if p[0] >= stamp] + self._pending[index + 1 :]
        self.dropped += len(older)
        return Paired([(item, info)], older)

    def _expire(self):
        now = self.clock()
        expired = {i for i, (_, arrival, _) in enumerate(self._pending) if now - arrival > self.wait}
        overflow = len(self._pending) - len(expired) - self.max_pending
        for i in range(len(self._pending)):  # too many waiting: the oldest go first
            if overflow <= 0:
                break
            if i not in expired:
                expired.add(i)
                overflow -= 1
        if not expired:
            return Paired()
        dropped = [(s, 'timeout') for i, (s, _, _) in enumerate(self._pending) if i in expired]
        self._pending = [p for i, p in enumerate(self._pending) if i not in expired]
        self.dropped += len(dropped)
        return Paired((), dropped)

    def add_image(self, stamp, item):
        """An image arrived: (item, its CameraInfo) is ready at once when that CameraInfo is already here."""
        stamp = float(stamp)
        info = self.infos.find(stamp, self.tolerance)
        with self._lock:
            self._pending.append((stamp, self.clock(), item))
            result = self._expire()
            index = next((i for i, p in enumerate(self._pending) if p[2] is item), None)
            if info is not None and index is not None:
                result += self._release(index, info)
            return result

    def add_info(self, stamp, info):
        """A CameraInfo arrived: the waiting image with its stamp (if any) is ready."""
        stamp = float(stamp)
        self.infos.add(stamp, info)
        with self._lock:
            result = self._expire()
            matches = [
                (abs(s - stamp), i)
                for i, (s, _, _) in enumerate(self._pending)
                if abs(s - stamp) <= self.tolerance + 1e-9
            ]
            if matches:
                result += self._release(min(matches)[1], info)
            return result

    def expire(self):
        with self._lock:
            return self._expire()

    @property
    def waiting(self):
        with self._lock:
            return len(self._pending)

    def clear(self):
        """Forget the waiting images (not counted as dropped: deactivation) and the CameraInfos."""
        with self._lock:
            self._pending = []
        self.infos.clear()


# --------------------------------------------------------------------------------------------- one-slot buffer
class LatestSlot:
    """The frames waiting for the worker: by default at most one, a newer `put` replacing an item the worker has
    not taken yet (counted as dropped), so a slow model never builds a queue and always works on the newest frame.

    `backlog()` (default: 1) says how many may wait; the worker takes the oldest. The node allows as many as the
    model processes in one camera frame period (`frames_to_keep`): frames released together (their CameraInfos
    came late, in a burst, as a reliable writer delivers after resending a lost sample) are all processed when the
    model is fast enough to catch up before the next frame, and only the newest when it is not."""

    def __init__(self, backlog=None):
        self._items = deque()
        self._closed = False
        self._condition = threading.Condition()
        self.backlog = backlog or (lambda: 1)
        self.dropped = 0

    def _trim(self):
        limit = max(1, int(self.backlog()))
        dropped = 0
        while len(self._items) > limit:
            self._items.popleft()
            dropped += 1
        self.dropped += dropped
        return dropped

    def put(self, item):
        """Returns True when an unprocessed item was dropped to make room."""
        with self._condition:
            self._items.append(item)
            dropped = self._trim()
            self._condition.notify()
            return dropped > 0

    def take(self, timeout=None):
        """The oldest item still allowed to wait (removing it), or None after `timeout` seconds or once closed."""
        with self._condition:
            if not self._items and not self._closed:
                self._condition.wait(timeout)
            self._trim()
            return self._items.popleft() if self._items else None

    def clear(self):
        with self._condition:
            self._items.clear()

    def close(self):
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    @property
    def closed(self):
        return self._closed


def frames_to_keep(frame_period, step_seconds, most=8):
    """How many frames may wait for the worker: as many as it processes in one camera frame period (at least 1,
    at most `most`); 1 while either is unknown."""
    if not frame_period or not step_seconds:
        return 1
    return int(min(most, max(1, frame_period / step_seconds)))


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
        self.steps = deque(maxlen=20)  # seconds the worker spent on a frame
        self._last_snapshot = (clock(), 0, 0)

    @property
    def step_seconds(self):
        """The median time the worker spends on a frame (recent frames), or None."""
        steps = list(self.steps)  # a copy: the worker appends
        return float(np.median(steps)) if steps else None

    def snapshot(self, dropped, lost=0, no_camera_info=0):
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
            'frames dropped (no CameraInfo with their stamp)': no_camera_info,
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


# --------------------------------------------------------------------------------------------- frame gap
AUTO = -1.0  # max_frame_gap: follow the camera's rate


class AutoFrameGap:
    """max_frame_gap that follows the camera's own rate: `multiple` x the median period of the last `window`
    received frames (stamp differences), never below `base` (the checkpoint's max_frame_gap, 1 s: a 30 Hz camera
    keeps it), and `base` itself until two frames have come. A 1 Hz camera then resets its memory after 5 s
    without a frame, not on every frame whose stamp is a little over 1 s after the one before. `base` 0 (the
    checkpoint never resets on a gap) stays 0."""

    def __init__(self, base, multiple=5.0, window=21):
        self.base, self.multiple = float(base), float(multiple)
        self._intervals = deque(maxlen=window)
        self._last = None

    def observe(self, stamp):
        stamp = float(stamp)
        if self._last is not None and stamp > self._last:
            self._intervals.append(stamp - self._last)
        self._last = stamp

    @property
    def period(self):
        """The median frame period in seconds, or None before two frames."""
        intervals = list(self._intervals)  # a copy: other threads append
        return float(np.median(intervals)) if intervals else None

    def value(self):
        if self.base <= 0 or self.period is None:
            return self.base
        return max(self.base, self.multiple * self.period)


def reset_report(topic, reason, by_operator):
    """(throttle kind, log line, level) for a memory reset: 'info' when an operator asked for it (the ~/reset
    service, a mode change, re-enabling, re-activating), 'warn' when the stream caused it (a gap, a stamp going
    back, a new frame_id, a failed frame). One event, one level, however it was asked for."""
    from seqpose_ros.images import problem_kind

    return (
        problem_kind(reason),
        f'{topic}: {reason}; temporal memory and tracks reset',
        'info' if by_operator else 'warn',
    )


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
        self._reset_requested = None  # (reason, asked by an operator)
        self._pending_settings = {}
        self._lock = threading.Lock()
        self.frame_gap = AutoFrameGap(runner.cfg.max_frame_gap)
        self.auto_frame_gap = False
        self._frame_gap = runner.cfg.max_frame_gap  # the value last handed to the runner (or pending)
        self.last_reset_by_operator = False

    def configure(self, **values):
        """Inference settings by dotted name (the node's runner parameters: score_threshold, mode,
        support_plane.enabled, ...); applied before the next frame. Names and values are checked now.
        max_frame_gap -1 (AUTO): follow the camera's rate (`received`, AutoFrameGap)."""
        with self._lock:
            auto = self.auto_frame_gap
            if 'max_frame_gap' in values:
                auto = float(values['max_frame_gap']) == AUTO
                values = {**values, 'max_frame_gap': self.frame_gap.value() if auto else values['max_frame_gap']}
            pending = {**self._pending_settings, **values}
            with_settings(self.runner.cfg, pending)  # ConfigError (a ValueError) naming what is wrong
            self._pending_settings, self.auto_frame_gap = pending, auto
            if 'max_frame_gap' in values:
                self._frame_gap = float(values['max_frame_gap'])

    def received(self, stamp):
        """An image with this stamp arrived (every received image, processed or dropped): the camera's rate for an
        automatic max_frame_gap, changed in the runner when it moves by more than 10 %."""
        with self._lock:
            self.frame_gap.observe(stamp)
            if not self.auto_frame_gap:
                return
            value = self.frame_gap.value()
            if abs(value - self._frame_gap) <= 0.1 * self._frame_gap:
                return
            self._pending_settings = {**self._pending_settings, 'max_frame_gap': value}
            self._frame_gap = value

    @property
    def max_frame_gap(self):
        """The max_frame_gap in force (or about to be, before the next frame)."""
        return self._frame_gap

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

    def request_reset(self, reason, by_operator=True):
        """Reset memory + tracks before the next frame (service calls and parameter changes come from other
        threads than the worker: the reset itself happens on the worker, between frames). `by_operator`: an
        operator asked for it (logged at INFO), not a failure (WARN)."""
        with self._lock:
            self._reset_requested = (reason, by_operator)

    def reset_now(self, reason=''):
        self.runner.reset()
        self.ids.reset()
        return reason

    def process(self, frame):
        """One seqpose_core.runner.Frame -> its StepResult, the detections with extras['object_id'], and the
        reset reason (a requested reset or a mode change counts) in result.reset_reason; `last_reset_by_operator`
        says whether an operator asked for that reset (the ~/reset service, a mode change, re-enabling) or the
        stream caused it (the runner's sequence rules, a failed frame)."""
        reset_reason = self._apply_settings()
        by_operator = bool(reset_reason)  # a mode change
        with self._lock:
            requested, self._reset_requested = self._reset_requested, None
        if requested:
            reset_reason, by_operator = self.reset_now(requested[0]), requested[1]
        result = self.runner.step(frame)
        self.last_reset_by_operator = by_operator
        if result.skip_reason:
            return dataclasses.replace(result, reset_reason=reset_reason)
        if result.reset_reason:
            self.ids.reset()
            reset_reason = result.reset_reason
            self.last_reset_by_operator = False
        ids = self.ids.update(result.live_track_ids, [d.track_id for d in result.detections if d.track_id >= 0])
        for detection in result.detections:
            if detection.track_id >= 0:
                detection.extras['object_id'] = ids[detection.track_id]
        return dataclasses.replace(result, reset_reason=reset_reason)
