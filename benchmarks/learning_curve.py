"""Learning curves of training runs: validation metrics against CPU-minutes, plotted and tabulated.

    python benchmarks/learning_curve.py RUN_DIR [RUN_DIR ...] [--labels A B] [--out curve.png] [--table t.md]
    python benchmarks/learning_curve.py FIRST_RUN+WARM_STARTED_RUN ...   # one curve: the second run started
                                                                         # from the first's model

For every run: its train_log.csv gives the time (sum of seconds per step over the logged windows, times the
run's torch threads: CPU-minutes, comparable between runs on one or two cores) and every validation it kept
(val/step_<n>/results, written with no ground truth at inference) is scored again here with the mean over the
classes present in the validation ground truth (the reference's mean is NaN when a class the model predicts
has no ground truth in a few validation scenes). A run that kept only its logs (train_log.csv, val_log.csv and
config.yaml, no val/ folder) is drawn from val_log.csv, the mean training logged. The class-mean-size reference
of the same frames is drawn beside.
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import yaml

from seqpose_core import CLASS_NAMES
from seqpose_core.eval.class_mean_reference import class_mean_reference_results
from seqpose_core.eval.evaluator import evaluate_results
from seqpose_core.eval.results_io import load_eval_output, load_results_dir

KEYS = ('IoU25', 'IoU50', '10deg10cm', '10deg', '10cm')


def present_mean(metrics, results):
    """Mean over the classes that have ground truth in `results`."""
    present = sorted({int(c) for result in results for c in result['gt_class_ids']})
    return {key: float(np.mean([metrics[CLASS_NAMES[c - 1]][key] for c in present])) for key in KEYS}


def cpu_minutes_by_step(run_dir):
    """{step: CPU-minutes spent up to that step} from train_log.csv (seconds_per_step x steps x threads)."""
    config = yaml.safe_load((run_dir / 'config.yaml').read_text())
    threads = max(1, int(config.get('train', {}).get('num_threads') or 1))
    minutes, previous_step, elapsed = {0: 0.0}, 0, 0.0
    with open(run_dir / 'train_log.csv', encoding='utf-8') as stream:
        for row in csv.DictReader(stream):
            step = int(row['step'])
            elapsed += float(row['seconds_per_step']) * (step - previous_step) * threads / 60
            minutes[step] = elapsed
            previous_step = step
    return minutes


def logged_validations(run_dir):
    """The run's val_log.csv rows as points (the evaluator's mean over all six classes, as training logged it):
    for a run whose val/ results are gone, e.g. one whose logs alone were kept beside a shipped checkpoint."""
    with open(run_dir / 'val_log.csv', encoding='utf-8') as stream:
        return [{'step': int(row['step']), **{key: float(row[key]) for key in KEYS}} for row in csv.DictReader(stream)]


def curve(run_dir):
    minutes = cpu_minutes_by_step(run_dir)
    logged = np.array(sorted(minutes))
    points = []
    if not (run_dir / 'val').is_dir() and (run_dir / 'val_log.csv').is_file():
        for point in logged_validations(run_dir):
            nearest = logged[np.argmin(np.abs(logged - point['step']))]
            points.append(dict(point, cpu_minutes=minutes[int(nearest)]))
        return points, None
    for step_dir in sorted((run_dir / 'val').glob('step_*')):
        step = int(step_dir.name.split('_')[1])
        results = load_results_dir(step_dir / 'results')
        if not results:
            continue
        nearest = logged[np.argmin(np.abs(logged - step))]
        points.append(
            {'step': step, 'cpu_minutes': minutes[int(nearest)], **present_mean(evaluate_results(results), results)}
        )
    return points, results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('runs', nargs='+', help='run folders; A+B: B warm-started from A (one curve, B after A)')
    parser.add_argument('--labels', nargs='+')
    parser.add_argument('--out', type=Path, default=Path('learning_curve.png'))
    parser.add_argument('--table', type=Path, help='also write the table (markdown) here')
    parser.add_argument(
        '--reference',
        action='append',
        default=[],
        metavar='LABEL:EVAL_DIR:CPU_MINUTES',
        help='a finished model scored on the same frames (a `seqpose eval` output), drawn as a star',
    )
    args = parser.parse_args(argv)
    labels = args.labels or [Path(run.split('+')[-1]).name for run in args.runs]
    curves, segments, reference_mean = {}, [], None
    for label, chain in zip(labels, args.runs):
        points, offset, prefix = [], 0.0, ()
        for run in [Path(part) for part in chain.split('+')]:
            segment, last_results = curve(run)
            segment = [dict(p, cpu_minutes=p['cpu_minutes'] + offset) for p in segment]
            points += segment
            offset += max(cpu_minutes_by_step(run).values())
            prefix += (run,)
            # chains that continue one run draw it each, but the table lists it once (under its first chain)
            if prefix not in [seen for seen, _, _ in segments]:
                segments.append((prefix, label if len(prefix) == 1 else f'{label} ({run.name})', segment))
        curves[label] = points
        if reference_mean is None and last_results:
            reference_mean = present_mean(evaluate_results(class_mean_reference_results(last_results)), last_results)
    lines = ['| run | step | CPU-min | ' + ' | '.join(KEYS) + ' |', '|---|---|---|' + '---|' * len(KEYS)]
    for _, label, points in segments:
        lines += [
            f'| {label} | {p["step"]} | {p["cpu_minutes"]:.0f} | ' + ' | '.join(f'{p[k]:.1f}' for k in KEYS) + ' |'
            for p in points
        ]
    references = []
    for spec in args.reference:
        label, eval_dir, minutes = spec.rsplit(':', 2)
        results = load_eval_output(eval_dir)
        references.append(
            {'label': label, 'cpu_minutes': float(minutes), **present_mean(evaluate_results(results), results)}
        )
        lines.append(
            f'| {label} | | {float(minutes):.0f} | ' + ' | '.join(f'{references[-1][k]:.1f}' for k in KEYS) + ' |'
        )
    if reference_mean:
        lines.append('| class-mean reference | | | ' + ' | '.join(f'{reference_mean[k]:.1f}' for k in KEYS) + ' |')
    table = '\n'.join(lines)
    print(table)
    if args.table:
        args.table.write_text(table + '\n')

    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(KEYS), figsize=(4 * len(KEYS), 4.2), squeeze=False)
    for axis, key in zip(axes[0], KEYS):
        for label, points in curves.items():
            axis.plot([p['cpu_minutes'] for p in points], [p[key] for p in points], marker='o', label=label)
        for reference in references:
            axis.plot(
                [reference['cpu_minutes']],
                [reference[key]],
                marker='*',
                markersize=12,
                linestyle='none',
                label=reference['label'],
            )
        if reference_mean:
            axis.axhline(reference_mean[key], color='grey', linestyle='--', label='class-mean reference')
        axis.set_title(f'{key} (AP %, MF, no GT motion)')
        axis.set_xlabel('CPU-minutes')
        axis.grid(alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, names, loc='lower center', ncol=len(names), fontsize=8)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    figure.savefig(args.out, dpi=110)
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
