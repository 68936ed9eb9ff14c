"""The pose covariance calibration (seqpose_core.eval.covariance, `seqpose calibrate-covariance`): matching, the fit
on errors of known sigma, the check, and the command that stores the table in a checkpoint."""

import math

import numpy as np
import pytest

from seqpose_core import CLASS_NAMES
from seqpose_core.cli import main as seqpose
from seqpose_core.detection import Detection
from seqpose_core.eval import covariance as C
from seqpose_core.eval.results_io import write_results_pickle
from seqpose_core.stages.config import UNCALIBRATED
from seqpose_core.stages.covariance import ray_frame

A, B = np.array([0.004, 0.006, 0.0]), np.array([0.0, 0.0, 0.12])  # across the ray 4 / 6 mm, along 12 % of z
ROTATION_SIGMAS = np.array([0.05, 0.4, 0.08])


def rotation_vector_matrix(vector):
    angle = float(np.linalg.norm(vector))
    if angle < 1e-12:
        return np.eye(3)
    axis = np.asarray(vector) / angle
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def random_rotation(rng):
    q = rng.normal(size=4)
    return rotation_vector_matrix(2 * math.acos(abs(q[0]) / np.linalg.norm(q)) * q[1:] / np.linalg.norm(q[1:]))


def synthetic_pairs(rng, count, class_id=6):
    """MatchedPairs whose ground truth lies around each detection with sigma A + B z (its ray frame, z its depth)
    and ROTATION_SIGMAS (about the object's axes): what the stage says of a detection."""
    translations = np.stack(
        [rng.uniform(-0.3, 0.3, count), rng.uniform(-0.2, 0.2, count), rng.uniform(0.4, 1.6, count)], axis=1
    )
    rotations = np.stack([random_rotation(rng) for _ in range(count)])
    gt_translations, gt_rotations = [], []
    for k in range(count):
        sigma = A + B * translations[k, 2]
        gt_translations.append(translations[k] - ray_frame(translations[k]).T @ (rng.normal(size=3) * sigma))
        gt_rotations.append(rotations[k] @ rotation_vector_matrix(rng.normal(size=3) * ROTATION_SIGMAS).T)
    return C.MatchedPairs(
        np.full(count, class_id), rotations, translations, np.stack(gt_rotations), np.stack(gt_translations)
    )


def test_the_fit_recovers_known_sigmas_and_their_growth_with_depth():
    rng = np.random.default_rng(0)
    table, fits = C.fit_table(synthetic_pairs(rng, 3000))
    row = np.array(table['mug'])
    assert [table[name] for name in CLASS_NAMES if name != 'mug'] == [UNCALIBRATED] * 5  # no matches: no row
    sigma_at = lambda z: row[0:3] + row[3:6] * z  # noqa: E731
    # the 95 % scale of a normal sample is 1 +- a few %: the fit is the truth within 10 %
    np.testing.assert_allclose(sigma_at(0.6), A + B * 0.6, rtol=0.1)
    np.testing.assert_allclose(sigma_at(1.5), A + B * 1.5, rtol=0.1)
    np.testing.assert_allclose(row[6:], ROTATION_SIGMAS, rtol=0.1)
    mug = next(fit for fit in fits if fit.name == 'mug')
    assert mug.depth_shares[2] > 0.9 and mug.depth_shares[0] < 0.1  # along the ray: proportional; across: flat


def test_a_fresh_sample_falls_inside_the_95_percent_ellipsoid_95_percent_of_the_time():
    table, _ = C.fit_table(synthetic_pairs(np.random.default_rng(1), 3000))
    (mug,) = [item for item in C.coverage(synthetic_pairs(np.random.default_rng(2), 3000), table) if item.name == 'mug']
    assert mug.matches == 3000
    assert mug.position == pytest.approx(0.95, abs=0.015)
    assert mug.near == pytest.approx(0.95, abs=0.025) and mug.far == pytest.approx(0.95, abs=0.025)
    assert mug.rotation == pytest.approx(0.95, abs=0.015)
    # a table fitted without the depth growth (sigma of the near half for all) misses the far objects
    flat = dict(
        table,
        mug=tuple(np.r_[np.array(table['mug'][0:3]) + np.array(table['mug'][3:6]) * 0.7, [0] * 3, table['mug'][6:]]),
    )
    (worse,) = [
        item for item in C.coverage(synthetic_pairs(np.random.default_rng(2), 3000), flat) if item.name == 'mug'
    ]
    assert worse.far < 0.85


def biased_videos(rng, videos, frames):
    """Mug pairs of `videos` videos whose error along the ray is one bias per video (an instance's scale, as the
    monocular model's) plus a small per-frame jitter; videos labelled 0.."""
    translations, gt_translations, labels = [], [], []
    for video in range(videos):
        bias = rng.normal() * 0.1  # 10 % of the depth, the same through the video
        centres = np.stack(
            [rng.uniform(-0.2, 0.2, frames), rng.uniform(-0.1, 0.1, frames), rng.uniform(0.5, 1.2, frames)], axis=1
        )
        for centre in centres:
            error = np.array([0.004, 0.004, bias * centre[2]]) + rng.normal(size=3) * np.array([0.002, 0.002, 0.01])
            translations.append(centre)
            gt_translations.append(centre - ray_frame(centre).T @ error)
            labels.append(video)
    count = len(translations)
    rotations = np.repeat(np.eye(3)[None], count, axis=0)
    return C.MatchedPairs(
        np.full(count, 6),
        rotations,
        np.stack(translations),
        np.stack([rotation_vector_matrix(rng.normal(size=3) * 0.05) for _ in range(count)]),
        np.stack(gt_translations),
        np.array(labels),
    )


def mug_position_share(pairs, table):
    return next(item for item in C.coverage(pairs, table) if item.name == 'mug').position


def test_leaving_each_video_out_keeps_the_coverage_on_videos_not_fitted():
    """Frames of one video share its error: the fitting set's own 95 % is optimistic for new videos, and scaling
    the sigmas by the leave-one-video-out coverage is not (six fitting sets of 6 videos, each checked on 400 new)."""
    frames_only, with_videos = [], []
    for seed in range(6):
        fitting = biased_videos(np.random.default_rng(seed), 6, 100)
        fresh = biased_videos(np.random.default_rng(100 + seed), 400, 5)
        table, fits = C.fit_table(fitting)
        assert next(fit for fit in fits if fit.name == 'mug').left_out_factors[0] > 1.05
        unlabelled, _ = C.fit_table(C.MatchedPairs(*list(fitting.__dict__.values())[:5]))  # videos not known

        frames_only.append(mug_position_share(fresh, unlabelled))
        with_videos.append(mug_position_share(fresh, table))
        assert with_videos[-1] >= frames_only[-1]
    assert np.mean(frames_only) < 0.92
    assert np.mean(with_videos) == pytest.approx(0.95, abs=0.03)


def test_symmetric_classes_are_aligned_about_y_and_get_the_unobservable_sigma_there():
    rng = np.random.default_rng(3)
    gt = random_rotation(rng)
    tilt = rotation_vector_matrix([0.03, 0.0, -0.02])
    predicted = gt @ rotation_vector_matrix([0.0, 2.0, 0.0]) @ tilt  # turned 2 rad about y, then tilted
    aligned = C.aligned_about_y(gt, predicted)
    np.testing.assert_allclose(aligned[:, 1], gt[:, 1], atol=1e-12)  # y kept
    assert (
        np.linalg.norm(
            C.MatchedPairs(
                np.array([1]), predicted[None], np.zeros((1, 3)) + 1, aligned[None], np.ones((1, 3))
            ).rotation_errors()
        )
        < 0.04
    )
    pairs = synthetic_pairs(rng, 400, class_id=1)  # bottles
    table, _ = C.fit_table(pairs)
    assert table['bottle'][7] == pytest.approx(C.UNOBSERVABLE_SIGMA)


def result_dict(gt_centres, predictions, class_id=6):
    """A result as `seqpose eval` writes it: ground truth at `gt_centres`, detections [(centre, score)]."""
    size = np.full(3, 0.1)
    gt = [Detection(class_id, 1.0, np.eye(3), np.asarray(c, float), size) for c in gt_centres]
    rts = np.stack([g.nocs_rt_and_scales()[0] for g in gt])
    scales = np.stack([g.nocs_rt_and_scales()[1] for g in gt])
    detections = [Detection(class_id, s, np.eye(3), np.asarray(c, float), size) for c, s in predictions]
    return detections, np.full(len(gt), class_id), rts, scales


def test_matching_takes_the_nearest_ray_by_score_within_the_gate(tmp_path):
    from seqpose_core.eval.results_io import make_result

    gt = [[0.0, 0.0, 1.0], [0.1, 0.0, 1.0]]  # 5.7 deg apart
    predictions = [
        ([0.0, 0.0, 1.3], 0.5),  # on the first's ray, 30 % far: the first
        ([0.0, 0.0, 0.9], 0.9),  # the best score takes the first before it
        ([0.5, 0.0, 1.0], 0.8),  # 26 deg off the second's ray: no match
        ([0.1, 0.0, 3.0], 0.7),  # on the second's ray, three times as far: no match
        ([0.1, 0.0, 1.0], 0.1),  # below the score: no match
    ]
    result = make_result(*result_dict(gt, predictions))
    assert C.match_frame(result, min_score=0.2) == [(1, 0), (0, 1)]
    result['pred_class_ids'][:] = 5  # laptops: no ground truth of their class
    assert C.match_frame(result, min_score=0.2) == []


def write_eval_output(folder, rng, frames=120):
    """A `seqpose eval` output folder (results/*.pkl) of mugs detected with the errors of `synthetic_pairs`."""
    pairs = synthetic_pairs(rng, frames)
    for k in range(frames):
        gt = Detection(6, 1.0, pairs.gt_rotations[k], pairs.gt_translations[k], np.full(3, 0.1))
        found = Detection(6, 0.9, pairs.rotations[k], pairs.translations[k], np.full(3, 0.1))
        rt, scales = gt.nocs_rt_and_scales()
        write_results_pickle(
            folder / 'results' / f'results_real_test_scene_1_{k:04d}.pkl', [found], [6], rt[None], scales[None]
        )
    return folder


def test_the_command_fits_checks_and_writes_a_checkpoint_that_loads_with_the_table(tiny, tmp_path, capsys):
    from seqpose_core.model import save_checkpoint
    from seqpose_core.model.checkpoint import load_checkpoint
    from seqpose_core.runner import build_runner

    config, model = tiny
    checkpoint = save_checkpoint(tmp_path / 'tiny.pt', model, config)
    fit = write_eval_output(tmp_path / 'fit', np.random.default_rng(4))
    check = write_eval_output(tmp_path / 'check', np.random.default_rng(5))
    out = tmp_path / 'calibrated.pt'
    arguments = ['calibrate-covariance', '--results', str(fit), '--check', str(check), '--checkpoint', str(checkpoint)]
    assert seqpose([*arguments, '--write-into', str(out)]) == 0
    printed = capsys.readouterr().out
    assert 'inference.covariance.no_motion from 120 matched detections' in printed and 'check on' in printed
    runner = build_runner(out)
    row = runner.cfg.covariance.no_motion.mug
    assert row != UNCALIBRATED and runner.cfg.covariance.no_motion.bottle == UNCALIBRATED
    assert runner.cfg.covariance.odometry.mug == UNCALIBRATED
    assert f'{row[2] * 100:5.1f}' in printed
    before, after = load_checkpoint(checkpoint), load_checkpoint(out)
    assert sorted(before['model']) == sorted(after['model'])
    assert all(before['model'][name].equal(after['model'][name]) for name in before['model'])
    # the odometry table into the same file; the no_motion one stays
    assert seqpose([*arguments[:5], '--table', 'odometry', '--checkpoint', str(out), '--write-into', str(out)]) == 2
    assert (
        seqpose([*arguments[:5], '--table', 'odometry', '--checkpoint', str(out), '--write-into', str(out), '--force'])
        == 0
    )
    again = build_runner(out).cfg.covariance
    assert again.no_motion.mug == row and again.odometry.mug != UNCALIBRATED


def test_the_command_on_a_real_tiny_eval_output_names_what_is_missing(tiny, tmp_path, capsys):
    """A random tiny model's eval output: the command reads it; with no detection near an object it says so."""
    from helpers.evaluation import eval_results
    from helpers.generated_scenes import generate_scenes
    from seqpose_core.model import save_checkpoint

    config, model = tiny
    root = tmp_path / 'scenes'
    generate_scenes(root, scenes=1, frames=2, size='160x120', split='test', seed=8, objects='3-4')
    checkpoint = save_checkpoint(tmp_path / 'tiny.pt', model, config)
    eval_results(checkpoint, root, tmp_path / 'run', 'mf')
    status = seqpose(['calibrate-covariance', '--results', str(tmp_path / 'run'), '--min-score', '0.99'])
    assert status == 2 and 'no detection at or above score 0.99 matches an object' in capsys.readouterr().err
    assert seqpose(['calibrate-covariance', '--results', str(tmp_path / 'nowhere')]) == 2
