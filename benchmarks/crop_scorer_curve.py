"""Learning curve of the crop scorer over the amount of training video: its ranking AUC on validation detections
against the number of training scenes, for one or more epoch budgets; a table and a plot.

    python benchmarks/crop_scorer_curve.py --checkpoint runs/refined.pt \\
        --detections runs/collected/detections.pt --val-detections runs/collected/val_detections.pt \\
        --scenes 125 250 500 1000 2000 --epochs 8 16 --out runs/scorer_curve

The detections are those `seqpose train-crop-scorer --keep-detections` kept (the model is not run here: each
point trains the head alone, seconds on a CPU). The checkpoint is the one the detections were collected with; its
scorer, if it has one, is not used: every point starts from the same fresh head (seed --seed), so the points
differ only in data and epochs. OUT gets curve.csv (one row per point: scenes, detections, epochs, the last
epoch's loss, accuracy and AUCs) and curve.png.
"""

import argparse
import csv
import dataclasses
import math
import sys
from pathlib import Path

import torch

from seqpose_core.commands.second_stage import grown_model
from seqpose_core.config import config_from_checkpoint
from seqpose_core.model.checkpoint import load_checkpoint
from seqpose_core.train.crop_scorer import ScorerSettings, first_scenes, load_detections, train_scorer

COLUMNS = ('scenes', 'detections', 'epochs', 'loss', 'accuracy', 'auc_score', 'auc_crop', 'auc_fused')


def fresh_scored_models(checkpoint, seed):
    """A function giving, at each call, the checkpoint's model with a new scorer head seeded with `seed` (whatever
    scorer the checkpoint carries); the checkpoint is read once."""
    content = load_checkpoint(checkpoint)
    config = config_from_checkpoint(content, checkpoint)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, refiner_scoring=True))
    content = {
        **content,
        'model': {key: value for key, value in content['model'].items() if not key.startswith('crop_scorer.')},
    }
    return lambda: grown_model(config, content, checkpoint, 'model with a fresh crop scorer', seed)


def curve_points(checkpoint, detections, val_detections, scene_counts, epoch_budgets, seed=0, batch_size=256):
    """One row (COLUMNS) per (epochs, scenes) pair."""
    fresh_model = fresh_scored_models(checkpoint, seed)
    refiner = fresh_model().pose_refiner
    data, val_data = load_detections(detections, refiner), load_detections(val_detections, refiner)
    available = int(data['scene_index'].max()) + 1
    rows = []
    for epochs in epoch_budgets:
        for scenes in scene_counts:
            if scenes > available:
                print(f'{scenes} scenes: the detections hold {available}; skipped', file=sys.stderr)
                continue
            subset = first_scenes(data, scenes)
            point_scorer = fresh_model().crop_scorer
            settings = ScorerSettings(epochs=epochs, batch_size=batch_size, seed=seed)
            history = train_scorer(point_scorer, subset, settings, val_data, progress=False)
            rows.append(
                {
                    'scenes': scenes,
                    'detections': len(subset['labels']),
                    'epochs': epochs,
                    **{key: history[-1][key] for key in COLUMNS[3:]},
                }
            )
            print('  '.join(f'{key} {rows[-1][key]:.4g}' for key in COLUMNS), flush=True)
    return rows


def plot(rows, path):
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    drawn = False
    for epochs in sorted({row['epochs'] for row in rows}):
        # a validation set without both right and wrong detections has no AUC (nan): nothing to draw for it
        points = sorted(
            (row['scenes'], row['auc_fused'])
            for row in rows
            if row['epochs'] == epochs and math.isfinite(row['auc_fused'])
        )
        if points:
            axis.plot(*zip(*points), marker='o', label=f'fused score, {epochs} epochs')
            drawn = True
    baseline = rows[0]['auc_score']
    if math.isfinite(baseline):
        axis.axhline(baseline, color='grey', linestyle='--', label=f"decoder's score alone ({baseline:.3f})")
    if drawn:
        axis.set_xscale('log')
        scenes = sorted({row['scenes'] for row in rows})
        axis.set_xticks(scenes, [str(count) for count in scenes])
        axis.minorticks_off()
        axis.legend()
    axis.set_xlabel('training scenes (12 frames each)')
    axis.set_ylabel('ranking AUC of the correct detections (validation)')
    axis.set_title('crop scorer: learning curve over training video')
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', required=True, help='the checkpoint the detections were collected with')
    parser.add_argument('--detections', required=True, help='training detections (--keep-detections)')
    parser.add_argument('--val-detections', required=True, help='validation detections (--keep-detections)')
    parser.add_argument('--scenes', type=int, nargs='+', required=True, help='training scene counts')
    parser.add_argument('--epochs', type=int, nargs='+', default=[ScorerSettings().epochs])
    parser.add_argument('--batch-size', type=int, default=ScorerSettings().batch_size)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument('--out', required=True, help='folder for curve.csv and curve.png')
    args = parser.parse_args(argv)
    if any(count < 1 for count in args.scenes + args.epochs + [args.batch_size]):
        parser.error('--scenes, --epochs and --batch-size: expected counts of at least 1')
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rows = curve_points(
        args.checkpoint,
        args.detections,
        args.val_detections,
        args.scenes,
        args.epochs,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    if not rows:
        parser.error("no point to draw: every --scenes count exceeds the detections' scenes")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / 'curve.csv', 'w', newline='', encoding='utf-8') as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out / 'curve.png')
    print(f'-> {out / "curve.csv"}, {out / "curve.png"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
