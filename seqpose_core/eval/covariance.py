"""The pose covariance calibration (inference.covariance): fitted on one `seqpose eval` output, checked on another.

    pairs = matched_pairs(load_eval_output('runs/selection/mf_none'))     # detections and their objects
    table, fits = fit_table(pairs)                                        # {class: 9-number row}
    coverage(matched_pairs(load_eval_output('runs/heldout/mf_none')), table)

Matching: per frame and class, detections at or above `min_score` in descending score each take the ground-truth
object of their class not yet taken whose centre's viewing ray is nearest theirs (angle), within MATCH_ANGLE_DEG and
with a range ratio within 1 / MATCH_RANGE_RATIO .. MATCH_RANGE_RATIO: the bearing of a detection is what a
monocular model gets right, its range what it gets wrong, so the gate is wide along the ray.

Errors: the position's (prediction - ground truth) in the prediction's ray frame (stages.covariance.ray_frame:
across the viewing ray and along it; in camera axes the along-ray error of an object off the image centre leaks
into x and y, correlated); the rotation's as the rotation vector of R_gt^T R_pred (about the object's axes).
Symmetric classes (bottle, bowl, can) are first turned about their y axis to the nearest of the prediction: the
rotation about y is unobservable and gets sigma pi / sqrt(3) (a uniform angle).

Fit, per class and axis: sigma(z) = a + b z (z the predicted depth) by maximum likelihood of a zero-mean normal
over the share f of sigma at the median depth that grows with depth (f = 0: constant, 1: proportional; the data
chooses); the rotation's sigma is the root mean square per axis. The errors are heavy-tailed (a flipped azimuth,
a wrong depth), so the ellipsoids are then scaled, the position's and the rotation's apart, so that 95 % of the
fitting set's errors fall inside their 95 % ellipsoid (chi-square, 3 dof; 2 for the rotation of a symmetric class).
`coverage` is the check on a set the numbers were not fitted on, through the stage's own 6x6 (camera frame).
"""

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy.spatial.transform import Rotation

from seqpose_core import CLASS_NAMES, SYMMETRIC_CLASS_NAMES, class_name
from seqpose_core.eval.pose_errors import unscaled_rotations
from seqpose_core.stages.config import UNCALIBRATED
from seqpose_core.stages.covariance import pose_covariance, ray_frame

MATCH_ANGLE_DEG = 10.0  # a detection's viewing ray within this of its object's (95 % of bearings are within 3)
MATCH_RANGE_RATIO = 2.0  # and its range within a factor of this of the object's
CHI2_95 = {2: 5.991, 3: 7.815}  # the chi-square 95 % quantiles
COVERAGE = 0.95
UNOBSERVABLE_SIGMA = math.pi / math.sqrt(3.0)  # a rotation angle uniform in [-pi, pi)
DEPTH_SHARES = np.linspace(0.0, 1.0, 101)  # the candidate shares f of sigma that grow with the depth
MIN_MATCHES = 20  # a class with fewer matched detections is left uncalibrated
MIN_VIDEOS = 3  # fewer videos: no leave-one-video-out scaling


@dataclass(frozen=True)
class MatchedPairs:
    """Detections and the ground-truth objects they matched, one row per pair."""

    class_ids: np.ndarray  # (n,) 1..6
    rotations: np.ndarray  # (n, 3, 3) predicted
    translations: np.ndarray  # (n, 3) predicted, metres
    gt_rotations: np.ndarray  # (n, 3, 3) ground truth; symmetric classes turned about y to the nearest
    gt_translations: np.ndarray  # (n, 3)
    videos: Optional[np.ndarray] = None  # (n,) the video of each pair (fit_class's leave-one-video-out), or None

    def __len__(self):
        return len(self.class_ids)

    def of_class(self, class_id):
        return self.subset(self.class_ids == class_id)

    def subset(self, keep):
        return MatchedPairs(*(None if values is None else values[keep] for values in self.__dict__.values()))

    @property
    def depths(self):
        return self.translations[:, 2]

    def position_errors(self):
        """(n, 3) prediction - ground truth in each prediction's ray frame (across x', y'; along z')."""
        frames = np.stack([ray_frame(t) for t in self.translations]).reshape(-1, 3, 3)
        return np.einsum('nij,nj->ni', frames, self.translations - self.gt_translations)

    def rotation_errors(self):
        """(n, 3) radians: the rotation vector of R_gt^T R_pred, about the object's x, y, z."""
        if not len(self):
            return np.zeros((0, 3))
        relative = np.swapaxes(self.gt_rotations, 1, 2) @ self.rotations
        return Rotation.from_matrix(relative).as_rotvec()


def aligned_about_y(gt_rotation, rotation):
    """`gt_rotation` turned about its own y axis to be nearest `rotation` (the symmetric classes' ambiguity):
    maximises trace(Ry(t)^T A), A = R_gt^T R_pred."""
    relative = gt_rotation.T @ rotation
    angle = math.atan2(relative[0, 2] - relative[2, 0], relative[0, 0] + relative[2, 2])
    cos, sin = math.cos(angle), math.sin(angle)
    return gt_rotation @ np.array([[cos, 0.0, sin], [0.0, 1.0, 0.0], [-sin, 0.0, cos]])


def match_frame(result, min_score):
    """[(prediction index, ground-truth index)] of one result dict (the module's rule)."""
    gt_centres = result['gt_RTs'][:, :3, 3].astype(np.float64)
    gt_ranges = np.linalg.norm(gt_centres, axis=1)
    scores = np.asarray(result['pred_scores'], dtype=np.float64)
    taken, pairs = set(), []
    for index in np.argsort(-scores, kind='stable'):
        if scores[index] < min_score:
            break
        centre = result['pred_RTs'][index, :3, 3].astype(np.float64)
        distance = float(np.linalg.norm(centre))
        cosines = gt_centres @ centre / np.maximum(gt_ranges * distance, 1e-12)
        angles = np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0)))
        ratios = distance / np.maximum(gt_ranges, 1e-12)
        allowed = (
            (result['gt_class_ids'] == result['pred_class_ids'][index])
            & (angles <= MATCH_ANGLE_DEG)
            & (ratios <= MATCH_RANGE_RATIO)
            & (ratios >= 1.0 / MATCH_RANGE_RATIO)
        )
        allowed[list(taken)] = False
        if allowed.any():
            chosen = int(np.flatnonzero(allowed)[np.argmin(angles[allowed])])
            taken.add(chosen)
            pairs.append((int(index), chosen))
    return pairs


def matched_pairs(results, min_score=0.2, progress=False, videos=None):
    """MatchedPairs of every result dict (`eval.load_eval_output`) by `match_frame`; `videos`: the video of each
    result (any labels; None: not known)."""
    from tqdm import tqdm

    rows = []
    labels = {}
    for number, result in enumerate(tqdm(results, desc='matching', unit='frame', disable=not progress)):
        pairs = match_frame(result, min_score)
        if not pairs:
            continue
        predicted, truth = (np.array(indices) for indices in zip(*pairs))
        rotations = unscaled_rotations(result['pred_RTs'][predicted].astype(np.float64))
        gt_rotations = unscaled_rotations(result['gt_RTs'][truth].astype(np.float64))
        class_ids = result['pred_class_ids'][predicted]
        for k, class_id in enumerate(class_ids):
            if class_name(class_id) in SYMMETRIC_CLASS_NAMES:
                gt_rotations[k] = aligned_about_y(gt_rotations[k], rotations[k])
        rows.append(
            (
                class_ids,
                rotations,
                result['pred_RTs'][predicted, :3, 3].astype(np.float64),
                gt_rotations,
                result['gt_RTs'][truth, :3, 3].astype(np.float64),
                np.full(len(pairs), labels.setdefault(videos[number], len(labels)) if videos is not None else -1),
            )
        )
    if not rows:
        return MatchedPairs(
            np.zeros(0, np.int64), np.zeros((0, 3, 3)), np.zeros((0, 3)), np.zeros((0, 3, 3)), np.zeros((0, 3))
        )
    columns = [np.concatenate(column) for column in zip(*rows)]
    return MatchedPairs(*columns[:5], columns[5] if videos is not None else None)


# --------------------------------------------------------------------------------------------- the fit
def fit_depth_sigma(errors, depths):
    """(a, b, f): the maximum-likelihood sigma(z) = a + b z >= 0 of zero-mean normal `errors` (n,) at `depths`
    (n,), over the share f of sigma at the median depth that grows with the depth (DEPTH_SHARES)."""
    errors, depths = np.asarray(errors, dtype=np.float64), np.maximum(np.asarray(depths, dtype=np.float64), 1e-6)
    reference = float(np.median(depths))
    shapes = (1.0 - DEPTH_SHARES)[:, None] + DEPTH_SHARES[:, None] * depths[None] / reference  # (F, n)
    scales = np.sqrt(np.mean((errors[None] / shapes) ** 2, axis=1))  # the likelihood's best scale per share
    log_likelihood = -np.log(np.maximum(scales, 1e-12)) - np.mean(np.log(shapes), axis=1)
    best = int(np.argmax(log_likelihood))
    share, scale = float(DEPTH_SHARES[best]), float(scales[best])
    return scale * (1.0 - share), scale * share / reference, share


def mahalanobis_squared(errors, sigmas):
    """(n,) sum over axes of (error / sigma)^2, `errors` and `sigmas` (n, k)."""
    return np.sum((errors / sigmas) ** 2, axis=1)


def coverage_scale(squared, dof):
    """The factor on the sigmas that puts COVERAGE of the errors whose unscaled squared distances are `squared`
    inside the ellipsoid chi-square(dof) at COVERAGE."""
    return math.sqrt(float(np.quantile(squared, COVERAGE)) / CHI2_95[dof])


@dataclass(frozen=True)
class ClassFit:
    name: str
    matches: int
    row: tuple  # the 9 numbers of inference.covariance (UNCALIBRATED: too few matches)
    depth_shares: tuple = ()  # per position axis, the share of sigma at the median depth that grows with it
    median_depth: float = 0.0
    left_out_factors: tuple = (1.0, 1.0)  # position, rotation: the leave-one-video-out scale on the sigmas


def fit_position(errors, depths):
    """(a (3,), b (3,), depth shares): sigma = a + b z per ray-frame axis, scaled so that COVERAGE of `errors`
    (n, 3) at `depths` (n,) fall inside the ellipsoid."""
    fits = [fit_depth_sigma(errors[:, axis], depths) for axis in range(3)]
    a, b = np.array([fit[0] for fit in fits]), np.array([fit[1] for fit in fits])
    scale = coverage_scale(mahalanobis_squared(errors, a[None] + b[None] * depths[:, None]), 3)
    return a * scale, b * scale, tuple(fit[2] for fit in fits)


def fit_rotation(errors, observed):
    """(3,) sigmas about the object's axes: RMS of the `observed` axes of `errors` (n, 3), scaled to COVERAGE;
    UNOBSERVABLE_SIGMA about the others."""
    sigmas = np.full(3, UNOBSERVABLE_SIGMA)
    sigmas[observed] = np.maximum(np.sqrt(np.mean(errors[:, observed] ** 2, axis=0)), 1e-6)
    scale = coverage_scale(mahalanobis_squared(errors[:, observed], sigmas[None, observed]), len(observed))
    sigmas[observed] = np.maximum(sigmas[observed] * scale, 1e-6)  # errors all zero: a sigma still
    return sigmas


def left_out_video_factor(videos, squared_distances_of, dof):
    """The factor on the sigmas that puts COVERAGE of each video's errors inside the ellipsoid fitted without that
    video (leave-one-video-out): an object's error persists through its video, so the frames of the fitting set are
    not independent and its own 95 % is optimistic for a video it has not seen. `squared_distances_of(left_out)`:
    the squared distances of the pairs where `left_out` (bool (n,)) under a fit on the others."""
    squared = [squared_distances_of(videos == video) for video in np.unique(videos)]
    return coverage_scale(np.concatenate(squared), dof)


def fit_class(pairs: MatchedPairs, name):
    """ClassFit of one class's pairs (the module's fit). With the pairs' videos known (at least MIN_VIDEOS), the
    sigmas are then scaled so that COVERAGE of each video falls inside the fit made without it."""
    if len(pairs) < MIN_MATCHES:
        return ClassFit(name, len(pairs), UNCALIBRATED)
    depths = pairs.depths
    position = pairs.position_errors()
    a, b, shares = fit_position(position, depths)
    rotation = pairs.rotation_errors()
    observed = [0, 2] if name in SYMMETRIC_CLASS_NAMES else [0, 1, 2]
    rotation_sigmas = fit_rotation(rotation, observed)
    position_factor = rotation_factor = 1.0
    if pairs.videos is not None and len(np.unique(pairs.videos)) >= MIN_VIDEOS:

        def position_distances(left_out):
            fold_a, fold_b, _ = fit_position(position[~left_out], depths[~left_out])
            sigmas = fold_a[None] + fold_b[None] * depths[left_out, None]
            return mahalanobis_squared(position[left_out], sigmas)

        def rotation_distances(left_out):
            sigmas = fit_rotation(rotation[~left_out], observed)
            return mahalanobis_squared(rotation[left_out][:, observed], sigmas[None, observed])

        position_factor = left_out_video_factor(pairs.videos, position_distances, 3)
        rotation_factor = left_out_video_factor(pairs.videos, rotation_distances, len(observed))
        rotation_sigmas[observed] *= rotation_factor
    row = tuple(float(v) for v in np.concatenate([a * position_factor, b * position_factor, rotation_sigmas]))
    return ClassFit(
        name, len(pairs), row, shares, float(np.median(depths)), (float(position_factor), float(rotation_factor))
    )


def fit_table(pairs: MatchedPairs):
    """({class name: row} for inference.covariance's tables, [ClassFit per class])."""
    fits = [fit_class(pairs.of_class(class_id), name) for class_id, name in enumerate(CLASS_NAMES, start=1)]
    return {fit.name: fit.row for fit in fits}, fits


# --------------------------------------------------------------------------------------------- the check
@dataclass(frozen=True)
class ClassCoverage:
    name: str
    matches: int
    position: float  # share of ground-truth centres inside the 95 % ellipsoid of their detection (nan: none)
    rotation: float  # share of ground-truth rotations inside theirs (2 dof for symmetric classes)
    near: float = math.nan  # position share for the detections nearer than the class's median depth
    far: float = math.nan  # and for those beyond it


def class_coverage(pairs: MatchedPairs, name, row):
    """ClassCoverage of one class's pairs under `row`, through the stage's 6x6 in the camera frame."""
    if len(pairs) == 0 or tuple(row) == UNCALIBRATED:
        return ClassCoverage(name, len(pairs), math.nan, math.nan)
    position, rotation = [], []
    symmetric = name in SYMMETRIC_CLASS_NAMES
    for k in range(len(pairs)):
        covariance = pose_covariance(row, pairs.rotations[k], pairs.translations[k])
        error = pairs.translations[k] - pairs.gt_translations[k]
        position.append(error @ np.linalg.solve(covariance[:3, :3], error))
        turn = Rotation.from_matrix(pairs.rotations[k] @ pairs.gt_rotations[k].T).as_rotvec()  # camera frame
        rotation.append(turn @ np.linalg.solve(covariance[3:, 3:], turn))
    inside = np.array(position) <= CHI2_95[3]
    rotation_inside = np.array(rotation) <= CHI2_95[2 if symmetric else 3]
    near = pairs.depths < np.median(pairs.depths)
    return ClassCoverage(
        name,
        len(pairs),
        float(inside.mean()),
        float(rotation_inside.mean()),
        float(inside[near].mean()) if near.any() else math.nan,
        float(inside[~near].mean()) if (~near).any() else math.nan,
    )


def coverage(pairs: MatchedPairs, table):
    """[ClassCoverage per class] of `pairs` under `table` ({class name: row})."""
    return [
        class_coverage(pairs.of_class(class_id), name, table.get(name, UNCALIBRATED))
        for class_id, name in enumerate(CLASS_NAMES, start=1)
    ]


def format_fit(fits):
    """The fitted table as text: per class the matches, a and b per position axis, the depth shares, the
    rotation sigmas in degrees."""
    lines = [
        f'{"class":>7} {"n":>6}  {"a x/y/z (cm)":>18}  {"b x/y/z (cm/m)":>18}  {"depth share x/y/z":>17}  '
        f'{"rot x/y/z (deg)":>17}  {"left-out video factor pos/rot":>29}'
    ]
    for fit in fits:
        if fit.row == UNCALIBRATED:
            lines.append(f'{fit.name:>7} {fit.matches:>6}  not calibrated (fewer than {MIN_MATCHES} matches)')
            continue
        row = np.array(fit.row)
        cm = ' '.join(f'{v:5.1f}' for v in row[0:3] * 100)
        slope = ' '.join(f'{v:5.1f}' for v in row[3:6] * 100)
        shares = ' '.join(f'{v:5.2f}' for v in fit.depth_shares)
        degrees = ' '.join(f'{v:5.1f}' for v in np.degrees(row[6:9]))
        factors = ' / '.join(f'{v:.2f}' for v in fit.left_out_factors)
        lines.append(
            f'{fit.name:>7} {fit.matches:>6}  {cm:>18}  {slope:>18}  {shares:>17}  {degrees:>17}  {factors:>29}'
        )
    return '\n'.join(lines)


def format_coverage(coverages):
    """Per class: matches, the position and rotation shares inside the 95 % ellipsoid, near and far halves."""
    lines = [f'{"class":>7} {"n":>6}  {"position":>8}  {"near":>5}  {"far":>5}  {"rotation":>8}']
    for item in coverages:
        lines.append(
            f'{item.name:>7} {item.matches:>6}  {item.position:8.3f}  {item.near:5.3f}  {item.far:5.3f}  '
            f'{item.rotation:8.3f}'
        )
    return '\n'.join(lines)
