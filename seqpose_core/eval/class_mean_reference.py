"""The class-mean-size reference: what a single-RGB-image predictor scores on given frames when it knows
everything but each instance's metric scale.

From one image an object twice as large and twice as far looks the same. This reference predictor knows every
object's class, rotation, shape (normalised extents) and viewing ray exactly and gives each object its class's
mean box diagonal (over the ground truth being scored), sliding the centre along its ray by mean diagonal / true
diagonal, which keeps the image exactly the same. Its score (one detection per object, score 1) is the reference
a monocular model is read against. It is no ceiling: a model can pass it on the translation metrics (10cm),
because a scene's context (the table, the neighbours, the object's own look) carries scale that this predictor is
denied. It moves a lot between scene sets, because each holds few instances per class.
"""

import numpy as np


def _scale_of(rts):
    """(n, 4, 4) [sR | t] -> (n,) s (the box diagonal in metres)."""
    return np.linalg.norm(rts[:, :3, 0], axis=1)


def class_mean_diagonals(results):
    """{class_id: mean box diagonal (metres)} over the ground truth of `results`."""
    diagonals = {}
    for result in results:
        rts = np.asarray(result['gt_RTs'], dtype=np.float64).reshape(-1, 4, 4)
        for class_id, diagonal in zip(np.asarray(result['gt_class_ids']).reshape(-1), _scale_of(rts)):
            diagonals.setdefault(int(class_id), []).append(diagonal)
    return {class_id: float(np.mean(values)) for class_id, values in diagonals.items()}


def class_mean_reference_result(result, mean_diagonals):
    """A copy of one result dict whose predictions are the class-mean-size reference's (see the module doc)."""
    gt_rts = np.asarray(result['gt_RTs'], dtype=np.float64).reshape(-1, 4, 4)
    class_ids = np.asarray(result['gt_class_ids'], dtype=np.int64).reshape(-1)
    factors = np.array([mean_diagonals[int(c)] for c in class_ids]) / np.maximum(_scale_of(gt_rts), 1e-12)
    pred_rts = gt_rts.copy()
    pred_rts[:, :3, :] *= factors[:, None, None]  # sR and t scaled alike: the same image
    reference = dict(result)
    reference.update(
        pred_class_ids=class_ids.copy(),
        pred_RTs=pred_rts,
        pred_scales=np.asarray(result['gt_scales'], dtype=np.float64).reshape(-1, 3).copy(),
        pred_scores=np.ones(len(class_ids)),
        pred_track_ids=np.full(len(class_ids), -1, dtype=np.int64),  # one per object, none tracked
    )
    return reference


def class_mean_reference_results(results):
    mean_diagonals = class_mean_diagonals(results)
    return [class_mean_reference_result(result, mean_diagonals) for result in results]
