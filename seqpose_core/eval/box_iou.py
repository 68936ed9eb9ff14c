"""True 3D IoU of oriented boxes: exact volume of the convex intersection of two parallelepipeds.

Method (divergence theorem): the boundary of A ∩ B consists of the faces of A clipped to B and the faces of B
clipped to A. With any reference point O, vol(A ∩ B) = 1/3 * sum over those faces of
(distance from O to the face's plane) * (clipped face area). Each face is a quad clipped by the other box's six
half-spaces (Sutherland-Hodgman, vectorised over all faces of all pairs at once), so no polyhedron or convex hull
is ever built. Two faces that lie in the same plane with the same outward normal bound the intersection once,
so the second one is dropped; touching faces with opposite normals cancel by themselves.

Boxes are given as the evaluation format: sRT (4x4, scale folded in) and normalised extents, so the corners are
sRT @ (±extents / 2), exactly the boxes the legacy IoU transforms; a non-orthonormal sR is handled as the
parallelepiped it describes.
"""

import numpy as np

from .protocol import NUM_SYMMETRY_ROTATIONS, y_rotations

# unit corners, index = 4 * bit_x + 2 * bit_y + bit_z, bit 1 = positive side
_UNIT = np.array([[(c >> 2 & 1) - 0.5, (c >> 1 & 1) - 0.5, (c & 1) - 0.5] for c in range(8)])


def _face_corner_indices():
    """(6, 4) corner indices of each face (axis, side), in cyclic order; face f = 2 * axis + (side > 0)."""
    faces = []
    for axis in range(3):
        other_1, other_2 = [a for a in range(3) if a != axis]
        for side in (0, 1):
            ring = []
            for bit_1, bit_2 in ((0, 0), (1, 0), (1, 1), (0, 1)):
                bits = [0, 0, 0]
                bits[axis], bits[other_1], bits[other_2] = side, bit_1, bit_2
                ring.append(4 * bits[0] + 2 * bits[1] + bits[2])
            faces.append(ring)
    return np.array(faces)


_FACES = _face_corner_indices()
_FACE_AXIS = np.repeat(np.arange(3), 2)
_FACE_SIDE = np.tile([-1.0, 1.0], 3)
# half-turns about y map a box onto itself, so half of the symmetry rotations give every distinct box
_HALF_TURN_ROTATIONS = y_rotations(NUM_SYMMETRY_ROTATIONS)[: NUM_SYMMETRY_ROTATIONS // 2]
_CHUNK_PAIRS = 4096


def _boxes(rts, scales):
    """Geometry of (n,) boxes: corners (n, 8, 3), face planes (unit outward normals (n, 6, 3), offsets (n, 6)),
    volumes (n,) and a validity mask (finite, non-degenerate)."""
    rts = np.asarray(rts, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)
    edges = rts[:, :3, :3] * scales[:, None, :]  # columns: the box edge vectors
    centres = rts[:, :3, 3]
    corners = centres[:, None, :] + _UNIT @ np.swapaxes(edges, 1, 2)
    with np.errstate(invalid='ignore', over='ignore'):
        volumes = np.abs(np.linalg.det(edges))
    valid = np.isfinite(edges).all(axis=(1, 2)) & np.isfinite(centres).all(axis=1) & (volumes > 0)
    safe_edges = np.where(valid[:, None, None], edges, np.eye(3))
    inverse_rows = np.linalg.inv(safe_edges)  # row i: the i-th box coordinate, in [-1/2, 1/2]
    row_norms = np.linalg.norm(inverse_rows, axis=2)
    normals = _FACE_SIDE[None, :, None] * (inverse_rows / row_norms[:, :, None])[:, _FACE_AXIS]
    offsets = np.einsum('nfd,nd->nf', normals, centres) + 0.5 / row_norms[:, _FACE_AXIS]
    return corners, normals, offsets, np.where(valid, volumes, 0.0), valid


def _clip(points, normals, offsets):
    """Clip convex polygons (m, k, 3) by the half-spaces normal . x <= offset -> (m, k + 1, 3).

    Polygons are stored closed-up to the full capacity: slots after the last vertex repeat the first one, so the
    edge i -> i + 1 (cyclic over all k slots) is either a polygon edge or has zero length, and no vertex count
    or index gather is needed. A degenerate edge that lies inside emits a duplicate vertex, which adds no area.
    """
    num, capacity, _ = points.shape
    next_points = np.concatenate([points[:, 1:], points[:, :1]], axis=1)
    distance = np.einsum('mkd,md->mk', points, normals) - offsets[:, None]
    distance_next = np.concatenate([distance[:, 1:], distance[:, :1]], axis=1)
    keep = distance <= 0
    crossing = keep != (distance_next <= 0)
    denominator = np.where(crossing, distance - distance_next, 1.0)
    emitted = keep.astype(np.int64) + crossing
    ends = np.cumsum(emitted, axis=1)
    start = ends - emitted + (np.arange(num) * (capacity + 1))[:, None]
    clipped = np.zeros((num * (capacity + 1), 3))
    clipped[start[keep]] = points[keep]
    fraction = (distance[crossing] / denominator[crossing])[:, None]
    clipped[(start + keep)[crossing]] = points[crossing] + fraction * (next_points[crossing] - points[crossing])
    clipped = clipped.reshape(num, capacity + 1, 3)
    # close up: empty slots repeat the first vertex (an empty polygon stays all zeros, area 0)
    return np.where((np.arange(capacity + 1) < ends[:, -1:])[:, :, None], clipped, clipped[:, :1])


def _areas(points, normals):
    """Areas of closed-up convex planar polygons (fan from the first vertex, projected on the face normal);
    repeated vertices contribute nothing."""
    relative = points - points[:, :1]
    fan = np.cross(relative[:, 1:-1], relative[:, 2:]).sum(axis=1)
    return 0.5 * np.abs(np.einsum('md,md->m', fan, normals))


def _intersection_volumes(box_a, box_b):
    """Exact vol(A ∩ B) for paired boxes (tuples from `_boxes`, already gathered per pair)."""
    corners_a, normals_a, offsets_a, _, _ = box_a
    corners_b, normals_b, offsets_b, _, _ = box_b
    num = len(corners_a)
    # inflate each clipping box by a hair so that faces lying in the other box's face planes are kept whole
    span = np.maximum(np.ptp(corners_a, axis=1).max(axis=1), np.ptp(corners_b, axis=1).max(axis=1))
    tolerance = 1e-9 * span
    faces = np.concatenate([corners_a[:, _FACES], corners_b[:, _FACES]], axis=1)  # (n, 12, 4, 3)
    face_normals = np.concatenate([normals_a, normals_b], axis=1)  # (n, 12, 3)
    face_offsets = np.concatenate([offsets_a, offsets_b], axis=1)
    clip_normals = np.concatenate([np.repeat(normals_b[:, None], 6, 1), np.repeat(normals_a[:, None], 6, 1)], 1)
    clip_offsets = np.concatenate([np.repeat(offsets_b[:, None], 6, 1), np.repeat(offsets_a[:, None], 6, 1)], 1)
    clip_offsets = clip_offsets + tolerance[:, None, None]
    # a face of B in the plane of a face of A with the same outward normal bounds the intersection only once
    same_plane = (
        (np.einsum('nbd,nad->nba', normals_b, normals_a) > 1 - 1e-9)
        & (np.abs(offsets_b[:, :, None] - offsets_a[:, None, :]) <= tolerance[:, None, None])
    ).any(axis=2)
    weights = np.concatenate([np.ones((num, 6)), 1.0 - same_plane], axis=1)

    points = faces.reshape(-1, 4, 3)
    clip_normals = clip_normals.reshape(num * 12, 6, 3)
    clip_offsets = clip_offsets.reshape(num * 12, 6)
    # a plane with every corner of a face inside cannot cut any part of that face; one with every corner
    # outside removes it; only the faces a plane really cuts go through the (costly) clipping step
    corner_distance = np.einsum('mkd,mpd->mkp', points, clip_normals) - clip_offsets[:, None, :]
    outside = corner_distance > 0
    alive = ~outside.all(axis=1).any(axis=1)
    cuts = outside.any(axis=1) & alive[:, None]
    areas = np.zeros(num * 12)
    uncut = np.flatnonzero(alive & ~cuts.any(axis=1))
    areas[uncut] = _areas(points[uncut], face_normals.reshape(-1, 3)[uncut])
    todo = np.flatnonzero(cuts.any(axis=1))
    polygons, active = points[todo], cuts[todo]
    for plane in range(6):
        rows = np.flatnonzero(active[:, plane])
        clipped = _clip(polygons[rows], clip_normals[todo[rows], plane], clip_offsets[todo[rows], plane])
        # polygons not cut by this plane get one more (repeated first) slot so all share one capacity
        polygons = np.concatenate([polygons, polygons[:, :1]], axis=1)
        polygons[rows] = clipped
    areas[todo] = _areas(polygons, face_normals.reshape(-1, 3)[todo])
    areas = areas.reshape(num, 12)
    reference_point = corners_b.mean(axis=1)
    heights = face_offsets - np.einsum('nfd,nd->nf', face_normals, reference_point)
    return np.maximum((weights * heights * areas).sum(axis=1) / 3.0, 0.0)


def box_iou_3d(rts_a, scales_a, rts_b, scales_b):
    """Exact IoU of paired oriented boxes: (n, 4, 4) sRT and (n, 3) normalised extents each -> (n,) float64.

    Degenerate or non-finite boxes have IoU 0.
    """
    box_a, box_b = _boxes(rts_a, scales_a), _boxes(rts_b, scales_b)
    num = len(box_a[0])
    ious = np.zeros(num)
    # only pairs whose axis-aligned hulls overlap can intersect
    low_a, high_a = box_a[0].min(axis=1), box_a[0].max(axis=1)
    low_b, high_b = box_b[0].min(axis=1), box_b[0].max(axis=1)
    candidates = np.flatnonzero(box_a[4] & box_b[4] & (low_a < high_b).all(axis=1) & (low_b < high_a).all(axis=1))
    for start in range(0, len(candidates), _CHUNK_PAIRS):
        chunk = candidates[start : start + _CHUNK_PAIRS]
        part_a = tuple(item[chunk] for item in box_a)
        part_b = tuple(item[chunk] for item in box_b)
        intersection = np.minimum(_intersection_volumes(part_a, part_b), np.minimum(part_a[3], part_b[3]))
        ious[chunk] = intersection / (part_a[3] + part_b[3] - intersection)
    return ious


def symmetric_box_iou_3d(rts_a, scales_a, rts_b, scales_b):
    """Best exact IoU over rotations of box A about its own y axis (the legacy IoU's symmetry handling, with the
    redundant half-turns left out)."""
    rts_a = np.asarray(rts_a, dtype=np.float64)
    num, turns = len(rts_a), len(_HALF_TURN_ROTATIONS)
    rotated = (rts_a[:, None] @ _HALF_TURN_ROTATIONS[None]).reshape(-1, 4, 4)
    ious = box_iou_3d(
        rotated,
        np.repeat(scales_a, turns, axis=0),
        np.repeat(np.asarray(rts_b, np.float64), turns, axis=0),
        np.repeat(scales_b, turns, axis=0),
    )
    return ious.reshape(num, turns).max(axis=1) if num else np.zeros(0)
