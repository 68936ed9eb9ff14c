"""The stateful inference API everything downstream uses (ROS node, bag replay, evaluation, benchmarks).

    runner = build_runner()                          # the embedded default model, video mode (MF)
    runner = build_runner('run/last.pt', mode='sf', device='cuda', overrides={'score_threshold': 0.5})
    result = runner.step(Frame(image_rgb, K, stamp, frame_id='camera'))
    result.detections, result.reset_reason, result.skip_reason
    runner.reset()

The runner owns the memory queue and every rule about where a sequence starts (`sequence_break`): a new
frame_id, a stamp that goes backwards or repeats, a gap over `max_frame_gap`. Callers only hand it frames.
Images are resized to the network input with the data pipeline's own resize (inference sees what training
saw) and K is rescaled with them; the 3D camera frame does not change, so detections are in the original
image's camera frame.
"""
import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from seqpose_core.config import MODES, InferenceConfig, SeqPoseConfig, config_from_checkpoint
from seqpose_core.data.transforms import apply_to_image, normalize_image, plan_geometry
from seqpose_core.detection import Detection
from seqpose_core.geometry import rotation_6d_to_matrix, scale_intrinsics
from seqpose_core.model.checkpoint import load_checkpoint
from seqpose_core.model.pose_refiner import crop_class_probabilities, refine_poses
from seqpose_core.model.seqpose import model_from_checkpoint
from seqpose_core.score_tracks import check_settings as check_score_tracks
from seqpose_core.score_tracks import track_scores
from seqpose_core.suppression import SUPPRESSIONS, suppress_duplicates
from seqpose_core.support_plane import check_settings as check_support_plane
from seqpose_core.support_plane import level_detections, updated_plane
from seqpose_core.timing import timed_stage

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / 'weights' / 'default.pt'


@dataclass(frozen=True)
class Frame:
    """One camera image as the runner takes it."""
    image_rgb: np.ndarray                 # (H, W, 3) uint8
    K: np.ndarray                         # (3, 3) intrinsics of image_rgb
    stamp: float                          # seconds
    frame_id: str = ''                    # the camera's frame; a change starts a new sequence
    camera_motion: Optional[np.ndarray] = None   # (4, 4) T_cur_from_prev (odometry); None: unknown
    # Stamp of the frame received just before this one on the same stream, when the caller knows it (the
    # node does, even for frames it dropped): gaps are measured on what the camera delivered, so a slow
    # model does not read as a sensor gap. None: measured from the previous processed frame.
    previous_stamp: Optional[float] = None


@dataclass(frozen=True)
class StepResult:
    detections: list                      # list[Detection], score-sorted, in the frame's camera frame
    reset_reason: str = ''                # why the memory was reset before this frame ('' : it was not)
    skip_reason: str = ''                 # why the frame was not processed ('' : it was)

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
        return 'reset', (f'stamp went backwards from {previous.stamp:.3f} to {stamp:.3f} s '
                         '(bag looping or clock reset)')
    if stamp == previous.stamp:
        return 'skip', f"stamp {stamp:.3f} s equals the previous frame's (duplicate frame)"
    reference = previous.stamp
    if frame.previous_stamp is not None and previous.stamp <= frame.previous_stamp < stamp:
        reference = frame.previous_stamp
    if max_frame_gap > 0 and stamp - reference > max_frame_gap:
        return 'reset', f'{stamp - reference:.3f} s since the previous frame exceeds max_frame_gap {max_frame_gap:g} s'
    return 'process', ''


def load_model_and_config(path, device='cpu'):
    """(model, SeqPoseConfig) of one of our checkpoints, weights loaded strictly."""
    content = load_checkpoint(path)
    config = config_from_checkpoint(content, path)
    return model_from_checkpoint(content, path).to(device), config


def build_runner(checkpoint=None, *, model=None, config: SeqPoseConfig = None, mode=None, device=None,
                 overrides=None):
    """The one way to build a StreamRunner.

    checkpoint: a checkpoint path (None: the embedded default model), or pass an already built `model` with
    its `config` instead. mode: 'mf' / 'video' or 'sf' / 'single' (None: the config's). device: None = the
    config's inference.device. overrides: InferenceConfig fields to replace (e.g. {'score_threshold': 0.5})."""
    path = None
    if model is None:
        path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
        if not path.is_file():
            if checkpoint:
                raise FileNotFoundError(f'checkpoint {path}: no such file')
            raise FileNotFoundError(f'no embedded default model at {path}: pass a checkpoint, or train one '
                                    '(see seqpose_core/weights/README.md for the command)')
        model, config = load_model_and_config(path, 'cpu')
    elif config is None:
        raise ValueError('build_runner: a model needs its SeqPoseConfig (config=...)')
    changes = dict(overrides or {})
    if mode is not None:
        changes['mode'] = MODES.get(mode, mode)
    if device is not None:
        changes['device'] = device
    known = {f.name for f in dataclasses.fields(InferenceConfig)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(f'inference overrides: unknown field(s) {unknown}; known: {sorted(known)}')
    inference = dataclasses.replace(config.inference, **changes)
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


def _check_refiner_passes(passes):
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ValueError(f'inference.refiner_passes {passes!r}: expected an integer >= 1')


def _check_crop_score_weight(weight):
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f'inference.crop_score_weight {weight}: expected a weight in [0, 1]')


class StreamRunner:
    def __init__(self, model, inference_cfg: InferenceConfig = None, input_size=(238, 322), device=None):
        self.cfg = inference_cfg or InferenceConfig()
        if self.cfg.mode not in MODES.values():
            raise ValueError(f'inference.mode {self.cfg.mode!r}: expected one of {tuple(MODES.values())}')
        height, width = (int(v) for v in input_size)
        if height % 14 or width % 14 or height <= 0 or width <= 0:
            raise ValueError(f'input_size {input_size}: height and width must be positive multiples of 14')
        self.input_size = (height, width)
        if self.cfg.duplicate_suppression not in SUPPRESSIONS:
            raise ValueError(f'inference.duplicate_suppression {self.cfg.duplicate_suppression!r}: expected one of '
                             f'{SUPPRESSIONS}')
        model.check_score_fusion(self.cfg.score_fusion)                 # inference.score_fusion
        check_support_plane(self.cfg.support_plane_gate_deg, self.cfg.support_plane_decay)
        _check_refiner_passes(self.cfg.refiner_passes)
        _check_crop_score_weight(self.cfg.crop_score_weight)
        check_score_tracks(self.cfg.score_track_decay, self.cfg.score_track_distance)
        self.device = torch.device(device or self.cfg.device)
        self.model = model.to(self.device).eval()
        self.memory = None
        self.support_plane = None       # SupportPlane of the video so far (video mode)
        self.score_tracks = None        # ScoreTracks of the previous frame (video mode)
        self.sequence = None            # SequenceState of the last processed frame
        self.frames_since_reset = 0
        self.checkpoint_path = None

    def configure(self, **changes):
        """Replace InferenceConfig fields at run time (the node's dynamic parameters); a mode change resets."""
        known = {f.name for f in dataclasses.fields(InferenceConfig)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f'inference settings: unknown field(s) {unknown}; known: {sorted(known)}')
        if 'mode' in changes:
            changes['mode'] = MODES.get(changes['mode'], changes['mode'])
            if changes['mode'] not in MODES.values():
                raise ValueError(f"mode {changes['mode']!r}: expected one of {sorted(MODES) + list(MODES.values())}")
        previous_mode = self.cfg.mode
        updated = dataclasses.replace(self.cfg, **changes)
        check_support_plane(updated.support_plane_gate_deg, updated.support_plane_decay)
        _check_refiner_passes(updated.refiner_passes)
        _check_crop_score_weight(updated.crop_score_weight)
        check_score_tracks(updated.score_track_decay, updated.score_track_distance)
        self.cfg = updated
        if self.cfg.mode != previous_mode:
            self.reset()

    def reset(self):
        """Forget the memory, the score tracks and the support plane (a new sequence starts with the next step)."""
        self.memory = None
        self.support_plane = None
        self.score_tracks = None
        self.sequence = None
        self.frames_since_reset = 0

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
            return StepResult([], skip_reason=reason)
        reset_reason = ''
        if action == 'reset':
            self.reset()
            reset_reason = reason
        if self.cfg.mode == 'single':
            self.memory = None
        if self.memory is None:
            motion = None   # motion relative to a frame we no longer remember means nothing

        timer = getattr(self.model, 'stage_timer', None)    # benchmarks: preprocess / postprocess times too
        with torch.inference_mode():
            with timed_stage(timer, 'preprocess'):
                image = preprocess_image(frame.image_rgb, self.input_size, self.device)
                K_input = scale_intrinsics(K, frame.image_rgb.shape[:2], self.input_size)
                K_tensor = torch.as_tensor(K_input, dtype=torch.float32, device=self.device)[None]
                motion_tensor = (torch.as_tensor(motion, dtype=torch.float32, device=self.device)[None]
                                 if motion is not None else None)
            outputs, memory = self.model(image, K_tensor, memory=self.memory, camera_motion=motion_tensor,
                                         dense=False, score_fusion=self.cfg.score_fusion)
            if self.cfg.mode == 'video':
                self.memory = memory
            self.sequence = SequenceState(stamp, frame.frame_id)
            self.frames_since_reset += 1
            with timed_stage(timer, 'postprocess'):
                detections = self.detections_from_outputs(outputs, K_input=K_tensor)
            with timed_stage(timer, 'refiner'):
                # the refiner's crops come from the full-resolution image, made float once for both of its stages
                camera_image = (torch.as_tensor(frame.image_rgb, device=self.device).permute(2, 0, 1).float()
                                if getattr(self.model, 'pose_refiner', None) is not None and detections else None)
                if self.refine_detections(camera_image, K, detections):
                    # duplicates whose boxes the decoder had apart may now coincide on their object
                    detections = self.suppress(detections, K)
                detections = self.rescore_detections(camera_image, K, detections)
            with timed_stage(timer, 'score_tracks'):
                detections = self.track_detection_scores(detections, motion)
            with timed_stage(timer, 'support_plane'):
                self.level_on_support_plane(detections, motion)
        return StepResult(detections, reset_reason=reset_reason)

    def refine_detections(self, image, K, detections):
        """With a model that has a pose refiner (and inference.rotation_refinement), replace the rotation of
        the detections of its classes by the refiner's, read from a crop of the full-resolution image (3, H, W)
        float 0..255 on the runner's device (K: its intrinsics), and for those of model.refiner_box_classes (with
        inference.box_refinement) their translation and size too. The decoder's values stay in extras['decoder_rotation'] /
        ['decoder_translation'] / ['decoder_size']. Returns whether any box was replaced."""
        refiner = getattr(self.model, 'pose_refiner', None)
        if refiner is None or not self.cfg.rotation_refinement:
            return False
        model_cfg = self.model.cfg
        chosen = [d for d in detections if d.class_name in model_cfg.refiner_classes]
        if not chosen:
            return False
        as_tensor = functools.partial(torch.as_tensor, dtype=torch.float32, device=self.device)
        boxes = [self.cfg.box_refinement and d.class_name in model_cfg.refiner_box_classes for d in chosen]
        rotations, translations, sizes = (
            tensor.cpu().numpy().astype(np.float64) for tensor in refine_poses(
                refiner, image, as_tensor(K), torch.as_tensor([d.class_id for d in chosen], device=self.device),
                as_tensor(np.stack([d.translation for d in chosen])), as_tensor(np.stack([d.size for d in chosen])),
                model_cfg.refiner_crop_size, model_cfg.refiner_crop_margin,
                boxes=torch.as_tensor(boxes, device=self.device),
                depth_weight=model_cfg.refiner_depth_weight, passes=self.cfg.refiner_passes))
        for index, detection in enumerate(chosen):
            detection.extras['decoder_rotation'] = detection.rotation
            detection.rotation = rotations[index]
            if boxes[index]:
                detection.extras['decoder_translation'] = detection.translation
                detection.extras['decoder_size'] = detection.size
                detection.translation, detection.size = translations[index], sizes[index]
        return any(boxes)

    def rescore_detections(self, image, K, detections):
        """With a refiner that scores crops (model.refiner_scoring, inference.crop_scoring): each detection's score
        s becomes s^(1 - w) p^w, p the probability of its class in the crop of `image` (as refine_detections)
        around its published box and w inference.crop_score_weight; those below the score threshold go, the rest
        come back sorted. The score before stays in extras['decoder_score']."""
        refiner = getattr(self.model, 'pose_refiner', None)
        if refiner is None or refiner.scorer is None or not self.cfg.crop_scoring or not detections:
            return detections
        as_tensor = functools.partial(torch.as_tensor, dtype=torch.float32, device=self.device)
        probabilities = crop_class_probabilities(
            refiner, image, as_tensor(K), as_tensor(np.stack([d.translation for d in detections])),
            as_tensor(np.stack([d.size for d in detections])), self.model.cfg.refiner_crop_size,
            self.model.cfg.refiner_crop_margin).cpu().numpy()
        weight = self.cfg.crop_score_weight
        for detection, row in zip(detections, probabilities):
            detection.extras['decoder_score'] = detection.score
            detection.score = float(detection.score ** (1 - weight) * float(row[detection.class_id]) ** weight)
        return self.above_threshold(detections)

    def above_threshold(self, detections):
        """The detections at or above the score threshold, best first: after a stage that changed scores."""
        kept = [d for d in detections if d.score >= self.cfg.score_threshold]
        return sorted(kept, key=lambda d: d.score, reverse=True)

    def track_detection_scores(self, detections, camera_motion):
        """In video mode with inference.score_track_decay > 0, each detection's score becomes the decayed mean of
        its scores along its track (seqpose_core.score_tracks; its own in extras['frame_score']); returns those at
        or above the score threshold, sorted. camera_motion (4, 4) T_current_from_previous or None."""
        if self.cfg.mode != 'video' or self.cfg.score_track_decay <= 0:
            self.score_tracks = None
            return detections
        previous = self.score_tracks.moved(camera_motion) if self.score_tracks is not None else None
        self.score_tracks = track_scores(previous, detections, self.cfg.score_track_decay,
                                         self.cfg.score_track_distance)
        return self.above_threshold(detections)

    def level_on_support_plane(self, detections, camera_motion):
        """With inference.support_plane, give the detections standing on the frame's (in video mode: the
        video's) support plane its up (seqpose_core.support_plane); camera_motion (4, 4) T_current_from_previous
        or None. In place."""
        if not self.cfg.support_plane:
            self.support_plane = None       # switched back on later, it starts afresh
            return
        carried = self.cfg.mode == 'video' and self.support_plane is not None
        previous = self.support_plane.moved(camera_motion) if carried else None
        plane = updated_plane(previous, [d.rotation[:, 1] for d in detections], [d.score for d in detections],
                              self.cfg.support_plane_gate_deg, self.cfg.support_plane_decay)
        if self.cfg.mode == 'video':
            self.support_plane = plane
        if plane is not None:
            level_detections(detections, plane, self.cfg.support_plane_gate_deg)

    def detections_from_outputs(self, outputs, index=0, K_input=None):
        """Score threshold, class-aware duplicate suppression (inference.duplicate_suppression),
        max_detections. K_input (B, 3, 3): the intrinsics of the network input the outputs were made from."""
        # the forward scored the queries with this runner's score_fusion (step): the memory's ranking
        probabilities = outputs['detection_probabilities'][index]                          # (Q, 6) float32
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
        candidates = (Detection(class_id=int(classes[query]) + 1, score=float(scores[query]),
                                rotation=rotations[query], translation=translations[query].copy(),
                                size=sizes[query].copy(), extras={'query': int(query)}) for query in indices)
        # the 3D camera frame is the same at every image size, so the input's K projects the boxes correctly
        K = K_input[index].float().cpu().numpy() if K_input is not None else None
        return self.suppress(candidates, K)

    def suppress(self, detections, K):
        """inference.duplicate_suppression over score-sorted `detections` (an iterable), up to max_detections;
        K: intrinsics of an image of their camera (None: centre distance only)."""
        method = self.cfg.duplicate_suppression if K is not None else 'centre_distance'
        return suppress_duplicates(detections, K, method, self.cfg.nms_iou, self.cfg.nms_distance,
                                   self.cfg.max_detections)
