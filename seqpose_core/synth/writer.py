"""Writes rendered frames in exactly the NOCS CAMERA / REAL layout (../shared/reference/nocs-data-format.md).

Video (REAL-like):   OUT/Real/{train,test}/scene_<N>/<4-digit>_{color,depth,mask,coord}.png, _meta.txt
                     (`inst_id class_id model_name`), _label.pkl; intrinsics.txt and odometry.txt (simulated odometry,
                     synth.odometry) per scene;
                     OUT/obj_models/real_{train,test}/<model_name>.obj (metric) + <model_name>.txt (metric extents);
                     OUT/Real/{train,test}_list_all.txt and {train,test}_list.txt.
Single (CAMERA-like): OUT/CAMERA/{train,val}/<5-digit>/<4-digit>_*, _meta.txt (`inst_id class_id synset_id
                     model_id`); OUT/obj_models/{train,val}/<synset>/<model_id>/model.obj (NOCS-normalised, z
                     flipped as the released CAMERA models) + bbox.txt; OUT/CAMERA/{train,val}_list_all.txt, ...

Encodings (what the official loaders decode):
- color: 8-bit BGR as written by cv2 (loaders reverse it to RGB).
- depth: 16-bit single channel, millimetres, 0 = no reading (beyond the table).
- mask: 8-bit, the instance id per pixel and 255 for background; three identical channels so that both
  `cv2.imread(path)[:, :, 2]` (the NOCS/SPD loaders) and a single-channel read give the ids.
- coord: 8-bit, written with cv2 (so BGR on disk); the official decoding BGR->RGB, /255, z = 1 - z, -0.5
  gives the object coordinates, hence we store round(255 * (x, y, 1 - z)) of the NOCS values in [0, 1].
- _label.pkl: the object-deformnet test-split form (class_ids, instance_ids, model_list, bboxes (y1, x1, y2,
  x2) exclusive, scales, rotations, translations, size, poses = [sR | T], handle_visibility) for the
  instances with at least `min_pixels` mask pixels of valid depth (SPD drops smaller ones at 640x480).
  The pose is of the object's bounding-box centre, NOCS convention; mugs are NOT re-centred on the handle-free
  axis as SPD's mug_meta does.
"""

import pickle
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from seqpose_core.synth.meshes import SYNSET_IDS

# Official intrinsics at 640x480 (nocs-data-format.md §7)
REAL_INTRINSICS = np.array([[591.0125, 0, 322.525], [0, 590.16775, 244.11084], [0, 0, 1]])
CAMERA_INTRINSICS = np.array([[577.5, 0, 319.5], [0, 577.5, 239.5], [0, 0, 1]])
NATIVE_SIZE = (640, 480)
# SPD drops instances with fewer than 64 valid-depth mask pixels at 640x480; scaled with the image area
MIN_PIXELS_AT_NATIVE = 64
# a mug's handle counts as visible when at least this share of the mug's visible pixels are handle pixels
HANDLE_VISIBLE_FRACTION = 0.015
# PNG encoding dominates generation time on a small CPU: fast zlib settings, with the row filter that suits
# each image (measured at 640x480: 28 ms -> ~12 ms per frame for the four images, files about as small).
_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1]
PNG_PARAMS = {
    'color': _FAST
    + [
        cv2.IMWRITE_PNG_FILTER,
        cv2.IMWRITE_PNG_FILTER_SUB,
        cv2.IMWRITE_PNG_STRATEGY,
        cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
    ],
    'depth': _FAST
    + [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE],
    'mask': _FAST
    + [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE],
    'coord': _FAST
    + [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE],
}


def scaled_intrinsics(K, width, height):
    """Intrinsics of the official 640x480 camera resampled to width x height (pixel-centre convention)."""
    sx, sy = width / NATIVE_SIZE[0], height / NATIVE_SIZE[1]
    K = np.array(K, np.float64)
    K[0, 0] *= sx
    K[1, 1] *= sy
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K


def encode_depth(depth_m):
    return np.clip(np.round(depth_m * 1000.0), 0, 65535).astype(np.uint16)


def encode_mask(instance):
    mask = np.where(instance > 0, instance, 255).astype(np.uint8)
    return np.repeat(mask[..., None], 3, axis=2)


def encode_coord(nocs, instance):
    """NOCS values in [0, 1] -> the BGR uint8 image cv2 writes, with the z flip the official decoding undoes."""
    stored = nocs.astype(np.float32).copy()
    stored[..., 2] = 1.0 - stored[..., 2]
    stored[instance == 0] = 0.0
    rgb = np.clip(np.round(stored * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb[..., ::-1])


def decode_coord(bgr):
    """The official decoding (NOCS dataset.py::process_data): object coordinates in [-0.5, 0.5]."""
    coord = bgr[..., ::-1].astype(np.float32) / 255.0
    coord[..., 2] = 1.0 - coord[..., 2]
    return coord - 0.5


def _write_obj(path, vertices, faces):
    with open(path, 'w') as handle:
        np.savetxt(handle, vertices, fmt='v %.6f %.6f %.6f')
        np.savetxt(handle, faces + 1, fmt='f %d %d %d')


def mask_bbox(mask):
    """(y1, x1, y2, x2) with y2/x2 exclusive, as SPD's labels."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], np.int32)


class NocsWriter:
    """Writes frames of one run; collects the image lists and writes them at `close()`."""

    def __init__(self, out_dir, mode, width, height, overwrite=False, workers=2):
        if mode not in ('video', 'single'):
            raise ValueError(f'mode must be video or single, got {mode!r}')
        self.out = Path(out_dir)
        self.mode = mode
        self.width, self.height = width, height
        self.overwrite = overwrite
        self.root = self.out / ('Real' if mode == 'video' else 'CAMERA')
        base_K = REAL_INTRINSICS if mode == 'video' else CAMERA_INTRINSICS
        self.K = scaled_intrinsics(base_K, width, height)
        self.min_pixels = max(4, int(round(MIN_PIXELS_AT_NATIVE * width * height / (NATIVE_SIZE[0] * NATIVE_SIZE[1]))))
        self.lists_all = {}  # split -> list of 'split/folder/frame'
        self.lists_labelled = {}
        # PNG encoding releases the GIL: overlap it with rendering
        self._pool = ThreadPoolExecutor(max_workers=workers) if workers else None
        self._pending = []

    # ---------------------------------------------------------------------------------------------------
    def scene_folder(self, split, number):
        """Create the folder of scene `number` (REAL: scene_<number>, from 1; CAMERA: 5 digits, from 0)."""
        name = f'scene_{number}' if self.mode == 'video' else f'{number:05d}'
        folder = self.root / split / name
        if folder.exists() and any(folder.iterdir()):
            if not self.overwrite:
                raise FileExistsError(f'{folder} already holds files; pass --overwrite or choose another --out')
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savetxt(folder / 'intrinsics.txt', self.K)
        return folder

    def write_odometry(self, split, number, readings, noise):
        """The video's odometry.txt: per frame its number and odom_from_camera (16 values, row by row), the noise
        model in the header (seqpose_core.synth.odometry; read by data.files.read_odometry_file)."""
        rows = np.concatenate([np.arange(len(readings))[:, None], np.asarray(readings).reshape(-1, 16)], axis=1)
        header = (
            'odom_from_camera per frame: frame number, then the 4x4 pose row by row. Simulated odometry, NOT the '
            f'true trajectory: {noise}'
        )
        np.savetxt(
            self.root / split / f'scene_{number}' / 'odometry.txt', rows, fmt=['%d'] + ['%.9f'] * 16, header=header
        )

    def model_name(self, split, scene_number, category, index):
        if self.mode == 'video':
            return f'{category}{index}_synth_{split}_scene{scene_number}_norm'
        return f'synth_{split}_{scene_number:05d}_{category}{index}'

    def write_models(self, split, models):
        """Object model files for `models` (ObjectModel, named by model_name) of one scene / folder."""
        for model in models:
            if self.mode == 'video':
                folder = self.out / 'obj_models' / f'real_{split}'
                folder.mkdir(parents=True, exist_ok=True)
                _write_obj(folder / f'{model.name}.obj', model.vertices.astype(np.float64) * model.scale, model.faces)
                np.savetxt(folder / f'{model.name}.txt', model.size[None], fmt='%.6f')
            else:
                folder = self.out / 'obj_models' / split / SYNSET_IDS[model.category] / model.name
                folder.mkdir(parents=True, exist_ok=True)
                # released CAMERA models are stored with z negated (loaders flip it back); a mirror, so the
                # face winding is reversed to keep normals outward
                flipped = model.vertices.astype(np.float64) * np.array([1.0, 1.0, -1.0])
                _write_obj(folder / 'model.obj', flipped, model.faces[:, ::-1])
                np.savetxt(folder / 'bbox.txt', np.stack([flipped.max(0), flipped.min(0)]), fmt='%.6f')

    # ---------------------------------------------------------------------------------------------------
    def write_frame(self, folder, frame_index, rendered, placed_objects, camera_from_world):
        """Write one frame's files; returns the label dict (also written to _label.pkl)."""
        prefix = folder / f'{frame_index:04d}'
        split = folder.parent.name
        relative = f'{split}/{folder.name}/{frame_index:04d}'

        meta_lines = []
        labels = {
            key: []
            for key in (
                'class_ids',
                'instance_ids',
                'model_list',
                'bboxes',
                'scales',
                'rotations',
                'translations',
                'size',
                'poses',
                'handle_visibility',
            )
        }
        valid_depth = rendered.depth_mm > 0
        # NOCS x of every pixel (coord PNG red = BGR channel 2), for the mug handles
        nocs_x = None
        for placed in placed_objects:
            model = placed.model
            if self.mode == 'video':
                meta_lines.append(f'{placed.instance_id} {model.class_id} {model.name}')
            else:
                meta_lines.append(f'{placed.instance_id} {model.class_id} {SYNSET_IDS[model.category]} {model.name}')
            mask = rendered.instance == placed.instance_id
            if np.count_nonzero(mask & valid_depth) < self.min_pixels:
                continue
            camera_from_object = camera_from_world @ placed.world_from_object
            rotation, translation = camera_from_object[:3, :3], camera_from_object[:3, 3]
            pose = np.eye(4)
            pose[:3, :3] = rotation * model.scale
            pose[:3, 3] = translation
            handle_visible = 1
            if model.category == 'mug':
                if nocs_x is None:
                    nocs_x = rendered.coord_bgr[..., 2]
                handle_pixels = np.count_nonzero(nocs_x[mask] / 255.0 - 0.5 > model.handle_x_min)
                handle_visible = int(handle_pixels >= max(3, HANDLE_VISIBLE_FRACTION * np.count_nonzero(mask)))
            labels['class_ids'].append(model.class_id)
            labels['instance_ids'].append(placed.instance_id)
            labels['model_list'].append(model.name)
            labels['bboxes'].append(mask_bbox(mask))
            labels['scales'].append(model.scale)
            labels['rotations'].append(rotation)
            labels['translations'].append(translation)
            labels['size'].append(model.extents)
            labels['poses'].append(pose)
            labels['handle_visibility'].append(handle_visible)
        count = len(labels['class_ids'])
        label = {
            'class_ids': np.array(labels['class_ids'], np.int32),
            'instance_ids': [int(i) for i in labels['instance_ids']],
            'model_list': list(labels['model_list']),
            'bboxes': np.array(labels['bboxes'], np.int32).reshape(count, 4),
            'scales': np.array(labels['scales'], np.float32),
            'rotations': np.array(labels['rotations'], np.float32).reshape(count, 3, 3),
            'translations': np.array(labels['translations'], np.float32).reshape(count, 3),
            'size': np.array(labels['size'], np.float32).reshape(count, 3),
            'poses': np.array(labels['poses'], np.float32).reshape(count, 4, 4),
            'handle_visibility': np.array(labels['handle_visibility'], np.int32),
        }
        with open(f'{prefix}_meta.txt', 'w') as handle:
            handle.write('\n'.join(meta_lines) + '\n')
        with open(f'{prefix}_label.pkl', 'wb') as handle:
            pickle.dump(label, handle, protocol=4)

        # the renderer's targets hold the file encodings already (render.py), only the mask is mapped here
        images = {
            'color': rendered.color_bgr,
            'depth': rendered.depth_mm,
            'mask': encode_mask(rendered.instance),
            'coord': rendered.coord_bgr,
        }
        for kind, image in images.items():
            self._submit(f'{prefix}_{kind}.png', image, PNG_PARAMS[kind])

        self.lists_all.setdefault(split, []).append(relative)
        if count:
            self.lists_labelled.setdefault(split, []).append(relative)
        return label

    def _submit(self, path, image, params):
        if self._pool is None:
            self._imwrite(path, image, params)
            return
        self._pending.append(self._pool.submit(self._imwrite, path, image, params))
        if len(self._pending) > 32:  # bound the memory held by queued images
            self._drain(keep=16)

    @staticmethod
    def _imwrite(path, image, params):
        if not cv2.imwrite(path, np.ascontiguousarray(image), params):
            raise OSError(f'{path}: cv2.imwrite failed')

    def _drain(self, keep=0):
        while len(self._pending) > keep:
            self._pending.pop(0).result()

    def close(self, write_lists=True):
        """Wait for pending image writes and write the image lists (SPD names). write_lists=False: a worker
        of a parallel run, whose parent writes the lists of all workers."""
        self._drain()
        if self._pool is not None:
            self._pool.shutdown()
        if write_lists:
            self.write_lists()

    def add_lists(self, lists_all, lists_labelled):
        """Take in the image lists of another writer of the same run (a worker process's)."""
        for mine, theirs in ((self.lists_all, lists_all), (self.lists_labelled, lists_labelled)):
            for split, entries in theirs.items():
                mine.setdefault(split, []).extend(entries)

    def write_lists(self):
        for split, entries in self.lists_all.items():
            (self.root / f'{split}_list_all.txt').write_text('\n'.join(sorted(entries, key=_list_key)) + '\n')
        for split in self.lists_all:
            entries = self.lists_labelled.get(split, [])
            (self.root / f'{split}_list.txt').write_text(
                ''.join(entry + '\n' for entry in sorted(entries, key=_list_key))
            )


def _list_key(entry):
    """Sort 'split/scene_10/0003' numerically by scene, then frame."""
    split, folder, frame = entry.split('/')
    number = folder.split('_')[-1]
    return split, int(number) if number.isdigit() else number, frame
