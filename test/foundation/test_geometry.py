"""Geometry helpers against scipy's Rotation and hand-computed cases, in numpy and torch."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from seqpose_core import geometry as g


@pytest.fixture
def rotations():
    return Rotation.random(64, random_state=3).as_matrix()


@pytest.mark.parametrize('backend', ['numpy', 'torch'])
def test_6d_round_trip(rotations, backend):
    rot = torch.tensor(rotations) if backend == 'torch' else rotations
    back = g.rotation_6d_to_matrix(g.matrix_to_rotation_6d(rot))
    np.testing.assert_allclose(np.asarray(back), rotations, atol=1e-12)


def test_6d_is_first_two_columns_and_orthonormalises():
    rot = Rotation.from_euler('xyz', [10, 20, 30], degrees=True).as_matrix()
    d6 = g.matrix_to_rotation_6d(rot)
    np.testing.assert_allclose(d6, np.concatenate([rot[:, 0], rot[:, 1]]))
    # a scaled, skewed first column still gives the same rotation (Gram-Schmidt from y)
    noisy = np.concatenate([3.0 * rot[:, 0] + 0.2 * rot[:, 1], 0.5 * rot[:, 1]])
    np.testing.assert_allclose(g.rotation_6d_to_matrix(noisy), rot, atol=1e-12)


def test_6d_keeps_the_predicted_symmetry_axis():
    """For bottles, bowls, cans and mugs only y (the symmetry axis) is defined: an arbitrary x column must not
    bend it."""
    y_axis = np.array([0.2, 0.9, -0.1]) / np.linalg.norm([0.2, 0.9, -0.1])
    arbitrary_x = np.array([0.7, 0.5, 0.3])
    rotation = g.rotation_6d_to_matrix(np.concatenate([arbitrary_x, 2.0 * y_axis]))
    np.testing.assert_allclose(rotation[:, 1], y_axis, atol=1e-12)
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-12)


def test_6d_torch_gradients_flow():
    d6 = torch.randn(4, 6, requires_grad=True)
    g.rotation_6d_to_matrix(d6).sum().backward()
    assert torch.isfinite(d6.grad).all() and d6.grad.abs().sum() > 0


@pytest.mark.parametrize('backend', ['numpy', 'torch'])
def test_scaled_pose_compose_decompose(rotations, backend):
    t = np.random.default_rng(0).normal(size=(64, 3))
    s = np.linspace(0.1, 2.0, 64)
    conv = (lambda a: torch.tensor(a)) if backend == 'torch' else (lambda a: a)
    pose = g.compose_scaled_pose(conv(rotations), conv(t), conv(s))
    rot, trans, scale = g.decompose_scaled_pose(pose)
    np.testing.assert_allclose(np.asarray(rot), rotations, atol=1e-10)
    np.testing.assert_allclose(np.asarray(trans), t, atol=1e-12)
    np.testing.assert_allclose(np.asarray(scale), s, atol=1e-10)


def test_box_corners_hand_case():
    corners = g.box_corners(np.array([2.0, 4.0, 6.0]))
    assert corners.shape == (8, 3)
    assert sorted(map(tuple, corners.tolist()))[0] == (-1.0, -2.0, -3.0)
    np.testing.assert_allclose(corners.max(0), [1, 2, 3])
    assert len(g.BOX_EDGES) == 12
    for i, j in g.BOX_EDGES:  # every edge is parallel to one axis
        assert np.count_nonzero(corners[i] != corners[j]) == 1


def test_project_hand_case_and_backproject_inverse():
    K = np.array([[500.0, 0, 320], [0, 400.0, 240], [0, 0, 1]])
    uv = g.project_points(np.array([[0.2, -0.1, 2.0]]), K)
    np.testing.assert_allclose(uv, [[320 + 500 * 0.1, 240 - 400 * 0.05]])
    points = np.random.default_rng(1).uniform([-1, -1, 0.5], [1, 1, 3], size=(50, 3))
    back = g.backproject(g.project_points(points, K), points[:, 2], K)
    np.testing.assert_allclose(back, points, atol=1e-12)
    back_t = g.backproject(
        g.project_points(torch.tensor(points), torch.tensor(K)), torch.tensor(points[:, 2]), torch.tensor(K)
    )
    np.testing.assert_allclose(back_t.numpy(), points, atol=1e-12)


def test_backproject_depth_map_pixel_centres():
    K = np.array([[100.0, 0, 2], [0, 100.0, 1], [0, 0, 1]])
    depth = np.full((3, 5), 2.0)
    points = g.backproject_depth_map(depth, K)
    assert points.shape == (3, 5, 3)
    np.testing.assert_allclose(points[1, 2], [0, 0, 2])  # principal point
    np.testing.assert_allclose(points[0, 4], [2 * 2 / 100, -1 * 2 / 100, 2])


def test_transform_points_matches_matrix_product(rotations):
    pose = g.compose_scaled_pose(rotations[0], np.array([1.0, 2.0, 3.0]), 2.0)
    points = np.random.default_rng(2).normal(size=(10, 3))
    expected = (pose @ np.c_[points, np.ones(10)].T).T[:, :3]
    np.testing.assert_allclose(g.transform_points(pose, points), expected, atol=1e-12)


@pytest.mark.parametrize('backend', ['numpy', 'torch'])
def test_rotation_error_against_scipy(rotations, backend):
    a, b = rotations[:32], rotations[32:]
    expected = np.degrees((Rotation.from_matrix(a).inv() * Rotation.from_matrix(b)).magnitude())
    conv = (lambda x: torch.tensor(x)) if backend == 'torch' else (lambda x: x)
    np.testing.assert_allclose(np.asarray(g.rotation_error_deg(conv(a), conv(b))), expected, atol=1e-5)


def test_rotation_error_symmetric_ignores_rotation_about_y():
    base = Rotation.from_euler('zx', [30, 20], degrees=True)
    spun = base * Rotation.from_euler('y', 123, degrees=True)
    tilted = base * Rotation.from_euler('x', 7, degrees=True)
    assert g.rotation_error_deg(spun.as_matrix(), base.as_matrix(), symmetric=True) == pytest.approx(0, abs=1e-6)
    assert g.rotation_error_deg(spun.as_matrix(), base.as_matrix()) == pytest.approx(123, abs=1e-6)
    assert g.rotation_error_deg(tilted.as_matrix(), base.as_matrix(), symmetric=True) == pytest.approx(7, abs=1e-6)


def test_translation_error():
    assert g.translation_error(np.array([0.0, 3, 4]), np.zeros(3)) == pytest.approx(5)
    assert float(g.translation_error(torch.tensor([1.0, 0, 0]), torch.zeros(3))) == pytest.approx(1)


def test_relative_camera_motion_from_static_object(rotations):
    obj_in_prev = g.compose_scaled_pose(rotations[0], np.array([0.1, 0.0, 1.0]))
    cam_motion = g.compose_scaled_pose(rotations[1], np.array([0.05, -0.02, 0.1]))  # T_cur_from_prev
    obj_in_cur = cam_motion @ obj_in_prev
    np.testing.assert_allclose(g.relative_camera_motion(obj_in_prev, obj_in_cur), cam_motion, atol=1e-12)
    np.testing.assert_allclose(g.invert_rigid(cam_motion) @ cam_motion, np.eye(4), atol=1e-12)


def test_quaternion_round_trip_against_scipy(rotations):
    for rot in rotations[:16]:
        q = g.rotation_to_quaternion(rot)
        expected = Rotation.from_matrix(rot).as_quat()  # scipy: (x, y, z, w)
        assert np.allclose(q, expected, atol=1e-10) or np.allclose(q, -expected, atol=1e-10)
        np.testing.assert_allclose(g.quaternion_to_rotation(*q), rot, atol=1e-10)
    with pytest.raises(ValueError, match='quaternion'):
        g.quaternion_to_rotation(0.0, 0.0, 0.0, 0.0)
