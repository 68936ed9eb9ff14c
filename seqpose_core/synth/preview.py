"""Contact sheet of generated frames, read back from the written files with the official decodings:
colour with the GT boxes and axes, depth, instance mask and the NOCS map, one row per frame."""

from pathlib import Path

import cv2
import numpy as np

from seqpose_core import CLASS_NAMES
from seqpose_core.safe_pickle import safe_load
from seqpose_core.synth.writer import decode_coord

_PALETTE = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
    ],
    np.uint8,
)


def _project(points, K):
    z = np.maximum(points[:, 2:3], 1e-6)
    return (points[:, :2] / z) @ K[:2, :2].T + K[:2, 2]


def draw_label(image_bgr, label, K):
    """GT boxes (class colour), object axes (x red, y green, z blue) and class names on a BGR image."""
    from seqpose_core.geometry import BOX_EDGES, box_corners

    thickness = max(1, image_bgr.shape[1] // 320)
    for i in range(len(label['class_ids'])):
        rotation = label['rotations'][i].astype(np.float64)
        translation = label['translations'][i].astype(np.float64)
        metric_size = label['size'][i].astype(np.float64) * float(label['scales'][i])
        corners = box_corners(metric_size) @ rotation.T + translation
        if np.any(corners[:, 2] <= 0.01):
            continue
        uv = _project(corners, K)
        color = tuple(int(c) for c in _PALETTE[(int(label['class_ids'][i]) - 1) % len(_PALETTE)][::-1])
        for a, b in BOX_EDGES:
            cv2.line(
                image_bgr,
                tuple(np.round(uv[a]).astype(int)),
                tuple(np.round(uv[b]).astype(int)),
                color,
                thickness,
                cv2.LINE_AA,
            )
        axes = np.vstack([np.zeros(3), np.eye(3) * metric_size.max() * 0.4]) @ rotation.T + translation
        axes_uv = np.round(_project(axes, K)).astype(int)
        for axis, axis_color in enumerate([(0, 0, 255), (0, 255, 0), (255, 0, 0)]):
            cv2.line(image_bgr, tuple(axes_uv[0]), tuple(axes_uv[axis + 1]), axis_color, thickness, cv2.LINE_AA)
        name = CLASS_NAMES[int(label['class_ids'][i]) - 1]
        if name == 'mug':
            name += ' h' if int(label['handle_visibility'][i]) else ' noh'
        cv2.putText(
            image_bgr,
            name,
            tuple(axes_uv[0] + [3, -3]),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35 * thickness,
            color,
            thickness,
            cv2.LINE_AA,
        )
    return image_bgr


def frame_tiles(prefix, K):
    """[colour+boxes, depth, mask, coord] BGR tiles of the frame at `prefix` (path without _kind.png)."""
    prefix = str(prefix)
    color = cv2.imread(prefix + '_color.png', cv2.IMREAD_COLOR)
    depth = cv2.imread(prefix + '_depth.png', cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(prefix + '_mask.png', cv2.IMREAD_COLOR)[:, :, 2]
    coord_bgr = cv2.imread(prefix + '_coord.png', cv2.IMREAD_COLOR)
    for kind, image in (('color', color), ('depth', depth), ('coord', coord_bgr)):
        if image is None:
            raise ValueError(f'{prefix}_{kind}.png: missing or unreadable')
    label = safe_load(prefix + '_label.pkl', what='label pickle')
    boxes = draw_label(color.copy(), label, K)
    valid = depth > 0
    scaled = np.zeros(depth.shape, np.uint8)
    if valid.any():
        low, high = np.percentile(depth[valid], [1, 99])
        scaled[valid] = np.clip((depth[valid] - low) / max(high - low, 1) * 254 + 1, 1, 255)
    depth_tile = cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO)
    depth_tile[~valid] = 0
    mask_tile = np.zeros(color.shape, np.uint8)
    objects = mask != 255
    mask_tile[objects] = _PALETTE[(mask[objects].astype(int) - 1) % len(_PALETTE)][:, ::-1]
    # show the decoded NOCS values (x, y, z) + 0.5 as RGB, i.e. after the official z flip
    coord = decode_coord(coord_bgr) + 0.5
    coord_tile = np.zeros(color.shape, np.uint8)
    coord_tile[objects] = np.round(coord[objects][:, ::-1] * 255).astype(np.uint8)
    return [boxes, depth_tile, mask_tile, coord_tile]


def contact_sheet(prefixes, K, path, tile_width=320):
    rows = []
    for prefix in prefixes:
        tiles = frame_tiles(prefix, K)
        height = int(round(tiles[0].shape[0] * tile_width / tiles[0].shape[1]))
        tiles = [cv2.resize(t, (tile_width, height), interpolation=cv2.INTER_AREA) for t in tiles]
        name = '/'.join(Path(prefix).parts[-3:])  # split/scene/frame
        cv2.putText(tiles[0], name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(np.hstack(tiles))
    sheet = np.vstack(rows)
    if not cv2.imwrite(str(path), sheet):
        raise OSError(f'{path}: cannot write preview')
    return path
