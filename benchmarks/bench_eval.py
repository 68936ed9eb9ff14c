"""Time the evaluator on REAL275-sized synthetic predictions (2,750 images, 5-10 objects each).

.venv/bin/python benchmarks/bench_eval.py [--images 2750] [--no-exact]
"""

import argparse
import os
import platform
import time

from seqpose_core.eval import metrics_from_curves, score_results
from seqpose_core.eval.report import format_table
from seqpose_core.eval.synthetic import synthetic_results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--images', type=int, default=2750)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--no-exact', action='store_true', help='legacy metrics only')
    args = parser.parse_args()

    results = synthetic_results(args.images, seed=args.seed)
    num_gt = sum(len(r['gt_class_ids']) for r in results)
    num_pred = sum(len(r['pred_class_ids']) for r in results)
    start = time.perf_counter()
    curves = score_results(results, exact=not args.no_exact)
    elapsed = time.perf_counter() - start
    print(format_table(metrics_from_curves(curves)))
    print(
        f'scored {args.images} images ({num_gt} GT, {num_pred} predictions) in {elapsed:.2f} s '
        f'({"legacy only" if args.no_exact else "legacy + exact IoU"}; {platform.processor() or platform.machine()}, '
        f'{os.cpu_count()} CPUs)'
    )


if __name__ == '__main__':
    main()
