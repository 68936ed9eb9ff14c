"""Frame / clip datasets on the hand-made miniature: clip sampling, start flags, camera motion, collation."""

import numpy as np
import pytest
import torch
from test_data_reader import REAL_CAMERAS, rigid, rotation, write_miniature

from seqpose_core.data import NocsClipDataset, NocsFrameDataset, camera_motion_from_annotations, collate_clips
from seqpose_core.data.annotation import FrameAnnotation
from seqpose_core.data.config import DataConfig

SMALL = DataConfig(input_height=56, input_width=70)


@pytest.fixture(scope='module')
def mini(tmp_path_factory):
    return write_miniature(tmp_path_factory.mktemp('nocs'))


def test_clips_never_cross_scenes_and_flag_their_start(mini):
    dataset = NocsClipDataset(mini, 'real_test', clip_length=2, data_cfg=SMALL)
    # scene_1: 3 frames -> 2 clips; scene_2: 2 frames -> 1; scene_10: 1 frame -> none
    assert len(dataset) == 3
    seen = []
    for index in range(len(dataset)):
        clip = dataset[index]
        assert len(clip) == 2
        assert len({sample['scene'] for sample in clip}) == 1
        assert [bool(sample['is_sequence_start']) for sample in clip] == [True, False]
        assert not clip[0]['has_camera_motion']
        torch.testing.assert_close(clip[0]['camera_motion'], torch.eye(4))
        seen.append((clip[0]['scene'], [sample['frame'] for sample in clip]))
    assert seen == [('scene_1', ['0000', '0001']), ('scene_1', ['0001', '0002']), ('scene_2', ['0000', '0001'])]


def test_clip_strides(mini):
    spaced = NocsClipDataset(mini, 'real_test', clip_length=2, frame_stride=2, data_cfg=SMALL)
    assert [spaced.clip_prefixes(i)[-1].name for i in range(len(spaced))] == ['0002']
    sparse = NocsClipDataset(mini, 'real_test', clip_length=1, clip_stride=2, data_cfg=SMALL)
    assert [(p[0].parent.name, p[0].name) for p in map(sparse.clip_prefixes, range(len(sparse)))] == [
        ('scene_1', '0000'),
        ('scene_1', '0002'),
        ('scene_2', '0000'),
        ('scene_10', '0000'),
    ]
    assert len(NocsClipDataset(mini, 'real_test', clip_length=4, data_cfg=SMALL)) == 0
    with pytest.raises(ValueError, match='frame_stride'):
        NocsClipDataset(mini, 'real_test', clip_length=2, frame_stride=0, data_cfg=SMALL)


def test_camera_motion_matches_the_known_camera_trajectory(mini):
    clip = NocsClipDataset(mini, 'real_test', clip_length=3, data_cfg=SMALL)[0]
    for time_index in (1, 2):
        expected = REAL_CAMERAS[time_index] @ np.linalg.inv(REAL_CAMERAS[time_index - 1])
        assert bool(clip[time_index]['has_camera_motion'])
        # frame 2 has no label: its GT (and so the motion) comes from the Umeyama path, hence the tolerance
        tolerance = 1e-4 if time_index == 1 else 5e-3
        np.testing.assert_allclose(clip[time_index]['camera_motion'].numpy(), expected, atol=tolerance)


def _annotation(names, poses, class_ids=None):
    count = len(names)
    poses = np.asarray(poses, float).reshape(count, 4, 4)
    return FrameAnnotation(
        class_ids=np.asarray(class_ids if class_ids is not None else [5] * count, np.int64),
        instance_ids=np.arange(1, count + 1),
        model_names=list(names),
        rotations=poses[:, :3, :3],
        translations=poses[:, :3, 3],
        scales=np.ones(count),
        normalised_sizes=np.full((count, 3), 0.5),
        handle_visibility=np.ones(count, np.int64),
    )


def test_camera_motion_is_robust_to_one_wrong_object_and_matches_by_name():
    motion = rigid(rotation([0.3, 1, 0], 12), [0.05, -0.02, 0.03])
    objects = [rigid(rotation([1, 0, 0], 10 * i), [0.1 * i - 0.1, 0.05, 0.8]) for i in range(3)]
    previous = _annotation(['a', 'b', 'c', 'gone'], objects + [np.eye(4)])
    moved = [motion @ pose for pose in objects]
    moved[2] = rigid(rotation([0, 0, 1], 40), [0.3, 0.3, 1.0]) @ moved[2]  # someone moved object c
    # the current frame lists the objects in another order (mask ids are per frame) and has a newcomer
    current = _annotation(['new', 'c', 'b', 'a'], [np.eye(4), moved[2], moved[1], moved[0]])
    np.testing.assert_allclose(camera_motion_from_annotations(previous, current), motion, atol=1e-9)
    assert camera_motion_from_annotations(previous, _annotation(['x'], [np.eye(4)])) is None


def test_camera_motion_ignores_rotation_about_the_axis_of_symmetric_objects():
    motion = rigid(rotation([0, 1, 0.2], 8), [0.02, 0.0, -0.01])
    bottle, laptop = rigid(np.eye(3), [0.0, 0.0, 0.7]), rigid(rotation([0, 1, 0], 30), [0.2, 0.0, 0.9])
    spun_bottle = motion @ bottle @ rigid(rotation([0, 1, 0], 90), [0, 0, 0])  # arbitrary spin about its y
    previous = _annotation(['bottle', 'laptop'], [bottle, laptop], class_ids=[1, 5])
    current = _annotation(['bottle', 'laptop'], [spun_bottle, motion @ laptop], class_ids=[1, 5])
    np.testing.assert_allclose(camera_motion_from_annotations(previous, current), motion, atol=1e-9)


def test_frame_sample_contract_and_collation(mini):
    dataset = NocsFrameDataset(mini, 'camera_val', data_cfg=SMALL, keep_raw=True)
    assert len(dataset) == 2
    sample = dataset[0]
    assert sample['image'].shape == (3, 56, 70) and sample['image'].dtype == torch.float32
    assert sample['K'].shape == (3, 3) and sample['depth'].shape == (1, 56, 70)
    assert sample['normal'].shape == (3, 56, 70) and sample['semantic'].shape == (56, 70)
    assert sample['semantic'].dtype == torch.int64
    assert set(sample['semantic'].unique().tolist()) <= {0, 2, 4}  # the class-0 distractor is background
    assert sample['gt_class_ids'].tolist() == [4, 2]
    assert sample['gt_rotations'].shape == (2, 3, 3) and sample['gt_sizes'].shape == (2, 3)
    assert sample['gt_RTs'].shape == (2, 4, 4) and sample['gt_scales'].shape == (2, 3)
    assert bool(sample['is_sequence_start']) and not bool(sample['has_camera_motion'])
    assert sample['image_raw'].shape == (480, 640, 3)
    assert dataset.clip(0)[0]['frame'] == '0000'

    clips = NocsClipDataset(mini, 'real_test', clip_length=2, data_cfg=SMALL)
    batch = collate_clips([clips[0], clips[2]])
    assert len(batch) == 2
    assert batch[0]['image'].shape == (2, 3, 56, 70) and batch[1]['camera_motion'].shape == (2, 4, 4)
    assert batch[0]['is_sequence_start'].tolist() == [True, True]
    assert batch[1]['has_camera_motion'].tolist() == [True, True]
    assert isinstance(batch[0]['gt_class_ids'], list) and batch[0]['gt_class_ids'][1].tolist() == [1, 5]
    assert batch[1]['scene'] == ['scene_1', 'scene_2']
    with pytest.raises(ValueError, match='different lengths'):
        collate_clips([clips[0], clips[0][:1]])


def test_training_augmentation_is_reproducible_and_shared_across_a_clip(mini):
    dataset = NocsClipDataset(
        mini,
        'real_test',
        clip_length=2,
        data_cfg=DataConfig(input_height=56, input_width=70, geometry='crop'),
        train=True,
    )
    np.random.seed(3)
    first = dataset[0]
    np.random.seed(3)
    again = dataset[0]
    torch.testing.assert_close(first[0]['image'], again[0]['image'])
    torch.testing.assert_close(first[0]['K'], first[1]['K'])  # one crop for the whole clip
    np.random.seed(4)
    assert not torch.equal(dataset[0][0]['image'], first[0]['image'])
    plain = NocsClipDataset(mini, 'real_test', clip_length=2, data_cfg=SMALL)[0]
    assert not torch.equal(plain[0]['image'], first[0]['image'])


def test_bad_settings_are_refused(mini):
    with pytest.raises(ValueError, match="data.geometry 'squash'"):
        NocsFrameDataset(mini, 'camera_val', data_cfg=DataConfig(input_height=56, input_width=70, geometry='squash'))
    with pytest.raises(ValueError, match='multiples of 14'):
        NocsFrameDataset(mini, 'camera_val', input_size=(50, 70))
