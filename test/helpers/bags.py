"""Shared set-up of the bag tests (no tests here): generated REAL-format scenes, a tiny random checkpoint, bags."""

import shutil
from pathlib import Path

import numpy as np

from seqpose_core.bag import messages as M
from seqpose_core.bag.io import BagWriter

WIDTH, HEIGHT = 160, 120
SCENES, FRAMES = 2, 5


def generate_scenes(out):
    """2 held-out REAL-format video scenes of 5 frames at 160x120 -> OUT/Real/test/scene_{1,2}."""
    from seqpose_core.synth.generator import SynthOptions, generate

    generate(
        SynthOptions(
            out=str(out),
            scenes=SCENES,
            frames=FRAMES,
            seed=11,
            width=WIDTH,
            height=HEIGHT,
            mode='video',
            split='test',
            objects_min=2,
            objects_max=3,
        )
    )
    return Path(out)


def tiny_checkpoint(path):
    """The `tiny` config with random weights (seeded), score threshold 0 so every frame has predictions."""
    import torch

    from seqpose_core.config import load_config
    from seqpose_core.model import build_model, save_checkpoint

    torch.manual_seed(0)
    config = load_config('tiny')
    model = build_model(config.model, load_pretrained=False)
    return save_checkpoint(path, model, config)


def synthetic_frame_bag(
    path,
    frames=8,
    storage='mcap',
    image_topic=M.IMAGE_TOPIC,
    encoding='rgb8',
    camera_info=True,
    gt_every=1,
    stamps_ns=None,
    width=WIDTH,
    height=HEIGHT,
    predictions=(),
):
    """A bag of random images (+ CameraInfo + GT with one mug) with full control over what is broken.

    `stamps_ns`: the header stamps in recording order (default 30 fps from 1 s); `gt_every`: GT on every
    n-th frame (0: no GT topic); `encoding`: Image encoding written ('rgb8' or anything else, raw bytes);
    `predictions`: indices of the frames that get a predictions message on /seqpose/detections holding the
    ground-truth mug itself (score 0.9), i.e. perfect predictions, the other frames "dropped"."""
    from seqpose_core.detection import Detection

    rng = np.random.default_rng(3)
    stamps = stamps_ns or [1_000_000_000 + i * 33_333_333 for i in range(frames)]
    K = np.array([[150.0, 0, width / 2], [0, 150.0, height / 2], [0, 0, 1]])
    mug = Detection(
        class_id=6,
        score=1.0,
        rotation=np.eye(3),
        translation=np.array([0.0, 0.0, 0.8]),
        size=np.array([0.12, 0.1, 0.09]),
        track_id=1,
    )
    with BagWriter(path, storage) as writer:
        for index, stamp in enumerate(stamps):
            rgb = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            image = M.image_msg(rgb, stamp)
            if encoding != 'rgb8':
                image.encoding = encoding
            writer.write(image_topic, M.IMAGE_TYPE, image, 1_000_000_000 + index * 33_333_333)
            if camera_info:
                writer.write(M.CAMERA_INFO_TOPIC, M.CAMERA_INFO_TYPE, M.camera_info_msg(K, width, height, stamp), stamp)
            if gt_every and index % gt_every == 0:
                writer.write(
                    M.GT_TOPIC,
                    M.DETECTION_ARRAY_TYPE,
                    M.detection_array_msg([mug], stamp, handle_visibility=[0]),
                    stamp,
                )
            if index in predictions:
                predicted = Detection(
                    class_id=6, score=0.9, rotation=mug.rotation, translation=mug.translation, size=mug.size, track_id=1
                )
                writer.write(
                    M.DETECTIONS_TOPIC,
                    M.DETECTION_ARRAY_TYPE,
                    M.detection_array_msg([predicted], stamp),
                    stamp + 40_000_000,
                )
    return Path(path)


def truncate_recording(bag_dir, out_dir, keep_fraction=0.6):
    """What a killed recording leaves: the storage file cut short, no metadata.yaml."""
    bag_dir, out_dir = Path(bag_dir), Path(out_dir)
    out_dir.mkdir(parents=True)
    for storage_file in bag_dir.iterdir():
        if storage_file.suffix in ('.mcap', '.db3'):
            data = storage_file.read_bytes()
            if storage_file.suffix == '.mcap':
                data = data[: int(len(data) * keep_fraction)]
            (out_dir / storage_file.name).write_bytes(data)
    return out_dir


def copy_tree(src, dst):
    shutil.copytree(src, dst)
    return Path(dst)
