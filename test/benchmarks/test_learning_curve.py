"""benchmarks/learning_curve.py on runs that kept only their logs (the shipped checkpoint's CSVs)."""

import runpy

import pytest

pytest.importorskip('matplotlib')


def logged_run(root, seconds_per_step, threads, validations):
    root.mkdir()
    (root / 'config.yaml').write_text(f'train:\n  num_threads: {threads}\n')
    rows = ['step,seconds_per_step'] + [f'{step},{seconds_per_step}' for step in (100, 200, 300, 400)]
    (root / 'train_log.csv').write_text('\n'.join(rows) + '\n')
    keys = 'IoU25,IoU50,10deg10cm,10deg,10cm'
    (root / 'val_log.csv').write_text(
        'step,'
        + keys
        + '\n'
        + ''.join(f'{step},' + ','.join(str(value + i) for i in range(5)) + '\n' for step, value in validations)
    )
    return root


def test_a_run_with_logs_only_is_drawn_from_its_val_log_and_chains_after_another(tmp_path):
    main = runpy.run_path('benchmarks/learning_curve.py')['main']
    first = logged_run(tmp_path / 'first', 1.5, 2, [(200, 10.0), (400, 20.0)])
    second = logged_run(tmp_path / 'second', 3.0, 1, [(400, 30.0)])
    table = tmp_path / 'table.md'
    assert (
        main([f'{first}+{second}', '--labels', 'chain', '--out', str(tmp_path / 'curve.png'), '--table', str(table)])
        == 0
    )
    rows = [line.split(' | ') for line in table.read_text().splitlines()[2:]]
    # CPU-minutes: 1.5 s x 100 steps x 2 threads per window; the second run starts where the first ended (20 min)
    assert [(row[1], row[2], row[3]) for row in rows] == [
        ('200', '10', '10.0'),
        ('400', '20', '20.0'),
        ('400', '40', '30.0'),
    ]
    assert rows[-1][-1] == '34.0 |'
    assert (tmp_path / 'curve.png').stat().st_size > 0


def test_a_run_continued_by_two_chains_is_listed_once(tmp_path):
    main = runpy.run_path('benchmarks/learning_curve.py')['main']
    shared = logged_run(tmp_path / 'shared', 1.5, 2, [(200, 10.0), (400, 20.0)])
    left = logged_run(tmp_path / 'left', 3.0, 1, [(400, 30.0)])
    right = logged_run(tmp_path / 'right', 3.0, 1, [(400, 40.0)])
    table = tmp_path / 'table.md'
    assert (
        main(
            [
                f'{shared}+{left}',
                f'{shared}+{right}',
                str(shared),
                '--labels',
                'a',
                'b',
                'c',
                '--out',
                str(tmp_path / 'curve.png'),
                '--table',
                str(table),
            ]
        )
        == 0
    )
    rows = [line.split(' | ') for line in table.read_text().splitlines()[2:]]
    assert [(row[0], row[1], row[3]) for row in rows] == [
        ('| a', '200', '10.0'),
        ('| a', '400', '20.0'),
        ('| a (left)', '400', '30.0'),
        ('| b (right)', '400', '40.0'),
    ]
