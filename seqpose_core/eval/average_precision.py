"""VOC-style average precision as the reference computes it, for many thresholds at once."""

import numpy as np


def voc_average_precision(true_positive, num_gt):
    """true_positive: (T, N) bool, predictions already in descending-score order; num_gt: GT count (int).

    Precision is padded with 0 at both ends and made non-increasing from the right (the envelope); recall is
    padded with 0 in front and 1 at the end (so unreached recall scores zero); AP sums envelope * recall step
    where recall changes. Recall is float32 as in the reference. No GT but some predictions gives NaN, as there.
    """
    true_positive = np.asarray(true_positive, dtype=bool)
    count = true_positive.shape[1]
    hits = np.cumsum(true_positive, axis=1)
    precision = hits / np.arange(1, count + 1)
    with np.errstate(invalid='ignore', divide='ignore'):
        recall = hits.astype(np.float32) / int(num_gt)
    rows = len(true_positive)
    precision = np.concatenate([np.zeros((rows, 1)), precision, np.zeros((rows, 1))], axis=1)
    recall = np.concatenate([np.zeros((rows, 1)), recall.astype(np.float64), np.ones((rows, 1))], axis=1)
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    step = recall[:, 1:] - recall[:, :-1]
    changed = recall[:, 1:] != recall[:, :-1]
    return np.where(changed, step * envelope[:, 1:], 0.0).sum(axis=1)
