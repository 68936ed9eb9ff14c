"""`seqpose eval-results DIR --out OUT`: score a directory of per-image result pickles."""

import sys

HELP = 'score a directory of results_*.pkl (NOCS / object-deformnet format): metrics.json + AP curves'
DESCRIPTION = """Score per-image result pickles exactly as the RGB category-level papers do (object-deformnet's
compute_mAP: legacy 3D IoU 25/50/75, 5deg2cm ... 10deg10cm, 10deg, 10cm), plus the true oriented-box 3D IoU
(IoU25_exact / IoU50_exact / IoU75_exact). Writes OUT/metrics.json (percent) and OUT/ap_curves.png."""


def add_arguments(parser):
    parser.add_argument('results_dir', metavar='DIR', help='directory holding results_*.pkl')
    parser.add_argument('--out', required=True, metavar='OUT', help='output directory (created if missing)')
    parser.add_argument('--no-exact', action='store_true', help='skip the exact box IoU (faster)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')


def run(args):
    from seqpose_core.eval.evaluator import metrics_from_curves, score_results
    from seqpose_core.eval.report import format_table, write_report
    from seqpose_core.eval.results_io import load_results_dir

    try:
        results = load_results_dir(args.results_dir, progress=not args.quiet)
    except (FileNotFoundError, ValueError) as error:
        print(f'seqpose eval-results: {error}', file=sys.stderr)
        return 2
    curves = score_results(results, exact=not args.no_exact, validate=False)
    metrics = metrics_from_curves(curves)
    print(f'{len(results)} images')
    print(format_table(metrics, counts=(curves.num_gt, curves.num_pred)))
    metrics_path, plot_path = write_report(metrics, curves, args.out)
    print(f'wrote {metrics_path} and {plot_path}')
    return 0
