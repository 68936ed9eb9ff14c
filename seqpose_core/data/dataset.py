"""Frame and clip datasets over the NOCS layout, and their collation (docs/architecture.md, Data).

Camera motion between frames (REAL scenes are videos of static objects; no camera pose is recorded):
every object seen in both frames, matched by its physical instance (`model_name`; CAMERA: synset/model id;
names occurring twice in a frame are ambiguous and skipped), gives a candidate
`T_i = P_cur_i @ inv(P_prev_i)` from its rigid GT poses `P = [R | t]` (scale left out). The candidates
should agree; an annotation error or an object that was moved would not. We pick robustly: each candidate is
scored by the median, over all matched objects j, of its residual on j — the distance between j's current
centre and the candidate applied to j's previous centre, in cm, plus j's rotation error in units of 5 degrees
(about the y axis only for bottle/bowl/can and handle-hidden mugs, whose rotation about y is arbitrary). The
best candidate's inliers (residual < 2) are then averaged in the least-squares sense: rotation = the chordal
mean (SVD projection of the summed inlier rotations; the non-symmetric inliers only when there are any),
translation = mean of (c_cur - R c_prev) over the inlier centres. No common object -> identity with
`has_camera_motion = False`; likewise at a sequence start.
"""

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from seqpose_core import CLASS_NAMES, SYMMETRIC_CLASS_NAMES
from seqpose_core.data.config import DataConfig
from seqpose_core.data.labels import depth_normals, instance_index_map, object_targets, semantic_mask
from seqpose_core.data.layout import enumerate_scenes
from seqpose_core.data.reader import NocsFrameReader
from seqpose_core.data.transforms import (
    GEOMETRY_MODES,
    PhotometricJitter,
    apply_nearest,
    apply_to_image,
    check_input_size,
    normalize_image,
    plan_geometry,
)
from seqpose_core.geometry import rotation_error_deg

_SYMMETRIC_IDS = tuple(CLASS_NAMES.index(name) + 1 for name in SYMMETRIC_CLASS_NAMES)
_MUG_ID = CLASS_NAMES.index('mug') + 1
# residual units of the camera-motion consensus: 1 cm of centre error ~ 5 degrees of rotation error
_MOTION_CM, _MOTION_DEG, _MOTION_INLIER = 0.01, 5.0, 2.0


def _symmetric(class_ids, handle_visibility):
    return np.isin(class_ids, _SYMMETRIC_IDS) | ((class_ids == _MUG_ID) & (handle_visibility == 0))


def _unique_by_name(annotation):
    """model name -> object index, for names that occur once in the frame."""
    counts = {}
    for name in annotation.model_names:
        counts[name] = counts.get(name, 0) + 1
    return {name: index for index, name in enumerate(annotation.model_names) if counts[name] == 1}


def camera_motion_from_annotations(previous, current):
    """T_cur_from_prev (4, 4) float64 from the GT of the static objects of two frames, or None when they share
    no object. See the module docstring for the matching and the robust choice."""
    previous_index, current_index = _unique_by_name(previous), _unique_by_name(current)
    common = [name for name in current.model_names if name in previous_index and name in current_index]
    if not common:
        return None
    prev_ids = [previous_index[name] for name in common]
    cur_ids = [current_index[name] for name in common]
    rotations_prev, rotations_cur = previous.rotations[prev_ids], current.rotations[cur_ids]  # (m, 3, 3)
    centres_prev, centres_cur = previous.translations[prev_ids], current.translations[cur_ids]  # (m, 3)
    symmetric = _symmetric(current.class_ids[cur_ids], current.handle_visibility[cur_ids])
    # candidate motions: R_i = Rc_i Rp_i^T, t_i = tc_i - R_i tp_i
    candidate_rotations = rotations_cur @ np.swapaxes(rotations_prev, 1, 2)  # (m, 3, 3)
    candidate_translations = centres_cur - np.einsum('mij,mj->mi', candidate_rotations, centres_prev)

    def residuals(rotation, translation):
        centre_error = np.linalg.norm(centres_prev @ rotation.T + translation - centres_cur, axis=1)
        rotation_error = rotation_error_deg(rotation[None] @ rotations_prev, rotations_cur, symmetric)
        return centre_error / _MOTION_CM + rotation_error / _MOTION_DEG  # (m,)

    scores = [np.median(residuals(R, t)) for R, t in zip(candidate_rotations, candidate_translations)]
    best = int(np.argmin(scores))
    inliers = residuals(candidate_rotations[best], candidate_translations[best]) < _MOTION_INLIER
    inliers[best] = True
    rotation_inliers = inliers & ~symmetric if np.any(inliers & ~symmetric) else inliers
    u, _, vt = np.linalg.svd(candidate_rotations[rotation_inliers].sum(0))
    rotation = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    translation = (centres_cur[inliers] - centres_prev[inliers] @ rotation.T).mean(0)
    motion = np.eye(4)
    motion[:3, :3], motion[:3, 3] = rotation, translation
    return motion


class _NocsBase(Dataset):
    def __init__(self, root, split, data_cfg=None, train=False, keep_raw=False, use_labels=True, input_size=None):
        self.cfg = data_cfg if data_cfg is not None else DataConfig()
        self.root = Path(root if root is not None else self.cfg.root)
        if not str(self.root):
            raise ValueError('no data root given (argument or data.root in the config)')
        self.split = split
        self.train = train
        self.augment = train and self.cfg.augment
        self.keep_raw = keep_raw
        self.input_hw = tuple(input_size) if input_size is not None else (self.cfg.input_height, self.cfg.input_width)
        check_input_size(*self.input_hw)
        if self.cfg.geometry not in GEOMETRY_MODES:
            raise ValueError(f'data.geometry {self.cfg.geometry!r}: expected one of {GEOMETRY_MODES}')
        self.reader = NocsFrameReader(self.root, split, use_labels=use_labels, min_pixels=self.cfg.min_pixels)
        self.scenes = enumerate_scenes(self.root, split, use_image_list=self.cfg.use_image_lists)
        self.jitter = PhotometricJitter(self.cfg.brightness, self.cfg.contrast, self.cfg.saturation, self.cfg.hue)

    def _rng(self):
        # drawn from the global numpy state so that the trainer's per-sample seeding makes augmentation
        # reproducible (train.sampling.SeededSamples)
        return np.random.default_rng(np.random.randint(0, 2**31 - 1)) if self.augment else None

    def _sample(self, frame, geometry_rng, jitter_seed):
        """NocsFrame -> frame-sample dict (network input size)."""
        plan = plan_geometry(
            frame.color.shape[:2],
            self.input_hw,
            self.cfg.geometry,
            rng=geometry_rng if self.cfg.geometry == 'crop' else None,
        )
        image = apply_to_image(frame.color, plan)  # (3, h, w) in [0, 1]
        if jitter_seed is not None:
            image = self.jitter(image, np.random.default_rng(jitter_seed))
        K = plan.intrinsics(frame.K)
        depth = apply_nearest(frame.depth, plan)  # (h, w)
        instance_mask = apply_nearest(frame.instance_mask, plan)
        sample = {
            'image': normalize_image(image),
            'K': torch.as_tensor(K, dtype=torch.float32),
            'K_original': torch.as_tensor(frame.K, dtype=torch.float32),
            'original_hw': torch.tensor(frame.color.shape[:2], dtype=torch.long),
            'depth': torch.from_numpy(np.ascontiguousarray(depth, np.float32))[None],
            'normal': torch.from_numpy(depth_normals(depth, K)).permute(2, 0, 1).contiguous(),  # (3, h, w)
            'semantic': torch.from_numpy(semantic_mask(instance_mask, frame.meta)),
            'instance_index': torch.from_numpy(instance_index_map(instance_mask, frame.annotation.instance_ids)),
            'camera_motion': torch.eye(4),
            'has_camera_motion': torch.tensor(False),
            'is_sequence_start': torch.tensor(True),
            'scene': frame.scene,
            'frame': frame.frame,
            'gt_model_names': list(frame.annotation.model_names),
        }
        sample.update({key: torch.from_numpy(value) for key, value in object_targets(frame.annotation).items()})
        if self.keep_raw:
            sample['image_raw'] = torch.from_numpy(frame.color)
        return sample


class NocsFrameDataset(_NocsBase):
    """Single frames of a split (each a clip of length 1 to the model: `is_sequence_start` True, no camera
    motion). `dataset[i]` -> frame-sample dict; `dataset.clip(i)` -> [that dict].

    split: 'camera_train', 'camera_val', 'real_train', 'real_test' (or 'CAMERA/val', bare 'test', see
    nocs.resolve_split). `train=True` enables augmentation when data_cfg.augment."""

    def __init__(self, root, split, data_cfg=None, train=False, keep_raw=False, use_labels=True, input_size=None):
        super().__init__(root, split, data_cfg, train, keep_raw, use_labels, input_size)
        self.prefixes = [prefix for _, prefixes in self.scenes for prefix in prefixes]

    def __len__(self):
        return len(self.prefixes)

    def __getitem__(self, index):
        rng = self._rng()
        frame = self.reader.read(self.prefixes[index])
        return self._sample(frame, rng, None if rng is None else int(rng.integers(2**31)))

    def clip(self, index):
        return [self[index]]


class NocsClipDataset(_NocsBase):
    """Clips of `clip_length` frames of one scene, in order, `frame_stride` frames apart; clips start every
    `clip_stride` frames. Never crosses a scene boundary; scenes shorter than one clip give none.

    `dataset[i]` -> list of frame-sample dicts; the first has `is_sequence_start` True (the model resets its
    memory there) and no camera motion, the others carry `camera_motion` = T_cur_from_prev from the previous
    frame of the clip (module docstring). The whole clip shares one crop and one photometric jitter."""

    def __init__(
        self,
        root,
        split,
        clip_length=None,
        data_cfg=None,
        train=False,
        frame_stride=None,
        clip_stride=None,
        keep_raw=False,
        use_labels=True,
        input_size=None,
    ):
        super().__init__(root, split, data_cfg, train, keep_raw, use_labels, input_size)
        self.clip_length = int(clip_length if clip_length is not None else self.cfg.clip_length)
        self.frame_stride = int(frame_stride if frame_stride is not None else self.cfg.frame_stride)
        self.clip_stride = int(clip_stride if clip_stride is not None else self.cfg.clip_stride)
        for name in ('clip_length', 'frame_stride', 'clip_stride'):
            if getattr(self, name) < 1:
                raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')
        span = (self.clip_length - 1) * self.frame_stride + 1
        self.clips = []  # (scene index, first frame index)
        for scene_index, (_, prefixes) in enumerate(self.scenes):
            for start in range(0, len(prefixes) - span + 1, self.clip_stride):
                self.clips.append((scene_index, start))

    def __len__(self):
        return len(self.clips)

    def clip_prefixes(self, index):
        scene_index, start = self.clips[index]
        prefixes = self.scenes[scene_index][1]
        return [prefixes[start + step * self.frame_stride] for step in range(self.clip_length)]

    def __getitem__(self, index):
        rng = self._rng()
        jitter_seed = None if rng is None else int(rng.integers(2**31))
        clip, previous = [], None
        for prefix in self.clip_prefixes(index):
            frame = self.reader.read(prefix)
            # one generator state per clip so the random crop is the same for every frame
            geometry_rng = None if rng is None else np.random.default_rng(jitter_seed + 1)
            sample = self._sample(frame, geometry_rng, jitter_seed)
            if previous is not None:
                sample['is_sequence_start'] = torch.tensor(False)
                motion = camera_motion_from_annotations(previous.annotation, frame.annotation)
                if motion is not None:
                    sample['camera_motion'] = torch.as_tensor(motion, dtype=torch.float32)
                    sample['has_camera_motion'] = torch.tensor(True)
            clip.append(sample)
            previous = frame
        return clip


def collate_clips(clips):
    """[clip (list of T frame samples)] * B -> list over time of batched frames: tensors stacked on dim 0
    (e.g. image (B, 3, H, W)), `gt_*` kept as lists of per-sample tensors (their n differs), strings and
    anything of unequal shape as lists."""
    if not clips:
        raise ValueError('collate_clips: empty batch')
    lengths = {len(clip) for clip in clips}
    if len(lengths) != 1:
        raise ValueError(f'collate_clips: clips of different lengths {sorted(lengths)} cannot be batched')
    batched = []
    for time_index in range(lengths.pop()):
        frames = [clip[time_index] for clip in clips]
        batch = {}
        for key in frames[0]:
            values = [frame[key] for frame in frames]
            if (
                not key.startswith('gt_')
                and all(isinstance(value, torch.Tensor) for value in values)
                and len({tuple(value.shape) for value in values}) == 1
            ):
                batch[key] = torch.stack(values, 0)
            else:
                batch[key] = values
        batched.append(batch)
    return batched
