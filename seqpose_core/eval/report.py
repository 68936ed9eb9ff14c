"""What an evaluation writes: metrics.json (percent), the printed table, and ap_curves.png (the NOCS paper's
Figure 3: AP against 3D IoU, rotation and translation thresholds, per class and mean)."""

import json
import math
import os

import numpy as np

from .protocol import CLASS_NAMES, METRIC_NAMES, REPORT_ROWS

_COLOURS = ('tab:blue', 'tab:orange', 'tab:green', 'tab:pink', 'tab:olive', 'tab:purple', 'tab:red')


def _json_value(value):
    # NaN (a class with predictions but no GT, as in the reference) is not valid JSON: write null
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 6)


def metrics_json(metrics):
    """The metrics dict as the JSON text of metrics.json (rows and keys in the documented order)."""
    ordered = {row: {name: _json_value(metrics[row][name]) for name in METRIC_NAMES} for row in REPORT_ROWS}
    return json.dumps(ordered, indent=2)


def format_table(metrics, counts=None):
    """Plain-text table: one row per class and the mean, one column per metric (percent, 1 decimal)."""
    header = ['class'] + list(METRIC_NAMES)
    widths = [8] + [max(len(name), 6) for name in METRIC_NAMES]
    lines = ['  '.join(text.rjust(width) for text, width in zip(header, widths))]
    for row in CLASS_NAMES + ('mean',):
        cells = [row] + [f'{metrics[row][name]:.1f}' for name in METRIC_NAMES]
        lines.append('  '.join(text.rjust(width) for text, width in zip(cells, widths)))
    if counts is not None:
        num_gt, num_pred = counts
        lines.append(
            'objects per class (GT / predictions): '
            + ', '.join(f'{name} {int(g)}/{int(p)}' for name, g, p in zip(CLASS_NAMES, num_gt, num_pred))
        )
    return '\n'.join(lines)


def plot_ap_curves(curves, path):
    """AP (percent) against legacy 3D IoU (solid) and exact 3D IoU (dotted), rotation (any translation) and
    translation (any rotation); one line per class and the mean (dashed)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    labels = list(CLASS_NAMES) + ['mean']
    figure, (ax_iou, ax_rot, ax_shift) = plt.subplots(1, 3, figsize=(11, 4))
    degree_count = int(np.sum(curves.degree_thresholds <= 60))
    shift_count = int(np.sum(curves.shift_thresholds <= 10))
    for row, label in enumerate(labels):
        style = dict(color=_COLOURS[row], linestyle='--' if label == 'mean' else '-', linewidth=1.5)
        ax_iou.plot(100 * curves.iou_thresholds, 100 * curves.iou[row], **style)
        ax_iou.plot(
            100 * curves.iou_thresholds, 100 * curves.iou_exact[row], color=_COLOURS[row], linestyle=':', linewidth=1.0
        )
        # rotation at the "no translation limit" column, translation at the "no rotation limit" row
        ax_rot.plot(curves.degree_thresholds[:degree_count], 100 * curves.pose[row, :degree_count, -1], **style)
        ax_shift.plot(
            curves.shift_thresholds[:shift_count], 100 * curves.pose[row, -1, :shift_count], label=label, **style
        )
    for axis, title, xlabel, xlim in (
        (ax_iou, '3D IoU (dotted: exact box IoU)', 'IoU threshold (%)', 100),
        (ax_rot, 'Rotation', 'degrees', 60),
        (ax_shift, 'Translation', 'cm', 10),
    ):
        axis.set_title(title, fontsize=10)
        axis.set_xlabel(xlabel)
        axis.set_xlim(0, xlim)
        axis.set_ylim(0, 100)
        axis.grid(True, alpha=0.4)
    ax_iou.set_ylabel('average precision (%)')
    ax_shift.legend(loc='lower right', fontsize='small')
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(metrics, curves, out_dir):
    """Write OUT/metrics.json and OUT/ap_curves.png; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    metrics_path = os.path.join(out_dir, 'metrics.json')
    with open(metrics_path, 'w', encoding='utf-8') as stream:
        stream.write(metrics_json(metrics) + '\n')
    plot_path = os.path.join(out_dir, 'ap_curves.png')
    plot_ap_curves(curves, plot_path)
    return metrics_path, plot_path
