"""`seqpose export`: the model as ONNX graphs for ONNX Runtime / TensorRT (seqpose_core.backends.export)."""

import json
import logging
import time

HELP = 'export a checkpoint (default: the embedded model) as ONNX graphs, the memory in and out'
DESCRIPTION = (
    HELP
    + """

Writes frame.onnx (one frame, the query memory in and out, so video works through it), refiner.onnx (the
second stage: the refiner and the crop scorer on a batch of crops, one CNN pass) and export.json (input size,
opset, score fusion, the model config and its weights' hash). `--backend onnxruntime` (eval, bag eval, bench)
or the node's `backend` parameter runs them; with `onnx_dir` unset they export themselves once into
~/.cache/seqpose/onnx.

Examples:
  seqpose export --out exported/default
  seqpose export --checkpoint runs/real_mf/best.pt --out exported/real_mf
  seqpose export --config seqpose_vits --input-size 238x322 --out exported/vits   # the paper's S, untrained
  seqpose eval --data DATA --backend onnxruntime --set inference.onnx_dir=exported/default"""
)


def add_arguments(parser):
    parser.add_argument('--out', required=True, metavar='DIR', help='directory for the graphs and export.json')
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--checkpoint', metavar='PATH', help='a SeqPose checkpoint (default: the embedded model)')
    source.add_argument(
        '--config', metavar='NAME', help='a shipped config or YAML, weights randomly initialised (for timing only)'
    )
    parser.add_argument(
        '--input-size', metavar='HxW', help="network input, multiples of 14 (default: the config's data input size)"
    )
    parser.add_argument('--opset', type=int, default=None, help='ONNX opset (default: the exporter module OPSET)')


def run(args):
    import torch

    from seqpose_core.backends.export import OPSET, export_graphs
    from seqpose_core.commands.bench import parse_image_size
    from seqpose_core.config import load_config
    from seqpose_core.model import build_model
    from seqpose_core.runner import DEFAULT_CHECKPOINT, load_model_and_config

    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    if args.config:
        config = load_config(args.config)
        torch.manual_seed(0)
        model = build_model(config.model, load_pretrained=False)
        source = f'config {args.config} (random weights)'
    else:
        path = args.checkpoint or DEFAULT_CHECKPOINT
        model, config = load_model_and_config(path)
        source = f'checkpoint {path}'
    input_hw = (
        parse_image_size(args.input_size, '--input-size')
        if args.input_size
        else (config.data.input_height, config.data.input_width)
    )
    if input_hw[0] % 14 or input_hw[1] % 14:
        raise ValueError(f'--input-size {args.input_size}: height and width must be multiples of 14')
    started = time.perf_counter()
    metadata = export_graphs(model, args.out, input_hw, config.inference.score_fusion, args.opset or OPSET)
    summary = {key: metadata[key] for key in ('input_size', 'opset', 'score_fusion', 'graphs', 'weights_sha256')}
    print(f'exported {source} into {args.out} in {time.perf_counter() - started:.0f} s')
    print(json.dumps(summary, indent=2))
    return 0
