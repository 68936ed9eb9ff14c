"""The monocular scale oracle (benchmarks/class_mean_reference.py --depth-oracle): predictions slid along their
viewing rays to the depth of the ground truth, which changes nothing a single RGB image shows (translation and
metric size scaled by one factor project to the same pixels) and removes the one number per object such an image
cannot determine."""

import numpy as np


def slide_to_ground_truth_depth(result):
    """A copy of one result dict with every prediction's [sR | t] scaled so that its centre lies at the depth of
    the same-class GT whose viewing ray is closest to its own (unchanged when the class has no GT)."""
    result = dict(result)
    pred_rts = np.array(result['pred_RTs'], dtype=np.float64, copy=True)
    gt_rts = np.asarray(result['gt_RTs'], dtype=np.float64)
    for index, (class_id, pose) in enumerate(zip(result['pred_class_ids'], pred_rts)):
        same = np.flatnonzero(np.asarray(result['gt_class_ids']) == class_id)
        translation = pose[:3, 3]
        distance = np.linalg.norm(translation)
        if len(same) == 0 or distance <= 0:
            continue
        gt_translations = gt_rts[same, :3, 3]
        gt_distances = np.linalg.norm(gt_translations, axis=1)
        cosines = gt_translations @ translation / (gt_distances * distance)
        nearest = int(np.argmax(cosines))
        pred_rts[index, :3, :] *= gt_distances[nearest] / distance
    result['pred_RTs'] = pred_rts
    return result
