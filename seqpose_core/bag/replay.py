"""`seqpose bag eval`: deterministic offline replay of a bag through the StreamRunner, scored.

Every usable image goes, in header-stamp order, through the same `StreamRunner.step` the ROS node calls
(the runner resets its memory itself when the stamp jumps by more than max_frame_gap or goes backwards, so
the scenes of a from-nocs bag are separate videos). By default the runner gets no camera motion (what the ROS
node does without odometry): on the same frames and checkpoint the per-image results and metrics equal those of
`seqpose eval --camera-motion none`. With `camera_motion='odometry'` each image gets the motion since the
previous processed one from the bag's nav_msgs/Odometry with its stamp (what the node with `odometry: true`
does), and the results equal `seqpose eval --camera-motion odometry` (`--mode sf` ignores camera motion).
Scoring is the evaluator's (`seqpose_core.bag.scoring`). Outputs in OUT:
- results/results_<scene>_<frame>.pkl  per scored image, NOCS/object-deformnet format (the evaluator's input)
- metrics.json, ap_curves.png          the evaluator's report (only when the bag has ground truth)
- overlay.mp4                          predictions red, ground truth green (mp4v), `seqpose_core.visualize`
- bag/                                 rosbag2 with every input message plus predictions on /seqpose/detections
- bag_report.json                      counts, timing, what was skipped and why
"""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from seqpose_core.bag import messages as M
from seqpose_core.bag import scoring
from seqpose_core.bag.frames import BagFrames, ReplayTopics
from seqpose_core.bag.io import BagError, BagWriter, SkipLog
from seqpose_core.geometry import camera_motion_between
from seqpose_core.runner import Frame, build_runner


def progress_bar(total, description):
    """tqdm on stderr, silent when stderr is not a terminal (tests, CI logs)."""
    from tqdm import tqdm

    return tqdm(total=total or None, desc=description, unit='frame', disable=None, leave=False)


class OverlayVideo:
    """overlay.mp4: ground truth green, predictions red (the best one per object and the false positives scoring
    at least `min_score`, as the overlays of
    `seqpose eval`), drawn by `seqpose_core.visualize.draw_detections`; small images are upscaled by an integer
    factor to at least `min_height` pixels so that boxes and labels stay legible."""

    def __init__(self, path, fps, min_score=None, min_height=None):
        from seqpose_core.visualize import OVERLAY_MIN_HEIGHT, OVERLAY_MIN_SCORE

        self.path = Path(path)
        self.fps = fps
        self.min_score = OVERLAY_MIN_SCORE if min_score is None else min_score
        self.min_height = OVERLAY_MIN_HEIGHT if min_height is None else min_height
        self.writer = None
        self.size = None
        self.frames = 0

    def add(self, frame, detections):
        import cv2

        from seqpose_core.geometry import scale_intrinsics
        from seqpose_core.visualize import draw_detections, overlay_predictions

        height, width = frame.rgb.shape[:2]
        factor = max(1, -(-self.min_height // height))
        if factor > 1:
            image = cv2.resize(frame.rgb, (width * factor, height * factor), interpolation=cv2.INTER_LINEAR)
            K = scale_intrinsics(frame.K, (height, width), (height * factor, width * factor))
        else:
            image, K = frame.rgb.copy(), frame.K  # drawn in place: never on the replayed frame
        ground_truth = scoring.gt_detections(frame.gt)[0] if frame.gt else []
        if ground_truth:
            draw_detections(image, ground_truth, K, gt=True)
        draw_detections(image, overlay_predictions(detections, ground_truth, self.min_score), K)
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)  # BGR for the video writer
        if self.writer is None:
            self.size = (image.shape[1], image.shape[0])
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*'mp4v'), self.fps, self.size)
            if not self.writer.isOpened():
                raise RuntimeError(f'{self.path}: OpenCV cannot write mp4v video here')
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size)
        self.writer.write(image)
        self.frames += 1

    def close(self):
        if self.writer is not None:
            self.writer.release()


@dataclass
class ReplayReport:
    bag: str
    out_dir: str
    mode: str
    checkpoint: str
    topics: dict
    images_in_bag: int = 0
    frames_replayed: int = 0
    frames_scored: int = 0
    segments: int = 0
    inference_seconds: float = 0.0
    replay_seconds: float = 0.0  # the frame loop: read, decode, infer, write output bag and video
    scoring_seconds: float = 0.0  # the evaluator and its report (metrics.json, ap_curves.png)
    wall_seconds: float = 0.0  # everything, model loading excluded
    metrics: dict = None  # the evaluator's metrics (percent, rows 'mean' + classes), as metrics.json
    object_counts: dict = None  # per class: ground-truth and predicted objects scored
    skipped: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    outputs: dict = field(default_factory=dict)

    @property
    def inference_fps(self):
        return self.frames_replayed / self.inference_seconds if self.inference_seconds else 0.0

    @property
    def replay_fps(self):
        return self.frames_replayed / self.replay_seconds if self.replay_seconds else 0.0

    def to_dict(self):
        out = dict(self.__dict__)
        out['metrics'] = scoring.json_metrics(self.metrics)
        out['inference_fps'] = self.inference_fps
        out['replay_fps'] = self.replay_fps
        return out

    def format(self):
        lines = [
            f'bag eval {self.bag} ({self.mode}, {self.checkpoint})',
            f'  images in bag {self.images_in_bag}, replayed {self.frames_replayed} in {self.segments} '
            f'segment(s), scored {self.frames_scored}',
            f'  {self.inference_fps:.1f} frames/s through the runner, {self.replay_fps:.1f} frames/s '
            f'through the replay loop (read, decode, infer, write); scoring {self.scoring_seconds:.1f} s, '
            f'total {self.wall_seconds:.1f} s',
        ]
        if self.metrics:
            lines.append('  ' + scoring.format_metrics_line(self.metrics))
        else:
            lines.append('  not scored: no usable ground truth')
        for note in self.notes:
            lines.append(f'  note: {note}')
        if self.skipped:
            lines.append('  skipped:')
            lines.extend(f'    - {e["count"]} x {e["what"]}: {e["reason"]}' for e in self.skipped)
        lines.append(f'  outputs: {", ".join(f"{k}={v}" for k, v in self.outputs.items())}')
        return '\n'.join(lines)


def _copy_message(writer, topic_infos, skipped):
    """A copy_to callback: every input message goes into the output bag bit-exactly."""
    store = M.typestore()

    def copy(message):
        info = topic_infos.get(message.topic)
        msgdef = info.msgdef if info is not None else None
        if msgdef is None and message.msgtype not in store.types:
            skipped.add(
                'output bag copy',
                f'type {message.msgtype} of {message.topic} has no stored definition and is unknown here; not copied',
            )
            return
        writer.write_raw(message.topic, message.msgtype, message.raw, message.log_time_ns, msgdef=msgdef)

    return copy


def evaluate_bag(
    bag,
    out_dir,
    checkpoint=None,
    mode='mf',
    device=None,
    topics: ReplayTopics = None,
    intrinsics=None,
    video=True,
    output_bag=True,
    storage='mcap',
    runner=None,
    camera_motion='none',
    backend='torch',
) -> ReplayReport:
    """Replay `bag` through the runner, write the outputs listed in the module doc, return the report."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runner = runner or build_runner(checkpoint, mode=mode, device=device, overrides={'backend': backend})
    started = time.perf_counter()
    skipped = SkipLog()
    frames = BagFrames(bag, topics, skipped, intrinsics=intrinsics)
    if camera_motion not in ('none', 'odometry'):
        raise ValueError(f"camera_motion {camera_motion!r}: expected 'none' or 'odometry'")
    if camera_motion == 'odometry' and not frames.odometry:
        raise BagError(f'{bag}: --camera-motion odometry, but the bag has no {frames.topics.odometry} messages')
    previous_odometry = None
    runner.reset()
    report = ReplayReport(
        bag=str(bag),
        out_dir=str(out_dir),
        mode=mode,
        checkpoint=getattr(runner, 'checkpoint_path', 'given runner'),
        topics=dict(frames.topics.__dict__),
        images_in_bag=frames.image_count,
    )
    results_dir = out_dir / 'results'
    results = scoring.ResultsCollector(results_dir)
    writer = None
    if output_bag:
        bag_out = out_dir / 'bag'
        writer = BagWriter(bag_out, storage).__enter__()
        report.outputs['bag'] = str(bag_out)
    overlay = OverlayVideo(out_dir / 'overlay.mp4', scoring.estimate_rate(frames)) if video else None
    copy_to = _copy_message(writer, frames.bag_topics, skipped) if writer is not None else None
    bar = progress_bar(frames.image_count, 'bag eval')
    frame_in_segment = 0
    loop_started = time.perf_counter()
    try:
        for frame in frames.frames(copy_to=copy_to, progress=bar):
            step_started = time.perf_counter()
            motion = None
            if camera_motion == 'odometry':
                if previous_odometry is not None and frame.odom_from_camera is not None:
                    motion = camera_motion_between(previous_odometry, frame.odom_from_camera)
            result = runner.step(Frame(frame.rgb, frame.K, frame.stamp_s, frame.camera_frame_id, camera_motion=motion))
            if not result.skipped:
                previous_odometry = frame.odom_from_camera
            report.inference_seconds += time.perf_counter() - step_started
            if result.skipped:
                skipped.add('image', result.skip_reason, example=f'stamp {frame.stamp_ns}')
                continue
            detections = result.detections
            # a segment is what the runner treats as one video: it starts where the runner reset its memory
            if report.frames_replayed == 0 or result.reset_reason:
                report.segments += 1
                frame_in_segment = 0
            scene = frame.scene or f'segment_{report.segments - 1:03d}'
            name = frame.frame or f'{frame_in_segment:06d}'
            frame_in_segment += 1
            report.frames_replayed += 1
            if frame.gt is not None:
                results.add(scene, name, detections, frame.gt)
                report.frames_scored += 1
            if writer is not None:
                writer.write(
                    M.DETECTIONS_TOPIC,
                    M.DETECTION_ARRAY_TYPE,
                    M.detection_array_msg(detections, frame.stamp_ns, frame.camera_frame_id),
                    frame.log_time_ns,
                )
            if overlay is not None:
                overlay.add(frame, detections)
    finally:
        bar.close()
        if writer is not None:
            writer.__exit__(None, None, None)
        if overlay is not None:
            overlay.close()
            if overlay.frames:
                report.outputs['video'] = str(overlay.path)
    report.replay_seconds = time.perf_counter() - loop_started
    scoring_started = time.perf_counter()
    if report.frames_scored:
        report.metrics, curves = results.score(out_dir)
        report.object_counts = scoring.object_counts(curves)
        report.outputs.update(
            results=str(results_dir), metrics=str(out_dir / 'metrics.json'), ap_curves=str(out_dir / 'ap_curves.png')
        )
    report.scoring_seconds = time.perf_counter() - scoring_started
    report.wall_seconds = time.perf_counter() - started
    report.skipped = skipped.entries()
    report.notes = list(skipped.notes)
    report_path = out_dir / 'bag_report.json'
    report.outputs['report'] = str(report_path)
    report_path.write_text(json.dumps(report.to_dict(), indent=2, default=str))
    return report
