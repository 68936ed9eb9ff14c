"""What the runner calls for the network under inference.backend."""

import logging
import os
import shutil
import tempfile
from pathlib import Path

from seqpose_core.backends.export import ExportMismatch, export_graphs, read_export, weights_hash

log = logging.getLogger(__name__)


def export_cache_root():
    """Where exports made on first use live: $XDG_CACHE_HOME/seqpose/onnx (default ~/.cache/seqpose/onnx)."""
    return Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'seqpose' / 'onnx'


def cache_directory(model, input_hw, score_fusion):
    """Where the cache keeps the graphs of `model` at input_hw with score_fusion."""
    height, width = input_hw
    return export_cache_root() / f'{weights_hash(model)[:16]}-{height}x{width}-{score_fusion}'


def cached_export(model, input_hw, score_fusion):
    """A directory holding the graphs of `model` at input_hw with score_fusion: exported once (written beside and
    renamed, so a second process never reads half a directory), found again by the weights' hash."""
    directory = cache_directory(model, input_hw, score_fusion)
    try:
        read_export(directory, input_hw=input_hw, score_fusion=score_fusion)
        return directory
    except ExportMismatch:
        pass
    directory.parent.mkdir(parents=True, exist_ok=True)
    log.warning('backend onnxruntime: exporting the model once into %s (about half a minute)', directory)
    staging = Path(tempfile.mkdtemp(prefix='.export-', dir=directory.parent))
    try:
        export_graphs(model, staging, input_hw, score_fusion)
        if directory.exists():
            shutil.rmtree(directory, ignore_errors=True)
        try:
            staging.rename(directory)
        except OSError:
            # another process (a second node, a parallel eval) finished the same export first: use theirs
            read_export(directory, input_hw=input_hw, score_fusion=score_fusion)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return directory


def build_network(model, inference, input_hw):
    """The network the runner calls: `model` itself (backend 'torch'), or its graphs in ONNX Runtime
    (backend 'onnxruntime': inference.onnx_dir, checked against the model, or an export made once into the cache)."""
    if inference.backend == 'torch':
        return model
    from seqpose_core.backends.onnx_runtime import OnnxRuntimeModel

    if inference.onnx_dir:
        directory = Path(inference.onnx_dir)
        read_export(directory, model=model, input_hw=input_hw, score_fusion=inference.score_fusion)
    else:
        directory = cached_export(model, input_hw, inference.score_fusion)
    return OnnxRuntimeModel(directory, model.cfg, inference.device, inference.engine_cache)
