"""`seqpose eval` as the tests run it: every detection kept, no overlays, the result pickles read back."""

import pickle

from seqpose_core.cli import main as seqpose


def eval_results(checkpoint, data, out, mode, *options):
    """`seqpose eval` of `checkpoint` on the test split of `data` in `mode` ('mf' / 'sf') into `out`, score
    threshold 0, with the extra command-line `options`; the per-frame result dicts, in file-name order."""
    command = [
        'eval',
        '--checkpoint',
        str(checkpoint),
        '--data',
        str(data),
        '--split',
        'test',
        '--mode',
        mode,
        '--out',
        str(out),
        '--overlays',
        '0',
        '--set',
        'inference.score_threshold=0',
        *options,
    ]
    assert seqpose(command) == 0
    return [pickle.loads(path.read_bytes()) for path in sorted((out / 'results').glob('*.pkl'))]
