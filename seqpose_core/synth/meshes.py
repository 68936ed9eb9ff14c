"""Procedural object meshes for the six NOCS categories, and users' own meshes, in the NOCS canonical frame.

Canonical frame (docs/architecture.md, NOCS): y up (the symmetry axis of bottle, bowl, can and mug), origin at
the centre of the axis-aligned bounding box, vertices divided by the box diagonal so that the diagonal is 1.
`ObjectModel.scale` is that diagonal in metres: metric vertices = `vertices * scale`, metric box extents =
`extents * scale`. NOCS coordinates of a vertex are `vertex + 0.5`.

Category conventions of our procedural shapes (the same as the NOCS/ShapeNet canonical ones as far as they are
defined): a mug's handle points along +x; a laptop's hinge runs along x at the back (-z), its keyboard opens
towards +z; a camera's lens points along +z.

Every mesh is built from parts. A part carries a `material` index per vertex (0 = the object's main surface,
1 = a secondary surface such as a laptop screen or a camera lens) so the renderer can colour it, and parts keep
their own vertex normals, so box edges stay sharp while surfaces of revolution are shaded smoothly.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqpose_core import CLASS_NAMES

# NOCS ShapeNet synset of each category (nocs-data-format.md §5), used for the CAMERA-style model folders.
SYNSET_IDS = {
    'bottle': '02876657',
    'bowl': '02880940',
    'camera': '02942699',
    'can': '02946921',
    'laptop': '03642806',
    'mug': '03797390',
}

MATERIAL_MAIN, MATERIAL_SECONDARY = 0.0, 1.0
# Material marking a mug handle: shaded like the main surface, counted for handle visibility.
MATERIAL_HANDLE = 2.0

MESH_SUFFIXES = ('.obj', '.ply')


@dataclass
class ObjectModel:
    """One object instance: a triangle mesh in the normalised NOCS frame plus its metric scale."""

    category: str
    name: str
    vertices: np.ndarray  # (V, 3) float32, NOCS frame, box diagonal 1
    faces: np.ndarray  # (F, 3) int32
    normals: np.ndarray  # (V, 3) float32 unit vertex normals (object frame)
    materials: np.ndarray  # (V,) float32, MATERIAL_*
    scale: float  # box diagonal in metres
    # half the mug body's outer radius in normalised units: NOCS x beyond it is handle (handle visibility)
    handle_x_min: float = field(default=float('inf'))

    @property
    def class_id(self) -> int:
        return CLASS_NAMES.index(self.category) + 1

    @property
    def extents(self) -> np.ndarray:
        """Normalised box extents (x, y, z); their norm is 1."""
        return (self.vertices.max(0) - self.vertices.min(0)).astype(np.float64)

    @property
    def size(self) -> np.ndarray:
        """Metric box extents in metres."""
        return self.extents * self.scale


# ---------------------------------------------------------------------------------------------------------
# Parts


@dataclass
class _Part:
    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    material: float


def _revolve(radius, height, sections, material=MATERIAL_MAIN, smooth=True):
    """Surface of revolution about the y axis of a profile polyline (radius[i], height[i]).

    Profile points with radius 0 close the surface on the axis. Normals come from the profile tangent, so
    the shading is smooth around the axis; `smooth=False` gives each profile segment its own normal (sharp
    rims, flat lids).
    """
    radius = np.asarray(radius, np.float64)
    height = np.asarray(height, np.float64)
    angles = np.linspace(0.0, 2 * np.pi, sections, endpoint=False)
    cos, sin = np.cos(angles), np.sin(angles)
    if smooth:
        segment_r, segment_h = radius, height
        # 2D normal of the profile at each point: the tangent turned by -90 degrees (outwards for a profile
        # that runs from the bottom up on the outside)
        tangent = np.gradient(np.stack([radius, height], 1), axis=0)
        normal_2d = np.stack([tangent[:, 1], -tangent[:, 0]], 1)
        rows = [(i, i + 1) for i in range(len(radius) - 1)]
    else:
        segment_r = np.repeat(radius, 2)[1:-1]
        segment_h = np.repeat(height, 2)[1:-1]
        tangent = np.diff(np.stack([radius, height], 1), axis=0)
        normal_2d = np.repeat(np.stack([tangent[:, 1], -tangent[:, 0]], 1), 2, axis=0)
        rows = [(2 * i, 2 * i + 1) for i in range(len(radius) - 1)]
    normal_2d /= np.maximum(np.linalg.norm(normal_2d, axis=1, keepdims=True), 1e-12)
    vertices = np.stack(
        [segment_r[:, None] * cos[None], np.repeat(segment_h[:, None], sections, 1), segment_r[:, None] * sin[None]], -1
    ).reshape(-1, 3)
    normals = np.stack(
        [normal_2d[:, 0:1] * cos[None], np.repeat(normal_2d[:, 1:2], sections, 1), normal_2d[:, 0:1] * sin[None]], -1
    ).reshape(-1, 3)
    faces = []
    column = np.arange(sections)
    following = (column + 1) % sections
    for lower, upper in rows:
        a, b = lower * sections + column, lower * sections + following
        c, d = upper * sections + column, upper * sections + following
        faces.append(np.stack([a, c, b], 1))
        faces.append(np.stack([b, c, d], 1))
    return _Part(vertices, np.concatenate(faces), normals, material)


def _box(extents, center=(0.0, 0.0, 0.0), rotation=None, material=MATERIAL_MAIN):
    """Axis-aligned box (then rotated about its own `center` by `rotation`), 24 vertices for sharp normals."""
    half = np.asarray(extents, np.float64) / 2
    vertices, normals, faces = [], [], []
    for axis in range(3):
        for sign in (1.0, -1.0):
            normal = np.zeros(3)
            normal[axis] = sign
            u_axis, v_axis = (axis + 1) % 3, (axis + 2) % 3
            corners = []
            for du, dv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                corner = np.zeros(3)
                corner[axis] = sign * half[axis]
                corner[u_axis] = du * half[u_axis]
                corner[v_axis] = dv * half[v_axis]
                corners.append(corner)
            base = len(vertices)
            vertices.extend(corners)
            normals.extend([normal] * 4)
            # counter-clockwise seen from outside for sign > 0; flipped for sign < 0
            if sign > 0:
                faces.extend([(base, base + 1, base + 2), (base, base + 2, base + 3)])
            else:
                faces.extend([(base, base + 2, base + 1), (base, base + 3, base + 2)])
    vertices, normals = np.array(vertices), np.array(normals)
    if rotation is not None:
        vertices = vertices @ rotation.T
        normals = normals @ rotation.T
    return _Part(vertices + np.asarray(center, np.float64), np.array(faces), normals, material)


def _cylinder_z(radius, length, center, sections, material):
    """Closed cylinder along z (a camera lens), sharp rims."""
    part = _revolve(
        [0.0, radius, radius, 0.0], [-length / 2, -length / 2, length / 2, length / 2], sections, material, smooth=False
    )
    # revolve builds about y: turn y into z (x stays) with a proper rotation (y -> z, z -> -y)
    turn = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])
    return _Part(part.vertices @ turn.T + center, part.faces, part.normals @ turn.T, material)


def _torus_segment(major, minor, center, start, stop, sections_major=16, sections_minor=10, material=MATERIAL_HANDLE):
    """Arc of a torus in the x-y plane around `center`, angles measured from +x (a mug handle)."""
    theta = np.linspace(start, stop, sections_major)
    phi = np.linspace(0, 2 * np.pi, sections_minor, endpoint=False)
    ring = np.stack([np.cos(theta), np.sin(theta), np.zeros_like(theta)], 1)  # direction of each ring centre
    # tube cross-section spanned by the ring direction and z
    normals = (
        np.cos(phi)[None, :, None] * ring[:, None, :]
        + np.sin(phi)[None, :, None] * np.array([0, 0, 1.0])[None, None, :]
    )
    vertices = center + major * ring[:, None, :] + minor * normals
    faces = []
    column = np.arange(sections_minor)
    following = (column + 1) % sections_minor
    for i in range(sections_major - 1):
        a, b = i * sections_minor + column, i * sections_minor + following
        c, d = a + sections_minor, b + sections_minor
        faces.append(np.stack([a, b, c], 1))
        faces.append(np.stack([b, d, c], 1))
    return _Part(vertices.reshape(-1, 3), np.concatenate(faces), normals.reshape(-1, 3), material)


def _model_from_parts(category, name, parts, handle_x_min_metric=None):
    """Concatenate parts (metric), centre on the bounding box and normalise by its diagonal."""
    vertices = np.concatenate([p.vertices for p in parts])
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
    faces = np.concatenate([p.faces + o for p, o in zip(parts, offsets)])
    normals = np.concatenate([p.normals for p in parts])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    materials = np.concatenate([np.full(len(p.vertices), p.material) for p in parts])
    lower, upper = vertices.min(0), vertices.max(0)
    center = (lower + upper) / 2
    scale = float(np.linalg.norm(upper - lower))
    handle_x_min = float('inf')
    if handle_x_min_metric is not None:
        handle_x_min = (handle_x_min_metric - center[0]) / scale
    return ObjectModel(
        category=category,
        name=name,
        vertices=((vertices - center) / scale).astype(np.float32),
        faces=faces.astype(np.int32),
        normals=normals.astype(np.float32),
        materials=materials.astype(np.float32),
        scale=scale,
        handle_x_min=handle_x_min,
    )


# ---------------------------------------------------------------------------------------------------------
# Categories. Dimensions in metres, ranges chosen around the REAL275 instances and common household objects.


def _bottle(rng, sections):
    height = rng.uniform(0.16, 0.30)
    radius = rng.uniform(0.028, 0.045)
    neck = radius * rng.uniform(0.3, 0.45)
    shoulder = height * rng.uniform(0.55, 0.75)
    neck_start = shoulder + (height - shoulder) * rng.uniform(0.35, 0.65)
    waist = rng.uniform(0.85, 1.0)  # a slight waist in the body for some bottles
    cap = neck * rng.uniform(1.05, 1.25)
    r = [0, radius * 0.92, radius, radius * waist, radius, radius * 0.75, neck, neck, cap, cap, 0]
    h = [
        0,
        0,
        0.01,
        shoulder * 0.5,
        shoulder,
        (shoulder + neck_start) / 2,
        neck_start,
        height - 0.025,
        height - 0.025,
        height,
        height,
    ]
    return [_revolve(r, h, sections)]


def _bowl(rng, sections):
    diameter = rng.uniform(0.12, 0.22)
    height = diameter * rng.uniform(0.32, 0.5)
    wall = rng.uniform(0.003, 0.006)
    foot = diameter / 2 * rng.uniform(0.35, 0.55)
    rim = diameter / 2
    # outside from the foot up to the rim, then the inside back down to the centre
    t = np.linspace(0, 1, 8)
    curve = np.sin(t * np.pi / 2) ** rng.uniform(0.7, 1.3)
    outer_r = foot + (rim - foot) * curve
    outer_h = 0.008 + (height - 0.008) * t ** rng.uniform(1.2, 1.8)
    inner_r = np.maximum(outer_r[::-1] - wall, 0)
    inner_h = np.maximum(outer_h[::-1] - wall, 0.008 + wall * 0.5)
    r = np.concatenate([[0, foot * 0.95, foot], outer_r[1:], [rim - wall / 2], inner_r, [0]])
    h = np.concatenate([[0, 0, 0.008], outer_h[1:], [height], inner_h, [inner_h[-1]]])
    return [_revolve(r, h, sections)]


def _can(rng, sections):
    radius = rng.uniform(0.026, 0.036)
    height = rng.uniform(0.08, 0.16)
    rim = 0.004
    r = [0, radius * 0.85, radius, radius, radius * 0.97, radius * 0.97, radius * 0.88, 0]
    h = [0, 0, rim * 2, height - rim * 2, height - rim, height, height - rim * 0.5, height - rim * 0.5]
    return [_revolve(r, h, sections, smooth=False)]


def _mug(rng, sections):
    radius = rng.uniform(0.035, 0.05)
    height = rng.uniform(0.08, 0.12)
    wall = rng.uniform(0.003, 0.006)
    taper = rng.uniform(0.85, 1.0)  # bottom radius relative to the top
    r = [0, radius * taper, radius, radius - wall, (radius - wall) * taper, 0]
    h = [0, 0, height, height, wall * 2, wall * 2]
    body = _revolve(r, h, sections)
    # handle: a C-shaped torus arc on +x whose ends sink into the wall
    handle_height = height * rng.uniform(0.45, 0.7)
    major = handle_height / 2
    minor = rng.uniform(0.005, 0.008)
    # the arc's ends (at +-0.62 pi, x = centre - 0.37 major) must stay inside the wall: centre <= wall + 0.3 major
    wall_x = radius * (1 + taper) / 2
    center = np.array([wall_x + major * rng.uniform(0.0, 0.15), height * rng.uniform(0.45, 0.55), 0.0])
    handle = _torus_segment(major, minor, center, -np.pi * 0.62, np.pi * 0.62)
    # squash the arc along x: a circular arc as tall as the handle would stick out further than real handles
    squash = rng.uniform(0.55, 0.8)
    handle.vertices[:, 0] = center[0] + (handle.vertices[:, 0] - center[0]) * squash
    return [body, handle], radius + minor


def _laptop(rng, sections):
    width = rng.uniform(0.28, 0.38)
    depth = width * rng.uniform(0.62, 0.75)
    base_thickness = rng.uniform(0.012, 0.022)
    screen_thickness = rng.uniform(0.005, 0.009)
    hinge = np.radians(rng.uniform(70, 135))  # opening angle between keyboard and screen
    base = _box([width, base_thickness, depth], center=[0, base_thickness / 2, 0])
    # The lid turns about the hinge line (x axis at the back top edge of the base). In the lid's own frame it
    # lies closed on the base: extending from the hinge towards +z, display face at its local -y side. Opening
    # by the hinge angle h is the rotation about x that takes +z to (0, sin h, cos h).
    c, s = np.cos(hinge), np.sin(hinge)
    tilt = np.array([[1.0, 0, 0], [0, c, s], [0, -s, c]])
    hinge_point = np.array([0, base_thickness, -depth / 2])
    screen = _box(
        [width, screen_thickness, depth],
        center=hinge_point + tilt @ [0, screen_thickness / 2, depth / 2],
        rotation=tilt,
    )
    panel = _box(
        [width * 0.92, 0.0012, depth * 0.88],
        center=hinge_point + tilt @ [0, -0.0006, depth / 2],
        rotation=tilt,
        material=MATERIAL_SECONDARY,
    )
    keyboard = _box(
        [width * 0.85, 0.0012, depth * 0.45],
        center=[0, base_thickness + 0.0005, -depth * 0.12],
        material=MATERIAL_SECONDARY,
    )
    return [base, screen, panel, keyboard]


def _camera(rng, sections):
    width = rng.uniform(0.10, 0.15)
    height = width * rng.uniform(0.6, 0.8)
    depth = rng.uniform(0.04, 0.07)
    lens_radius = min(height * rng.uniform(0.3, 0.42), width * 0.3)
    lens_length = rng.uniform(0.03, 0.09)
    body = _box([width, height, depth], center=[0, height / 2, 0])
    lens_x = rng.uniform(-0.1, 0.1) * width
    lens_y = height * rng.uniform(0.42, 0.5)
    lens = _cylinder_z(
        lens_radius, lens_length, np.array([lens_x, lens_y, depth / 2 + lens_length / 2]), sections, MATERIAL_SECONDARY
    )
    parts = [body, lens]
    if rng.random() < 0.7:  # viewfinder hump / flash housing on top
        hump = [width * rng.uniform(0.25, 0.4), height * rng.uniform(0.15, 0.25), depth * rng.uniform(0.6, 0.9)]
        parts.append(_box(hump, center=[lens_x, height + hump[1] / 2, 0]))
    if rng.random() < 0.6:  # grip on the right side
        grip = [width * 0.18, height * 0.9, depth * 0.4]
        parts.append(_box(grip, center=[width / 2 - grip[0] / 2, height * 0.45, depth / 2 + grip[2] / 2]))
    return parts


_BUILDERS = {'bottle': _bottle, 'bowl': _bowl, 'can': _can, 'mug': _mug, 'laptop': _laptop, 'camera': _camera}


def procedural_model(category, rng, name=None, sections=40):
    """A random instance of `category` (one of CLASS_NAMES), drawn from `rng` (numpy Generator)."""
    if category not in _BUILDERS:
        raise ValueError(f'unknown category {category!r}; expected one of {CLASS_NAMES}')
    built = _BUILDERS[category](rng, sections)
    handle_x = None
    if category == 'mug':
        built, handle_x = built
    return _model_from_parts(category, name or category, built, handle_x_min_metric=handle_x)


# ---------------------------------------------------------------------------------------------------------
# Users' meshes

# Metric diagonal ranges used to scale users' meshes (their files carry no reliable unit).
SCALE_RANGES = {
    'bottle': (0.17, 0.32),
    'bowl': (0.14, 0.26),
    'camera': (0.13, 0.2),
    'can': (0.1, 0.18),
    'laptop': (0.4, 0.55),
    'mug': (0.12, 0.17),
}


def load_mesh_file(path, category):
    """Load an OBJ/PLY mesh and normalise it like the procedural ones (bbox centre, unit diagonal).

    The file's axes must already be the NOCS canonical ones (y up). The metric scale is drawn per instance
    from SCALE_RANGES when the mesh is placed (`with_scale`), because mesh files rarely carry units.
    """
    import trimesh  # imported here: only this path needs it for parsing arbitrary files

    path = Path(path)
    try:
        loaded = trimesh.load(str(path), force='mesh', process=True)
    except Exception as error:  # trimesh raises many types for malformed files
        raise ValueError(f'{path}: cannot load mesh ({type(error).__name__}: {error})') from None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise ValueError(f'{path}: no triangles in mesh file')
    vertices = np.asarray(loaded.vertices, np.float64)
    lower, upper = vertices.min(0), vertices.max(0)
    diagonal = float(np.linalg.norm(upper - lower))
    if not np.isfinite(diagonal) or diagonal <= 0:
        raise ValueError(f'{path}: degenerate mesh (zero-size bounding box)')
    normals = np.asarray(loaded.vertex_normals, np.float32)
    return ObjectModel(
        category=category,
        name=path.stem,
        vertices=((vertices - (lower + upper) / 2) / diagonal).astype(np.float32),
        faces=np.asarray(loaded.faces, np.int32),
        normals=normals,
        materials=np.zeros(len(vertices), np.float32),
        scale=1.0,
    )


def with_scale(model, scale, name):
    """A copy of `model` with another metric scale and name (the mesh arrays are shared, not copied)."""
    return ObjectModel(
        category=model.category,
        name=name,
        vertices=model.vertices,
        faces=model.faces,
        normals=model.normals,
        materials=model.materials,
        scale=float(scale),
        handle_x_min=model.handle_x_min,
    )


class ModelSource:
    """Draws object instances per category: users' meshes from `models_dir/<category>/*.obj|ply` where there
    are any, procedural ones otherwise."""

    def __init__(self, models_dir=None):
        self.user_files = {}
        self._cache = {}
        if models_dir is None:
            return
        models_dir = Path(models_dir)
        if not models_dir.is_dir():
            raise ValueError(f'--models {models_dir}: not a directory')
        for category in CLASS_NAMES:
            files = sorted(p for p in (models_dir / category).glob('*') if p.suffix.lower() in MESH_SUFFIXES)
            if files:
                self.user_files[category] = files
        if not self.user_files:
            raise ValueError(
                f'--models {models_dir}: no <category>/*.obj or *.ply files (categories: {", ".join(CLASS_NAMES)})'
            )

    def draw(self, category, rng, name):
        files = self.user_files.get(category)
        if not files:
            return procedural_model(category, rng, name=name)
        path = files[int(rng.integers(len(files)))]
        if path not in self._cache:
            self._cache[path] = load_mesh_file(path, category)
        low, high = SCALE_RANGES[category]
        return with_scale(self._cache[path], rng.uniform(low, high), name)
