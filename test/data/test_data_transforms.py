"""Resize / crop with the intrinsics update, photometric jitter, normalisation, and the dense targets."""

import numpy as np
import pytest
import torch

from seqpose_core.data import REAL_INTRINSICS
from seqpose_core.data.files import MetaEntry
from seqpose_core.data.labels import depth_normals, semantic_mask
from seqpose_core.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PhotometricJitter,
    apply_nearest,
    apply_to_image,
    check_input_size,
    normalize_image,
    plan_geometry,
)
from seqpose_core.geometry import project_points

POINTS = np.array([[0.1, -0.05, 0.8], [-0.2, 0.12, 1.1], [0.0, 0.0, 0.5], [0.31, 0.22, 0.9]])


@pytest.mark.parametrize('mode', ['resize', 'crop'])
@pytest.mark.parametrize('out_hw', [(238, 322), (56, 70), (490, 658)])
def test_points_keep_their_place_in_the_image(mode, out_hw):
    source_hw = (480, 640)
    plan = plan_geometry(source_hw, out_hw, mode)
    K_out = plan.intrinsics(REAL_INTRINSICS)
    before = project_points(POINTS, REAL_INTRINSICS)
    after = project_points(POINTS, K_out)
    # continuous position (pixel centres at integers): resized x' = (x + 0.5) * w_r / W - 0.5, then - left
    expected_u = (before[:, 0] + 0.5) * plan.scale_hw[1] - 0.5 - plan.left
    expected_v = (before[:, 1] + 0.5) * plan.scale_hw[0] - 0.5 - plan.top
    np.testing.assert_allclose(after, np.stack([expected_u, expected_v], 1), atol=1e-9)
    if mode == 'resize':  # the same relative location in the whole frame
        np.testing.assert_allclose((after + 0.5) / out_hw[::-1], (before + 0.5) / source_hw[::-1], atol=1e-12)
    # and the resampled label maps agree: a marker drawn around each projected point lands at its new projection
    marker = np.zeros(source_hw, np.uint8)
    for index, (u, v) in enumerate(before, 1):
        marker[int(round(v)) - 6 : int(round(v)) + 7, int(round(u)) - 6 : int(round(u)) + 7] = index
    resampled = apply_nearest(marker, plan)
    for index, (u, v) in enumerate(after, 1):
        rows, cols = np.nonzero(resampled == index)
        if len(rows):
            assert abs(cols.mean() - u) < 1.0 and abs(rows.mean() - v) < 1.0


def test_centre_crop_keeps_the_aspect_ratio():
    plan = plan_geometry((480, 640), (238, 322), 'crop')
    assert plan.resized_hw == (241, 322) and (plan.top, plan.left) == (1, 0)
    K = plan.intrinsics(REAL_INTRINSICS)
    assert K[0, 0] / K[1, 1] == pytest.approx(REAL_INTRINSICS[0, 0] / REAL_INTRINSICS[1, 1], rel=1e-9)
    random_plan = plan_geometry((480, 640), (238, 322), 'crop', rng=np.random.default_rng(0))
    assert 0 <= random_plan.top <= 3 and random_plan.resized_hw == plan.resized_hw


def test_image_resampling_matches_the_label_maps():
    image = np.zeros((480, 640, 3), np.uint8)
    image[100:200, 300:420] = 255
    plan = plan_geometry((480, 640), (238, 322), 'resize')
    resized = apply_to_image(image, plan)
    assert resized.shape == (3, 238, 322) and 0 <= float(resized.min()) and float(resized.max()) <= 1
    box = apply_nearest(image[..., 0], plan) > 0
    inside = resized[0][torch.from_numpy(box)]
    assert float(inside.mean()) > 0.9
    assert float(resized[0][torch.from_numpy(~box)].mean()) < 0.02


def test_input_size_must_be_a_multiple_of_the_patch():
    check_input_size(238, 322)
    with pytest.raises(ValueError, match='240x320.*multiples of 14'):
        check_input_size(240, 320)


def test_photometric_jitter_and_normalisation():
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.uniform(0.1, 0.9, (3, 20, 30)).astype(np.float32))
    identity = PhotometricJitter(0.0, 0.0, 0.0, 0.0)(image, np.random.default_rng(1))
    torch.testing.assert_close(identity, image, atol=1e-5, rtol=0)
    jitter = PhotometricJitter()
    first = jitter(image, np.random.default_rng(7))
    torch.testing.assert_close(first, jitter(image, np.random.default_rng(7)))
    assert not torch.allclose(first, image, atol=1e-3)
    assert float(first.min()) >= 0 and float(first.max()) <= 1
    # a pure hue shift keeps the luma of a grey-free image roughly and moves its chroma
    hue_only = PhotometricJitter(0.0, 0.0, 0.0, 0.25)(image, np.random.default_rng(3))
    assert not torch.allclose(hue_only, image, atol=1e-3)
    grey_image = torch.full((3, 4, 4), 0.5)
    torch.testing.assert_close(
        PhotometricJitter(0, 0, 0, 0.25)(grey_image, np.random.default_rng(3)), grey_image, atol=1e-5, rtol=0
    )
    normalised = normalize_image(torch.ones(3, 2, 2))
    torch.testing.assert_close(normalised[:, 0, 0], (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD))


def test_normals_of_a_known_plane():
    K = np.array([[100.0, 0, 39.5], [0, 100.0, 29.5], [0, 0, 1]])
    height, width = 60, 80
    normal = np.array([0.3, -0.4, -1.0])
    normal /= np.linalg.norm(normal)
    offset = 1.0  # plane n . X = -offset: in front of the camera, facing it
    v, u = np.mgrid[0:height, 0:width].astype(float)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    depth = -offset / (rays @ normal)
    depth[40:50, 10:20] = 0.0  # a hole without readings
    normals = depth_normals(depth, K)
    valid = np.linalg.norm(normals, axis=-1) > 0
    np.testing.assert_allclose(normals[valid], np.broadcast_to(normal, normals[valid].shape), atol=1e-6)
    assert not valid[0].any() and not valid[-1].any() and not valid[:, 0].any() and not valid[:, -1].any()
    # the hole and the pixels whose 4-neighbourhood reaches into it
    assert not valid[39:51, 10:20].any() and not valid[40:50, 9:21].any()
    assert valid[39, 9] and valid[35, 15] and valid[20:30, 30:50].all()
    # seen from behind (the same plane's other side would face away): still oriented towards the camera
    flipped = depth_normals(depth[:, ::-1].copy(), K)
    assert (np.einsum('hwc,c->hw', flipped, [0, 0, 1.0])[flipped[..., 2] != 0] < 0).all()


def test_normals_are_zero_across_depth_discontinuities():
    K = np.array([[100.0, 0, 19.5], [0, 100.0, 19.5], [0, 0, 1]])
    depth = np.full((40, 40), 1.0)
    depth[:, 20:] = 2.0
    normals = depth_normals(depth, K)
    assert not np.any(normals[:, 19:21])
    np.testing.assert_allclose(normals[10, 10], [0, 0, -1], atol=1e-9)


def test_semantic_mask_labels_classes_and_background():
    instance = np.array([[255, 1, 2], [3, 3, 255]], np.uint8)
    meta = [MetaEntry(1, 6, 'mug'), MetaEntry(2, 0, 'distractor'), MetaEntry(3, 2, 'bowl')]
    assert semantic_mask(instance, meta).tolist() == [[0, 6, 0], [2, 2, 0]]
