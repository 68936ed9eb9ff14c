"""`seqpose export`: the model as ONNX graphs (model.graph) and export.json, what they were made from.

    frame.onnx            one frame through the network, the memory in and out (static shapes, batch 1)
    refiner.onnx          the second stage on n crops (n dynamic): the refiner, and the crop scorer's class
                          logits in the same pass                          -- models with a refiner
    export.json           format, opset, input size, score fusion, the model config, the weights' hash

A directory is used only for the model it was made from: `read_export` compares the weights' hash, the input
size and the score fusion and refuses by name what differs.
"""

import copy
import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import torch

from seqpose_core.model.graph import (
    FRAME_INPUTS,
    FRAME_OUTPUTS,
    REFINER_INPUTS,
    FrameGraph,
    RefinerGraph,
)

EXPORT_FORMAT = 'seqpose-onnx'
EXPORT_VERSION = 1
METADATA_FILE = 'export.json'
OPSET = 18
GRAPH_FILES = {'frame': 'frame.onnx', 'refiner': 'refiner.onnx'}

log = logging.getLogger(__name__)


class ExportMismatch(ValueError):
    """An export directory that was made from another model or for other settings."""


def weights_hash(model):
    """sha256 of the model's tensors (names, shapes, dtypes, values): the same for every file that holds them."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f'{name}:{tuple(tensor.shape)}:{tensor.dtype};'.encode())
        digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes())
    return digest.hexdigest()


def export_graphs(model, out_dir, input_hw, score_fusion, opset=OPSET):
    """Write the model's graphs and export.json into out_dir; returns the metadata dict.

    model: a SeqPose (eval mode is set here); input_hw: the network input (height, width), multiples of 14;
    score_fusion: the runner's (baked into the graph: the memory keeps its top-K by the same score)."""
    import onnx

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # a copy: the caller's model stays on its device and in its mode (a runner on cuda keeps its torch model there)
    model = copy.deepcopy(model).cpu().eval()
    height, width = (int(v) for v in input_hw)
    graphs = {}
    frame = FrameGraph(model, score_fusion).eval()
    _export(
        frame,
        frame.example_inputs((height, width)),
        out_dir / GRAPH_FILES['frame'],
        FRAME_INPUTS,
        FRAME_OUTPUTS,
        {},
        opset,
    )
    graphs['frame'] = GRAPH_FILES['frame']
    crop_size = model.cfg.refiner_crop_size
    crops = torch.rand(2, 3, crop_size, crop_size) * 255
    batch = torch.export.Dim('detections', min=1, max=1024)
    if model.pose_refiner is not None:
        refiner = RefinerGraph(model.second_stage).eval()
        _export(
            refiner,
            (crops, torch.tensor([1, 2])),
            out_dir / GRAPH_FILES['refiner'],
            REFINER_INPUTS,
            refiner.output_names,
            {'crops': {0: batch}, 'class_ids': {0: batch}},
            opset,
        )
        graphs['refiner'] = GRAPH_FILES['refiner']
    for name in graphs.values():
        onnx.checker.check_model(str(out_dir / name), full_check=True)
    metadata = {
        'format': EXPORT_FORMAT,
        'version': EXPORT_VERSION,
        'opset': opset,
        'input_size': [height, width],
        'score_fusion': score_fusion,
        'weights_sha256': weights_hash(model),
        'model': dataclasses.asdict(model.cfg),
        'graphs': graphs,
        'torch': torch.__version__,
    }
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + '\n')
    return metadata


def _export(module, inputs, path, input_names, output_names, dynamic_shapes, opset):
    log.info('exporting %s', path)
    shapes = {name: dynamic_shapes.get(name) for name in input_names} if dynamic_shapes else None
    # traced with autograd on: the model's CPU inference fast paths (FeatureFusion's level table, sampled with
    # embedding_bag) have no fast ONNX form, while grid_sample does (ONNX GridSample); the values are the same
    with torch.enable_grad():
        program = torch.onnx.export(
            module,
            tuple(inputs),
            input_names=list(input_names),
            output_names=list(output_names),
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=shapes,
            verbose=False,
        )
    program.save(str(path))


def read_export(directory, model=None, input_hw=None, score_fusion=None):
    """export.json of `directory`, checked against what the caller runs (each given: the model's weights hash,
    the input size, the score fusion). Raises ExportMismatch naming the directory and what differs."""
    directory = Path(directory)
    path = directory / METADATA_FILE
    if not path.is_file():
        raise ExportMismatch(f'onnx_dir {directory}: no {METADATA_FILE} (make one with `seqpose export --out DIR`)')
    try:
        metadata = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ExportMismatch(f'{path}: not JSON ({error})') from None
    if metadata.get('format') != EXPORT_FORMAT or metadata.get('version') != EXPORT_VERSION:
        raise ExportMismatch(
            f'{path}: format {metadata.get("format")!r} version {metadata.get("version")!r}, expected '
            f'{EXPORT_FORMAT!r} version {EXPORT_VERSION}'
        )
    differences = []
    if model is not None and metadata.get('weights_sha256') != weights_hash(model):
        differences.append('weights (exported from another checkpoint)')
    if input_hw is not None and list(metadata.get('input_size', ())) != [int(v) for v in input_hw]:
        differences.append(f'input size {metadata.get("input_size")} != {list(input_hw)}')
    if score_fusion is not None and metadata.get('score_fusion') != score_fusion:
        differences.append(f'score_fusion {metadata.get("score_fusion")!r} != {score_fusion!r}')
    missing = [name for name in metadata.get('graphs', {}).values() if not (directory / name).is_file()]
    if missing:
        differences.append(f'missing graphs {missing}')
    if differences:
        raise ExportMismatch(
            f'onnx_dir {directory} does not match the model being run: {"; ".join(differences)} '
            '(export again with `seqpose export --checkpoint CKPT --out DIR`)'
        )
    return metadata
