"""Per-image result pickles in the common format (object-deformnet / NOCS `results_*.pkl`): safe reading with
clear errors, and the writer the other SeqPose evaluations use.

Keys: gt_class_ids (n,), gt_RTs (n, 4, 4), gt_scales (n, 3), gt_handle_visibility (n,), pred_class_ids (m,),
pred_RTs (m, 4, 4), pred_scales (m, 3), pred_scores (m,); RTs are [sR | t] with the scale folded in and scales
the normalised extents. pred_bboxes / gt_bboxes (2D boxes) may be present and are not used; pred_track_ids (m,)
(SeqPose's own results: the runner's track ids) is checked when present and not used by the metrics.
"""

import glob
import os
import pickle
from pathlib import Path

import numpy as np

from seqpose_core.safe_pickle import safe_load

GT_KEYS = ('gt_class_ids', 'gt_RTs', 'gt_scales')
PRED_KEYS = ('pred_class_ids', 'pred_RTs', 'pred_scales', 'pred_scores')
RESULT_GLOB = 'results_*.pkl'


class ResultFormatError(ValueError):
    """A result pickle that does not hold what the evaluation format requires."""


def _numeric(value, source, key):
    try:
        array = np.asarray(value)
    except Exception as error:  # ragged lists and the like
        raise ResultFormatError(f'{source}: key {key!r} is not an array ({error})') from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ResultFormatError(f'{source}: key {key!r} must be numeric, got dtype {array.dtype}')
    return array


def _float_array(value, source, key, count, tail):
    """float32 stays float32 (the reference computes in the inputs' dtype); anything else becomes float64."""
    array = _numeric(value, source, key)
    if count == 0 and array.size == 0:
        array = array.reshape((0,) + tail)
    if array.shape != (count,) + tail:
        shape = ', '.join(['n'] + [str(size) for size in tail])
        raise ResultFormatError(f'{source}: key {key!r} has shape {array.shape}, expected ({shape}) with n={count}')
    return array.astype(np.float32 if array.dtype == np.float32 else np.float64)


def _class_ids(value, source, key):
    array = _numeric(value, source, key)
    if array.ndim != 1:
        raise ResultFormatError(f'{source}: key {key!r} has shape {array.shape}, expected (n,)')
    if array.size and not np.array_equal(array, np.round(array)):
        raise ResultFormatError(f'{source}: key {key!r} holds non-integer class ids')
    return array.astype(np.int64)


def _check_rt_rows(rts, source, key):
    bad = np.flatnonzero(~(rts[:, 3] == np.array([0, 0, 0, 1])).all(axis=1))
    if bad.size:
        raise ResultFormatError(
            f'{source}: key {key!r} entry {bad[0]} has last row {rts[bad[0], 3].tolist()}, '
            f'expected [0, 0, 0, 1] (a 4x4 sRT)'
        )


def validate_result(result, source='<result>'):
    """Check one result dict and return a normalised copy (numpy arrays of checked shapes).

    A missing gt_handle_visibility means every handle is visible, as the reference's evaluate.py assumes.
    """
    if not isinstance(result, dict):
        raise ResultFormatError(f'{source}: expected a dict of arrays, got {type(result).__name__}')
    missing = [key for key in GT_KEYS + PRED_KEYS if key not in result]
    if missing:
        raise ResultFormatError(f'{source}: missing key(s) {", ".join(missing)}')
    gt_class_ids = _class_ids(result['gt_class_ids'], source, 'gt_class_ids')
    pred_class_ids = _class_ids(result['pred_class_ids'], source, 'pred_class_ids')
    num_gt, num_pred = len(gt_class_ids), len(pred_class_ids)
    clean = {
        'gt_class_ids': gt_class_ids,
        'gt_RTs': _float_array(result['gt_RTs'], source, 'gt_RTs', num_gt, (4, 4)),
        'gt_scales': _float_array(result['gt_scales'], source, 'gt_scales', num_gt, (3,)),
        'pred_class_ids': pred_class_ids,
        'pred_RTs': _float_array(result['pred_RTs'], source, 'pred_RTs', num_pred, (4, 4)),
        'pred_scales': _float_array(result['pred_scales'], source, 'pred_scales', num_pred, (3,)),
    }
    visibility = result.get('gt_handle_visibility')
    if visibility is None:
        visibility = np.ones(num_gt)
    clean['gt_handle_visibility'] = _float_array(visibility, source, 'gt_handle_visibility', num_gt, ())
    # scores keep their dtype: the reference sorts them as stored, and ties are broken by that sort
    scores = _numeric(result['pred_scores'], source, 'pred_scores')
    if num_pred == 0 and scores.size == 0:
        scores = scores.reshape(0)
    if scores.shape != (num_pred,):
        raise ResultFormatError(f'{source}: key pred_scores has shape {scores.shape}, expected (n,) with n={num_pred}')
    clean['pred_scores'] = scores
    _check_rt_rows(clean['gt_RTs'], source, 'gt_RTs')
    _check_rt_rows(clean['pred_RTs'], source, 'pred_RTs')
    if 'pred_track_ids' in result:
        track_ids = _class_ids(result['pred_track_ids'], source, 'pred_track_ids')
        if len(track_ids) != num_pred:
            raise ResultFormatError(f'{source}: key pred_track_ids has {len(track_ids)} entries, expected {num_pred}')
        clean['pred_track_ids'] = track_ids
    for key in ('gt_bboxes', 'pred_bboxes', 'image_path'):
        if key in result:
            clean[key] = result[key]
    return clean


def load_result_file(path):
    """One pickle -> list of validated result dicts (a file may hold one dict or a list of them)."""
    data = safe_load(path, what='result pickle')
    items = data if isinstance(data, list) else [data]
    if isinstance(data, list) and not data:
        raise ResultFormatError(f'{path}: holds an empty list, expected result dicts')
    return [
        validate_result(item, f'{path}' if len(items) == 1 else f'{path}[{index}]') for index, item in enumerate(items)
    ]


def find_result_files(directory):
    """`results_*.pkl` in `directory`, sorted like the reference (the order decides ties between scores)."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f'{directory}: not a directory')
    paths = sorted(glob.glob(os.path.join(directory, RESULT_GLOB)))
    if not paths:
        raise FileNotFoundError(f'{directory}: no {RESULT_GLOB} files')
    return paths


def load_eval_output(path):
    """The results of a `seqpose eval` output folder (its results/*.pkl) or of a folder of results_*.pkl;
    FileNotFoundError naming the folder when it holds none."""
    path = Path(path)
    folder = path / 'results' if (path / 'results').is_dir() else path
    results = load_results_dir(folder)
    if not results:
        raise FileNotFoundError(f'{folder}: no results_*.pkl (expected a `seqpose eval` output folder)')
    return results


def load_results_dir(directory, progress=False):
    """Every result in `directory`, in the reference's order; `progress` shows a tqdm bar on stderr."""
    paths = find_result_files(directory)
    if progress:
        from tqdm import tqdm

        paths = tqdm(paths, desc='loading results', unit='file')
    results = []
    for path in paths:
        results.extend(load_result_file(path))
    return results


def detections_to_eval_format(detections):
    """SeqPose `Detection`s (metric size) -> (class_ids (n,) int64, RTs (n, 4, 4) [sR | t], scales (n, 3)) in
    the evaluation format (`Detection.nocs_rt_and_scales`). For predictions, and for ground truth that comes
    as Detections (e.g. vision_msgs ground truth in a bag): `make_result(preds, *detections_to_eval_format(gt))`.
    """
    rts, scales = [], []
    for detection in detections:
        rt, scale = detection.nocs_rt_and_scales()
        rts.append(rt)
        scales.append(scale)
    return (
        np.array([d.class_id for d in detections], dtype=np.int64),
        np.array(rts, dtype=np.float64).reshape(-1, 4, 4),
        np.array(scales, dtype=np.float64).reshape(-1, 3),
    )


def make_result(detections, gt_class_ids, gt_RTs, gt_scales, gt_handle_visibility=None, gt_bboxes=None):
    """One image's result dict from SeqPose `Detection`s and the GT in the evaluation format."""
    pred_class_ids, pred_rts, pred_scales = detections_to_eval_format(detections)
    gt_class_ids = np.asarray(gt_class_ids, dtype=np.int64).reshape(-1)
    result = {
        'gt_class_ids': gt_class_ids,
        'gt_RTs': np.asarray(gt_RTs, dtype=np.float64).reshape(-1, 4, 4),
        'gt_scales': np.asarray(gt_scales, dtype=np.float64).reshape(-1, 3),
        'gt_handle_visibility': (
            np.ones(len(gt_class_ids), dtype=np.int64)
            if gt_handle_visibility is None
            else np.asarray(gt_handle_visibility, dtype=np.int64).reshape(-1)
        ),
        'pred_class_ids': pred_class_ids,
        'pred_RTs': pred_rts,
        'pred_scales': pred_scales,
        'pred_scores': np.array([d.score for d in detections], dtype=np.float64),
        # the runner's tracker: the same object keeps its id through a video (-1: not tracked)
        'pred_track_ids': np.array([d.track_id for d in detections], dtype=np.int64),
    }
    if gt_bboxes is not None:
        result['gt_bboxes'] = np.asarray(gt_bboxes)
    validate_result(result, source='make_result')
    return result


def write_results_pickle(path, detections, gt_class_ids, gt_RTs, gt_scales, gt_handle_visibility=None, gt_bboxes=None):
    """Write one image's `results_*.pkl` (plain containers and arrays only, so `safe_load` reads it back)."""
    result = make_result(detections, gt_class_ids, gt_RTs, gt_scales, gt_handle_visibility, gt_bboxes)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, 'wb') as stream:
        pickle.dump(result, stream, protocol=4)
    return result
