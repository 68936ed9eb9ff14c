"""NOCS reader on a hand-made miniature of the official layout (written here from
../shared/reference/nocs-data-format.md, independently of the synthetic generator).

Other test_data_* modules import `write_miniature` and `MINI_*` from here.
"""

import pickle
import shutil

import cv2
import numpy as np
import pytest

from seqpose_core.data import (
    CAMERA_INTRINSICS,
    REAL_INTRINSICS,
    NocsFormatError,
    NocsFrameReader,
    enumerate_scenes,
    iter_scenes,
    resolve_split,
)
from seqpose_core.data.files import read_depth
from seqpose_core.geometry import rotation_error_deg

H, W = 480, 640


def rotation(axis, degrees):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    angle = np.radians(degrees)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def rigid(R, t):
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = R, t
    return pose


# REAL objects: (instance id, class id, model name, metric extents (m), world_from_object)
REAL_OBJECTS = [
    (1, 1, 'bottle_red_norm', np.array([0.08, 0.20, 0.08]), rigid(rotation([0, 1, 0], 30), [-0.12, 0.0, 0.0])),
    (2, 5, 'laptop_air_norm', np.array([0.30, 0.12, 0.22]), rigid(rotation([1, 1, 0], 25), [0.14, 0.02, 0.05])),
]
# camera_from_world per REAL frame: a camera 0.9 m in front that turns and slides a little between frames
REAL_CAMERAS = [rigid(rotation([0.2, 1, 0.1], 4 * i), [0.02 * i, -0.01 * i, 0.9 + 0.01 * i]) for i in range(3)]
# CAMERA objects: (instance id, class id, synset, model id, normalised extents, scale s, camera_from_object)
CAMERA_OBJECTS = [
    (
        1,
        4,
        '02946921',
        'can0001',
        np.array([0.5, 0.8, 0.5]) / np.linalg.norm([0.5, 0.8, 0.5]),
        0.15,
        rigid(rotation([1, 0, 0], -20), [-0.1, 0.03, 0.7]),
    ),
    (
        2,
        0,
        '02954340',
        'cap0007',
        np.array([0.6, 0.3, 0.7]) / np.linalg.norm([0.6, 0.3, 0.7]),
        0.2,
        rigid(rotation([0, 1, 0], 50), [0.12, 0.0, 0.8]),
    ),  # distractor: class 0
    (
        3,
        2,
        '02880940',
        'bowl0003',
        np.array([0.65, 0.35, 0.65]) / np.linalg.norm([0.65, 0.35, 0.65]),
        0.18,
        rigid(rotation([0, 1, 0.3], 70), [0.05, 0.08, 0.9]),
    ),
]


def render_boxes(K, boxes, background_depth=1.5, hw=(H, W)):
    """Ray-cast boxes. boxes: [(instance id, camera_from_object (4x4, rigid), s, normalised extents)].
    Returns depth (m), instance ids (0 = none), NOCS coords in [-0.5, 0.5]."""
    height, width = hw
    v, u = np.mgrid[0:height, 0:width].astype(float)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)  # z = 1: lambda = depth
    depth = np.full((height, width), np.inf)
    ids = np.zeros((height, width), np.int64)
    coord = np.zeros((height, width, 3))
    for instance_id, pose, scale, extents in boxes:
        R, t = pose[:3, :3], pose[:3, 3]
        origin = -R.T @ t / scale  # camera centre in object (NOCS) units
        direction = rays @ R / scale  # (H, W, 3): R^T d / s
        with np.errstate(divide='ignore', invalid='ignore'):
            low = (-extents / 2 - origin) / direction
            high = (extents / 2 - origin) / direction
        near = np.nanmax(np.minimum(low, high), -1)
        far = np.nanmin(np.maximum(low, high), -1)
        hit = (near <= far) & (near > 0) & (near < depth)
        depth[hit] = near[hit]
        ids[hit] = instance_id
        coord[hit] = np.clip(origin + near[hit][:, None] * direction[hit], -0.5, 0.5)
    depth[ids == 0] = background_depth
    return depth, ids, coord


def encode_coord_bgr(coord, ids):
    """Object coords -> the file's BGR bytes: the inverse of BGR->RGB, /255, z = 1 - z, -0.5."""
    rgb = coord + 0.5
    rgb[..., 2] = 1.0 - rgb[..., 2]
    rgb[ids == 0] = 0
    return np.round(rgb * 255).astype(np.uint8)[..., ::-1].copy()


def write_frame(prefix, K, boxes, meta_lines, label=None, hw=(H, W)):
    depth, ids, coord = render_boxes(K, boxes, hw=hw)
    color = np.zeros(hw + (3,), np.uint8)
    color[...] = (40, 90, 160)
    for instance_id in np.unique(ids[ids > 0]):
        color[ids == instance_id] = (30 * instance_id, 200, 255 - 40 * instance_id)
    mask = np.zeros(hw + (3,), np.uint8)
    mask[..., 0] = 7  # only channel 2 carries the ids (the loaders read [:, :, 2])
    mask[..., 2] = np.where(ids > 0, ids, 255)
    assert cv2.imwrite(f'{prefix}_color.png', color)
    assert cv2.imwrite(f'{prefix}_depth.png', np.round(depth * 1000).astype(np.uint16))
    assert cv2.imwrite(f'{prefix}_mask.png', mask)
    assert cv2.imwrite(f'{prefix}_coord.png', encode_coord_bgr(coord, ids))
    with open(f'{prefix}_meta.txt', 'w') as handle:
        handle.write(''.join(line + '\n' for line in meta_lines))
    if label is not None:
        with open(f'{prefix}_label.pkl', 'wb') as handle:
            pickle.dump(label, handle)


def real_pose(frame_index, obj):
    return REAL_CAMERAS[frame_index] @ obj[4]


def write_miniature(root):
    """ROOT/Real/test/scene_{1,2,10}, ROOT/CAMERA/val/00000, ROOT/obj_models. scene_1: 3 frames, labels on
    frames 0 and 1 (object-deformnet test form), none on frame 2; scene_2: 2 frames; scene_10: 1 frame."""
    scene = root / 'Real' / 'test' / 'scene_1'
    scene.mkdir(parents=True)
    models = root / 'obj_models' / 'real_test'
    models.mkdir(parents=True)
    for _, _, name, extents, _ in REAL_OBJECTS:
        np.savetxt(models / f'{name}.txt', extents[None])
    for frame_index in range(3):
        boxes, rows = [], []
        for obj in REAL_OBJECTS:
            instance_id, class_id, name, extents, _ = obj
            scale = np.linalg.norm(extents)
            pose = real_pose(frame_index, obj)
            boxes.append((instance_id, pose, scale, extents / scale))
            rows.append((instance_id, class_id, name, scale, pose, extents / scale))
        label = None
        if frame_index < 2:
            label = {
                'class_ids': np.array([r[1] for r in rows]),
                'instance_ids': [r[0] for r in rows],
                'model_list': [r[2] for r in rows],
                'bboxes': np.zeros((2, 4), np.int32),
                'scales': np.array([r[3] for r in rows], np.float32),
                'rotations': np.array([r[4][:3, :3] for r in rows], np.float32),
                'translations': np.array([r[4][:3, 3] for r in rows], np.float32),
                'size': np.array([r[5] for r in rows], np.float32),
                'poses': np.array([r[4] @ np.diag([r[3]] * 3 + [1]) for r in rows], np.float32),
                'handle_visibility': np.array([1, 1]),
            }
        write_frame(
            scene / f'{frame_index:04d}', REAL_INTRINSICS, boxes, [f'{r[0]} {r[1]} {r[2]}' for r in rows], label
        )
    for name, count in (('scene_2', 2), ('scene_10', 1)):
        (scene.parent / name).mkdir()
        for frame_index in range(count):
            for path in scene.glob(f'{frame_index:04d}_*'):
                shutil.copy(path, scene.parent / name / path.name)

    folder = root / 'CAMERA' / 'val' / '00000'
    folder.mkdir(parents=True)
    boxes = [(obj[0], obj[6], obj[5], obj[4]) for obj in CAMERA_OBJECTS]
    for obj in CAMERA_OBJECTS:
        model = root / 'obj_models' / 'val' / obj[2] / obj[3]
        model.mkdir(parents=True)
        half = obj[4] / 2 * np.array([1, 1, -1])  # released CAMERA models are stored with z negated
        np.savetxt(model / 'bbox.txt', np.stack([half, -half]))
    meta = [f'{obj[0]} {obj[1]} {obj[2]} {obj[3]}' for obj in CAMERA_OBJECTS]
    for frame_index in (0, 2):  # frame 0001 is missing, as some are in the release
        write_frame(folder / f'{frame_index:04d}', CAMERA_INTRINSICS, boxes, meta)
    (root / 'CAMERA' / 'val' / 'not_a_frame_folder').mkdir()
    return root


@pytest.fixture(scope='module')
def mini(tmp_path_factory):
    return write_miniature(tmp_path_factory.mktemp('nocs'))


def assert_pose_close(annotation, index, pose, rotation_deg=0.05, translation_m=1e-4):
    assert rotation_error_deg(annotation.rotations[index], pose[:3, :3]) < rotation_deg
    assert np.linalg.norm(annotation.translations[index] - pose[:3, 3]) < translation_m


def test_scenes_are_enumerated_in_official_order(mini):
    scenes = list(iter_scenes(mini, 'real_test'))
    assert [name for name, _ in scenes] == ['scene_1', 'scene_2', 'scene_10']
    assert [prefix.name for prefix in scenes[0][1]] == ['0000', '0001', '0002']
    camera = enumerate_scenes(mini, 'camera_val')
    assert [name for name, _ in camera] == ['00000']
    assert [prefix.name for prefix in camera[0][1]] == ['0000', '0002']
    # bare subset names and paths resolve to the same folders
    assert resolve_split(mini, 'test').folder == mini / 'Real' / 'test'
    assert resolve_split(mini, 'val').folder == mini / 'CAMERA' / 'val'
    assert resolve_split(mini, 'CAMERA/val').kind == 'camera'
    with pytest.raises(NocsFormatError, match='Real/train'):
        resolve_split(mini, 'real_train')


def test_image_list_restricts_frames_and_reports_unknown_entries(mini, tmp_path):
    root = tmp_path / 'copy'
    shutil.copytree(mini / 'Real', root / 'Real')
    (root / 'Real' / 'test_list.txt').write_text('test/scene_1/0000\ntest/scene_1/0002\ntest/scene_10/0000\n')
    scenes = enumerate_scenes(root, 'real_test')
    assert [(name, [p.name for p in prefixes]) for name, prefixes in scenes] == [
        ('scene_1', ['0000', '0002']),
        ('scene_10', ['0000']),
    ]
    assert len(list(iter_scenes(root, 'real_test'))) == 3  # iter_scenes ignores lists
    (root / 'Real' / 'test_list.txt').write_text('test/scene_1/0007\n')
    with pytest.raises(NocsFormatError, match=r'test_list\.txt.*scene_1/0007'):
        enumerate_scenes(root, 'real_test')


def test_label_path_recovers_poses_sizes_and_classes(mini):
    reader = NocsFrameReader(mini, 'real_test')
    for frame_index in range(2):
        frame = reader.read(mini / 'Real' / 'test' / 'scene_1' / f'{frame_index:04d}')
        annotation = frame.annotation
        assert annotation.source.endswith('_label.pkl')
        assert annotation.class_ids.tolist() == [1, 5]
        assert annotation.model_names == ['bottle_red_norm', 'laptop_air_norm']
        np.testing.assert_allclose(frame.K, REAL_INTRINSICS)
        for index, obj in enumerate(REAL_OBJECTS):
            assert_pose_close(annotation, index, real_pose(frame_index, obj))
            np.testing.assert_allclose(annotation.sizes[index], obj[3], atol=1e-5)
            np.testing.assert_allclose(np.linalg.norm(annotation.normalised_sizes[index]), 1.0, atol=1e-5)
        # the evaluation form: gt_RTs = [s R | t]
        scaled = annotation.scaled_poses
        np.testing.assert_allclose(np.cbrt(np.linalg.det(scaled[:, :3, :3])), annotation.scales, rtol=1e-5)
    assert frame.color.shape == (H, W, 3) and frame.color.dtype == np.uint8
    # color files are BGR: the reader gives RGB (the object colour written was BGR (30, 200, 215))
    v, u = np.argwhere(frame.instance_mask == 1)[0]
    assert tuple(frame.color[v, u]) == (215, 200, 30)
    assert set(np.unique(frame.instance_mask).tolist()) == {1, 2, 255}


def test_derived_path_recovers_real_poses_by_umeyama(mini):
    reader = NocsFrameReader(mini, 'real_test', use_labels=False)
    for frame_index in range(3):
        annotation = reader.read(mini / 'Real' / 'test' / 'scene_1' / f'{frame_index:04d}').annotation
        assert annotation.source == 'derived'
        assert annotation.class_ids.tolist() == [1, 5]
        for index, obj in enumerate(REAL_OBJECTS):
            # 8-bit coords and millimetre depth: about a degree and a few millimetres
            assert_pose_close(annotation, index, real_pose(frame_index, obj), rotation_deg=1.5, translation_m=0.004)
            np.testing.assert_allclose(annotation.sizes[index], obj[3], rtol=1e-6)  # scale from the model file
    # frame 2 has no label file: the reader derives its GT without being asked
    assert (
        NocsFrameReader(mini, 'real_test').read(mini / 'Real' / 'test' / 'scene_1' / '0002').annotation.source
        == 'derived'
    )


def test_camera_frames_derive_scale_and_skip_distractors(mini):
    reader = NocsFrameReader(mini, 'camera_val')
    frame = reader.read(mini / 'CAMERA' / 'val' / '00000' / '0002')
    np.testing.assert_allclose(frame.K, CAMERA_INTRINSICS)
    annotation = frame.annotation
    assert annotation.class_ids.tolist() == [4, 2]  # the class-0 cap is skipped
    assert annotation.model_names == ['02946921/can0001', '02880940/bowl0003']
    for index, obj in zip(range(2), (CAMERA_OBJECTS[0], CAMERA_OBJECTS[2])):
        assert_pose_close(annotation, index, obj[6], rotation_deg=1.5, translation_m=0.004)
        np.testing.assert_allclose(annotation.scales[index], obj[5], rtol=0.02)
        np.testing.assert_allclose(annotation.normalised_sizes[index], obj[4], atol=1e-5)
    assert frame.meta[1].class_id == 0 and frame.meta[1].synset == '02954340'


def test_intrinsics_file_overrides_the_official_constants(mini, tmp_path):
    scene = tmp_path / 'Real' / 'train' / 'scene_3'
    shutil.copytree(mini / 'Real' / 'test' / 'scene_10', scene)
    K = np.array([[300.0, 0, 161.0], [0, 300.0, 119.0], [0, 0, 1]])
    np.savetxt(scene / 'intrinsics.txt', K)
    frame = NocsFrameReader(tmp_path, 'real_train').read(scene / '0000')
    np.testing.assert_allclose(frame.K, K)


def test_three_channel_depth_encoding(tmp_path):
    millimetres = np.array([[0, 1234], [32001, 65000 // 3]], np.int64)
    encoded = np.zeros((2, 2, 3), np.uint8)
    encoded[..., 1], encoded[..., 2] = millimetres // 256, millimetres % 256  # green * 256 + red
    encoded[..., 0] = 99
    cv2.imwrite(str(tmp_path / 'd.png'), encoded)
    np.testing.assert_allclose(read_depth(tmp_path / 'd.png'), [[0, 1.234], [0, (65000 // 3) / 1000]], rtol=1e-6)


# --- errors name the file ----------------------------------------------------------------------------------


@pytest.fixture
def broken(mini, tmp_path):
    """A writable copy of REAL scene_1 frame 0 (with label) and 2 (without)."""
    shutil.copytree(mini / 'Real' / 'test' / 'scene_1', tmp_path / 'Real' / 'test' / 'scene_1')
    shutil.copytree(mini / 'obj_models', tmp_path / 'obj_models')
    return tmp_path / 'Real' / 'test' / 'scene_1'


def _read(scene, frame='0000', **kwargs):
    return NocsFrameReader(scene.parents[2], 'real_test', **kwargs).read(scene / frame)


def test_truncated_image_names_the_file(broken):
    path = broken / '0000_color.png'
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(NocsFormatError, match=r'0000_color\.png.*truncated'):
        _read(broken)


def test_corrupt_and_missing_images_name_the_file(broken):
    (broken / '0000_depth.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'garbage' * 20 + b'IEND\xaeB`\x82')
    with pytest.raises(NocsFormatError, match=r'0000_depth\.png.*corrupt'):
        _read(broken)
    (broken / '0002_mask.png').unlink()
    with pytest.raises(NocsFormatError, match=r'0002_mask\.png.*missing'):
        _read(broken, '0002')


def test_mask_id_missing_from_meta_is_reported(broken):
    (broken / '0002_meta.txt').write_text('1 1 bottle_red_norm\n')
    with pytest.raises(NocsFormatError, match=r'0002_mask\.png.*\[2\].*0002_meta\.txt'):
        _read(broken, '0002')


def test_malformed_meta_is_reported(broken):
    (broken / '0002_meta.txt').write_text('1 one bottle_red_norm\n2 5 laptop_air_norm\n')
    with pytest.raises(NocsFormatError, match=r'0002_meta\.txt:1: .*integers'):
        _read(broken, '0002')


def test_label_with_wrong_shapes_is_reported(broken):
    path = broken / '0000_label.pkl'
    with open(path, 'rb') as handle:
        label = pickle.load(handle)
    label['rotations'] = label['rotations'][:, :2]
    with open(path, 'wb') as handle:
        pickle.dump(label, handle)
    with pytest.raises(NocsFormatError, match=r'0000_label\.pkl.*"rotations" has shape \(2, 2, 3\)'):
        _read(broken)


def test_label_inconsistent_with_meta_is_reported(broken):
    path = broken / '0000_label.pkl'
    with open(path, 'rb') as handle:
        label = pickle.load(handle)
    label['class_ids'] = np.array([1, 3])
    with open(path, 'wb') as handle:
        pickle.dump(label, handle)
    with pytest.raises(NocsFormatError, match=r'0000_label\.pkl.*instance 2 has class 3.*says 5'):
        _read(broken)


class _RunsCode:
    def __reduce__(self):
        return (shutil.rmtree, ('/nonexistent-seqpose-test',))


def test_label_pickles_cannot_run_code(broken):
    with open(broken / '0000_label.pkl', 'wb') as handle:
        pickle.dump({'class_ids': _RunsCode()}, handle)
    with pytest.raises(ValueError, match=r'0000_label\.pkl.*refusing to load shutil\.rmtree'):
        _read(broken)


def test_truncated_label_and_missing_model_file_are_reported(broken):
    path = broken / '0000_label.pkl'
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match=r'0000_label\.pkl.*(corrupt|truncated)'):
        _read(broken)
    (broken.parents[2] / 'obj_models' / 'real_test' / 'laptop_air_norm.txt').unlink()
    with pytest.raises(NocsFormatError, match=r'laptop_air_norm\.txt.*missing'):
        _read(broken, '0002')
