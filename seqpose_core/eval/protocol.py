"""The evaluation protocol of the RGB category-level papers (object-deformnet's `compute_mAP` as its
`evaluate.py` calls it, itself derived from NOCS): thresholds, classes, symmetry, reported metrics.

Threshold lists are built exactly as the reference builds them (e.g. `i / 100`, not `0.01 * i`): the legacy
3D IoU is compared in float32 against these values, so a last-bit difference in a threshold would move matches.
"""

import numpy as np

from seqpose_core import CLASS_NAMES

NUM_CLASSES = len(CLASS_NAMES)
CLASS_IDS = tuple(range(1, NUM_CLASSES + 1))

IOU_THRESHOLDS = tuple(i / 100 for i in range(101))
# the last entry of each pose list is the "no limit" threshold the reference appends
DEGREE_THRESHOLDS = tuple(range(0, 61)) + (360,)
SHIFT_THRESHOLDS_CM = tuple(i / 2 for i in range(21)) + (100,)
# pose APs are computed only among predictions and GT matched at this legacy 3D IoU (use_matches_for_pose)
POSE_IOU_THRESHOLD = 0.1

# bottle, bowl, can: symmetric about the object y axis; a mug only when its handle is not visible
SYMMETRIC_CLASS_IDS = (1, 2, 4)
MUG_CLASS_ID = 6
# the legacy IoU of a symmetric object is the best over this many rotations of the prediction about its y axis
NUM_SYMMETRY_ROTATIONS = 20

LEGACY_IOU_METRICS = {'IoU25': 0.25, 'IoU50': 0.5, 'IoU75': 0.75}
EXACT_IOU_METRICS = {'IoU25_exact': 0.25, 'IoU50_exact': 0.5, 'IoU75_exact': 0.75}
# name -> (degrees, centimetres); 360 / 100 are the reference's "no limit" entries
POSE_METRICS = {
    '5deg2cm': (5, 2),
    '5deg5cm': (5, 5),
    '10deg2cm': (10, 2),
    '10deg5cm': (10, 5),
    '10deg10cm': (10, 10),
    '10deg': (10, 100),
    '10cm': (360, 10),
}
METRIC_NAMES = (
    'IoU25',
    'IoU50',
    'IoU75',
    '5deg2cm',
    '5deg5cm',
    '10deg2cm',
    '10deg5cm',
    '10deg10cm',
    '10deg',
    '10cm',
    'IoU25_exact',
    'IoU50_exact',
    'IoU75_exact',
)
REPORT_ROWS = ('mean',) + CLASS_NAMES


def is_symmetric(class_ids, handle_visibility):
    """Per object: evaluated modulo rotations about its y axis (the reference's rule, decided by the GT)."""
    class_ids = np.asarray(class_ids)
    return np.isin(class_ids, SYMMETRIC_CLASS_IDS) | (
        (class_ids == MUG_CLASS_ID) & (np.asarray(handle_visibility) == 0)
    )


def y_rotations(count=NUM_SYMMETRY_ROTATIONS):
    """(count, 4, 4) homogeneous rotations about y by 2*pi*i/count, built entry by entry as the reference does
    (scalar np.cos/np.sin of `2 * math.pi * i / float(n)`), so the legacy IoU reproduces bit for bit."""
    import math

    matrices = []
    for i in range(count):
        theta = 2 * math.pi * i / float(count)
        cos, sin = np.cos(theta), np.sin(theta)
        matrices.append(np.array([[cos, 0, sin, 0], [0, 1, 0, 0], [-sin, 0, cos, 0], [0, 0, 0, 1]], dtype=np.float64))
    return np.stack(matrices)
