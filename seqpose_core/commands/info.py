"""`seqpose info`: build a model, load the given weights, print parameter counts and analytic GFLOPs."""

import sys

HELP = 'build a model from a config, load weights, print parameters per part and GFLOPs per frame'
DESCRIPTION = (
    HELP
    + """

Examples:
  seqpose info --config seqpose_vits
  seqpose info --config seqpose_vits --depth-anything-weights depth_anything_v2_vits.pth
  seqpose info --checkpoint runs/real_mf/best.pt
Exit status 1 when a weight file cannot be read or does not fit the model."""
)


def add_arguments(parser):
    parser.add_argument(
        '--config',
        default=None,
        help="YAML path or shipped config name (default: seqpose_vits, or the checkpoint's own)",
    )
    parser.add_argument('--dinov2-weights', metavar='PATH', help='official dinov2_vit{s,b,l}14_pretrain.pth')
    parser.add_argument(
        '--depth-anything-weights',
        metavar='PATH',
        help='official depth_anything_v2_vit{s,b,l}.pth (encoder + DPT head)',
    )
    parser.add_argument(
        '--checkpoint', metavar='PATH', help='a SeqPose checkpoint; alone it rebuilds the model from its stored config'
    )


PARTS = (
    ('encoder (DINOv2)', 'encoder'),
    ('geometry decoder (DPT head)', 'depth_head'),
    ('fusion (eq. 3)', 'fusion'),
    ('dense heads (eq. 4)', 'dense_heads'),
    ('query anchors', 'decoder.anchors'),
    (
        'STSQ embeddings + pose-aware LN',
        ('decoder.query_position', 'decoder.time_embedding', 'decoder.content_alignment', 'decoder.position_alignment'),
    ),
    ('STSQ decoder layers', 'decoder.layers'),
    ('pose heads (all layers)', 'decoder.pose_heads'),
)


def parameter_counts(model):
    counts = {}
    for label, prefixes in PARTS:
        prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
        counts[label] = sum(
            p.numel()
            for name, p in model.named_parameters()
            if any(name == q or name.startswith(q + '.') for q in prefixes)
        )
    counts['total'] = sum(p.numel() for p in model.parameters())
    return counts


def describe(model, config, name):
    from seqpose_core.model.flops import count_flops

    cfg = config.model
    input_hw = (config.data.input_height, config.data.input_width)
    lines = [
        f'config: {name}',
        f'encoder: {cfg.encoder} (width {model.encoder.embed_dim}, {len(model.encoder.blocks)} blocks, '
        f'levels {model.encoder.layer_indices}); DPT features {model.depth_head.features}',
        f'queries: {cfg.num_queries}, decoder layers: {cfg.decoder_layers}, memory: N={cfg.memory_frames} '
        f'x K={cfg.memory_top_k}, input: {input_hw[0]}x{input_hw[1]}',
        '',
        'parameters:',
    ]
    counts = parameter_counts(model)
    for label, count in counts.items():
        lines.append(f'  {label:<34} {count / 1e6:10.3f} M')
    lines.append(f'  {"(fp32 size)":<34} {counts["total"] * 4 / 2**20:10.1f} MiB')
    runs = (
        ('single frame, inference (dense off)', False, False),
        ('video steady state, inference', False, True),
        ('training forward (dense heads on, memory full)', True, True),
    )
    lines += ['', 'GFLOPs per frame (2 x MACs, analytic):']
    header = f'  {"":<48}' + ''.join(
        f'{k:>10}' for k in ('encoder', 'depth_head', 'fusion', 'dense', 'stsq', 'pose_head', 'total')
    )
    lines.append(header)
    for label, dense, memory_full in runs:
        flops = count_flops(cfg, input_hw, dense=dense, memory_full=memory_full)
        lines.append(f'  {label:<48}' + ''.join(f'{v / 1e9:10.3f}' for v in flops.values()))
    return '\n'.join(lines)


def run(args):
    from seqpose_core.config import ConfigError, load_config
    from seqpose_core.model.checkpoint import (
        WeightsError,
        load_checkpoint,
        load_depth_anything_weights,
        load_dinov2_weights,
        load_state_strict,
    )
    from seqpose_core.model.seqpose import build_model
    from seqpose_core.runner import load_model_and_config

    try:
        if args.checkpoint and not args.config:
            model, config = load_model_and_config(args.checkpoint, 'cpu')
            name = f'{args.checkpoint} (stored config)'
        else:
            name = args.config or 'seqpose_vits'
            config = load_config(name)
            model = build_model(config.model, load_pretrained=False)
            if args.checkpoint:
                load_state_strict(
                    model, load_checkpoint(args.checkpoint)['model'], args.checkpoint, f'model of config {name}'
                )
        if args.dinov2_weights:
            load_dinov2_weights(model, args.dinov2_weights)
        if args.depth_anything_weights:
            load_depth_anything_weights(model, args.depth_anything_weights)
    except (WeightsError, ConfigError, ValueError) as error:
        print(f'seqpose info: {error}', file=sys.stderr)
        return 1
    print(describe(model, config, name))
    loaded = [p for p in (args.checkpoint, args.dinov2_weights, args.depth_anything_weights) if p]
    if loaded:
        print('\nloaded: ' + ', '.join(loaded))
    return 0
