"""Procedural meshes, users' meshes, scene layout and camera paths of the synthetic data generator."""

import numpy as np
import pytest

from seqpose_core import CLASS_NAMES
from seqpose_core.synth import meshes, scene
from seqpose_core.synth.textures import BackgroundSource


@pytest.mark.parametrize('category', CLASS_NAMES)
def test_procedural_models_are_nocs_normalised_with_metric_scale(category):
    rng = np.random.default_rng(3)
    for _ in range(5):
        model = meshes.procedural_model(category, rng)
        lower, upper = model.vertices.min(0), model.vertices.max(0)
        np.testing.assert_allclose((lower + upper) / 2, 0, atol=1e-6)  # centred on the box
        assert np.linalg.norm(upper - lower) == pytest.approx(1.0, abs=1e-5)  # unit diagonal
        low, high = meshes.SCALE_RANGES[category]
        assert low * 0.8 <= model.scale <= high * 1.2, (category, model.scale)
        np.testing.assert_allclose(np.linalg.norm(model.normals, axis=1), 1, atol=1e-5)
        assert model.faces.max() < len(model.vertices)


@pytest.mark.parametrize('category', ['bottle', 'bowl', 'can'])
def test_round_objects_are_symmetric_about_y(category):
    model = meshes.procedural_model(category, np.random.default_rng(0))
    size = model.size
    assert size[0] == pytest.approx(size[2], rel=0.02)


def test_category_specific_axes():
    rng = np.random.default_rng(1)
    mug = meshes.procedural_model('mug', rng)
    # the handle sticks out along +x only, so the body's axis sits at negative x in the box-centred frame;
    # handle pixels are identified by x > handle_x_min
    handle = mug.materials == meshes.MATERIAL_HANDLE
    body_axis_x = (mug.vertices[~handle, 0].max() + mug.vertices[~handle, 0].min()) / 2
    assert body_axis_x < -0.05
    assert np.all(mug.vertices[handle, 0] > body_axis_x)
    assert np.any(mug.vertices[handle, 0] > mug.handle_x_min)
    assert not np.any(mug.vertices[~handle, 0] > mug.handle_x_min)
    camera = meshes.procedural_model('camera', rng)
    lens = camera.materials == meshes.MATERIAL_SECONDARY
    assert camera.vertices[lens, 2].mean() > 0.1  # lens points along +z
    laptop = meshes.procedural_model('laptop', rng)
    top = laptop.vertices[:, 1] > laptop.vertices[:, 1].max() - 0.05
    assert laptop.vertices[top, 2].mean() < 0  # the screen rises at the back (-z)


def test_user_meshes_are_loaded_and_normalised(tmp_path):
    folder = tmp_path / 'models' / 'can'
    folder.mkdir(parents=True)
    # a 2 x 4 x 2 box far from the origin, in arbitrary units
    corners = np.array([[x, y, z] for x in (10, 12) for y in (0, 4) for z in (5, 7)], float)
    faces = [
        (1, 2, 4),
        (1, 4, 3),
        (5, 7, 8),
        (5, 8, 6),
        (1, 5, 6),
        (1, 6, 2),
        (3, 4, 8),
        (3, 8, 7),
        (1, 3, 7),
        (1, 7, 5),
        (2, 6, 8),
        (2, 8, 4),
    ]
    with open(folder / 'tin.obj', 'w') as handle:
        handle.writelines(f'v {x} {y} {z}\n' for x, y, z in corners)
        handle.writelines(f'f {a} {b} {c}\n' for a, b, c in faces)
    source = meshes.ModelSource(tmp_path / 'models')
    model = source.draw('can', np.random.default_rng(0), 'can1')
    np.testing.assert_allclose(model.extents, np.array([2, 4, 2]) / np.sqrt(24), atol=1e-6)
    assert model.name == 'can1' and model.category == 'can'
    assert meshes.SCALE_RANGES['can'][0] <= model.scale <= meshes.SCALE_RANGES['can'][1]
    # categories without user meshes stay procedural
    assert len(source.draw('mug', np.random.default_rng(0), 'mug1').vertices) > 8


def test_bad_user_folders_are_named_in_errors(tmp_path):
    with pytest.raises(ValueError, match='not a directory'):
        meshes.ModelSource(tmp_path / 'missing')
    with pytest.raises(ValueError, match='no <category>'):
        meshes.ModelSource(tmp_path)
    (tmp_path / 'mug').mkdir()
    (tmp_path / 'mug' / 'broken.obj').write_text('this is not a mesh\n')
    with pytest.raises(ValueError, match='broken.obj'):
        meshes.ModelSource(tmp_path).draw('mug', np.random.default_rng(0), 'x')
    with pytest.raises(ValueError, match='--backgrounds'):
        BackgroundSource(tmp_path / 'mug')


def test_scene_objects_rest_on_the_table_without_overlap():
    source = meshes.ModelSource()
    for seed in range(8):
        rng = np.random.default_rng(seed)
        categories = scene.choose_categories(rng, 6)
        assert len(set(categories)) >= 3
        models = [source.draw(c, rng, f'{c}{i}') for i, c in enumerate(categories)]
        built = scene.make_scene(rng, source, BackgroundSource(), models=models)
        for obj in built.objects:
            world = (
                obj.model.vertices.astype(float) * obj.model.scale @ obj.world_from_object[:3, :3].T
                + obj.world_from_object[:3, 3]
            )
            assert world[:, 1].min() == pytest.approx(0.0, abs=1e-6)  # touches the table
            assert obj.world_from_object[1, 1] > np.cos(np.radians(scene.TILT_MAX_DEG + 0.1))  # upright
        for i, a in enumerate(built.objects):
            for b in built.objects[i + 1 :]:
                gap = np.linalg.norm(a.world_from_object[[0, 2], 3] - b.world_from_object[[0, 2], 3])
                assert gap >= a.footprint_radius + b.footprint_radius - 1e-9


def test_video_trajectory_is_smooth_with_realistic_speed():
    for seed in range(5):
        poses = scene.video_trajectory(np.random.default_rng(seed), 300)
        eyes = np.array([-pose[:3, :3].T @ pose[:3, 3] for pose in poses])
        speed = np.linalg.norm(np.diff(eyes, axis=0), axis=1) * scene.FPS
        assert 0.04 < speed.mean() < 0.17, speed.mean()
        assert speed.max() < 0.5  # no jumps between consecutive frames
        distance = np.linalg.norm(eyes, axis=1)
        assert 0.45 < distance.min() and distance.max() < 1.3
        elevation = np.degrees(np.arcsin(eyes[:, 1] / distance))
        assert 20 < elevation.min() and elevation.max() < 65
        # rotation changes by well under a few degrees per frame
        relative = np.einsum('nij,nkj->nik', poses[1:, :3, :3], poses[:-1, :3, :3])
        angle = np.degrees(np.arccos(np.clip((np.trace(relative, axis1=1, axis2=2) - 1) / 2, -1, 1)))
        assert angle.max() < 3.0
        # the camera looks towards the table centre: the origin projects in front of it
        assert np.all(poses[:, 2, 3] > 0.3)
