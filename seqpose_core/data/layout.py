"""Where things are in the NOCS layout (CAMERA25 / REAL275, and `seqpose synth` output, the same layout):
split names -> folders, scene folders and their frames in the official order.

Layout (../shared/reference/nocs-data-format.md; NOCS `dataset.py`, object-deformnet `preprocess/pose_data.py`):

    ROOT/CAMERA/{train,val}/<5-digit folder>/<4-digit frame>_{color,depth,mask,coord}.png, _meta.txt[, _label.pkl]
    ROOT/Real/{train,test}/scene_<N>/<4-digit frame>_...
    ROOT/obj_models/real_{train,test}/<model_name>.txt      metric bbox extents (REAL)
    ROOT/obj_models/{train,val}/<synset>/<model_id>/bbox.txt  max corner, min corner rows (CAMERA, normalised)
    optional per scene folder: intrinsics.txt (3x3, numpy.savetxt) for renders that are not 640x480
    optional ROOT/<Kind>/<subset>_list.txt: object-deformnet's filtered frame list
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Official intrinsics at 640x480 (nocs-data-format.md §7), for scene folders without intrinsics.txt
REAL_INTRINSICS = np.array([[591.0125, 0.0, 322.525], [0.0, 590.16775, 244.11084], [0.0, 0.0, 1.0]])
CAMERA_INTRINSICS = np.array([[577.5, 0.0, 319.5], [0.0, 577.5, 239.5], [0.0, 0.0, 1.0]])
NATIVE_HW = (480, 640)

KINDS = {'real': 'Real', 'camera': 'CAMERA'}
SUBSETS = {'real': ('train', 'test', 'val'), 'camera': ('train', 'val')}


class NocsFormatError(ValueError):
    """A file of the NOCS layout is missing, unreadable or inconsistent with the others; the message names it."""


@dataclass(frozen=True)
class SplitLocation:
    kind: str  # 'real' or 'camera'
    subset: str  # 'train', 'test', 'val'
    folder: Path  # ROOT/Real/test ...

    @property
    def kind_folder(self):
        return self.folder.parent


def resolve_split(root, split):
    """Split name -> SplitLocation.

    Accepted names: 'real_train', 'real_test', 'camera_train', 'camera_val' (the training config's names),
    'Real/test' / 'CAMERA/val' (paths under ROOT), or a bare 'train' / 'test' / 'val', which means the REAL
    subset when ROOT/Real/<subset> exists, else the CAMERA one (a `seqpose synth` output holds only one kind).
    """
    root = Path(root)
    name = str(split).strip().replace('\\', '/')
    match = re.fullmatch(r'(?i)(real|camera)[_/](\w+)', name)
    if match:
        kind, subset = match.group(1).lower(), match.group(2)
        candidates = [(kind, subset)]
    elif '/' not in name and '_' not in name:
        candidates = [('real', name), ('camera', name)]
    else:
        raise NocsFormatError(
            f'split {split!r}: expected real_<subset>, camera_<subset>, Real/<subset>, '
            f'CAMERA/<subset> or a bare subset name'
        )
    for kind, subset in candidates:
        folder = root / KINDS[kind] / subset
        if folder.is_dir():
            return SplitLocation(kind, subset, folder)
    tried = ', '.join(str(root / KINDS[kind] / subset) for kind, subset in candidates)
    raise NocsFormatError(f'split {split!r}: no such folder ({tried})')


def _natural_key(name):
    """'scene_10' after 'scene_2': numbers compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', name)]


def _scene_folders(location):
    folders = [path for path in location.folder.iterdir() if path.is_dir()]
    if location.kind == 'camera':
        # CAMERA folders are 5-digit numbers (NOCS load_camera_scenes); anything else is not a frame folder
        folders = [path for path in folders if re.fullmatch(r'\d{5}', path.name)]
    return sorted(folders, key=lambda path: _natural_key(path.name))


def _frame_prefixes(scene_folder):
    """Frame prefixes (folder/0000) of a scene, sorted by frame id (the text before the first '_').

    Both kinds are enumerated from their `*_color.png` files. For the official CAMERA release this gives the
    same frames as NOCS's `10 x folders` enumeration with missing ids skipped; it also reads folders holding
    more than 10 frames (a `seqpose synth --mode single` output) without a special case."""
    ids = {path.name.split('_', 1)[0] for path in scene_folder.glob('*_color.png')}
    return [scene_folder / frame_id for frame_id in sorted(ids, key=_natural_key)]


def _read_image_list(path):
    entries = []
    for line_number, line in enumerate(path.read_text(encoding='utf-8', errors='replace').splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if len(line.split('/')) != 3:
            raise NocsFormatError(f'{path}:{line_number}: expected <subset>/<scene>/<frame>, got {line!r}')
        entries.append(line)
    return entries


def enumerate_scenes(root, split, use_image_list=True):
    """[(scene_name, [frame prefix Path, ...])] in the official order: REAL scene folders sorted numerically,
    CAMERA 5-digit folders in order, frames sorted; scenes without frames are left out.

    With `use_image_list`, object-deformnet's filtered list (`<Kind>/<subset>_list.txt`, entries like
    `test/scene_1/0000`) restricts the frames when it exists; an entry naming no frame on disk is an error."""
    location = resolve_split(root, split)
    scenes = [(folder.name, _frame_prefixes(folder)) for folder in _scene_folders(location)]
    list_path = location.kind_folder / f'{location.subset}_list.txt'
    if use_image_list and list_path.is_file():
        wanted = set(_read_image_list(list_path))
        on_disk = {f'{location.subset}/{name}/{prefix.name}' for name, prefixes in scenes for prefix in prefixes}
        missing = sorted(wanted - on_disk, key=_natural_key)
        if missing:
            raise NocsFormatError(
                f'{list_path}: {len(missing)} listed frame(s) have no _color.png under '
                f'{location.kind_folder}, e.g. {missing[:3]}'
            )
        scenes = [
            (name, [prefix for prefix in prefixes if f'{location.subset}/{name}/{prefix.name}' in wanted])
            for name, prefixes in scenes
        ]
    return [(name, prefixes) for name, prefixes in scenes if prefixes]


def iter_scenes(root, split):
    """Yield (scene_name, [frame prefix paths in order]) for every scene of a split, all frames on disk (no
    image-list filtering: video evaluation and bag export want every frame). A frame's files are
    `<prefix>_color.png` etc."""
    yield from enumerate_scenes(root, split, use_image_list=False)
