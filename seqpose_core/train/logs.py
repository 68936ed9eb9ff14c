"""What a run writes as it goes: train_log.csv (losses, lr per logging window), val_log.csv (NOCS metrics) and,
when TensorBoard is installed, the same numbers under tensorboard/; the per-epoch tables of the second stages."""

import csv
import os
from pathlib import Path

from seqpose_core.train.losses import AZIMUTH_TERM, DENSE_TERMS, PROPOSAL_TERMS, QUERY_TERMS

LOG_NAME = 'train_log.csv'
VAL_LOG_NAME = 'val_log.csv'
LOG_TERMS = tuple(f'loss_{term}' for term in QUERY_TERMS + DENSE_TERMS + PROPOSAL_TERMS + (AZIMUTH_TERM,))
TRAIN_COLUMNS = ('step', 'epoch', 'kind', 'lr', 'loss', *LOG_TERMS, 'loss_aux', 'grad_norm', 'seconds_per_step')
VAL_KEYS = ('IoU25', 'IoU50', 'IoU75', '10deg10cm', '10deg5cm', '5deg5cm', '10deg', '10cm')


class CsvLog:
    """Append-only CSV with a fixed header; on resume, rows after the checkpoint's step are dropped (they will
    be produced again)."""

    def __init__(self, path, columns, resume_step=None):
        self.path = Path(path)
        self.columns = list(columns)
        if resume_step is not None and self.path.exists():
            with open(self.path, newline='', encoding='utf-8') as stream:
                rows = [row for row in csv.DictReader(stream) if int(row['step']) <= resume_step]
            self._rewrite(rows)
        elif not self.path.exists() or resume_step is None:
            self._rewrite([])

    def _rewrite(self, rows):
        tmp = self.path.with_suffix(f'.tmp{os.getpid()}')
        with open(tmp, 'w', newline='', encoding='utf-8') as stream:
            writer = csv.DictWriter(stream, fieldnames=self.columns, extrasaction='ignore')
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)

    def write(self, row):
        with open(self.path, 'a', newline='', encoding='utf-8') as stream:
            csv.DictWriter(stream, fieldnames=self.columns, extrasaction='ignore').writerow(
                {key: (f'{value:.6g}' if isinstance(value, float) else value) for key, value in row.items()}
            )


def write_rows(path, rows):
    """The whole per-epoch table of a second-stage training (its columns those of the last row), rewritten after
    every epoch so a stopped run leaves what it measured."""
    with open(path, 'w', newline='', encoding='utf-8') as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[-1]))
        writer.writeheader()
        writer.writerows(rows)


def open_tensorboard(run_dir):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: TensorBoard is not a dependency
        return None
    return SummaryWriter(log_dir=str(Path(run_dir) / 'tensorboard'))


class RunLogs:
    """The run's logs, written by the main process only."""

    def __init__(self, run_dir, resume_step=None):
        self.train = CsvLog(Path(run_dir) / LOG_NAME, TRAIN_COLUMNS, resume_step)
        self.val = CsvLog(Path(run_dir) / VAL_LOG_NAME, ('step', *VAL_KEYS), resume_step)
        self.tensorboard = open_tensorboard(run_dir)

    def write_train(self, row):
        """One logging window: mean losses, lr, epoch, step kind, seconds per step."""
        self.train.write(row)
        if self.tensorboard is not None:
            for name in ('loss', *LOG_TERMS, 'loss_aux', 'grad_norm'):
                if name in row:
                    self.tensorboard.add_scalar(f'train/{name}', row[name], row['step'])
            self.tensorboard.add_scalar('train/lr', row['lr'], row['step'])

    def write_val(self, step, metrics):
        """The 'mean' row of a validation's metrics."""
        self.val.write({'step': step, **{key: float(metrics.get(key, float('nan'))) for key in VAL_KEYS}})
        if self.tensorboard is not None:
            for key in VAL_KEYS:
                if key in metrics:
                    self.tensorboard.add_scalar(f'val/{key}', metrics[key], step)

    def close(self):
        if self.tensorboard is not None:
            self.tensorboard.close()
