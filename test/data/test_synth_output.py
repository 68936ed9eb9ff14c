"""Files written by `seqpose synth`: the NOCS layout, determinism, and round trips from the files alone using
the official decodings (nocs-data-format.md), so a wrong axis, flip or unit shows up here."""

import filecmp
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from seqpose_core import CLASS_NAMES
from seqpose_core.geometry import backproject, box_corners, project_points, transform_points
from seqpose_core.safe_pickle import safe_load
from seqpose_core.synth.generator import SynthOptions, generate, split_assignment
from seqpose_core.synth.meshes import SYNSET_IDS
from seqpose_core.synth.render import opencv_projection
from seqpose_core.synth.writer import CAMERA_INTRINSICS, REAL_INTRINSICS, decode_coord, scaled_intrinsics

WIDTH, HEIGHT = 160, 120
LABEL_KEYS = {
    'class_ids',
    'instance_ids',
    'model_list',
    'bboxes',
    'scales',
    'rotations',
    'translations',
    'size',
    'poses',
    'handle_visibility',
}


def _generate(out, mode, seed=5, scenes=2, frames=3, workers=1):
    generate(
        SynthOptions(
            out=str(out),
            scenes=scenes,
            frames=frames,
            seed=seed,
            width=WIDTH,
            height=HEIGHT,
            mode=mode,
            workers=workers,
        )
    )
    return Path(out)


@pytest.fixture(scope='module')
def video_root(tmp_path_factory):
    return _generate(tmp_path_factory.mktemp('video'), 'video')


@pytest.fixture(scope='module')
def single_root(tmp_path_factory):
    return _generate(tmp_path_factory.mktemp('single'), 'single', scenes=1, frames=3)


def _frames(root):
    prefixes = sorted(p.with_name(p.name[: -len('_color.png')]) for p in root.glob('*/*/*/*_color.png'))
    assert prefixes, f'no frames under {root}'
    return prefixes


def _read_frame(prefix):
    """The frame as the official loaders decode it."""
    prefix = str(prefix)
    depth = cv2.imread(prefix + '_depth.png', cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.uint16 and depth.ndim == 2
    mask = cv2.imread(prefix + '_mask.png')[:, :, 2]
    coord = decode_coord(cv2.imread(prefix + '_coord.png'))
    color = cv2.imread(prefix + '_color.png')[:, :, ::-1]
    label = safe_load(prefix + '_label.pkl')
    K = np.loadtxt(Path(prefix).parent / 'intrinsics.txt')
    return color, depth.astype(np.float64) / 1000.0, mask, coord, label, K


def test_projection_matrix_matches_the_opencv_pinhole():
    K = scaled_intrinsics(REAL_INTRINSICS, WIDTH, HEIGHT)
    points = np.random.default_rng(0).uniform([-0.3, -0.2, 0.3], [0.3, 0.2, 2.0], (50, 3))
    clip = np.c_[points, np.ones(50)] @ opencv_projection(K, WIDTH, HEIGHT).T
    ndc = clip[:, :3] / clip[:, 3:]
    # window coordinates of pixel centres are u + 0.5; window row 0 is read back first = image row 0
    pixels = np.stack([(ndc[:, 0] + 1) / 2 * WIDTH - 0.5, (ndc[:, 1] + 1) / 2 * HEIGHT - 0.5], 1)
    np.testing.assert_allclose(pixels, project_points(points, K), atol=1e-6)
    assert np.all(np.abs(ndc[:, 2]) < 1)  # inside the depth range


def test_scaled_intrinsics_keep_the_official_ones_at_native_size():
    np.testing.assert_allclose(scaled_intrinsics(CAMERA_INTRINSICS, 640, 480), CAMERA_INTRINSICS)
    half = scaled_intrinsics(CAMERA_INTRINSICS, 320, 240)
    assert half[0, 0] == pytest.approx(288.75) and half[0, 2] == pytest.approx(159.5)


def test_split_assignment():
    assert split_assignment('video', 1) == [('train', 1)]
    assert split_assignment('video', 2) == [('train', 1), ('test', 1)]
    assert [s for s, _ in split_assignment('video', 10)] == ['train'] * 8 + ['test'] * 2
    assert split_assignment('single', 3, 'val') == [('val', 0), ('val', 1), ('val', 2)]
    with pytest.raises(ValueError, match='--split'):
        split_assignment('video', 2, 'val')


def test_video_layout(video_root):
    real = video_root / 'Real'
    assert (real / 'train/scene_1').is_dir() and (real / 'test/scene_1').is_dir()
    for scene in (real / 'train/scene_1', real / 'test/scene_1'):
        names = sorted(p.name for p in scene.iterdir())
        for frame in ('0000', '0001', '0002'):
            for kind in ('color.png', 'depth.png', 'mask.png', 'coord.png', 'meta.txt', 'label.pkl'):
                assert f'{frame}_{kind}' in names
        np.testing.assert_allclose(
            np.loadtxt(scene / 'intrinsics.txt'), scaled_intrinsics(REAL_INTRINSICS, WIDTH, HEIGHT), atol=1e-6
        )
    assert (real / 'test_list_all.txt').read_text().split() == [
        'test/scene_1/0000',
        'test/scene_1/0001',
        'test/scene_1/0002',
    ]
    assert (real / 'train_list_all.txt').read_text().split()[0] == 'train/scene_1/0000'
    for prefix in _frames(video_root):
        color = cv2.imread(str(prefix) + '_color.png')
        assert color.shape == (HEIGHT, WIDTH, 3)
        split = prefix.parent.parent.name
        lines = (Path(str(prefix) + '_meta.txt')).read_text().splitlines()
        assert 3 <= len(lines) <= 6
        for number, line in enumerate(lines, start=1):  # REAL form, instance ids in order from 1
            inst_id, class_id, model_name = line.split()
            assert int(inst_id) == number and 1 <= int(class_id) <= 6 and model_name.endswith('_norm')
            model = video_root / 'obj_models' / f'real_{split}' / model_name
            extents = np.loadtxt(str(model) + '.txt')
            vertices = np.array([row.split()[1:] for row in open(str(model) + '.obj') if row.startswith('v ')], float)
            # metric model and its metric extents agree
            np.testing.assert_allclose(vertices.max(0) - vertices.min(0), extents, atol=2e-5)
        assert len({row.split()[1] for row in lines}) >= 3  # several categories per scene


def test_single_layout(single_root):
    camera = single_root / 'CAMERA'
    folder = camera / 'train/00000'
    assert sorted(p.name for p in folder.glob('*_color.png')) == ['0000_color.png', '0001_color.png', '0002_color.png']
    assert (camera / 'train_list_all.txt').read_text().split()[0] == 'train/00000/0000'
    for prefix in _frames(single_root):
        for line in Path(str(prefix) + '_meta.txt').read_text().splitlines():
            inst_id, class_id, synset, model_id = line.split()  # CAMERA form
            assert synset == SYNSET_IDS[CLASS_NAMES[int(class_id) - 1]]
            model_dir = single_root / 'obj_models/train' / synset / model_id
            bbox = np.loadtxt(model_dir / 'bbox.txt')
            assert bbox.shape == (2, 3)
            assert np.linalg.norm(bbox[0] - bbox[1]) == pytest.approx(1.0, abs=1e-4)  # NOCS-normalised
            assert (model_dir / 'model.obj').stat().st_size > 0


def test_labels_match_masks(video_root, single_root):
    for prefix in _frames(video_root) + _frames(single_root):
        _, depth, mask, _, label, _ = _read_frame(prefix)
        assert set(label) == LABEL_KEYS
        count = len(label['class_ids'])
        assert label['bboxes'].shape == (count, 4) and label['poses'].shape == (count, 4, 4)
        ids = set(np.unique(mask)) - {255}
        assert mask.max() == 255  # background present, as the loaders assert
        meta_ids = [int(row.split()[0]) for row in Path(str(prefix) + '_meta.txt').read_text().splitlines()]
        assert ids <= set(meta_ids)
        for i, inst_id in enumerate(label['instance_ids']):
            y1, x1, y2, x2 = label['bboxes'][i]
            rows, cols = np.nonzero(mask == inst_id)
            assert (y1, x1, y2, x2) == (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
            pose = label['poses'][i].astype(np.float64)
            np.testing.assert_allclose(pose[:3, :3], label['rotations'][i] * label['scales'][i], atol=1e-5)
            np.testing.assert_allclose(np.linalg.norm(label['size'][i]), 1.0, atol=1e-4)
            rotation = label['rotations'][i].astype(np.float64)
            np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-5)
            assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-5)


def test_round_trip_coord_depth_and_pose(video_root, single_root):
    """Back-projected depth at each object's pixels equals s R (coord) + t from the label: catches wrong axes,
    a missing z flip, a y flip of the images and wrong depth units. Box centres project onto their masks."""
    centres_on_mask, checked = 0, 0
    for prefix in _frames(video_root) + _frames(single_root):
        _, depth, mask, coord, label, K = _read_frame(prefix)
        for i, inst_id in enumerate(label['instance_ids']):
            pixels = (mask == inst_id) & (depth > 0)
            v, u = np.nonzero(pixels)
            observed = backproject(np.stack([u, v], 1).astype(np.float64), depth[v, u], K)
            pose = label['poses'][i].astype(np.float64)
            predicted = transform_points(pose, coord[v, u].astype(np.float64))
            error = np.linalg.norm(observed - predicted, axis=1)
            # 8-bit coords (diagonal / 255) and millimetre depth
            tolerance = float(label['scales'][i]) / 255 * 1.5 + 0.002
            assert np.median(error) < tolerance / 2, (prefix, inst_id, np.median(error))
            assert np.percentile(error, 95) < tolerance, (prefix, inst_id, np.percentile(error, 95))
            # depth lies inside the object's box along z
            corners = transform_points(pose, box_corners(label['size'][i].astype(np.float64)))
            assert depth[v, u].min() >= corners[:, 2].min() - 0.002
            assert depth[v, u].max() <= corners[:, 2].max() + 0.002
            centre = np.round(project_points(label['translations'][i][None].astype(np.float64), K)[0]).astype(int)
            inside = 0 <= centre[0] < WIDTH and 0 <= centre[1] < HEIGHT
            centres_on_mask += bool(inside and mask[centre[1], centre[0]] == inst_id)
            checked += 1
    assert checked >= 10
    # occluders may cover a few centres; a wrong convention misses almost all of them
    assert centres_on_mask >= 0.75 * checked, (centres_on_mask, checked)


def test_table_depth_is_the_plane_under_the_objects(video_root):
    """Depth on the table (no object) lies on the plane the upright objects stand on."""
    for prefix in _frames(video_root)[:3]:
        _, depth, mask, _, label, K = _read_frame(prefix)
        rotations = label['rotations'].astype(np.float64)
        up = rotations[:, :, 1].mean(0)
        up /= np.linalg.norm(up)
        # the lowest point of each object's box along the up direction: the table height
        offsets = [
            up @ label['translations'][i] - 0.5 * np.abs(rotations[i].T @ up) @ (label['size'][i] * label['scales'][i])
            for i in range(len(rotations))
        ]
        table = (mask == 255) & (depth > 0)
        v, u = np.nonzero(table)
        points = backproject(np.stack([u, v], 1).astype(np.float64), depth[v, u], K)
        heights = points @ up - np.median(offsets)
        assert np.median(np.abs(heights)) < 0.006, np.median(np.abs(heights))


def test_same_seed_gives_identical_files(tmp_path, video_root):
    again = _generate(tmp_path / 'again', 'video')
    first = sorted(p.relative_to(video_root) for p in video_root.rglob('*') if p.is_file())
    second = sorted(p.relative_to(again) for p in again.rglob('*') if p.is_file())
    assert first == second
    match, mismatch, errors = filecmp.cmpfiles(video_root, again, [str(p) for p in first], shallow=False)
    assert not mismatch and not errors
    other = _generate(tmp_path / 'other', 'video', seed=6, scenes=1, frames=1)
    assert (other / 'Real/train/scene_1/0000_color.png').read_bytes() != (
        video_root / 'Real/train/scene_1/0000_color.png'
    ).read_bytes()


def test_existing_output_is_not_silently_overwritten(video_root):
    with pytest.raises(FileExistsError, match='--overwrite'):
        _generate(video_root, 'video')


def test_worker_processes_write_the_same_files(tmp_path, video_root):
    """--workers shares the scenes among processes; every scene draws from its own generator, so the files,
    the image lists included, are byte for byte those of one process."""
    progress = []
    generate(
        SynthOptions(
            out=str(tmp_path / 'parallel'),
            scenes=2,
            frames=3,
            seed=5,
            width=WIDTH,
            height=HEIGHT,
            mode='video',
            workers=2,
        ),
        progress=progress.append,
    )
    parallel = tmp_path / 'parallel'
    first = sorted(p.relative_to(video_root) for p in video_root.rglob('*') if p.is_file())
    second = sorted(p.relative_to(parallel) for p in parallel.rglob('*') if p.is_file())
    assert first == second
    match, mismatch, errors = filecmp.cmpfiles(video_root, parallel, [str(p) for p in first], shallow=False)
    assert not mismatch and not errors
    assert sum(progress) == 6
    # a worker's error reaches the caller as it was raised there
    with pytest.raises(FileExistsError, match='--overwrite'):
        _generate(parallel, 'video', workers=2)


def test_labels_load_with_plain_pickle_too(video_root):
    with open(_frames(video_root)[0].with_name('0000_label.pkl'), 'rb') as handle:
        label = pickle.load(handle)
    assert label['class_ids'].dtype == np.int32


def test_render_targets_hold_the_documented_encodings():
    """The GPU writes the coord/depth encodings directly; they must equal the CPU reference encoders."""
    from seqpose_core.synth.meshes import procedural_model
    from seqpose_core.synth.render import Appearance, Light, Renderer
    from seqpose_core.synth.scene import look_at
    from seqpose_core.synth.textures import procedural_texture
    from seqpose_core.synth.writer import encode_coord, encode_depth

    rng = np.random.default_rng(0)
    model = procedural_model('mug', rng)
    renderer = Renderer(WIDTH, HEIGHT)
    appearance = Appearance(np.ones(3) * 0.5, np.ones(3), np.zeros(3), 0, 4.0, 0.5, 0.1, 10.0)
    light = Light(np.array([0, 1.0, 0]), np.ones(3) * 0.7, np.ones(3) * 0.3)
    renderer.load_scene(
        [(model, appearance, 7)], (0.5, 0.5), procedural_texture(rng, 32), procedural_texture(rng, 32), light
    )
    pose = np.eye(4)
    pose[:3, 3] = [0.1, model.size[1] / 2, 0.0]  # off-centre, so a flipped image would miss it
    K = scaled_intrinsics(REAL_INTRINSICS, WIDTH, HEIGHT)
    # look at a point in front of the object, so it appears in the upper half of the image
    camera_from_world = look_at([0.0, 0.4, 0.6], [0.0, 0.0, 0.12])
    rendered = renderer.render(K, camera_from_world, [pose])
    renderer.release()
    on_object = rendered.instance == 7
    assert 50 < on_object.sum() < WIDTH * HEIGHT / 4
    assert set(np.unique(rendered.instance)) == {0, 7}
    np.testing.assert_array_equal(encode_coord(rendered.nocs, rendered.instance), rendered.coord_bgr)
    np.testing.assert_array_equal(encode_depth(rendered.depth), rendered.depth_mm)
    assert np.all(rendered.depth_mm[on_object] > 0)
    # the object's centre projects onto it, and its mirror image across the horizontal midline does not
    centre = project_points((camera_from_world @ pose)[None, :3, 3], K)[0]
    u, v = int(round(centre[0])), int(round(centre[1]))
    assert v < HEIGHT / 2 - 15
    assert on_object[v, u]
    assert not on_object[HEIGHT - 1 - v, u]


def test_cli_writes_preview(tmp_path, capsys):
    from seqpose_core.cli import main

    out = tmp_path / 'cli'
    assert (
        main(
            [
                'synth',
                '--out',
                str(out),
                '--scenes',
                '1',
                '--frames',
                '2',
                '--size',
                '96x72',
                '--mode',
                'single',
                '--preview',
                '--seed',
                '1',
            ]
        )
        == 0
    )
    preview = cv2.imread(str(out / 'preview.png'))
    assert preview is not None and preview.shape[1] == 4 * 320  # colour, depth, mask, coord side by side
    assert (out / 'CAMERA/train/00000/0001_coord.png').is_file()
    # bad input: exit status 2 and one line naming the option, no traceback
    assert main(['synth', '--out', str(out), '--size', '640by480']) == 2
    assert '--size' in capsys.readouterr().err
    assert main(['synth', '--out', str(out), '--workers', '0']) == 2
    assert '--workers 0' in capsys.readouterr().err


def _render_one(model, world_from_object, camera_from_world, background=None, instance_id=1):
    from seqpose_core.synth.render import Appearance, Light, Renderer
    from seqpose_core.synth.textures import procedural_texture

    rng = np.random.default_rng(0)
    renderer = Renderer(WIDTH, HEIGHT)
    appearance = Appearance(np.ones(3) * 0.5, np.ones(3), np.zeros(3), 0, 4.0, 0.5, 0.1, 10.0)
    light = Light(np.array([0, 1.0, 0]), np.ones(3) * 0.7, np.ones(3) * 0.3)
    renderer.load_scene(
        [(model, appearance, instance_id)],
        (0.3, 0.3),
        procedural_texture(rng, 32),
        procedural_texture(rng, 32) if background is None else background,
        light,
    )
    K = scaled_intrinsics(REAL_INTRINSICS, WIDTH, HEIGHT)
    rendered = renderer.render(K, camera_from_world, [world_from_object], noise_amplitude=0.0)
    renderer.release()
    return rendered


def test_mug_handle_visibility_follows_the_view(tmp_path):
    from seqpose_core.synth.meshes import procedural_model
    from seqpose_core.synth.scene import PlacedObject, look_at
    from seqpose_core.synth.writer import NocsWriter

    mug = procedural_model('mug', np.random.default_rng(2))
    mug.name = 'mug1_norm'
    pose = np.eye(4)
    pose[1, 3] = mug.size[1] / 2
    writer = NocsWriter(tmp_path, 'video', WIDTH, HEIGHT, workers=0)
    folder = writer.scene_folder('test', 1)
    visibility = {}
    # the handle points along object +x: a camera on the +x side sees it, one on the -x side does not
    for side in (1.0, -1.0):
        camera = look_at([side * 0.4, 0.25, 0.05], [0.0, mug.size[1] / 2, 0.0])
        rendered = _render_one(mug, pose, camera)
        placed = PlacedObject(model=mug, appearance=None, instance_id=1, world_from_object=pose, footprint_radius=0.1)
        label = writer.write_frame(folder, 0, rendered, [placed], camera)
        visibility[side] = int(label['handle_visibility'][0])
    writer.close()
    assert visibility == {1.0: 1, -1.0: 0}


def test_background_image_fills_the_view_beyond_the_table():
    from seqpose_core.synth.meshes import procedural_model
    from seqpose_core.synth.scene import look_at

    background = np.zeros((50, 80, 3), np.uint8)
    background[:] = (10, 200, 30)  # RGB
    model = procedural_model('can', np.random.default_rng(0))
    pose = np.eye(4)
    pose[1, 3] = model.size[1] / 2
    # a low camera looking across the small table sees the background above it
    rendered = _render_one(model, pose, look_at([0.0, 0.15, 0.6], [0.0, 0.1, 0.0]), background=background)
    beyond = rendered.depth_mm == 0
    assert beyond.mean() > 0.2
    assert np.all(rendered.instance[beyond] == 0)
    np.testing.assert_allclose(rendered.color[beyond].mean(0), (10, 200, 30), atol=2)


def test_output_loads_through_the_reader(video_root, single_root):
    """The data reader (seqpose_core.data) reads the generated splits, and the GT it derives from coord map +
    depth (no labels) agrees with our _label.pkl."""
    nocs = pytest.importorskip('seqpose_core.data')
    for root, split in ((video_root, 'real_train'), (video_root, 'real_test'), (single_root, 'camera_train')):
        with_labels = nocs.NocsFrameReader(root, split)
        derived = nocs.NocsFrameReader(root, split, use_labels=False)
        for _, prefixes in nocs.iter_scenes(root, split):
            for prefix in prefixes:
                a, b = with_labels.read(prefix).annotation, derived.read(prefix).annotation
                np.testing.assert_array_equal(a.instance_ids, b.instance_ids)
                np.testing.assert_allclose(a.translations, b.translations, atol=0.003)
                np.testing.assert_allclose(a.scales, b.scales, rtol=0.01)
                np.testing.assert_allclose(a.rotations, b.rotations, atol=0.02)
