"""The stateful inference API everything downstream uses (ROS node, bag replay, evaluation, benchmarks).

    runner = StreamRunner(model, inference_cfg, input_size=(238, 322), device='cpu')
    detections = runner.step(image_rgb, K, stamp, camera_motion=None)   # list[Detection]
    runner.reset()

The runner owns the memory queue: it resets it on request, when the stamp goes backwards or jumps by more
than `max_frame_gap`, and never uses it in `single` mode. Images are resized to the network input with the
data pipeline's own resize (inference sees what training saw) and K is rescaled with them; the 3D camera
frame does not change, so detections are in the original image's camera frame.
"""
import math

import numpy as np
import torch

from seqpose_core.config import InferenceConfig
from seqpose_core.data.transforms import apply_to_image, normalize_image, plan_geometry
from seqpose_core.detection import Detection
from seqpose_core.geometry import rotation_6d_to_matrix, scale_intrinsics
from seqpose_core.model.proposals import centre_evidence
from seqpose_core.model.seqpose import _maybe_stage

MODES = ('video', 'single')
SCORE_FUSIONS = ('query', 'proposal')


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
        if self.cfg.mode not in MODES:
            raise ValueError(f'inference.mode {self.cfg.mode!r}: expected one of {MODES}')
        height, width = (int(v) for v in input_size)
        if height % 14 or width % 14 or height <= 0 or width <= 0:
            raise ValueError(f'input_size {input_size}: height and width must be positive multiples of 14')
        self.input_size = (height, width)
        if self.cfg.score_fusion not in SCORE_FUSIONS:
            raise ValueError(f'inference.score_fusion {self.cfg.score_fusion!r}: expected one of {SCORE_FUSIONS}')
        if self.cfg.score_fusion == 'proposal' and getattr(model.decoder, 'proposals', None) is None:
            raise ValueError("inference.score_fusion 'proposal' needs a model with proposal queries "
                             '(model.proposal_queries > 0); this one has none')
        self.device = torch.device(device or self.cfg.device)
        self.model = model.to(self.device).eval()
        self.memory = None
        self.last_stamp = None
        self.frames_since_reset = 0

    @classmethod
    def from_checkpoint(cls, path, inference_cfg=None, input_size=None, device=None):
        """Runner for one of our checkpoints; inference settings and input size default to the stored config."""
        from seqpose_core.model.checkpoint import load_model_from_checkpoint
        model, config = load_model_from_checkpoint(path, device or 'cpu', return_config=True)
        inference_cfg = inference_cfg or config.inference
        input_size = input_size or (config.data.input_height, config.data.input_width)
        return cls(model, inference_cfg, input_size, device or inference_cfg.device)

    def reset(self):
        """Forget the memory (a new sequence starts with the next step)."""
        self.memory = None
        self.last_stamp = None
        self.frames_since_reset = 0

    def step(self, image_rgb, K, stamp, camera_motion=None):
        """One frame -> detections (score-sorted) in the camera frame of `image_rgb` (with intrinsics K)."""
        _check_image(image_rgb)
        K = _check_intrinsics(K)
        motion = _check_motion(camera_motion)
        stamp = float(stamp)
        if not math.isfinite(stamp):
            raise ValueError(f'stamp: expected finite seconds, got {stamp}')

        if self.cfg.mode == 'single':
            self.memory = None
        elif self.last_stamp is not None and (stamp < self.last_stamp
                                              or stamp - self.last_stamp > self.cfg.max_frame_gap):
            self.reset()
        if self.memory is None:
            motion = None   # motion relative to a frame we no longer remember means nothing

        timer = getattr(self.model, 'stage_timer', None)    # benchmarks: preprocess / postprocess times too
        with torch.inference_mode():
            with _maybe_stage(timer, 'preprocess'):
                image = preprocess_image(image_rgb, self.input_size, self.device)
                K_input = scale_intrinsics(K, image_rgb.shape[:2], self.input_size)
                K_tensor = torch.as_tensor(K_input, dtype=torch.float32, device=self.device)[None]
                motion_tensor = (torch.as_tensor(motion, dtype=torch.float32, device=self.device)[None]
                                 if motion is not None else None)
            outputs, memory = self.model(image, K_tensor, memory=self.memory, camera_motion=motion_tensor,
                                         dense=False)
            if self.cfg.mode == 'video':
                self.memory = memory
            self.last_stamp = stamp
            self.frames_since_reset += 1
            with _maybe_stage(timer, 'postprocess'):
                return self.detections_from_outputs(outputs, K_input=K_tensor)

    def class_probabilities(self, outputs, K_input=None):
        """(B, Q, 6) per-class detection scores: the queries' own, or fused with the proposal head's evidence
        (inference.score_fusion; K_input (B, 3, 3) is then needed, for the network input size)."""
        probabilities = outputs['pred_logits'].float().sigmoid()
        if self.cfg.score_fusion == 'proposal':
            if K_input is None:
                raise ValueError("inference.score_fusion 'proposal' needs the input intrinsics (K_input)")
            probabilities = (probabilities * centre_evidence(outputs, K_input, self.input_size)).sqrt()
        return probabilities

    def detections_from_outputs(self, outputs, index=0, K_input=None):
        """Score threshold, class-wise duplicate suppression (centre distance), max_detections."""
        probabilities = self.class_probabilities(outputs, K_input)[index]          # (Q, 6)
        scores, classes = probabilities.max(-1)
        keep = scores >= self.cfg.score_threshold
        order = torch.argsort(scores[keep], descending=True)
        indices = torch.nonzero(keep).flatten()[order].cpu().numpy()
        scores = scores.cpu().numpy()
        classes = classes.cpu().numpy()
        translations = outputs['pred_translation'][index].float().cpu().numpy().astype(np.float64)
        rotations = rotation_6d_to_matrix(outputs['pred_rotation6d'][index].float()).cpu().numpy().astype(np.float64)
        sizes = outputs['pred_size'][index].float().cpu().numpy().astype(np.float64)

        detections = []
        for query in indices:
            if len(detections) >= self.cfg.max_detections:
                break
            class_id = int(classes[query]) + 1
            duplicate = any(d.class_id == class_id
                            and np.linalg.norm(d.translation - translations[query]) < self.cfg.nms_distance
                            for d in detections)
            if duplicate:
                continue
            detections.append(Detection(class_id=class_id, score=float(scores[query]), rotation=rotations[query],
                                        translation=translations[query].copy(), size=sizes[query].copy(),
                                        extras={'query': int(query)}))
        return detections
