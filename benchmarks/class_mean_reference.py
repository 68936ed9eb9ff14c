"""The class-mean-size reference of any `seqpose eval` output, printed beside the model's own numbers.

    python benchmarks/class_mean_reference.py demo_out/mf [--depth-oracle] [--json out.json]

The reference is a single-image predictor that has every class, rotation, shape and viewing ray exact and gives
each object its class's mean metric size, its centre slid along its ray so that the image stays the same
(seqpose_core.eval.class_mean_reference): only the instance's metric scale is unknown to it. A model number means
little without it: a single RGB image cannot know whether a mug is large and far or small and near. It is no
ceiling: a model can pass it on 10cm, because a scene's context carries scale this predictor is denied. Reads the
results/*.pkl of the output folder (which carry the ground truth) and its metrics.json; nothing is modified.

--depth-oracle adds the model's own predictions re-scored with each slid along its ray to the depth of the
nearest same-class object (seqpose_core.eval.depth_oracle): an ORACLE that uses the ground truth. It also
merges duplicates on one ray, so it flatters a model that has them; it is no headline number.
"""

import argparse
import json
import sys
from pathlib import Path

from seqpose_core.eval.class_mean_reference import class_mean_reference_results
from seqpose_core.eval.depth_oracle import slide_to_ground_truth_depth
from seqpose_core.eval.evaluator import evaluate_results
from seqpose_core.eval.results_io import load_eval_output

KEYS = ('IoU25', 'IoU50', 'IoU75', '10deg10cm', '10deg5cm', '5deg5cm', '10deg', '10cm', 'IoU50_exact')


def row(name, values):
    return f'{name:<22}' + ''.join(f'{values[key]:>12.1f}' for key in KEYS)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('eval_dir', help='a `seqpose eval` output folder (results/ and metrics.json)')
    parser.add_argument(
        '--depth-oracle',
        action='store_true',
        help="also the model with ground-truth depth along each prediction's ray (an oracle)",
    )
    parser.add_argument('--json', help="also write the class-mean reference's and the model's means here")
    args = parser.parse_args(argv)
    eval_dir = Path(args.eval_dir)
    results = load_eval_output(eval_dir)
    reference = evaluate_results(class_mean_reference_results(results))['mean']
    metrics_path = eval_dir / 'metrics.json'
    model = json.loads(metrics_path.read_text())['mean'] if metrics_path.is_file() else None
    print(f'{len(results)} images from {eval_dir}; mean AP (%)')
    print(f'{"":<22}' + ''.join(f'{key:>12}' for key in KEYS))
    if model:
        print(row('model', model))
    print(row('class-mean reference', reference))
    if model:
        print(
            row(
                'model / reference (%)',
                {key: 100 * model[key] / reference[key] if reference[key] else float('nan') for key in KEYS},
            )
        )
    oracle = None
    if args.depth_oracle:
        oracle = evaluate_results([slide_to_ground_truth_depth(result) for result in results])['mean']
        print(row('ORACLE: model, GT depth', oracle))
    if args.json:
        Path(args.json).write_text(
            json.dumps({'class_mean_reference': reference, 'model': model, 'depth_oracle': oracle}, indent=1)
        )
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except FileNotFoundError as error:  # no results where the user pointed: one line, no traceback
        sys.exit(f'class_mean_reference: {error}')
