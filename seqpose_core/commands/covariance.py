"""`seqpose calibrate-covariance`: the pose covariance of a checkpoint's detections from its measured errors."""

HELP = 'fit the pose covariance (inference.covariance) from `seqpose eval` outputs, check it, store it in a checkpoint'
DESCRIPTION = (
    HELP
    + """

Per class, the detections of one or more `seqpose eval` output folders (--results; the model's own run on video it
was not trained on, in the mode it will serve) are matched to the ground truth and their errors give the standard
deviations: the position across and along the viewing ray, growing with the depth where the data says so, and the
rotation about the object's axes (seqpose_core/eval/covariance.py). --check scores the fit on other outputs: the
share of ground-truth centres inside the 95 % ellipsoid of their detection should be 0.95.

--table no_motion: runs without camera motion (and single-frame); odometry: runs with `--camera-motion odometry`
(the world fusion's centres). --write-into stores the table in a copy of --checkpoint (default: the embedded
model), its weights and everything else unchanged; the node then publishes it.

Examples:
  seqpose calibrate-covariance --results runs/selection/mf_none --check runs/heldout/mf_none
  seqpose calibrate-covariance --results runs/selection/mf_none --write-into runs/calibrated.pt
  seqpose calibrate-covariance --results runs/selection/mf_odo --table odometry \\
      --checkpoint runs/calibrated.pt --write-into runs/calibrated.pt --force"""
)

TABLES = ('no_motion', 'odometry')


def add_arguments(parser):
    parser.add_argument(
        '--results', nargs='+', required=True, metavar='RUN_DIR', help='`seqpose eval` output folders to fit on'
    )
    parser.add_argument(
        '--check', nargs='+', default=[], metavar='RUN_DIR', help='`seqpose eval` output folders to check the fit on'
    )
    parser.add_argument(
        '--table',
        choices=TABLES,
        default='no_motion',
        help='which table of inference.covariance (default: %(default)s)',
    )
    parser.add_argument(
        '--min-score',
        type=float,
        default=0.2,
        help="detections below this score are left out (default: %(default)s, the node's threshold)",
    )
    parser.add_argument(
        '--checkpoint', default=None, help='the checkpoint to store it in (default: the embedded model)'
    )
    parser.add_argument('--write-into', default=None, metavar='OUT.pt', help='write the calibrated checkpoint here')
    parser.add_argument('--force', action='store_true', help='overwrite --write-into if it exists')


def load_pairs(folders, min_score):
    """MatchedPairs of every result of `folders` (`seqpose eval` outputs), each pair labelled with its video (the
    folder and the scene its result file names: results_<split>_<scene>_<frame>.pkl)."""
    import re
    from pathlib import Path

    import numpy as np

    from seqpose_core.eval.covariance import MatchedPairs, matched_pairs
    from seqpose_core.eval.results_io import find_result_files, load_result_file

    parts, offset = [], 0
    for folder in folders:
        folder = Path(folder)
        directory = folder / 'results' if (folder / 'results').is_dir() else folder
        results, videos = [], []
        for path in find_result_files(directory):
            scene = re.sub(r'_\d+$', '', Path(path).stem)  # results_<split>_<scene>_<frame> -> the video
            for result in load_result_file(path):
                results.append(result)
                videos.append(scene)
        part = matched_pairs(results, min_score, progress=True, videos=videos)
        labels = part.videos + offset if part.videos is not None else np.zeros(0, np.int64)
        parts.append(MatchedPairs(*list(part.__dict__.values())[:5], labels))
        offset += len(set(videos))
    return MatchedPairs(*(np.concatenate([getattr(part, name) for part in parts]) for name in parts[0].__dict__))


def calibrated_checkpoint(content, table_name, table):
    """Checkpoint dict `content` with inference.covariance.<table_name> set to `table` ({class: row}) and enabled;
    the stored config's other entries as they were (old flat names included)."""
    from seqpose_core.config import config_from_checkpoint

    config = dict(content.get('config') or {})
    if content.get('config_type') == 'ModelConfig':
        raise ValueError('the checkpoint stores a model config only (no inference section to hold the covariance)')
    inference = dict(config.get('inference') or {})
    covariance = dict(inference.get('covariance') or {})
    covariance[table_name] = {**dict(covariance.get(table_name) or {}), **{k: list(v) for k, v in table.items()}}
    covariance['enabled'] = True
    inference['covariance'] = covariance
    config['inference'] = inference
    updated = {**content, 'config': config}
    config_from_checkpoint(updated)  # validated as it will be loaded
    return updated


def run(args):
    from pathlib import Path

    from seqpose_core.eval.covariance import coverage, fit_table, format_coverage, format_fit
    from seqpose_core.model.checkpoint import load_checkpoint, save_checkpoint_content
    from seqpose_core.runner import DEFAULT_CHECKPOINT

    if not 0.0 <= args.min_score <= 1.0:
        raise ValueError(f'--min-score {args.min_score}: expected a value in [0, 1]')
    out = Path(args.write_into) if args.write_into else None
    if out is not None and out.exists() and not args.force:
        raise FileExistsError(f'--write-into {out}: exists; pass --force to overwrite it')
    pairs = load_pairs(args.results, args.min_score)
    if not len(pairs):
        raise ValueError(f'--results {args.results}: no detection at or above score {args.min_score} matches an object')
    table, fits = fit_table(pairs)
    print(f'inference.covariance.{args.table} from {len(pairs)} matched detections:')
    print(format_fit(fits))
    print('fitting set: share inside the 95 % ellipsoid')
    print(format_coverage(coverage(pairs, table)))
    if args.check:
        print(f'check on {", ".join(args.check)}: share inside the 95 % ellipsoid (target 0.95)')
        print(format_coverage(coverage(load_pairs(args.check, args.min_score), table)))
    if out is not None:
        source = Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
        save_checkpoint_content(out, calibrated_checkpoint(load_checkpoint(source), args.table, table))
        print(f'-> {out} (inference.covariance.{args.table} of {source})')
    return 0
