"""`seqpose bag from-nocs`: NOCS scene folders (REAL275 layout or `seqpose synth` output) -> one rosbag2.

Per frame, all with the same header stamp and bag time (scene k, frame i at `rate` fps):
  /camera/color/image_raw (or .../compressed), /camera/color/camera_info, /seqpose/ground_truth,
  /seqpose/frame_name ("<scene>/<frame>"), and where the scene has odometry (generated videos: odometry.txt,
  simulated; REAL275 has none) /camera/odom (nav_msgs/Odometry) and /tf (odom -> the camera frame): the camera
  motion a robot's odometry reports, the same readings `seqpose eval --camera-motion odometry` uses.
Scenes follow each other with SCENE_GAP_S of silence, more than any sensible max_frame_gap, so a replay (or
the live node) resets its memory at every scene start, just as `seqpose eval` starts every scene afresh.
Frames are read through the data reader (`seqpose_core.data`), so the bag holds exactly what `seqpose eval`
sees: the same RGB pixels (rgb8 or png are lossless), the same K, the same ground truth.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqpose_core.bag import messages as M
from seqpose_core.bag.io import BagError, BagWriter
from seqpose_core.detection import Detection

SCENE_GAP_S = M.SCENE_GAP_S
START_STAMP_NS = 1_000_000_000  # 1 s: some ROS tools treat a zero stamp as "not set"


@dataclass
class FromNocsSummary:
    out: str
    storage: str
    image_topic: str
    scenes: list = field(default_factory=list)  # [(scene name, frames, first stamp s, last stamp s)]
    messages: int = 0

    def format(self):
        frames = sum(s[1] for s in self.scenes)
        lines = [
            f'wrote {self.out} ({self.storage}): {len(self.scenes)} scene(s), {frames} frames, '
            f'{self.messages} messages; images on {self.image_topic}'
        ]
        lines.extend(
            f'  {name}: {count} frames, stamps {first:.3f} .. {last:.3f} s' for name, count, first, last in self.scenes
        )
        return '\n'.join(lines)


def _gt_detections(annotation):
    """The data reader's FrameAnnotation -> (list[Detection] with metric sizes, handle visibility list)."""
    detections = []
    sizes = annotation.sizes
    for index in range(len(annotation)):
        detections.append(
            Detection(
                class_id=int(annotation.class_ids[index]),
                score=1.0,
                rotation=np.asarray(annotation.rotations[index], dtype=np.float64),
                translation=np.asarray(annotation.translations[index], dtype=np.float64),
                size=np.asarray(sizes[index], dtype=np.float64),
                track_id=int(annotation.instance_ids[index]),
            )
        )
    return detections, [int(v) for v in annotation.handle_visibility]


def _scene_reader(scene_dir):
    """(NocsFrameReader, frame prefixes) for one scene folder ROOT/<Real|CAMERA>/<subset>/<scene>."""
    from seqpose_core.data import NocsFrameReader, iter_scenes

    scene_dir = Path(scene_dir).resolve()
    split = f'{scene_dir.parent.parent.name}/{scene_dir.parent.name}'
    root = scene_dir.parents[2]
    try:
        reader = NocsFrameReader(root, split)
        scenes = dict(iter_scenes(root, split))
    except ValueError as error:
        raise BagError(
            f'{scene_dir}: not inside a NOCS layout ROOT/Real/<subset>/<scene> or '
            f'ROOT/CAMERA/<subset>/<folder>: {error}'
        ) from None
    return reader, scenes.get(scene_dir.name, [])


def find_scene_dirs(paths):
    """Scene folders from the arguments: a scene folder itself (holds *_color.png) or a folder of scenes."""
    scenes = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise BagError(f'{path}: not a directory (expected a NOCS scene folder such as Real/test/scene_1)')
        if any(path.glob('*_color.png')):
            scenes.append(path)
            continue
        children = sorted((p for p in path.iterdir() if p.is_dir() and any(p.glob('*_color.png'))), key=_scene_sort_key)
        if not children:
            raise BagError(f'{path}: holds no *_color.png and no scene folders with them')
        scenes.extend(children)
    return scenes


def _scene_sort_key(path):
    digits = ''.join(ch for ch in path.name if ch.isdigit())
    return (int(digits) if digits else -1, path.name)


def write_nocs_bag(
    scene_dirs, out, rate=30.0, compressed=None, storage='mcap', ground_truth=True, progress=True
) -> FromNocsSummary:
    from seqpose_core.bag.replay import progress_bar

    if rate <= 0:
        raise ValueError(f'--rate must be positive, got {rate}')
    scenes = find_scene_dirs(scene_dirs)
    image_topic = M.COMPRESSED_IMAGE_TOPIC if compressed else M.IMAGE_TOPIC
    image_type = M.COMPRESSED_IMAGE_TYPE if compressed else M.IMAGE_TYPE
    summary = FromNocsSummary(out=str(out), storage=storage, image_topic=image_topic)
    period_ns = int(round(1e9 / rate))
    stamp = START_STAMP_NS
    with BagWriter(out, storage) as writer:
        for scene_dir in scenes:
            count, first = 0, stamp
            bar = progress_bar(None, f'from-nocs {scene_dir.name}') if progress else None
            reader, prefixes = _scene_reader(scene_dir)
            odometry = reader.odometry(scene_dir)
            for prefix in prefixes:
                frame = reader.read(prefix)
                reading = odometry.get(int(Path(prefix).name)) if odometry is not None else None
                if reading is not None:  # before the image: a node pairs the image with it by stamp
                    writer.write(M.ODOMETRY_TOPIC, M.ODOMETRY_TYPE, M.odometry_msg(reading, stamp), stamp)
                    writer.write(M.TF_TOPIC, M.TF_TYPE, M.tf_msg(reading, stamp), stamp)
                rgb = frame.color
                height, width = rgb.shape[:2]
                # CameraInfo first: a node that keeps the latest CameraInfo then has it for this image
                writer.write(
                    M.CAMERA_INFO_TOPIC, M.CAMERA_INFO_TYPE, M.camera_info_msg(frame.K, width, height, stamp), stamp
                )
                if compressed:
                    image = M.compressed_image_msg(rgb, stamp, compressed)
                else:
                    image = M.image_msg(rgb, stamp)
                writer.write(image_topic, image_type, image, stamp)
                if ground_truth:
                    detections, visibility = _gt_detections(frame.annotation)
                    writer.write(
                        M.GT_TOPIC,
                        M.DETECTION_ARRAY_TYPE,
                        M.detection_array_msg(detections, stamp, handle_visibility=visibility),
                        stamp,
                    )
                name = M.msg_class(M.HEADER_TYPE)(stamp=M.ns_to_stamp(stamp), frame_id=f'{frame.scene}/{frame.frame}')
                writer.write(M.FRAME_NAME_TOPIC, M.HEADER_TYPE, name, stamp)
                count += 1
                last = stamp
                stamp += period_ns
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
            if count == 0:
                raise BagError(f'{scene_dir}: no readable frames')
            summary.scenes.append((scene_dir.name, count, first * 1e-9, last * 1e-9))
            stamp = last + int(SCENE_GAP_S * 1e9)
        summary.messages = writer.message_count
    return summary
