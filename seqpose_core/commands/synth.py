"""`seqpose synth`: synthetic training/test data in the NOCS layout (REAL-like videos or CAMERA-like frames)."""

import time
from pathlib import Path

import numpy as np

HELP = 'generate synthetic NOCS-format data (REAL-like videos or CAMERA-like single frames)'
DESCRIPTION = (
    HELP
    + """

Video mode writes OUT/Real/{train,test}/scene_<N>/ with a smooth hand-held camera path around a table;
single mode writes OUT/CAMERA/{train,val}/<5-digit>/ with independent random views. Object models go to
OUT/obj_models/. --split auto holds out the last round(N/5) scenes (at least one when N >= 2) as test/val.
The same --seed reproduces identical files."""
)


def _size(text):
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise ValueError(f'--size {text!r}: expected WxH, e.g. 640x480') from None
    if width < 16 or height < 16 or width > 8192 or height > 8192:
        raise ValueError(f'--size {text!r}: width and height must be in 16..8192')
    return width, height


def add_arguments(parser):
    parser.add_argument('--out', required=True, help='output root (gets Real/ or CAMERA/ and obj_models/)')
    parser.add_argument('--scenes', type=int, default=2, help='scenes (video) or folders (single) to generate')
    parser.add_argument('--frames', type=int, default=30, help='frames per scene / folder (CAMERA uses 10)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--size', default='640x480', help='image size WxH (default 640x480, as NOCS)')
    parser.add_argument('--mode', choices=('video', 'single'), default='video')
    parser.add_argument(
        '--split', default='auto', help='auto (last ~20%% of scenes held out), or train / test (video) / val (single)'
    )
    parser.add_argument('--models', help='folder of own meshes: DIR/<category>/*.obj|ply, NOCS axes (y up)')
    parser.add_argument('--backgrounds', help='folder of background images (searched recursively)')
    parser.add_argument('--objects', default='3-6', help='objects per scene, MIN-MAX (default 3-6)')
    parser.add_argument(
        '--moving-objects',
        type=float,
        default=0.0,
        metavar='P',
        help='video: the chance (0..1) that one object of a video is slid 15-30 cm across the table mid-video, as if '
        'picked up and put down (default 0: static scenes)',
    )
    parser.add_argument('--overwrite', action='store_true', help='replace scene folders that already exist')
    parser.add_argument('--preview', action='store_true', help='also write OUT/preview.png (a contact sheet)')
    parser.add_argument(
        '--workers',
        type=int,
        default=1,
        help='processes rendering scenes side by side (default 1); the files do not depend on it',
    )


def run(args):
    from tqdm import tqdm

    from seqpose_core.synth.generator import SynthOptions, generate

    width, height = _size(args.size)
    try:
        low, high = (int(v) for v in str(args.objects).split('-'))
    except ValueError:
        raise ValueError(f'--objects {args.objects!r}: expected MIN-MAX, e.g. 3-6') from None
    options = SynthOptions(
        out=args.out,
        scenes=args.scenes,
        frames=args.frames,
        seed=args.seed,
        width=width,
        height=height,
        mode=args.mode,
        split=args.split,
        models=args.models,
        backgrounds=args.backgrounds,
        overwrite=args.overwrite,
        objects_min=low,
        objects_max=high,
        workers=args.workers,
        moving_objects=args.moving_objects,
    )
    total = args.scenes * args.frames
    started = time.perf_counter()
    with tqdm(total=total, unit='frame', desc='synth') as bar:
        writer = generate(options, progress=bar.update)
    elapsed = time.perf_counter() - started
    print(
        f'{total} frames ({width}x{height}, {args.mode}) in {elapsed:.1f} s = {total / elapsed:.1f} frames/s '
        f'-> {writer.root}'
    )
    if args.preview:
        from seqpose_core.synth.preview import contact_sheet

        prefixes = preview_frames(writer)
        path = contact_sheet(prefixes, writer.K, Path(args.out) / 'preview.png')
        print(f'preview: {path}')
    return 0


def preview_frames(writer, rows=4):
    """A few frames spread over the run: from the first scenes of each split, first to last frame."""
    entries = [entry for split in sorted(writer.lists_all) for entry in writer.lists_all[split]]
    picks = sorted(set(int(round(i)) for i in np.linspace(0, len(entries) - 1, min(rows, len(entries)))))
    return [writer.root / entries[i] for i in picks]
