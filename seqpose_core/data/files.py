"""The files of one NOCS frame and of the object models, one reader each: colour, depth, mask and coord PNGs
(with the encodings of NOCS `dataset.py` / object-deformnet `lib/utils.py`), `_meta.txt`, `intrinsics.txt`
and the model extents under `obj_models/`, and a generated video's `odometry.txt` (the camera's trajectory as a
robot's odometry reports it, seqpose_core.synth.odometry). Every failure names the file it came from.
"""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from seqpose_core import NUM_CLASSES
from seqpose_core.data.layout import NocsFormatError

MASK_BACKGROUND = 255
# object-deformnet's 3-channel depth encoding marks "no reading" with this value
ENCODED_DEPTH_INVALID = 32001
_PNG_END = b'IEND\xaeB`\x82'


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
        raise NocsFormatError(
            f'{path}: depth must be 16-bit single channel or 8-bit 3-channel encoded, got '
            f'dtype {image.dtype} shape {image.shape}'
        )
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
    class_id: int  # 0 = background / distractor (skipped by every loader)
    model_name: str  # REAL: the obj_models name; CAMERA: the model id
    synset: str = ''  # CAMERA only

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
            raise NocsFormatError(
                f'{path}:{line_number}: expected "inst_id class_id model_name" or "inst_id '
                f'class_id synset_id model_id", got {line.strip()!r}'
            )
        try:
            instance_id, class_id = int(tokens[0]), int(tokens[1])
        except ValueError:
            raise NocsFormatError(
                f'{path}:{line_number}: instance and class ids must be integers, got {line.strip()!r}'
            ) from None
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
    if (
        K.shape != (3, 3)
        or not np.all(np.isfinite(K))
        or K[0, 0] <= 0
        or K[1, 1] <= 0
        or not np.allclose(K[2], (0, 0, 1))
    ):
        raise NocsFormatError(
            f'{path}: expected a 3x3 intrinsics matrix [[fx 0 cx] [0 fy cy] [0 0 1]], got {K.tolist()}'
        )
    return K


ODOMETRY_FILE = 'odometry.txt'


def read_odometry_file(path):
    """{frame number: (4, 4) odom_from_camera} of a scene's odometry.txt: one line per frame, the frame number
    and the 16 values of the pose, row by row ('#' lines are comments)."""
    try:
        rows = np.loadtxt(path, dtype=np.float64, comments='#', ndmin=2)
    except (OSError, ValueError) as error:
        raise NocsFormatError(f'{path}: cannot read odometry: {error}') from None
    if rows.shape[1] != 17 or not np.all(np.isfinite(rows)):
        raise NocsFormatError(
            f'{path}: expected lines of a frame number and 16 finite pose values, got {rows.shape[1]} columns'
        )
    poses = rows[:, 1:].reshape(-1, 4, 4)
    if not np.allclose(poses[:, 3], (0, 0, 0, 1)) or not np.allclose(
        poses[:, :3, :3] @ poses[:, :3, :3].transpose(0, 2, 1), np.eye(3), atol=1e-6
    ):
        raise NocsFormatError(f'{path}: a pose is not rigid (rotation not orthonormal, or last row not 0 0 0 1)')
    return {int(number): pose for number, pose in zip(rows[:, 0], poses)}


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
            raise NocsFormatError(
                f'{path}: missing object model size file (needed for the size of an instance '
                'whose frame has no _label.pkl with a "size")'
            )
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
            raise NocsFormatError(
                f'{path}: expected two rows (max corner, min corner) of 3 numbers, got {np.shape(values)}'
            )
        extents = np.abs(values[0] - values[1])
        if np.any(extents <= 0):
            raise NocsFormatError(f'{path}: degenerate box extents {extents.tolist()}')
        return extents, None
