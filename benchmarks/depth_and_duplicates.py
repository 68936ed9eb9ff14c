"""What the decoder makes of depth: the dense depth error, the depth error of detections along their viewing
rays, and how many same-class duplicates the model puts on one ray (before the runner's suppression).

    python benchmarks/depth_and_duplicates.py --checkpoint CKPT --data demo_out/data [--threshold 0.2]

On every frame of the split (scenes in order, memory reset per scene, no camera motion):
- dense depth: median per-pixel relative error |D - D_gt| / D_gt, and per object the ratio of the median
  predicted to the median true depth over its mask (mean and std over objects: the scale a monocular model
  cannot know shows up here);
- along the ray: for each object, the best-scored detection of its class whose centre lies within RAY_DEGREES
  of the object's centre ray: |z / z_gt - 1| (median), and how many such detections there are;
- duplicates on a ray: same-class pairs of detections (score >= threshold, suppression off) whose centre rays
  are within RAY_DEGREES of each other, per frame.
"""

import argparse
import sys

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from seqpose_core.data import NocsFrameReader, iter_scenes
from seqpose_core.geometry import scale_intrinsics
from seqpose_core.runner import Frame, build_runner, preprocess_image

RAY_DEGREES = 3.0


def ray_angles(a, b):
    """Degrees between the viewing rays of points a (n, 3) and b (m, 3) -> (n, m)."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.degrees(np.arccos(np.clip(a @ b.T, -1.0, 1.0)))


def dense_depth(runner, frame):
    """(h, w) predicted depth at the network input and the GT depth and instance mask resized to it."""
    h, w = runner.input_size
    image = preprocess_image(frame.color, runner.input_size, runner.device)
    K = torch.as_tensor(scale_intrinsics(frame.K, frame.color.shape[:2], (h, w)), dtype=torch.float32)[None]
    with torch.inference_mode():
        outputs, _ = runner.model(image, K.to(runner.device), dense=True)
    depth = outputs['depth'][0, 0].float().cpu().numpy()
    nearest = lambda array: F.interpolate(
        torch.as_tensor(array)[None, None].float(), size=(h, w), mode='nearest-exact'
    )[0, 0].numpy()
    return depth, nearest(frame.depth), nearest(frame.instance_mask.astype(np.float32)).astype(np.int64)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', default=None, help='default: the embedded model')
    parser.add_argument('--data', required=True)
    parser.add_argument('--split', default='test')
    parser.add_argument('--mode', default='mf', choices=('mf', 'sf'))
    parser.add_argument('--threshold', type=float, default=0.2, help='score of the detections counted')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runner = build_runner(
        args.checkpoint,
        mode=args.mode,
        device='cpu',
        overrides={'suppression.method': 'none', 'score_threshold': args.threshold, 'max_detections': 100},
    )
    reader = NocsFrameReader(args.data, args.split)
    scenes = list(iter_scenes(args.data, args.split))
    pixel_errors, object_ratios, ray_errors, on_ray, duplicates, frames = [], [], [], [], [], 0
    for scene, prefixes in tqdm(scenes, desc='scenes', unit='scene'):
        runner.reset()
        for index, prefix in enumerate(prefixes):
            frame = reader.read(prefix)
            detections = runner.step(Frame(frame.color, frame.K, index / 30.0, scene)).detections
            depth, gt_depth, instances = dense_depth(runner, frame)
            valid = gt_depth > 0
            pixel_errors.append(np.abs(depth[valid] - gt_depth[valid]) / gt_depth[valid])
            annotation = frame.annotation
            for instance in annotation.instance_ids:
                pixels = (instances == instance) & valid
                if pixels.sum() >= 4:
                    object_ratios.append(np.median(depth[pixels]) / np.median(gt_depth[pixels]))
            frames += 1
            if not detections:
                on_ray.extend([0] * len(annotation))
                continue
            centres = np.array([d.translation for d in detections])
            classes = np.array([d.class_id for d in detections])
            angles = ray_angles(centres, centres)
            same = (classes[:, None] == classes[None]) & (angles < RAY_DEGREES)
            duplicates.append(int(np.triu(same, 1).sum()))
            to_objects = ray_angles(annotation.translations, centres)  # (objects, detections)
            for obj, (class_id, translation) in enumerate(zip(annotation.class_ids, annotation.translations)):
                near = np.flatnonzero((classes == class_id) & (to_objects[obj] < RAY_DEGREES))
                on_ray.append(len(near))
                if len(near):
                    best = near[0]  # detections come score-sorted
                    ray_errors.append(abs(centres[best, 2] / translation[2] - 1))
    pixel_errors = np.concatenate(pixel_errors)
    ratios = np.array(object_ratios)
    print(
        f'{frames} frames, {len(scenes)} scenes from {args.data} ({args.mode}, no camera motion), '
        f'{runner.checkpoint_path}'
    )
    print(
        f'dense depth: median per-pixel relative error {100 * np.median(pixel_errors):.1f} %; per object '
        f'median depth ratio mean {ratios.mean():.3f} std {ratios.std():.3f} ({len(ratios)} objects, '
        f'{100 * np.mean(np.abs(ratios - 1) < 0.05):.0f} % within 5 %)'
    )
    print(
        f"detections (score >= {args.threshold}, suppression off) on an object's ray (< {RAY_DEGREES:g} deg): "
        f"{np.mean(on_ray):.2f} per object; best one's depth error along the ray: median "
        f'{100 * np.median(ray_errors) if ray_errors else float("nan"):.1f} % ({len(ray_errors)} objects)'
    )
    print(f'same-class duplicates on one ray: {np.sum(duplicates) / max(frames, 1):.2f} pairs per frame')
    return 0


if __name__ == '__main__':
    sys.exit(main())
