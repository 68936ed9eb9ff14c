"""Which classes the refiner should serve, and how: chosen per class on selection sets, not on the test sets.

A refiner (model.pose_refiner) trained on every class is not better than the decoder on every class: the
small CNN may read a can's tilt worse than the decoder does, or its box part may move a bowl whose depth the
decoder had right. So each class gets the arm that scores best on held-out selection data:

- 'decoder': the decoder's pose (the class leaves inference.refiner.classes);
- 'rotation': the refiner's rotation, the decoder's box (in refiner.classes, not in refiner.box_classes);
- 'box': the refiner's rotation and box (in both; refiner with a box part only).

Score of an arm for a class: the mean over the sets of the sum of SELECTION_METRICS (mAP %, `seqpose eval`).
The sets must not be the ones the result is reported on.
"""

import math
import tempfile
from pathlib import Path

from seqpose_core import CLASS_NAMES
from seqpose_core.eval.run import evaluate_runner
from seqpose_core.runner import build_runner

ARMS = ('decoder', 'rotation', 'box')
SELECTION_METRICS = ('IoU25', 'IoU50', '10deg10cm', '10deg', '10cm')
# inference overrides that give each arm, the model serving every class it was trained on
ARM_OVERRIDES = {'decoder': {'refiner.rotation': False}, 'rotation': {'refiner.box': False}, 'box': {}}


def arms_of(model_cfg):
    return ARMS if model_cfg.refiner_box else ARMS[:2]


def score_arms(model, config, data_roots, split='test', mode='mf', progress=True):
    """{arm: {class name: score or None (no object of the class in any set)}} for the refiner classes of
    `config.inference.refiner`, every arm run with the refiner serving all of them (boxes too, where it has a
    box part)."""
    classes = config.inference.refiner.classes
    if config.model.refiner_width <= 0 or not classes:
        raise ValueError('select refiner classes: the model has no pose refiner (model.refiner_width 0)')
    serving = {'refiner.box_classes': classes if config.model.refiner_box else ()}
    sums = {arm: {name: [] for name in classes} for arm in arms_of(config.model)}
    with tempfile.TemporaryDirectory(prefix='refiner-selection-') as scratch:
        root = Path(scratch)  # the eval outputs are not kept: the scores are all that is used
        for arm in sums:
            runner = build_runner(model=model, config=config, mode=mode, overrides={**serving, **ARM_OVERRIDES[arm]})
            for index, data_root in enumerate(data_roots):
                metrics = evaluate_runner(
                    runner,
                    data_root,
                    split,
                    root / arm / f'{index}_{Path(data_root).name}',
                    overlays=0,
                    progress=progress,
                )
                for name in classes:
                    values = [metrics[name][key] for key in SELECTION_METRICS]
                    if not any(math.isnan(value) for value in values):
                        sums[arm][name].append(sum(values))
    return {
        arm: {name: (sum(values) / len(values) if values else None) for name, values in per_class.items()}
        for arm, per_class in sums.items()
    }


def choose_arms(scores, current):
    """{class name: arm}: the best-scoring arm per class (ties go to the simpler arm: decoder, then rotation);
    a class no set has objects of keeps `current[name]`."""
    chosen = {}
    for name in next(iter(scores.values())):
        scored = [
            (scores[arm][name], -position, arm) for position, arm in enumerate(scores) if scores[arm][name] is not None
        ]
        chosen[name] = max(scored)[2] if scored else current[name]
    return chosen


def current_arms(refiner_settings):
    """{class name: arm} that inference.refiner serves now."""
    return {name: 'box' if name in refiner_settings.box_classes else 'rotation' for name in refiner_settings.classes}


def classes_for(chosen):
    """(inference.refiner.classes, .box_classes) serving `chosen` ({class: arm}), in CLASS_NAMES order."""
    ordered = [name for name in CLASS_NAMES if name in chosen]
    return (
        tuple(name for name in ordered if chosen[name] != 'decoder'),
        tuple(name for name in ordered if chosen[name] == 'box'),
    )
