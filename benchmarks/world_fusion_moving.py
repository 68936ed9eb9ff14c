"""How fast the world fusion lets go of an object that moved, and finds it again (target: within 0.5 s).

    python benchmarks/world_fusion_moving.py [--move 0.25] [--bias 1.2] [--noise-deg 0.5] [--seed 0]

A camera orbits a table at 30 Hz with odometry; a detector reports one object with the right viewing ray up to
`--noise-deg` of bearing noise and a depth `--bias` times the true one (a monocular model's scale error), its
track id kept (what the runner's tracker gives a slow move). After 5 s the object is picked up and put down
`--move` metres away. Prints, for the runner's world fusion stage at its default settings: the published centre's
error before the move, the largest error in the frames after it (a stale world position would show here as the
full move), when it let go of the old place (the frame it stops publishing the fused one), and the time until
the published centre is back within 5 and 2 cm of the new place.
"""

import argparse

import numpy as np

from seqpose_core.detection import Detection
from seqpose_core.stages.config import InferenceConfig
from seqpose_core.stages.pipeline import FrameContext
from seqpose_core.stages.world_fusion import WorldFusionStage
from seqpose_core.synth.scene import look_at

FPS = 30.0
# a 640x480 camera: coasting (world_fusion.coast_frames) asks whether a track's centre is in view
K_CAMERA = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
IMAGE = np.zeros((480, 640, 3), np.uint8)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--move', type=float, default=0.25, help='metres the object is moved (default 0.25)')
    parser.add_argument('--bias', type=float, default=1.2, help="the detector's depth factor (default 1.2)")
    parser.add_argument('--noise-deg', type=float, default=0.5, help='bearing noise per frame, degrees')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    before, after = np.array([0.05, 0.02, 0.0]), np.array([0.05 + args.move, 0.02, 0.0])
    stage, state, previous = WorldFusionStage(None, InferenceConfig()), None, None
    errors, views = [], []
    move_frame = int(5 * FPS)
    for frame in range(int(8 * FPS)):
        azimuth = np.radians(15.0 * frame / FPS)  # 15 deg/s around the table
        camera = look_at(0.8 * np.array([np.cos(azimuth) * 0.82, 0.57, np.sin(azimuth) * 0.82]), np.zeros(3))
        centre = before if frame < move_frame else after
        in_camera = camera[:3, :3] @ centre + camera[:3, 3]
        jitter = np.radians(args.noise_deg) * rng.normal(size=3) * np.linalg.norm(in_camera)
        detection = Detection(6, 0.9, np.eye(3), (in_camera + jitter) * args.bias, np.full(3, 0.1), track_id=1)
        motion = camera @ np.linalg.inv(previous) if previous is not None else None
        (detection,), state = stage.apply([detection], FrameContext(IMAGE, K_CAMERA, motion, 'video', 'cpu'), state)
        errors.append(float(np.linalg.norm(detection.translation - in_camera)))
        views.append(detection.extras.get('fused_views', 1))
        previous = camera
    errors = np.array(errors)
    settled = errors[move_frame - 30 : move_frame].max()
    worst = errors[move_frame:].max()

    # it lets go of the old place in the first frame that does not publish the fused estimate
    restarted = next(i for i in range(move_frame, len(views)) if views[i] < views[move_frame - 1]) - move_frame + 1

    def back_within(limit):
        late = np.flatnonzero(errors[move_frame:] >= limit)
        return ((late[-1] + 1) if late.size else 0) / FPS

    print(
        f'object moved {args.move:.2f} m after 5 s of orbit (detector depth x{args.bias:g}, bearing noise '
        f'{args.noise_deg:g} deg): error before the move {100 * settled:.1f} cm; largest after it '
        f'{100 * worst:.1f} cm (a stale fused place would be {100 * args.move:.0f} cm); let go of the old place after '
        f'{restarted / FPS:.2f} s; back within 5 cm after '
        f'{back_within(0.05):.2f} s, within 2 cm after {back_within(0.02):.2f} s'
    )


if __name__ == '__main__':
    main()
