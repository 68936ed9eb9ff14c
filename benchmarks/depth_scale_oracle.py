"""How much of a model's error is the monocular scale ambiguity? Re-scores `seqpose eval` results with each
prediction slid along its own viewing ray to the depth of the nearest ground-truth object of its class.

From one image, an object twice as large and twice as far looks the same: position and size along the ray can
only come from priors (how big a mug usually is). Scaling a prediction's translation and metric size by one
factor keeps its image exactly the same, so this oracle fixes nothing the image shows — only the one number per
object a single RGB frame cannot fix. The gap between the two tables is what a depth sensor, known object sizes
or a camera height would give; what remains is the model's own error (class, image position, rotation, shape).

    python benchmarks/depth_scale_oracle.py runs/default/heldout_mf/results [--json out.json]

Prints the usual metrics table twice (as evaluated, and with the oracle depth); the results are not modified.
"""
import argparse
import json
import sys

from seqpose_core.eval.depth_oracle import slide_to_ground_truth_depth
from seqpose_core.eval.evaluator import evaluate_results
from seqpose_core.eval.report import format_table
from seqpose_core.eval.results_io import load_results_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('results', help='folder of results_*.pkl (the results/ of a `seqpose eval` output)')
    parser.add_argument('--json', help='also write both metric dicts here')
    args = parser.parse_args(argv)
    results = load_results_dir(args.results)
    as_evaluated = evaluate_results(results)
    oracle = evaluate_results([slide_to_ground_truth_depth(result) for result in results])
    print(f'{len(results)} images from {args.results}')
    print('as evaluated:')
    print(format_table(as_evaluated))
    print('each prediction at the depth of its nearest same-class object along its ray (monocular scale oracle):')
    print(format_table(oracle))
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as stream:
            json.dump({'as_evaluated': as_evaluated, 'depth_oracle': oracle}, stream, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
