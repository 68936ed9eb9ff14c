"""Reader of the official NOCS layout (CAMERA25 / REAL275) and of `seqpose synth` output (the same layout).

Layout and encodings follow ../shared/reference/nocs-data-format.md (NOCS `dataset.py`, object-deformnet
`preprocess/pose_data.py`, `lib/utils.py`):

    ROOT/CAMERA/{train,val}/<5-digit folder>/<4-digit frame>_{color,depth,mask,coord}.png, _meta.txt[, _label.pkl]
    ROOT/Real/{train,test}/scene_<N>/<4-digit frame>_...
    ROOT/obj_models/real_{train,test}/<model_name>.txt      metric bbox extents (REAL)
    ROOT/obj_models/{train,val}/<synset>/<model_id>/bbox.txt  max corner, min corner rows (CAMERA, normalised)
    optional per scene folder: intrinsics.txt (3x3, numpy.savetxt) for renders that are not 640x480

Ground truth comes from the object-deformnet `_label.pkl` when there is one; otherwise it is derived the way
those repositories do: the coord map of each instance is aligned to its back-projected depth (Umeyama).
Every failure names the file it came from.
"""
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from seqpose_core import NUM_CLASSES
from seqpose_core.geometry import backproject, compose_scaled_pose
from seqpose_core.safe_pickle import safe_load

# Official intrinsics at 640x480 (nocs-data-format.md §7)
REAL_INTRINSICS = np.array([[591.0125, 0.0, 322.525], [0.0, 590.16775, 244.11084], [0.0, 0.0, 1.0]])
CAMERA_INTRINSICS = np.array([[577.5, 0.0, 319.5], [0.0, 577.5, 239.5], [0.0, 0.0, 1.0]])
NATIVE_HW = (480, 640)

MASK_BACKGROUND = 255
# object-deformnet's 3-channel depth encoding marks "no reading" with this value
ENCODED_DEPTH_INVALID = 32001
# object-deformnet drops instances with fewer valid-depth mask pixels than this at 640x480; we scale it with
# the image area so that small renders keep proportionally small objects
MIN_PIXELS_AT_NATIVE = 64
_PNG_END = b'IEND\xaeB`\x82'

KINDS = {'real': 'Real', 'camera': 'CAMERA'}
SUBSETS = {'real': ('train', 'test', 'val'), 'camera': ('train', 'val')}


class NocsFormatError(ValueError):
    """A file of the NOCS layout is missing, unreadable or inconsistent with the others; the message names it."""


# --- splits and enumeration --------------------------------------------------------------------------------

@dataclass(frozen=True)
class SplitLocation:
    kind: str      # 'real' or 'camera'
    subset: str    # 'train', 'test', 'val'
    folder: Path   # ROOT/Real/test ...

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
        raise NocsFormatError(f'split {split!r}: expected real_<subset>, camera_<subset>, Real/<subset>, '
                              f'CAMERA/<subset> or a bare subset name')
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
            raise NocsFormatError(f'{list_path}: {len(missing)} listed frame(s) have no _color.png under '
                                  f'{location.kind_folder}, e.g. {missing[:3]}')
        scenes = [(name, [prefix for prefix in prefixes if f'{location.subset}/{name}/{prefix.name}' in wanted])
                  for name, prefixes in scenes]
    return [(name, prefixes) for name, prefixes in scenes if prefixes]


def iter_scenes(root, split):
    """Yield (scene_name, [frame prefix paths in order]) for every scene of a split, all frames on disk (no
    image-list filtering: video evaluation and bag export want every frame). A frame's files are
    `<prefix>_color.png` etc."""
    yield from enumerate_scenes(root, split, use_image_list=False)


# --- per-file readers ----------------------------------------------------------------------------------------

def _read_png(path, flags, what):
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NocsFormatError(f'{path}: missing {what} image') from None
    except OSError as error:
        raise NocsFormatError(f'{path}: cannot read {what} image: {error.strerror or error}') from None
    if not data:
        raise NocsFormatError(f'{path}: empty {what} image file')
    # libpng may hand back a partly decoded image for a cut-off file; a complete PNG ends with its IEND chunk
    if data[:8] == b'\x89PNG\r\n\x1a\n' and not data.rstrip(b'\0').endswith(_PNG_END):
        raise NocsFormatError(f'{path}: truncated {what} image (no PNG end chunk)')
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise NocsFormatError(f'{path}: corrupt {what} image (cannot be decoded)')
    return image


def read_color(path):
    """uint8 (H, W, 3) RGB; the files are BGR as cv2 writes them; grey or BGRA files are converted."""
    image = _read_png(path, cv2.IMREAD_UNCHANGED, 'color')
    if image.dtype != np.uint8:
        raise NocsFormatError(f'{path}: color image must be 8-bit, got {image.dtype}')
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    elif image.shape[2] != 3:
        raise NocsFormatError(f'{path}: color image must have 3 channels, got {image.shape[2]}')
    return np.ascontiguousarray(image[:, :, ::-1])


def read_depth(path):
    """float32 (H, W) metres, 0 = no reading.

    16-bit single channel = millimetres; 8-bit 3-channel = the encoding of NOCS `load_depth`:
    green * 256 + red (cv2 channels 1 and 2), with object-deformnet's 32001 -> 0."""
    image = _read_png(path, cv2.IMREAD_UNCHANGED, 'depth')
    if image.ndim == 3 and image.shape[2] >= 3:
        millimetres = image[:, :, 1].astype(np.int32) * 256 + image[:, :, 2].astype(np.int32)
        millimetres[millimetres == ENCODED_DEPTH_INVALID] = 0
    elif image.ndim == 2 and image.dtype == np.uint16:
        millimetres = image
    else:
        raise NocsFormatError(f'{path}: depth must be 16-bit single channel or 8-bit 3-channel encoded, got '
                              f'dtype {image.dtype} shape {image.shape}')
    return millimetres.astype(np.float32) / 1000.0


def read_mask(path):
    """uint8 (H, W) instance ids, 255 = background (cv2 channel 2, as the NOCS / object-deformnet loaders)."""
    image = _read_png(path, cv2.IMREAD_UNCHANGED, 'mask')
    if image.dtype != np.uint8:
        raise NocsFormatError(f'{path}: mask must be 8-bit, got {image.dtype}')
    if image.ndim == 3:
        if image.shape[2] < 3:
            raise NocsFormatError(f'{path}: mask has {image.shape[2]} channels, expected 1 or 3')
        image = image[:, :, 2]
    return np.ascontiguousarray(image)


def read_coord(path):
    """float32 (H, W, 3) object coordinates in [-0.5, 0.5] (NOCS process_data: BGR->RGB, /255, z = 1 - z,
    then - 0.5 so that the NOCS cube centre is the object origin). Values off the instance masks are junk."""
    image = _read_png(path, cv2.IMREAD_COLOR, 'coord')
    coord = image[:, :, ::-1].astype(np.float32) / 255.0
    coord[:, :, 2] = 1.0 - coord[:, :, 2]
    return coord - 0.5


@dataclass(frozen=True)
class MetaEntry:
    instance_id: int
    class_id: int           # 0 = background / distractor (skipped by every loader)
    model_name: str         # REAL: the obj_models name; CAMERA: the model id
    synset: str = ''        # CAMERA only

    @property
    def model_key(self):
        """Identity of the physical instance across frames (REAL: model name; CAMERA: synset/model id)."""
        return f'{self.synset}/{self.model_name}' if self.synset else self.model_name


def read_meta(path):
    """`_meta.txt` -> [MetaEntry]: REAL lines `inst_id class_id model_name`, CAMERA lines
    `inst_id class_id synset_id model_id`."""
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8', errors='replace')
    except FileNotFoundError:
        raise NocsFormatError(f'{path}: missing meta file') from None
    except OSError as error:
        raise NocsFormatError(f'{path}: cannot read meta file: {error.strerror or error}') from None
    entries, seen = [], set()
    for line_number, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) not in (3, 4):
            raise NocsFormatError(f'{path}:{line_number}: expected "inst_id class_id model_name" or "inst_id '
                                  f'class_id synset_id model_id", got {line.strip()!r}')
        try:
            instance_id, class_id = int(tokens[0]), int(tokens[1])
        except ValueError:
            raise NocsFormatError(f'{path}:{line_number}: instance and class ids must be integers, got '
                                  f'{line.strip()!r}') from None
        if not 0 <= class_id <= NUM_CLASSES:
            raise NocsFormatError(f'{path}:{line_number}: class id {class_id} is not 0..{NUM_CLASSES}')
        if not 0 <= instance_id < MASK_BACKGROUND:
            raise NocsFormatError(f'{path}:{line_number}: instance id {instance_id} is not 0..254')
        if instance_id in seen:
            raise NocsFormatError(f'{path}:{line_number}: instance id {instance_id} appears twice')
        seen.add(instance_id)
        if len(tokens) == 3:
            entries.append(MetaEntry(instance_id, class_id, tokens[2]))
        else:
            entries.append(MetaEntry(instance_id, class_id, tokens[3], synset=tokens[2]))
    return entries


def read_intrinsics_file(path):
    try:
        K = np.loadtxt(path, dtype=np.float64)
    except (OSError, ValueError) as error:
        raise NocsFormatError(f'{path}: cannot read a 3x3 intrinsics matrix: {error}') from None
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0 \
            or not np.allclose(K[2], (0, 0, 1)):
        raise NocsFormatError(f'{path}: expected a 3x3 intrinsics matrix [[fx 0 cx] [0 fy cy] [0 0 1]], got '
                              f'{K.tolist()}')
    return K


# --- object models ---------------------------------------------------------------------------------------

class ObjectModelSizes:
    """Model extents from ROOT/obj_models, cached.

    `normalised_extents(kind, subset, entry)` -> ((3,) extents of the NOCS-normalised model, metric scale or
    None). REAL: `real_<subset>/<model_name>.txt` holds metric extents; their norm is the scale s and
    extents / s the normalised extents (NOCS process_data). CAMERA: `<subset>/<synset>/<model_id>/bbox.txt`
    (rows: max corner, min corner) of the already normalised model; the scale is not known from the model."""

    def __init__(self, root):
        self.folder = Path(root) / 'obj_models'
        self._cache = {}

    def model_file(self, kind, subset, entry):
        if kind == 'real':
            return self.folder / f'real_{subset}' / f'{entry.model_name}.txt'
        return self.folder / subset / entry.synset / entry.model_name / 'bbox.txt'

    def normalised_extents(self, kind, subset, entry):
        path = self.model_file(kind, subset, entry)
        if path not in self._cache:
            self._cache[path] = self._load(kind, path)
        return self._cache[path]

    @staticmethod
    def _load(kind, path):
        if not path.is_file():
            raise NocsFormatError(f'{path}: missing object model size file (needed for the size of an instance '
                                  'whose frame has no _label.pkl with a "size")')
        try:
            values = np.loadtxt(path, dtype=np.float64)
        except ValueError as error:
            raise NocsFormatError(f'{path}: not a table of numbers: {error}') from None
        if kind == 'real':
            extents = values.reshape(-1)
            if extents.shape != (3,) or np.any(extents <= 0) or not np.all(np.isfinite(extents)):
                raise NocsFormatError(f'{path}: expected three positive metric extents, got {values.tolist()}')
            scale = float(np.linalg.norm(extents))
            return extents / scale, scale
        if values.shape != (2, 3) or not np.all(np.isfinite(values)):
            raise NocsFormatError(f'{path}: expected two rows (max corner, min corner) of 3 numbers, got '
                                  f'{np.shape(values)}')
        extents = np.abs(values[0] - values[1])
        if np.any(extents <= 0):
            raise NocsFormatError(f'{path}: degenerate box extents {extents.tolist()}')
        return extents, None


# --- ground truth ----------------------------------------------------------------------------------------

@dataclass
class FrameAnnotation:
    """Per-object ground truth of one frame, in the object-deformnet label form (n objects)."""
    class_ids: np.ndarray          # (n,) int64, 1..6
    instance_ids: np.ndarray       # (n,) int64, mask values
    model_names: list              # (n,) str: the physical instance (MetaEntry.model_key)
    rotations: np.ndarray          # (n, 3, 3) float64, object -> camera
    translations: np.ndarray       # (n, 3) float64, metres, OpenCV camera frame
    scales: np.ndarray             # (n,) float64, s = box diagonal in metres
    normalised_sizes: np.ndarray   # (n, 3) float64, extents of the unit-diagonal model (gt_scales)
    handle_visibility: np.ndarray  # (n,) int64
    source: str = ''               # the label file, or 'derived' for the Umeyama path

    def __len__(self):
        return len(self.class_ids)

    @property
    def sizes(self):
        """(n, 3) metric extents = s * normalised extents."""
        return self.scales[:, None] * self.normalised_sizes

    @property
    def scaled_poses(self):
        """(n, 4, 4) [s R | t], the evaluation's gt_RTs."""
        return compose_scaled_pose(self.rotations, self.translations, self.scales).reshape(-1, 4, 4)

    @property
    def rigid_poses(self):
        """(n, 4, 4) [R | t]."""
        return compose_scaled_pose(self.rotations, self.translations, 1.0).reshape(-1, 4, 4)


def umeyama(source, target, scale=None):
    """Similarity (s, R, t) minimising sum |s R source + t - target|^2 (Umeyama 1991).

    source, target: (N, 3). `scale` given: only R and t are estimated (the Kabsch problem with a fixed s)."""
    source_mean, target_mean = source.mean(0), target.mean(0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / len(source)  # (3, 3)
    u, singular, vt = np.linalg.svd(covariance)
    reflection = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        reflection[2, 2] = -1.0
    rotation = u @ reflection @ vt
    if scale is None:
        variance = (source_centred ** 2).sum() / len(source)
        scale = float(np.trace(np.diag(singular) @ reflection) / max(variance, 1e-12))
    translation = target_mean - scale * rotation @ source_mean
    return scale, rotation, translation


def robust_umeyama(source, target, scale=None, iterations=3, min_inlier_distance=0.005):
    """Umeyama with iterative outlier rejection: points whose residual exceeds max(3 x median residual,
    `min_inlier_distance` metres) are dropped and the fit repeated. Depth edges and mixed pixels at mask
    borders are the outliers (the NOCS/object-deformnet aligners use RANSAC for the same reason; this is
    deterministic)."""
    keep = np.ones(len(source), bool)
    for _ in range(iterations):
        fit = umeyama(source[keep], target[keep], scale)
        residual = np.linalg.norm(fit[0] * source @ fit[1].T + fit[2] - target, axis=1)
        new_keep = residual <= max(3.0 * float(np.median(residual[keep])), min_inlier_distance)
        if new_keep.sum() < 4 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return fit


def _as_array(label, key, path, dtype, shape):
    """label[key] as an array of `shape` (None = any length on that axis); wrong shape -> error naming path."""
    try:
        value = np.asarray(label[key], dtype=dtype)
    except (TypeError, ValueError) as error:
        raise NocsFormatError(f'{path}: "{key}" is not numeric: {error}') from None
    if value.ndim != len(shape) or any(want is not None and got != want for got, want in zip(value.shape, shape)):
        raise NocsFormatError(f'{path}: "{key}" has shape {value.shape}, expected '
                              f'{tuple("n" if s is None else s for s in shape)} with n = {shape[0]}')
    if not np.all(np.isfinite(value)):
        raise NocsFormatError(f'{path}: "{key}" holds NaN or infinite values')
    return value


def load_label(path, meta, kind, subset, model_sizes):
    """object-deformnet `_label.pkl` -> FrameAnnotation, checked against the frame's meta."""
    label = safe_load(path, what='label pickle')
    if not isinstance(label, dict):
        raise NocsFormatError(f'{path}: expected a dict, got {type(label).__name__}')
    required = ('class_ids', 'instance_ids', 'scales', 'rotations', 'translations')
    absent = [key for key in required if key not in label]
    if absent:
        raise NocsFormatError(f'{path}: missing key(s) {absent}; has {sorted(label)}')
    class_ids = _as_array(label, 'class_ids', path, np.int64, (None,))
    count = len(class_ids)
    instance_ids = _as_array(label, 'instance_ids', path, np.int64, (count,))
    scales = _as_array(label, 'scales', path, np.float64, (count,))
    rotations = _as_array(label, 'rotations', path, np.float64, (count, 3, 3))
    translations = _as_array(label, 'translations', path, np.float64, (count, 3))
    if np.any(scales <= 0):
        raise NocsFormatError(f'{path}: "scales" must be positive, got {scales.tolist()}')
    # float32 storage: a rotation is orthonormal to ~1e-6; anything far off is not a rotation
    gram_error = np.abs(rotations @ np.swapaxes(rotations, 1, 2) - np.eye(3)).max(initial=0.0)
    if gram_error > 1e-3 or (count and np.any(np.linalg.det(rotations) < 0)):
        raise NocsFormatError(f'{path}: "rotations" are not proper rotation matrices (|R R^T - I| = '
                              f'{gram_error:.3g}); a scaled [sR] here would make the pose wrong')

    meta_by_id = {entry.instance_id: entry for entry in meta}
    entries = []
    for index, (instance_id, class_id) in enumerate(zip(instance_ids, class_ids)):
        entry = meta_by_id.get(int(instance_id))
        if entry is None:
            raise NocsFormatError(f'{path}: instance id {instance_id} is not in the frame\'s _meta.txt '
                                  f'(ids {sorted(meta_by_id)})')
        if entry.class_id != class_id or not 1 <= class_id <= NUM_CLASSES:
            raise NocsFormatError(f'{path}: instance {instance_id} has class {class_id} but _meta.txt says '
                                  f'{entry.class_id}')
        entries.append(entry)
    if 'model_list' in label:
        model_list = list(label['model_list'])
        if len(model_list) != count:
            raise NocsFormatError(f'{path}: "model_list" has {len(model_list)} entries for {count} objects')

    if 'size' in label:
        normalised_sizes = _as_array(label, 'size', path, np.float64, (count, 3))
    else:
        # object-deformnet's train labels carry no size: the model files give it (as its own training does)
        normalised_sizes = np.array([model_sizes.normalised_extents(kind, subset, entry)[0] for entry in entries],
                                    np.float64).reshape(count, 3)
    if 'handle_visibility' in label:
        handle_visibility = _as_array(label, 'handle_visibility', path, np.int64, (count,))
    else:
        handle_visibility = np.ones(count, np.int64)  # NOCS's default when the GT has none
    return FrameAnnotation(class_ids=class_ids, instance_ids=instance_ids,
                           model_names=[entry.model_key for entry in entries], rotations=rotations,
                           translations=translations, scales=scales, normalised_sizes=normalised_sizes,
                           handle_visibility=handle_visibility, source=str(path))


def derive_annotation(mask, coord, depth, K, meta, kind, subset, model_sizes, min_pixels, prefix):
    """Ground truth without a label file: for each meta instance (class > 0, present in the mask) with at least
    `min_pixels` valid-depth pixels, align its coord-map points (NOCS units) to its back-projected depth
    (metres) with a similarity transform. REAL models know their metric scale (obj_models txt), so only R and t
    are fitted there; CAMERA fits the scale too (object-deformnet lib/align.py does the same for CAMERA)."""
    present = set(np.unique(mask).tolist())
    rows = []
    for entry in meta:
        if entry.class_id == 0 or entry.instance_id not in present:
            continue
        pixels = (mask == entry.instance_id) & (depth > 0)
        if np.count_nonzero(pixels) < min_pixels:
            continue
        normalised, known_scale = model_sizes.normalised_extents(kind, subset, entry)
        v, u = np.nonzero(pixels)
        camera_points = backproject(np.stack([u, v], 1).astype(np.float64), depth[v, u].astype(np.float64), K)
        object_points = coord[v, u].astype(np.float64)
        scale, rotation, translation = robust_umeyama(object_points, camera_points, scale=known_scale)
        if not scale > 0:
            raise NocsFormatError(f'{prefix}_coord.png: instance {entry.instance_id}: the coord map does not align '
                                  'with the depth (degenerate or flat coordinates)')
        rows.append((entry, rotation, translation, scale, normalised))
    return FrameAnnotation(
        class_ids=np.array([r[0].class_id for r in rows], np.int64),
        instance_ids=np.array([r[0].instance_id for r in rows], np.int64),
        model_names=[r[0].model_key for r in rows],
        rotations=np.array([r[1] for r in rows], np.float64).reshape(-1, 3, 3),
        translations=np.array([r[2] for r in rows], np.float64).reshape(-1, 3),
        scales=np.array([r[3] for r in rows], np.float64),
        normalised_sizes=np.array([r[4] for r in rows], np.float64).reshape(-1, 3),
        handle_visibility=np.ones(len(rows), np.int64), source='derived')


# --- frames ------------------------------------------------------------------------------------------------

@dataclass
class NocsFrame:
    """Everything read from one frame's files, at the native resolution."""
    scene: str
    frame: str
    prefix: Path
    color: np.ndarray               # (H, W, 3) uint8 RGB
    depth: np.ndarray               # (H, W) float32 metres, 0 = invalid
    instance_mask: np.ndarray       # (H, W) uint8, 255 = background
    K: np.ndarray                   # (3, 3) float64
    meta: list                      # [MetaEntry]
    annotation: FrameAnnotation
    coord: np.ndarray = field(default=None, repr=False)  # (H, W, 3) float32, only when read


class NocsFrameReader:
    """Reads frames of one split (`resolve_split` names) under a NOCS-layout root.

    `read(prefix)` -> NocsFrame. `use_labels=False` ignores `_label.pkl` files and always derives the GT.
    `min_pixels`: instances with fewer valid-depth pixels are dropped on the derived path (default: 64 at
    640x480, scaled with the image area, as object-deformnet)."""

    def __init__(self, root, split, use_labels=True, min_pixels=None, read_coord_map=False):
        self.root = Path(root)
        self.location = resolve_split(self.root, split)
        self.use_labels = use_labels
        self.min_pixels = min_pixels
        self.read_coord_map = read_coord_map
        self.model_sizes = ObjectModelSizes(self.root)
        self._intrinsics = {}

    @property
    def kind(self):
        return self.location.kind

    def intrinsics(self, scene_folder):
        scene_folder = Path(scene_folder)
        if scene_folder not in self._intrinsics:
            path = scene_folder / 'intrinsics.txt'
            if path.is_file():
                K = read_intrinsics_file(path)
            else:
                K = REAL_INTRINSICS if self.kind == 'real' else CAMERA_INTRINSICS
            self._intrinsics[scene_folder] = np.array(K, np.float64)
        return self._intrinsics[scene_folder]

    def _min_pixels(self, hw):
        if self.min_pixels is not None:
            return self.min_pixels
        return max(4, int(round(MIN_PIXELS_AT_NATIVE * hw[0] * hw[1] / (NATIVE_HW[0] * NATIVE_HW[1]))))

    def read(self, prefix):
        prefix = Path(prefix)
        color = read_color(f'{prefix}_color.png')
        depth = read_depth(f'{prefix}_depth.png')
        mask = read_mask(f'{prefix}_mask.png')
        meta = read_meta(f'{prefix}_meta.txt')
        for name, image in (('depth', depth), ('mask', mask)):
            if image.shape[:2] != color.shape[:2]:
                raise NocsFormatError(f'{prefix}_{name}.png: size {image.shape[1]}x{image.shape[0]} differs from '
                                      f'the color image ({color.shape[1]}x{color.shape[0]})')
        meta_ids = {entry.instance_id for entry in meta}
        mask_ids = set(np.unique(mask).tolist()) - {MASK_BACKGROUND}
        unknown = sorted(mask_ids - meta_ids)
        if unknown:
            raise NocsFormatError(f'{prefix}_mask.png: instance id(s) {unknown} are not in {prefix}_meta.txt '
                                  f'(ids {sorted(meta_ids)})')
        K = self.intrinsics(prefix.parent)
        label_path = Path(f'{prefix}_label.pkl')
        coord = None
        if self.use_labels and label_path.is_file():
            annotation = load_label(label_path, meta, self.kind, self.location.subset, self.model_sizes)
            missing = sorted(set(annotation.instance_ids.tolist()) - mask_ids)
            if missing:
                raise NocsFormatError(f'{label_path}: instance id(s) {missing} do not occur in {prefix}_mask.png')
        else:
            coord = read_coord(f'{prefix}_coord.png')
            if coord.shape[:2] != color.shape[:2]:
                raise NocsFormatError(f'{prefix}_coord.png: size {coord.shape[1]}x{coord.shape[0]} differs from '
                                      f'the color image ({color.shape[1]}x{color.shape[0]})')
            annotation = derive_annotation(mask, coord, depth, K, meta, self.kind, self.location.subset,
                                           self.model_sizes, self._min_pixels(mask.shape), prefix)
        if self.read_coord_map and coord is None:
            coord = read_coord(f'{prefix}_coord.png')
        return NocsFrame(scene=prefix.parent.name, frame=prefix.name, prefix=prefix, color=color, depth=depth,
                         instance_mask=mask, K=K, meta=meta, annotation=annotation, coord=coord)
