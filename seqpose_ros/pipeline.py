"""The node's logic as plain classes (no rclpy): frame gate, one-slot buffer, throttled problem log, statistics
and the per-frame processing step. `node.py` only wires these to topics, services and parameters.
"""
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from seqpose_core.tracking import Tracker


# --------------------------------------------------------------------------------------------- frame gate
@dataclass
class GateDecision:
    action: str          # 'process', 'reset' (reset memory + tracks, then process) or 'skip'
    reason: str = ''


class FrameGate:
    """Decides, from the stamp and frame_id alone, whether a frame continues the current sequence.

    - stamp earlier than the previous frame's (a bag looping, a driver restarting): reset;
    - gap larger than `max_frame_gap` seconds (0 = no limit): reset, the memory would describe another scene;
    - frame_id different from the previous frame's: reset, it is another camera;
    - stamp equal to the previous frame's: skip, the same frame delivered twice must not advance the memory.
    """

    def __init__(self, max_frame_gap=1.0):
        self.max_frame_gap = float(max_frame_gap)
        self.last_stamp = None
        self.last_frame_id = None

    def reset(self):
        self.last_stamp = None
        self.last_frame_id = None

    def check(self, stamp, frame_id):
        stamp = float(stamp)
        if self.last_stamp is None:
            decision = GateDecision('process')
        elif frame_id != self.last_frame_id:
            decision = GateDecision('reset', f"frame_id changed from '{self.last_frame_id}' to '{frame_id}'")
        elif stamp < self.last_stamp:
            decision = GateDecision('reset', f'stamp went backwards from {self.last_stamp:.3f} to {stamp:.3f} s '
                                             '(bag looping or clock reset)')
        elif stamp == self.last_stamp:
            return GateDecision('skip', f'stamp {stamp:.3f} s equals the previous frame\'s (duplicate frame)')
        elif self.max_frame_gap > 0 and stamp - self.last_stamp > self.max_frame_gap:
            decision = GateDecision('reset', f'{stamp - self.last_stamp:.3f} s since the previous frame exceeds '
                                             f'max_frame_gap {self.max_frame_gap:g} s')
        else:
            decision = GateDecision('process')
        self.last_stamp = stamp
        self.last_frame_id = frame_id
        return decision


# --------------------------------------------------------------------------------------------- camera info
class CameraInfoCache:
    """The last few CameraInfos by stamp. An image uses the CameraInfo with its own stamp when one arrived
    (drivers stamp both alike, as image_transport's CameraSubscriber pairs them), else the latest: the two
    arrive on separate subscriptions, so the image can be handled before its CameraInfo."""

    def __init__(self, size=10):
        self._items = deque(maxlen=size)   # (stamp, value), oldest first
        self._lock = threading.Lock()

    def add(self, stamp, value):
        with self._lock:
            self._items.append((float(stamp), value))

    def get(self, stamp):
        with self._lock:
            for item_stamp, value in reversed(self._items):
                if item_stamp == float(stamp):
                    return value
            return self._items[-1][1] if self._items else None

    def latest(self):
        with self._lock:
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
        if last is None or sequence <= last:   # first message, or the publisher restarted
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
        self.latencies = deque(maxlen=window)    # seconds, image received -> detections published
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
        }


# --------------------------------------------------------------------------------------------- processing
@dataclass
class Frame:
    rgb: np.ndarray              # (H, W, 3) uint8 RGB
    K: np.ndarray                # (3, 3) for rgb
    stamp: float                 # seconds (header stamp)
    frame_id: str
    header: Any = None           # passed through to the outputs
    received: float = 0.0        # time.monotonic() when the message arrived
    camera_motion: Optional[np.ndarray] = None   # T_cur_from_prev, when known
    extras: dict = field(default_factory=dict)


@dataclass
class FrameResult:
    detections: list
    reset_reason: str = ''
    skipped_reason: str = ''


class Pipeline:
    """Gate -> runner.step (advances the temporal memory once per processed frame) -> tracker.

    The runner is any object with `step(image_rgb, K, stamp, camera_motion)` and `reset()` (StreamRunner);
    `cfg` attributes score_threshold / max_detections / mode / max_frame_gap are set through `configure`.
    All calls come from one worker thread, except `request_reset`, which is safe from any thread.
    """

    def __init__(self, runner, tracker=None, gate=None):
        self.runner = runner
        self.tracker = tracker or Tracker()
        self.gate = gate or FrameGate()
        self._reset_requested = None
        self._lock = threading.Lock()

    def configure(self, **values):
        """Apply run-time settings (names as the node parameters)."""
        cfg = getattr(self.runner, 'cfg', None)
        for name, value in values.items():
            if name == 'max_frame_gap':
                self.gate.max_frame_gap = float(value)
                if cfg is not None:
                    # the runner applies its own gap rule too: keep it from firing on a gap the gate allows
                    cfg.max_frame_gap = float(value) if value > 0 else math.inf
            elif name == 'mode':
                if cfg is not None and cfg.mode != value:
                    cfg.mode = value
                    self.request_reset(f'mode changed to {value}')
            elif cfg is not None and name in ('score_threshold', 'max_detections'):
                setattr(cfg, name, type(getattr(cfg, name))(value))

    def request_reset(self, reason):
        """Reset memory + tracks before the next frame (service calls and parameter changes come from other
        threads than the worker: the reset itself happens on the worker, between frames)."""
        with self._lock:
            self._reset_requested = reason

    def reset_now(self, reason=''):
        self.runner.reset()
        self.tracker.reset()
        self.gate.reset()
        return reason

    def process(self, frame):
        with self._lock:
            requested, self._reset_requested = self._reset_requested, None
        reset_reason = ''
        if requested:
            self.reset_now(requested)
            reset_reason = requested
        decision = self.gate.check(frame.stamp, frame.frame_id)
        if decision.action == 'skip':
            return FrameResult([], reset_reason, decision.reason)
        camera_motion = frame.camera_motion
        if decision.action == 'reset':
            self.runner.reset()
            self.tracker.reset()
            reset_reason = decision.reason
            camera_motion = None
        detections = self.runner.step(frame.rgb, frame.K, frame.stamp, camera_motion=camera_motion)
        self.tracker.update(detections, camera_motion)
        return FrameResult(detections, reset_reason)
