"""Scoring a list of per-image results: object-deformnet's `compute_mAP` (as its evaluate.py calls it),
vectorised, plus the true-box 3D IoU next to the legacy one.

Order of work (each step numpy over all objects or all pairs; only the grouping and the rank loop are Python):
1. per image and class, GT and predictions; predictions sorted as the reference sorts them
   (`np.argsort(scores)[::-1]` on the scores as stored: this call decides ties, so it is kept as is);
2. legacy and exact 3D IoU for every prediction x GT pair of a group;
3. greedy matching at 101 IoU thresholds (legacy and exact);
4. pose errors among the predictions and GT matched at legacy IoU 0.1, greedy matching on the 62 x 22 grid;
5. per class, predictions of all images by descending score, VOC AP; mean = mean of the six classes.
"""

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from .average_precision import voc_average_precision
from .box_iou import box_iou_3d, symmetric_box_iou_3d
from .legacy_iou import best_over_rotations, legacy_extents, legacy_extents_rotated, legacy_pair_iou
from .matching import greedy_match, iou_acceptable, pose_acceptable
from .pose_errors import pose_errors, unscaled_rotations
from .protocol import (
    CLASS_IDS,
    CLASS_NAMES,
    DEGREE_THRESHOLDS,
    EXACT_IOU_METRICS,
    IOU_THRESHOLDS,
    LEGACY_IOU_METRICS,
    METRIC_NAMES,
    MUG_CLASS_ID,
    POSE_IOU_THRESHOLD,
    POSE_METRICS,
    REPORT_ROWS,
    SHIFT_THRESHOLDS_CM,
    SYMMETRIC_CLASS_IDS,
    is_symmetric,
)
from .results_io import validate_result


@dataclass
class APCurves:
    """Average precision (fractions) against every threshold; row i = CLASS_NAMES[i], the last row the mean."""

    iou: np.ndarray  # (7, 101) legacy 3D IoU
    iou_exact: np.ndarray  # (7, 101) true box 3D IoU
    pose: np.ndarray  # (7, 62, 22) degrees x centimetres
    num_gt: np.ndarray  # (6,) GT per class
    num_pred: np.ndarray  # (6,) predictions per class
    iou_thresholds: np.ndarray = field(default_factory=lambda: np.array(IOU_THRESHOLDS))
    degree_thresholds: np.ndarray = field(default_factory=lambda: np.array(DEGREE_THRESHOLDS, dtype=float))
    shift_thresholds: np.ndarray = field(default_factory=lambda: np.array(SHIFT_THRESHOLDS_CM))


class _ObjectTable:
    """Objects of one side (GT or predictions) of all images, concatenated. Arrays are float64; the `*_32` flags
    remember float32 inputs so that the reference's float32 arithmetic can be replayed exactly."""

    def __init__(self, results, prefix):
        def gather(key, tail, dtype=np.float64):
            arrays = [np.asarray(r[f'{prefix}_{key}']) for r in results]
            return np.concatenate(arrays).astype(dtype) if arrays else np.zeros((0,) + tail, dtype)

        def flags(key):
            parts = [np.full(len(r[f'{prefix}_class_ids']), r[f'{prefix}_{key}'].dtype == np.float32) for r in results]
            return np.concatenate(parts) if parts else np.zeros(0, bool)

        self.class_ids = gather('class_ids', (), np.int64)
        self.rts = gather('RTs', (4, 4))
        self.scales = gather('scales', (3,))
        self.rt_32 = flags('RTs')
        self.scale_32 = flags('scales')
        self.offsets = np.cumsum([0] + [len(r[f'{prefix}_class_ids']) for r in results])

    def legacy_extents(self, indices):
        """Legacy per-corner spans of the objects at `indices`, each in the dtype the reference uses."""
        maxs, mins = np.zeros((len(indices), 8)), np.zeros((len(indices), 8))
        volumes, is_32 = np.zeros(len(indices)), self.rt_32[indices] & self.scale_32[indices]
        for use_32 in (False, True):
            part = np.flatnonzero(is_32 == use_32)
            if part.size:
                dtype = np.float32 if use_32 else np.float64
                spans = legacy_extents(self.rts[indices[part]].astype(dtype), self.scales[indices[part]].astype(dtype))
                maxs[part], mins[part], volumes[part] = spans
        return maxs, mins, volumes, is_32

    def rotations_translations(self, indices):
        """sR / cbrt(det) and t, computed in float32 for float32 inputs (stored back exactly in float64)."""
        rotations = np.zeros((len(indices), 3, 3))
        for use_32 in (False, True):
            part = np.flatnonzero(self.rt_32[indices] == use_32)
            if part.size:
                rotations[part] = unscaled_rotations(
                    self.rts[indices[part]].astype(np.float32 if use_32 else np.float64)
                )
        return rotations, self.rts[indices, :3, 3], self.rt_32[indices]


@dataclass
class _Groups:
    """Per (image, class) group: predictions in the reference's order and GT in file order, as index lists
    into the object tables; `slots` enumerate the sorted predictions of all groups in order."""

    class_ids: list
    preds: list
    gts: list


def _build_groups(results, preds, gts):
    class_ids, pred_lists, gt_lists = [], [], []
    for image, result in enumerate(results):
        gt_classes, pred_classes = result['gt_class_ids'], result['pred_class_ids']
        scores = result['pred_scores']
        for class_id in CLASS_IDS:
            gt_index = np.flatnonzero(gt_classes == class_id)
            pred_index = np.flatnonzero(pred_classes == class_id)
            if not gt_index.size and not pred_index.size:
                continue
            if pred_index.size:
                pred_index = pred_index[np.argsort(scores[pred_index])[::-1]]
            class_ids.append(class_id)
            pred_lists.append(pred_index + preds.offsets[image])
            gt_lists.append(gt_index + gts.offsets[image])
    return _Groups(class_ids, pred_lists, gt_lists)


def _buckets(groups_pred, groups_gt):
    """Group indices by (number of predictions, number of GT), so each bucket stacks without padding."""
    buckets = defaultdict(list)
    for index, (pred_ids, gt_ids) in enumerate(zip(groups_pred, groups_gt)):
        buckets[(len(pred_ids), len(gt_ids))].append(index)
    return buckets


def _pair_ious(
    pred_ids, gt_ids, preds, gts, gt_symmetric, pred_legacy, pred_rotated_row, pred_rotated, gt_legacy, exact
):
    """Legacy (float32) and exact (float64) IoU of paired objects (flat index arrays)."""
    legacy = np.zeros(len(pred_ids), dtype=np.float32)
    symmetric = gt_symmetric[gt_ids]
    plain = np.flatnonzero(~symmetric)
    pmax, pmin, pvol, p32 = (item[pred_ids[plain]] for item in pred_legacy)
    gmax, gmin, gvol, g32 = (item[gt_ids[plain]] for item in gt_legacy)
    for use_32 in (False, True):
        part = np.flatnonzero((p32 & g32) == use_32)
        if not part.size:
            continue
        # a float32 side keeps its float32 volume even when the pair is computed in float64
        cast = (lambda a: a.astype(np.float32)) if use_32 else (lambda a: a)
        legacy[plain[part]] = legacy_pair_iou(
            cast(pmax[part]), cast(pmin[part]), cast(pvol[part]), cast(gmax[part]), cast(gmin[part]), cast(gvol[part])
        )
    sym = np.flatnonzero(symmetric)
    if sym.size:
        rows = pred_rotated_row[pred_ids[sym]]
        rmax, rmin, rvol = (item[rows] for item in pred_rotated)
        gmax, gmin, gvol = (item[gt_ids[sym]] for item in gt_legacy[:3])
        ious = legacy_pair_iou(rmax, rmin, rvol, gmax[:, None], gmin[:, None], gvol[:, None])
        legacy[sym] = best_over_rotations(ious)
    exact_ious = np.zeros(len(pred_ids))
    if exact:
        for mask, function in ((~symmetric, box_iou_3d), (symmetric, symmetric_box_iou_3d)):
            part = np.flatnonzero(mask)
            if part.size:
                exact_ious[part] = function(
                    preds.rts[pred_ids[part]],
                    preds.scales[pred_ids[part]],
                    gts.rts[gt_ids[part]],
                    gts.scales[gt_ids[part]],
                )
    return legacy, exact_ious


def _pair_pose_errors(pred_ids, gt_ids, pred_pose, gt_pose, gt_symmetric):
    """(degrees, cm) of paired objects; pairs are split by input dtype so float32 inputs stay float32."""
    degrees, centimetres = np.zeros(len(pred_ids)), np.zeros(len(pred_ids))
    p_rot, p_t, p32 = (item[pred_ids] for item in pred_pose)
    g_rot, g_t, g32 = (item[gt_ids] for item in gt_pose)
    for pred_is_32 in (False, True):
        for gt_is_32 in (False, True):
            part = np.flatnonzero((p32 == pred_is_32) & (g32 == gt_is_32))
            if not part.size:
                continue
            pdt, gdt = (np.float32 if pred_is_32 else np.float64), (np.float32 if gt_is_32 else np.float64)
            degrees[part], centimetres[part] = pose_errors(
                p_rot[part].astype(pdt),
                p_t[part].astype(pdt),
                g_rot[part].astype(gdt),
                g_t[part].astype(gdt),
                gt_symmetric[gt_ids[part]],
            )
    return degrees, centimetres


def score_results(results, exact=True, validate=True):
    """AP curves of a list of per-image result dicts (the evaluation format, see results_io).

    `exact=False` skips the true-box IoU (its curve is then all NaN).
    """
    if validate:
        results = [validate_result(result, f'result {index}') for index, result in enumerate(results)]
    preds, gts = _ObjectTable(results, 'pred'), _ObjectTable(results, 'gt')
    visibility = np.concatenate([r['gt_handle_visibility'] for r in results]) if results else np.zeros(0)
    # the reference passes handle visibility 1 for every class but mug, so only mugs can lose their handle
    visibility = np.where(gts.class_ids == MUG_CLASS_ID, visibility, 1)
    gt_symmetric = is_symmetric(gts.class_ids, visibility)
    groups = _build_groups(results, preds, gts)

    all_preds = np.arange(len(preds.class_ids))
    all_gts = np.arange(len(gts.class_ids))
    pred_legacy, gt_legacy = preds.legacy_extents(all_preds), gts.legacy_extents(all_gts)
    # predictions of classes that can be symmetric also get their spans under the 20 rotations about y
    rotatable = np.flatnonzero(np.isin(preds.class_ids, SYMMETRIC_CLASS_IDS + (MUG_CLASS_ID,)))
    pred_rotated_row = np.full(len(all_preds), -1)
    pred_rotated_row[rotatable] = np.arange(len(rotatable))
    pred_rotated = legacy_extents_rotated(preds.rts[rotatable], preds.scales[rotatable])

    slot_of_group = np.cumsum([0] + [len(p) for p in groups.preds])
    num_slots = int(slot_of_group[-1])
    slot_pred = np.concatenate(groups.preds) if groups.preds else np.zeros(0, int)
    iou_hits = np.zeros((num_slots, len(IOU_THRESHOLDS)), dtype=bool)
    exact_hits = np.zeros((num_slots, len(IOU_THRESHOLDS)), dtype=bool)
    pose_hits = np.zeros((num_slots, len(DEGREE_THRESHOLDS) * len(SHIFT_THRESHOLDS_CM)), dtype=bool)
    pose_threshold_index = IOU_THRESHOLDS.index(POSE_IOU_THRESHOLD)

    # 2 + 3: IoU matching per bucket of same-shaped groups
    pose_groups = defaultdict(lambda: ([], []))
    for (num_pred, num_gt), members in _buckets(groups.preds, groups.gts).items():
        if num_pred == 0 or num_gt == 0:
            continue  # nothing can match
        pred_ids = np.stack([groups.preds[m] for m in members])  # (B, P)
        gt_ids = np.stack([groups.gts[m] for m in members])  # (B, G)
        slots = slot_of_group[members][:, None] + np.arange(num_pred)[None]  # (B, P)
        pair_pred = np.repeat(pred_ids[:, :, None], num_gt, axis=2).ravel()
        pair_gt = np.repeat(gt_ids[:, None, :], num_pred, axis=1).ravel()
        legacy, exact_ious = _pair_ious(
            pair_pred, pair_gt, preds, gts, gt_symmetric, pred_legacy, pred_rotated_row, pred_rotated, gt_legacy, exact
        )
        shape = (len(members), num_pred, num_gt)
        legacy, exact_ious = legacy.reshape(shape), exact_ious.reshape(shape)
        # the reference tries GT by np.argsort(row)[::-1] of the float32 IoU row
        matched_pred, matched_gt = greedy_match(
            np.argsort(legacy, axis=2)[:, :, ::-1], iou_acceptable(legacy, IOU_THRESHOLDS)
        )
        iou_hits[slots.ravel()] = matched_pred.reshape(-1, len(IOU_THRESHOLDS))
        if exact:
            exact_matched, _ = greedy_match(
                np.argsort(exact_ious, axis=2)[:, :, ::-1], iou_acceptable(exact_ious, IOU_THRESHOLDS)
            )
            exact_hits[slots.ravel()] = exact_matched.reshape(-1, len(IOU_THRESHOLDS))
        # 4: the pose candidates of each group, in the same orders (score for predictions, file for GT)
        keep_pred = matched_pred[:, :, pose_threshold_index]
        keep_gt = matched_gt[:, pose_threshold_index, :]
        for row in range(len(members)):
            count = int(keep_pred[row].sum())
            if count:
                bucket = pose_groups[count]
                bucket[0].append(slots[row][keep_pred[row]])
                bucket[1].append(gt_ids[row][keep_gt[row]])

    pred_pose, gt_pose = preds.rotations_translations(all_preds), gts.rotations_translations(all_gts)
    for count, (slot_rows, gt_rows) in pose_groups.items():
        slots, gt_ids = np.stack(slot_rows), np.stack(gt_rows)
        pred_ids = slot_pred[slots]
        pair_pred = np.repeat(pred_ids[:, :, None], count, axis=2).ravel()
        pair_gt = np.repeat(gt_ids[:, None, :], count, axis=1).ravel()
        degrees, centimetres = _pair_pose_errors(pair_pred, pair_gt, pred_pose, gt_pose, gt_symmetric)
        degrees = degrees.reshape(len(slots), count, count)
        centimetres = centimetres.reshape(len(slots), count, count)
        matched_pred, _ = greedy_match(
            np.argsort(degrees + centimetres, axis=2),
            pose_acceptable(degrees, centimetres, DEGREE_THRESHOLDS, SHIFT_THRESHOLDS_CM),
        )
        pose_hits[slots.ravel()] = matched_pred.reshape(-1, pose_hits.shape[1])

    # 5: AP per class over all images
    slot_class = preds.class_ids[slot_pred]
    slot_scores = (
        np.concatenate([r['pred_scores'] for r in results]).astype(np.float64)[slot_pred] if num_slots else np.zeros(0)
    )
    pose_slot = iou_hits[:, pose_threshold_index]
    iou_ap = np.zeros((len(CLASS_IDS) + 1, len(IOU_THRESHOLDS)))
    exact_ap = np.full_like(iou_ap, np.nan)
    pose_ap = np.zeros((len(CLASS_IDS) + 1, len(DEGREE_THRESHOLDS), len(SHIFT_THRESHOLDS_CM)))
    num_gt = np.array([int((gts.class_ids == c).sum()) for c in CLASS_IDS])
    num_pred = np.array([int((slot_class == c).sum()) for c in CLASS_IDS])
    for row, class_id in enumerate(CLASS_IDS):
        members = np.flatnonzero(slot_class == class_id)
        order = members[np.argsort(slot_scores[members])[::-1]]
        iou_ap[row] = voc_average_precision(iou_hits[order].T, int(num_gt[row]))
        if exact:
            exact_ap[row] = voc_average_precision(exact_hits[order].T, int(num_gt[row]))
        pose_members = members[pose_slot[members]]
        pose_order = pose_members[np.argsort(slot_scores[pose_members])[::-1]]
        # the pose recall counts only the GT matched at IoU 0.1, one per matched prediction
        pose_ap[row] = voc_average_precision(pose_hits[pose_order].T, len(pose_members)).reshape(pose_ap.shape[1:])
    iou_ap[-1], exact_ap[-1], pose_ap[-1] = iou_ap[:-1].mean(0), exact_ap[:-1].mean(0), pose_ap[:-1].mean(0)
    return APCurves(iou=iou_ap, iou_exact=exact_ap, pose=pose_ap, num_gt=num_gt, num_pred=num_pred)


def metrics_from_curves(curves):
    """The metrics.json dict: percent values for 'mean' and each class, keys in METRIC_NAMES order."""
    iou_index = {threshold: i for i, threshold in enumerate(IOU_THRESHOLDS)}
    metrics = {}
    for row_name in REPORT_ROWS:
        row = len(CLASS_NAMES) if row_name == 'mean' else CLASS_NAMES.index(row_name)
        values = {}
        for name, threshold in LEGACY_IOU_METRICS.items():
            values[name] = curves.iou[row, iou_index[threshold]]
        for name, (degrees, centimetres) in POSE_METRICS.items():
            values[name] = curves.pose[row, DEGREE_THRESHOLDS.index(degrees), SHIFT_THRESHOLDS_CM.index(centimetres)]
        for name, threshold in EXACT_IOU_METRICS.items():
            values[name] = curves.iou_exact[row, iou_index[threshold]]
        metrics[row_name] = {name: float(values[name]) * 100 for name in METRIC_NAMES}
    return metrics


def evaluate_results(results, exact=True):
    """Per-image result dicts -> metrics dict (percent; 'mean' and the six classes)."""
    return metrics_from_curves(score_results(results, exact=exact))
