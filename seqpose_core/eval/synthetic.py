"""Synthetic result dicts (REAL275-like scenes with noisy predictions) for benchmarks and tests."""

import numpy as np


def _random_rotations(rng, count):
    # uniform rotations from unit quaternions
    q = rng.normal(size=(count, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        1,
    )


def _srt(rotations, scales, translations):
    rt = np.tile(np.eye(4), (len(rotations), 1, 1))
    rt[:, :3, :3] = rotations * scales[:, None, None]
    rt[:, :3, 3] = translations
    return rt


def synthetic_results(
    num_images,
    seed=0,
    objects=(5, 10),
    rotation_noise_deg=8.0,
    translation_noise_m=0.02,
    size_noise=0.1,
    miss_rate=0.1,
    false_positives=1.5,
    score_decimals=None,
):
    """`num_images` result dicts: GT objects on a table in front of the camera, predictions = GT with Gaussian
    pose/size noise (some missed, some class-confused) plus random false positives; scores favour good ones."""
    rng = np.random.default_rng(seed)
    results = []
    for _ in range(num_images):
        num_gt = int(rng.integers(objects[0], objects[1] + 1))
        gt_class_ids = rng.integers(1, 7, num_gt)
        gt_rotations = _random_rotations(rng, num_gt)
        gt_scale = rng.uniform(0.08, 0.35, num_gt)
        gt_size = rng.uniform(0.3, 1.0, (num_gt, 3))
        gt_size /= np.linalg.norm(gt_size, axis=1, keepdims=True)
        gt_t = np.c_[rng.uniform(-0.4, 0.4, (num_gt, 2)), rng.uniform(0.6, 1.4, num_gt)]
        gt_rts = _srt(gt_rotations, gt_scale, gt_t)

        kept = np.flatnonzero(rng.random(num_gt) > miss_rate)
        noise_axis = rng.normal(size=(len(kept), 3))
        noise_angle = np.radians(np.abs(rng.normal(0, rotation_noise_deg, len(kept))))
        noise_axis /= np.linalg.norm(noise_axis, axis=1, keepdims=True)
        skew = np.zeros((len(kept), 3, 3))
        skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -noise_axis[:, 2], noise_axis[:, 1], -noise_axis[:, 0]
        skew -= np.swapaxes(skew, 1, 2)
        sin, cos = np.sin(noise_angle)[:, None, None], np.cos(noise_angle)[:, None, None]
        noise_rot = np.eye(3) + sin * skew + (1 - cos) * skew @ skew
        pred_rot = noise_rot @ gt_rotations[kept]
        pred_scale = gt_scale[kept] * rng.uniform(1 - size_noise, 1 + size_noise, len(kept))
        pred_size = gt_size[kept] * rng.uniform(1 - size_noise, 1 + size_noise, (len(kept), 3))
        pred_t = gt_t[kept] + rng.normal(0, translation_noise_m, (len(kept), 3))
        pred_classes = gt_class_ids[kept].copy()
        confused = rng.random(len(kept)) < 0.05
        pred_classes[confused] = rng.integers(1, 7, int(confused.sum()))
        error = noise_angle + np.linalg.norm(pred_t - gt_t[kept], axis=1) * 10
        pred_scores = np.clip(1.0 - 0.5 * error + rng.normal(0, 0.1, len(kept)), 0.05, 1.0)

        num_fp = int(rng.poisson(false_positives))
        fp_size = rng.uniform(0.3, 1.0, (num_fp, 3))
        fp_size /= np.linalg.norm(fp_size, axis=1, keepdims=True)
        fp_rts = _srt(
            _random_rotations(rng, num_fp),
            rng.uniform(0.08, 0.35, num_fp),
            np.c_[rng.uniform(-0.4, 0.4, (num_fp, 2)), rng.uniform(0.6, 1.4, num_fp)],
        )
        scores = np.concatenate([pred_scores, rng.uniform(0.05, 0.8, num_fp)])
        if score_decimals is not None:
            scores = np.round(scores, score_decimals)
        results.append(
            {
                'gt_class_ids': gt_class_ids.astype(np.int32),
                'gt_RTs': gt_rts,
                'gt_scales': gt_size,
                'gt_handle_visibility': (rng.random(num_gt) > 0.3).astype(np.int64),
                'pred_class_ids': np.concatenate([pred_classes, rng.integers(1, 7, num_fp)]).astype(np.int32),
                'pred_RTs': np.concatenate([_srt(pred_rot, pred_scale, pred_t), fp_rts]),
                'pred_scales': np.concatenate([pred_size, fp_size]),
                'pred_scores': scores,
            }
        )
    return results
