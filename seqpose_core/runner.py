"""The stateful inference API everything downstream uses (ROS node, bag replay, evaluation, benchmarks).

    runner = build_runner()                          # the embedded default model, video mode (MF)
    runner = build_runner('run/last.pt', mode='sf', device='cuda',
                          overrides={'score_threshold': 0.5, 'support_plane.enabled': False})
    result = runner.step(Frame(image_rgb, K, stamp, frame_id='camera'))
    result.detections, result.reset_reason, result.skip_reason, result.live_track_ids
    runner.reset()

After the network, `step` is the list of its stages (seqpose_core.stages: one contract for all), with the score
threshold applied at stated points.

The runner owns the memory queue and every rule about where a sequence starts (`sequence_break`): a new
frame_id, a stamp that goes backwards or repeats, a gap over `max_frame_gap`. Callers only hand it frames.
Images are resized to the network input with the data pipeline's own resize (inference sees what training
saw) and K is rescaled with them; the 3D camera frame does not change, so detections are in the original
image's camera frame.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from seqpose_core.allocator import keep_freed_memory
from seqpose_core.backends import build_network
from seqpose_core.config import InferenceConfig, SeqPoseConfig, config_from_checkpoint
from seqpose_core.data.transforms import apply_to_image, normalize_image, plan_geometry
from seqpose_core.detection import Detection
from seqpose_core.geometry import rotation_6d_to_matrix, scale_intrinsics
from seqpose_core.model.checkpoint import load_checkpoint
from seqpose_core.model.seqpose import model_from_checkpoint
from seqpose_core.stages.config import with_settings
from seqpose_core.stages.pipeline import FrameContext, build_stages
from seqpose_core.suppression import suppress_duplicates
from seqpose_core.timing import timed_stage

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / 'weights' / 'default.pt'
# a change of any of these rebuilds the network the runner calls (seqpose_core.backends)
NETWORK_SETTINGS = ('backend', 'onnx_dir', 'engine_cache', 'score_fusion', 'device')


@dataclass(frozen=True)
class Frame:
    """One camera image as the runner takes it."""

    image_rgb: np.ndarray  # (H, W, 3) uint8
    K: np.ndarray  # (3, 3) intrinsics of image_rgb
    stamp: float  # seconds
    frame_id: str = ''  # the camera's frame; a change starts a new sequence
    camera_motion: Optional[np.ndarray] = None  # (4, 4) T_cur_from_prev (odometry); None: unknown
    # Stamp of the frame received just before this one on the same stream, when the caller knows it (the
    # node does, even for frames it dropped): gaps are measured on what the camera delivered, so a slow
    # model does not read as a sensor gap. None: measured from the previous processed frame.
    previous_stamp: Optional[float] = None


@dataclass(frozen=True)
class StepResult:
    detections: list  # list[Detection], score-sorted, in the frame's camera frame
    reset_reason: str = ''  # why the memory was reset before this frame ('' : it was not)
    skip_reason: str = ''  # why the frame was not processed ('' : it was)
    # the tracker's live tracks after this frame (those seen and those coasting): a consumer that keeps
    # something per track (a TF frame, an id) ends it when its track leaves this set
    live_track_ids: frozenset = frozenset()

    @property
    def skipped(self):
        return bool(self.skip_reason)


@dataclass(frozen=True)
class SequenceState:
    """What the sequence rules remember of the last processed frame."""

    stamp: float
    frame_id: str


def sequence_break(previous: Optional[SequenceState], frame: Frame, max_frame_gap: float):
    """('process' | 'reset' | 'skip', reason) for `frame` after the last processed frame `previous`.

    - frame_id different from the previous frame's: reset, it is another camera;
    - stamp earlier than the previous frame's (a bag looping, a driver restarting): reset;
    - stamp equal to the previous frame's: skip, the same frame delivered twice must not advance the memory;
    - gap larger than `max_frame_gap` seconds (0: no limit) since the previous received frame: reset, the
      memory would describe another view.
    """
    if previous is None:
        return 'process', ''
    stamp = frame.stamp
    if frame.frame_id != previous.frame_id:
        return 'reset', f"frame_id changed from '{previous.frame_id}' to '{frame.frame_id}'"
    if stamp < previous.stamp:
        return 'reset', (
            f'stamp went backwards from {previous.stamp:.3f} to {stamp:.3f} s (bag looping or clock reset)'
        )
    if stamp == previous.stamp:
        return 'skip', f"stamp {stamp:.3f} s equals the previous frame's (duplicate frame)"
    reference = previous.stamp
    if frame.previous_stamp is not None and previous.stamp <= frame.previous_stamp < stamp:
        reference = frame.previous_stamp
    if max_frame_gap > 0 and stamp - reference > max_frame_gap:
        return 'reset', f'{stamp - reference:.3f} s since the previous frame exceeds max_frame_gap {max_frame_gap:g} s'
    return 'process', ''


@dataclass(frozen=True)
class MemoryClock:
    """When the memory's newest frame was taken (stamp, seconds), and the camera's motion from it to the previous
    processed frame (T_previous_from_memory_frame; None: they are the same frame), or lost: unknown."""

    stamp: float
    since: Optional[np.ndarray] = None
    lost: bool = False


def motion_since_memory(clock: Optional[MemoryClock], motion):
    """T_current_from_memory_frame from this frame's motion (T_current_from_previous) and the clock; None when
    unknown."""
    if clock is None or clock.since is None:
        return None if clock is not None and clock.lost else motion
    return None if motion is None else motion @ clock.since


def _keep_freed_memory_on_cpu(settings, device):
    """inference.reuse_freed_memory where the runner computes on the CPU (seqpose_core.allocator)."""
    if settings.reuse_freed_memory and device.type == 'cpu':
        keep_freed_memory()


def is_keyframe(clock: Optional[MemoryClock], stamp, motion_from_memory, settings):
    """Whether this frame enters the memory (inference.memory): every frame by default; with keyframes, once
    keyframe_interval seconds passed since the memory's newest frame or the camera moved keyframe_distance."""
    if clock is None or (settings.keyframe_interval <= 0 and settings.keyframe_distance <= 0):
        return True
    if settings.keyframe_interval > 0 and stamp - clock.stamp >= settings.keyframe_interval - 1e-9:
        return True
    return (
        settings.keyframe_distance > 0
        and motion_from_memory is not None
        and float(np.linalg.norm(np.linalg.inv(motion_from_memory)[:3, 3])) >= settings.keyframe_distance
    )


def load_model_and_config(path, device='cpu'):
    """(model, SeqPoseConfig) of one of our checkpoints, weights loaded strictly."""
    content = load_checkpoint(path)
    config = config_from_checkpoint(content, path)
    return model_from_checkpoint(content, path).to(device), config


def build_runner(checkpoint=None, *, model=None, config: SeqPoseConfig = None, mode=None, device=None, overrides=None):
    """The one way to build a StreamRunner.

    checkpoint: a checkpoint path (None: the embedded default model), or pass an already built `model` with
    its `config` instead. mode: 'mf' / 'video' or 'sf' / 'single' (None: the config's). device: None = the
    config's inference.device. overrides: inference settings by dotted name (e.g. {'score_threshold': 0.5,
    'refiner.passes': 1}); unknown names are refused with the known ones."""
    path = None
    if model is None:
        path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
        if not path.is_file():
            if checkpoint:
                raise FileNotFoundError(f'checkpoint {path}: no such file')
            raise FileNotFoundError(
                f'no embedded default model at {path}: pass a checkpoint, or train one '
                '(see seqpose_core/weights/README.md for the command)'
            )
        model, config = load_model_and_config(path, 'cpu')
    elif config is None:
        raise ValueError('build_runner: a model needs its SeqPoseConfig (config=...)')
    changes = dict(overrides or {})
    if mode is not None:
        changes['mode'] = mode
    if device is not None:
        changes['device'] = device
    inference = with_settings(config.inference, changes)
    runner = StreamRunner(model, inference, (config.data.input_height, config.data.input_width))
    runner.checkpoint_path = str(path) if path else None
    return runner


def preprocess_image(image_rgb, input_hw, device):
    """uint8 (H, W, 3) RGB -> (1, 3, h, w) ImageNet-normalised, resized exactly as the training data
    (seqpose_core.data.transforms: bilinear, antialiased when shrinking)."""
    plan = plan_geometry(image_rgb.shape[:2], input_hw, mode='resize')
    return normalize_image(apply_to_image(image_rgb, plan))[None].to(device)


def _check_image(image_rgb):
    if not isinstance(image_rgb, np.ndarray):
        raise TypeError(f'image_rgb: expected a numpy array (H, W, 3) uint8, got {type(image_rgb).__name__}')
    if image_rgb.dtype != np.uint8:
        raise TypeError(f'image_rgb: expected dtype uint8, got {image_rgb.dtype}')
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.shape[0] < 2 or image_rgb.shape[1] < 2:
        raise ValueError(f'image_rgb: expected shape (H, W, 3), got {image_rgb.shape}')


def _check_intrinsics(K):
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f'K: expected a 3x3 intrinsics matrix, got shape {K.shape}')
    if not np.all(np.isfinite(K)):
        raise ValueError(f'K: contains NaN or infinite values: {K.tolist()}')
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f'K: focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}')
    if not np.allclose(K[2], (0.0, 0.0, 1.0)):
        raise ValueError(f'K: last row must be [0, 0, 1], got {K[2].tolist()}')
    return K


def _check_motion(camera_motion):
    if camera_motion is None:
        return None
    motion = np.asarray(camera_motion, dtype=np.float64)
    if motion.shape != (4, 4):
        raise ValueError(f'camera_motion: expected a 4x4 T_cur_from_prev, got shape {motion.shape}')
    if not np.all(np.isfinite(motion)):
        raise ValueError('camera_motion: contains NaN or infinite values')
    return motion


class StreamRunner:
    def __init__(self, model, inference_cfg: InferenceConfig = None, input_size=(238, 322), device=None):
        self.cfg = inference_cfg or InferenceConfig()
        height, width = (int(v) for v in input_size)
        if height % 14 or width % 14 or height <= 0 or width <= 0:
            raise ValueError(f'input_size {input_size}: height and width must be positive multiples of 14')
        self.input_size = (height, width)
        model.check_score_fusion(self.cfg.score_fusion)  # what this model can score with
        self.device = torch.device(device or self.cfg.device)
        _keep_freed_memory_on_cpu(self.cfg, self.device)
        self.torch_model = model.to(self.device).eval()
        # what the step calls: the model itself, or its exported graphs (inference.backend)
        self.model = build_network(self.torch_model, self.cfg, self.input_size)
        self.stages = build_stages(self.model, self.cfg)
        self.stage_states = {stage.name: stage.initial_state() for stage in self.stages}
        self.memory = None
        self.memory_clock = None  # MemoryClock: when the memory's newest frame was taken, the motion since
        self.sequence = None  # SequenceState of the last processed frame
        self.frames_since_reset = 0
        self.checkpoint_path = None

    def configure(self, **changes):
        """Change inference settings at run time, by dotted name (`configure(score_threshold=0.5)`,
        `configure(**{'support_plane.enabled': False})`); the stages are rebuilt with them and keep their
        states; a mode change resets."""
        updated = with_settings(self.cfg, changes)
        self.torch_model.check_score_fusion(updated.score_fusion)
        _keep_freed_memory_on_cpu(updated, self.device)  # one-way: turning it off later leaves it as it is
        network = self.model
        if any(getattr(updated, name) != getattr(self.cfg, name) for name in NETWORK_SETTINGS):
            network = build_network(self.torch_model, updated, self.input_size)
        stages = build_stages(network, updated)
        previous_mode, self.cfg, self.model, self.stages = self.cfg.mode, updated, network, stages
        if self.cfg.mode != previous_mode:
            self.reset()

    def reset(self):
        """Forget the memory and every stage's state (a new sequence starts with the next step)."""
        self.memory = None
        self.memory_clock = None
        self.stage_states = {stage.name: stage.reset(self.stage_states.get(stage.name)) for stage in self.stages}
        self.sequence = None
        self.frames_since_reset = 0

    @property
    def tracks(self):
        """The tracker's state after the last frame (seqpose_core.stages.tracks.Tracks)."""
        return self.stage_states.get('tracks')

    def step(self, frame: Frame) -> StepResult:
        """One frame -> detections (score-sorted) in the camera frame of `frame.image_rgb`, plus why the memory
        was reset or the frame skipped."""
        if not isinstance(frame, Frame):
            raise TypeError(f'frame: expected a seqpose_core.runner.Frame, got {type(frame).__name__}')
        _check_image(frame.image_rgb)
        K = _check_intrinsics(frame.K)
        motion = _check_motion(frame.camera_motion)
        stamp = float(frame.stamp)
        if not math.isfinite(stamp):
            raise ValueError(f'stamp: expected finite seconds, got {stamp}')

        action, reason = sequence_break(self.sequence, frame, self.cfg.max_frame_gap)
        if action == 'skip':
            return StepResult([], skip_reason=reason, live_track_ids=self._live_track_ids())
        reset_reason = ''
        if action == 'reset':
            self.reset()
            reset_reason = reason
        if self.sequence is None:
            motion = None  # motion relative to a frame of another sequence means nothing
        if self.cfg.mode == 'single':
            self.memory = None
        # the memory's frames are warped by the camera's motion since its newest frame (keyframes: not always the
        # previous frame)
        network_motion = motion_since_memory(self.memory_clock, motion) if self.memory is not None else None

        timer = getattr(self.model, 'stage_timer', None)  # benchmarks: preprocess / postprocess times too
        with torch.inference_mode():
            with timed_stage(timer, 'preprocess'):
                image = preprocess_image(frame.image_rgb, self.input_size, self.device)
                K_input = scale_intrinsics(K, frame.image_rgb.shape[:2], self.input_size)
                K_tensor = torch.as_tensor(K_input, dtype=torch.float32, device=self.device)[None]
                motion_tensor = (
                    torch.as_tensor(network_motion, dtype=torch.float32, device=self.device)[None]
                    if network_motion is not None
                    else None
                )
            outputs, memory = self.model(
                image,
                K_tensor,
                memory=self.memory,
                camera_motion=motion_tensor,
                dense=False,
                score_fusion=self.cfg.score_fusion,
            )
            if self.cfg.mode == 'video':
                if self.memory is None or is_keyframe(self.memory_clock, stamp, network_motion, self.cfg.memory):
                    self.memory, self.memory_clock = memory, MemoryClock(stamp)
                else:  # this frame read the memory but does not enter it
                    self.memory_clock = MemoryClock(self.memory_clock.stamp, network_motion, network_motion is None)
            self.sequence = SequenceState(stamp, frame.frame_id)
            self.frames_since_reset += 1
            with timed_stage(timer, 'postprocess'):
                # threshold 1: the decoder's score; what falls below it no later stage sees (their cost grows
                # with the boxes they read)
                detections = self.detections_from_outputs(outputs, K_input=K_tensor)
            context = FrameContext(frame.image_rgb, K, motion, self.cfg.mode, self.device)
            for stage in self.stages:
                with timed_stage(timer, stage.name):
                    detections, self.stage_states[stage.name] = stage.apply(
                        detections, context, self.stage_states[stage.name]
                    )
                if stage.changes_scores:
                    # threshold 2, 3, ...: a score a stage changed is published only at or above the threshold
                    detections = self.above_threshold(detections)
        return StepResult(detections, reset_reason=reset_reason, live_track_ids=self._live_track_ids())

    def _live_track_ids(self):
        tracks = self.tracks
        return tracks.live_ids if tracks is not None else frozenset()

    def above_threshold(self, detections):
        """The detections at or above the score threshold, best first: after a stage that changed scores."""
        kept = [d for d in detections if d.score >= self.cfg.score_threshold]
        return sorted(kept, key=lambda d: d.score, reverse=True)

    def detections_from_outputs(self, outputs, index=0, K_input=None):
        """Score threshold, class-aware duplicate suppression (inference.suppression), max_detections.
        K_input (B, 3, 3): the intrinsics of the network input the outputs were made from."""
        # the forward scored the queries with this runner's score_fusion (step): the memory's ranking
        probabilities = outputs['detection_probabilities'][index]  # (Q, 6) float32
        scores, classes = probabilities.max(-1)
        keep = scores >= self.cfg.score_threshold
        order = torch.argsort(scores[keep], descending=True)
        indices = torch.nonzero(keep).flatten()[order].cpu().numpy()
        scores = scores.cpu().numpy()
        classes = classes.cpu().numpy()
        translations = outputs['pred_translation'][index].float().cpu().numpy().astype(np.float64)
        rotations = rotation_6d_to_matrix(outputs['pred_rotation6d'][index].float()).cpu().numpy().astype(np.float64)
        sizes = outputs['pred_size'][index].float().cpu().numpy().astype(np.float64)
        # a generator: suppression stops at max_detections, the rest are never built
        candidates = (
            Detection(
                class_id=int(classes[query]) + 1,
                score=float(scores[query]),
                rotation=rotations[query],
                translation=translations[query].copy(),
                size=sizes[query].copy(),
                extras={'query': int(query)},
            )
            for query in indices
        )
        # the 3D camera frame is the same at every image size, so the input's K projects the boxes correctly
        K = K_input[index].float().cpu().numpy() if K_input is not None else None
        suppression = self.cfg.suppression
        method = suppression.method if K is not None else 'centre_distance'
        return suppress_duplicates(
            candidates, K, method, suppression.iou, suppression.distance, self.cfg.max_detections
        )
