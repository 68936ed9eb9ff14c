"""A slow, deliberately literal re-statement of object-deformnet's `compute_mAP` (as its evaluate.py calls it),
used only to cross-check the vectorised evaluator in seqpose_core.eval.

Everything is a per-object / per-pair Python loop that performs the same numpy operations, in the same order and
dtypes, as the reference's functions (get_3d_bbox, transform_coordinates_3d, compute_3d_IoU,
compute_IoU_matches, compute_RT_errors, compute_RT_matches, compute_ap_and_acc, compute_mAP). Written
independently from the reference's description; nothing here is imported from the code under test.
"""

import math

import numpy as np

NAMES = ['BG', 'bottle', 'bowl', 'camera', 'can', 'laptop', 'mug']
IOU_LIST = [i / 100 for i in range(101)]
DEGREE_LIST = list(range(0, 61, 1)) + [360]
SHIFT_LIST = [i / 2 for i in range(21)] + [100]


def box_corner_columns(size):
    """(3, 8) corners of the box of extents `size` centred at 0, in the reference's corner order."""
    x, y, z = size[0] / 2, size[1] / 2, size[2] / 2
    rows = []
    for sy in (+1, -1):
        for sx in (+1, -1):
            for sz in (+1, -1):
                rows.append([sx * x, sy * y, sz * z])
    return np.array(rows).transpose()


def apply_srt(points, srt):
    homogeneous = np.vstack([points, np.ones((1, points.shape[1]), dtype=np.float32)])
    moved = srt @ homogeneous
    return moved[:3, :] / moved[3, :]


def buggy_iou(srt_1, srt_2, size_1, size_2):
    box_1 = apply_srt(box_corner_columns(size_1), srt_1)
    box_2 = apply_srt(box_corner_columns(size_2), srt_2)
    high_1, low_1 = np.amax(box_1, axis=0), np.amin(box_1, axis=0)
    high_2, low_2 = np.amax(box_2, axis=0), np.amin(box_2, axis=0)
    low, high = np.maximum(low_1, low_2), np.minimum(high_1, high_2)
    if np.amin(high - low) < 0:
        inter = 0
    else:
        inter = np.prod(high - low)
    union = np.prod(high_1 - low_1) + np.prod(high_2 - low_2) - inter
    return inter / union


def y_turn(theta):
    return np.array(
        [[np.cos(theta), 0, np.sin(theta), 0], [0, 1, 0, 0], [-np.sin(theta), 0, np.cos(theta), 0], [0, 0, 0, 1]]
    )


def legacy_iou(srt_pred, srt_gt, size_pred, size_gt, class_id, handle_visible):
    if NAMES[class_id] in ('bottle', 'bowl', 'can') or (NAMES[class_id] == 'mug' and handle_visible == 0):
        best = 0
        for i in range(20):
            turned = srt_pred @ y_turn(2 * math.pi * i / float(20))
            best = max(best, buggy_iou(turned, srt_gt, size_pred, size_gt))
        return best
    return buggy_iou(srt_pred, srt_gt, size_pred, size_gt)


def iou_matching(gt_ids, gt_srt, gt_size, gt_handle, pred_ids, pred_srt, pred_size, pred_scores, thresholds):
    n_pred, n_gt = len(pred_ids), len(gt_ids)
    order = np.zeros(0)
    if n_pred:
        order = np.argsort(pred_scores)[::-1]
        pred_ids, pred_size, pred_srt = pred_ids[order].copy(), pred_size[order].copy(), pred_srt[order].copy()
    ious = np.zeros((n_pred, n_gt), dtype=np.float32)
    for i in range(n_pred):
        for j in range(n_gt):
            ious[i, j] = legacy_iou(pred_srt[i], gt_srt[j], pred_size[i, :], gt_size[j], int(pred_ids[i]), gt_handle[j])
    pred_match = -1 * np.ones([len(thresholds), n_pred])
    gt_match = -1 * np.ones([len(thresholds), n_gt])
    for t, threshold in enumerate(thresholds):
        for i in range(order.shape[0]):
            for j in np.argsort(ious[i])[::-1]:
                if gt_match[t, j] > -1:
                    continue
                value = ious[i, j]
                if value < threshold:
                    break
                if pred_ids[i] != gt_ids[j]:
                    continue
                if value > threshold:
                    gt_match[t, j] = i
                    pred_match[t, i] = j
                    break
    return gt_match, pred_match, ious, order


def pose_error(srt_1, srt_2, class_id, handle_visible):
    rot_1 = srt_1[:3, :3] / np.cbrt(np.linalg.det(srt_1[:3, :3]))
    rot_2 = srt_2[:3, :3] / np.cbrt(np.linalg.det(srt_2[:3, :3]))
    if NAMES[class_id] in ('bottle', 'can', 'bowl') or (NAMES[class_id] == 'mug' and handle_visible == 0):
        up = np.array([0, 1, 0])
        up_1, up_2 = rot_1 @ up, rot_2 @ up
        cos = up_1.dot(up_2) / (np.linalg.norm(up_1) * np.linalg.norm(up_2))
    else:
        cos = (np.trace(rot_1 @ rot_2.transpose()) - 1) / 2
    degrees = np.arccos(np.clip(cos, -1.0, 1.0)) * 180 / np.pi
    shift = np.linalg.norm(srt_1[:3, 3] - srt_2[:3, 3]) * 100
    return np.array([degrees, shift])


def pose_matching(errors, pred_ids, gt_ids):
    n_pred, n_gt = len(pred_ids), len(gt_ids)
    pred_match = -1 * np.ones((len(DEGREE_LIST), len(SHIFT_LIST), n_pred))
    gt_match = -1 * np.ones((len(DEGREE_LIST), len(SHIFT_LIST), n_gt))
    if n_pred == 0 or n_gt == 0:
        return gt_match, pred_match
    # the GT order of a prediction does not depend on the thresholds: sort once per prediction (same call)
    preference = [np.argsort(np.sum(errors[i, :, :], axis=-1)) for i in range(n_pred)]
    for d, degree in enumerate(DEGREE_LIST):
        for s, shift in enumerate(SHIFT_LIST):
            for i in range(n_pred):
                for j in preference[i]:
                    if gt_match[d, s, j] > -1 or pred_ids[i] != gt_ids[j]:
                        continue
                    if errors[i, j, 0] > degree or errors[i, j, 1] > shift:
                        continue
                    gt_match[d, s, j] = i
                    pred_match[d, s, i] = j
                    break
    return gt_match, pred_match


def voc_ap(pred_match, scores, gt_match):
    pred_match = pred_match[np.argsort(scores)[::-1]]
    precision = np.cumsum(pred_match > -1) / (np.arange(len(pred_match)) + 1)
    recall = np.cumsum(pred_match > -1).astype(np.float32) / len(gt_match)
    precision = np.concatenate([[0], precision, [0]])
    recall = np.concatenate([[0], recall, [1]])
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = np.maximum(precision[i], precision[i + 1])
    steps = np.where(recall[:-1] != recall[1:])[0] + 1
    return np.sum((recall[steps] - recall[steps - 1]) * precision[steps])


def slow_compute_map(results):
    """-> (iou_aps (8, 101), pose_aps (8, 62, 22)); row 0 background, rows 1..6 classes, row 7 the mean."""
    iou_store = {c: ([], [], []) for c in range(1, 7)}  # pred matches, scores, gt matches
    pose_store = {c: ([], [], []) for c in range(1, 7)}
    for result in results:
        gt_ids = result['gt_class_ids'].astype(np.int32)
        gt_srt, gt_size = np.array(result['gt_RTs']), np.array(result['gt_scales'])
        gt_handle = result['gt_handle_visibility']
        pred_ids, pred_srt = result['pred_class_ids'], np.array(result['pred_RTs'])
        pred_size, pred_scores = result['pred_scales'], result['pred_scores']
        if len(gt_ids) == 0 and len(pred_ids) == 0:
            continue
        for c in range(1, 7):
            g = gt_ids == c
            p = pred_ids == c
            c_gt_ids = gt_ids[g] if len(gt_ids) else np.zeros(0)
            c_gt_srt = gt_srt[g] if len(gt_ids) else np.zeros((0, 4, 4))
            c_gt_size = gt_size[g] if len(gt_ids) else np.zeros((0, 3))
            c_handle = gt_handle[g] if (NAMES[c] == 'mug' and len(gt_ids)) else np.ones_like(c_gt_ids)
            c_pred_ids = pred_ids[p] if len(pred_ids) else np.zeros(0)
            c_pred_srt = pred_srt[p] if len(pred_ids) else np.zeros((0, 4, 4))
            c_pred_size = pred_size[p] if len(pred_ids) else np.zeros((0, 3))
            c_scores = pred_scores[p] if len(pred_ids) else np.zeros(0)
            gt_match, pred_match, _, order = iou_matching(
                c_gt_ids, c_gt_srt, c_gt_size, c_handle, c_pred_ids, c_pred_srt, c_pred_size, c_scores, IOU_LIST
            )
            if len(order):
                c_pred_ids, c_pred_srt, c_scores = c_pred_ids[order], c_pred_srt[order], c_scores[order]
            iou_store[c][0].append(pred_match)
            iou_store[c][1].append(np.tile(c_scores, (len(IOU_LIST), 1)))
            iou_store[c][2].append(gt_match)
            at = IOU_LIST.index(0.1)
            keep_pred, keep_gt = pred_match[at, :] > -1, gt_match[at, :] > -1
            c_pred_ids, c_pred_srt, c_scores = c_pred_ids[keep_pred], c_pred_srt[keep_pred], c_scores[keep_pred]
            c_gt_ids, c_gt_srt, c_handle = c_gt_ids[keep_gt], c_gt_srt[keep_gt], c_handle[keep_gt]
            errors = np.zeros((len(c_pred_ids), len(c_gt_ids), 2))
            for i in range(len(c_pred_ids)):
                for j in range(len(c_gt_ids)):
                    errors[i, j, :] = pose_error(c_pred_srt[i], c_gt_srt[j], int(c_gt_ids[j]), c_handle[j])
            gt_pose, pred_pose = pose_matching(errors, c_pred_ids, c_gt_ids)
            pose_store[c][0].append(pred_pose)
            pose_store[c][1].append(np.tile(c_scores, (len(DEGREE_LIST), len(SHIFT_LIST), 1)))
            pose_store[c][2].append(gt_pose)
    iou_aps = np.zeros((8, len(IOU_LIST)))
    pose_aps = np.zeros((8, len(DEGREE_LIST), len(SHIFT_LIST)))
    for c in range(1, 7):
        matches = np.concatenate(iou_store[c][0], axis=-1) if iou_store[c][0] else np.zeros((len(IOU_LIST), 0))
        scores = np.concatenate(iou_store[c][1], axis=-1) if iou_store[c][1] else np.zeros((len(IOU_LIST), 0))
        gts = np.concatenate(iou_store[c][2], axis=-1) if iou_store[c][2] else np.zeros((len(IOU_LIST), 0))
        for t in range(len(IOU_LIST)):
            iou_aps[c, t] = voc_ap(matches[t], scores[t].astype(np.float64), gts[t])
        shape = (len(DEGREE_LIST), len(SHIFT_LIST), 0)
        matches = np.concatenate(pose_store[c][0], axis=-1) if pose_store[c][0] else np.zeros(shape)
        scores = np.concatenate(pose_store[c][1], axis=-1) if pose_store[c][1] else np.zeros(shape)
        gts = np.concatenate(pose_store[c][2], axis=-1) if pose_store[c][2] else np.zeros(shape)
        for d in range(len(DEGREE_LIST)):
            for s in range(len(SHIFT_LIST)):
                pose_aps[c, d, s] = voc_ap(matches[d, s], scores[d, s].astype(np.float64), gts[d, s])
    iou_aps[-1] = np.mean(iou_aps[1:-1], axis=0)
    pose_aps[-1] = np.mean(pose_aps[1:-1], axis=0)
    return iou_aps, pose_aps
