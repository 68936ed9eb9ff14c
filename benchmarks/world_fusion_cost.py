"""What the world fusion stage costs a frame, with N tracks alive (the runner's CPU budget: <= 5 ms for 20).

    python benchmarks/world_fusion_cost.py [--tracks 20] [--frames 300]

A camera orbits N static objects for `frames` frames; every frame has one detection per object (its track id
kept), and the stage (seqpose_core.stages.world_fusion) fuses them with the camera motion. Prints the median
and p95 milliseconds of `apply` per frame, after a warm-up of 10 frames.
"""

import argparse
import platform
import time

import numpy as np

from seqpose_core.detection import Detection
from seqpose_core.stages.config import InferenceConfig
from seqpose_core.stages.pipeline import FrameContext
from seqpose_core.stages.world_fusion import WorldFusionStage
from seqpose_core.synth.scene import look_at

# a 640x480 camera: coasting (world_fusion.coast_frames) asks whether a track's centre is in view
K_CAMERA = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
IMAGE = np.zeros((480, 640, 3), np.uint8)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--tracks', type=int, default=20)
    parser.add_argument('--frames', type=int, default=300)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    objects = rng.uniform(-0.3, 0.3, (args.tracks, 3)) * np.array([1.0, 0.1, 1.0])
    stage, state = WorldFusionStage(None, InferenceConfig()), None
    previous, times = None, []
    for frame in range(args.frames):
        azimuth = np.radians(0.5 * frame)
        camera = look_at(0.9 * np.array([np.cos(azimuth) * 0.8, 0.6, np.sin(azimuth) * 0.8]), np.zeros(3))
        detections = [
            Detection(
                class_id=1 + index % 6,
                score=0.9,
                rotation=np.eye(3),
                translation=1.15 * (camera[:3, :3] @ centre + camera[:3, 3]),
                size=np.full(3, 0.1),
                track_id=index + 1,
            )
            for index, centre in enumerate(objects)
        ]
        motion = camera @ np.linalg.inv(previous) if previous is not None else None
        context = FrameContext(IMAGE, K_CAMERA, motion, 'video', 'cpu')
        start = time.perf_counter()
        _, state = stage.apply(detections, context, state)
        times.append(time.perf_counter() - start)
        previous = camera
    ms = np.array(times[10:]) * 1000
    print(
        f'world fusion, {args.tracks} tracks, {args.frames} frames ({platform.processor() or platform.machine()}): '
        f'median {np.median(ms):.2f} ms, p95 {np.percentile(ms, 95):.2f} ms a frame'
    )


if __name__ == '__main__':
    main()
