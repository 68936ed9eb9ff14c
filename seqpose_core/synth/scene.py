"""Scene layout and camera paths: objects resting on a table without interpenetration, and camera trajectories
that move like the hand-held REAL recordings (video) or independent views like CAMERA (single frames).

World frame: y up, the table top is the plane y = 0 centred at the origin. Object poses are rigid 4x4
`world_from_object` with the translation of the object's box centre in metres. Cameras are OpenCV
`camera_from_world` (x right, y down, z forward).
"""

import dataclasses
from dataclasses import dataclass

import numpy as np

from seqpose_core import CLASS_NAMES
from seqpose_core.synth import meshes as meshes_module
from seqpose_core.synth.render import PATTERNS, Appearance, Light
from seqpose_core.synth.textures import procedural_texture, random_color

FPS = 30.0
ELEVATION_RANGE_DEG = (25.0, 60.0)
DISTANCE_RANGE = (0.5, 1.2)
SPEED_RANGE = (0.05, 0.15)  # camera speed along the path, m/s
# objects rest upright; some get a small tilt (an uneven support) for rotation variety
TILT_MAX_DEG = 4.0


@dataclass
class PlacedObject:
    model: meshes_module.ObjectModel
    appearance: Appearance
    instance_id: int
    world_from_object: np.ndarray  # (4, 4) rigid, metres
    footprint_radius: float  # radius of the circle on the table that contains the object's footprint


@dataclass
class Scene:
    objects: list
    table_half_size: np.ndarray  # (2,) half extents of the table top along world x and z, metres
    table_texture: np.ndarray  # RGB uint8
    background: np.ndarray  # RGB uint8
    light: Light
    table_tiles: float  # texture repeats per metre

    def shadow_blobs(self):
        return shadow_blobs(self.objects)


def shadow_blobs(placed_objects):
    """(x, z, radius) of the soft shadow under each object on the table."""
    return [(o.world_from_object[0, 3], o.world_from_object[2, 3], o.footprint_radius * 0.8) for o in placed_objects]


MOVE_DISTANCE = (0.15, 0.3)  # metres an object is slid when a video moves one
MOVE_FRAMES = 15  # the slide lasts 0.5 s at 30 Hz


def object_poses_over_time(scene, frames, rng, chance):
    """[list of PlacedObject] per frame: the scene's, except that with probability `chance` one object is slid
    MOVE_DISTANCE across the table (not into another object) over MOVE_FRAMES, starting between a third and two
    thirds of the video: a static-world assumption then meets an object that was picked up and put down."""
    static = [list(scene.objects)] * frames
    if chance <= 0 or frames < 3 * MOVE_FRAMES or rng.random() >= chance:
        return static
    index = int(rng.integers(len(scene.objects)))
    moved = scene.objects[index]
    others = [o for i, o in enumerate(scene.objects) if i != index]
    start = int(rng.integers(frames // 3, 2 * frames // 3))
    for _ in range(50):
        angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(*MOVE_DISTANCE)
        slide = length * np.array([np.cos(angle), 0.0, np.sin(angle)])
        target = moved.world_from_object[:3, 3] + slide
        if all(
            np.hypot(*(target - o.world_from_object[:3, 3])[[0, 2]]) >= moved.footprint_radius + o.footprint_radius
            for o in others
        ):
            break
    else:
        return static  # no free place on the table
    per_frame = []
    for frame in range(frames):
        fraction = min(max((frame - start) / MOVE_FRAMES, 0.0), 1.0)
        pose = moved.world_from_object.copy()
        pose[:3, 3] += fraction * slide
        objects = list(scene.objects)
        objects[index] = dataclasses.replace(moved, world_from_object=pose)
        per_frame.append(objects)
    return per_frame


def rotation_y(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rotation_about(axis, angle):
    """Rodrigues rotation about a unit axis."""
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def random_appearance(rng, category):
    main, pattern_color = random_color(rng), random_color(rng)
    # screens, keyboards and lenses are dark; sometimes a coloured camera lens ring look
    secondary = random_color(rng, saturation=(0.0, 0.3), value=(0.03, 0.25))
    if category in ('bottle', 'can'):  # labels and bands are typical
        pattern = int(rng.choice([0, 1, 2, 2, 4, 5]))
    elif category == 'laptop':
        pattern = int(rng.choice([0, 0, 0, 4]))
        main = random_color(rng, saturation=(0.0, 0.25), value=(0.2, 0.9))  # laptops are mostly grey/silver
    else:
        pattern = int(rng.integers(len(PATTERNS)))
    return Appearance(
        color_main=main,
        color_pattern=pattern_color,
        color_secondary=secondary,
        pattern=pattern,
        pattern_frequency=float(rng.uniform(3, 12)),
        pattern_offset=float(rng.uniform(0.3, 0.7)),
        specular=float(rng.uniform(0.0, 0.6)),
        shininess=float(rng.uniform(8, 80)),
    )


def random_light(rng):
    elevation = np.radians(rng.uniform(35, 85))
    azimuth = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(elevation) * np.cos(azimuth), np.sin(elevation), np.cos(elevation) * np.sin(azimuth)])
    warmth = rng.uniform(-0.08, 0.08)
    intensity = rng.uniform(0.55, 0.95)
    color = intensity * np.array([1 + warmth, 1.0, 1 - warmth])
    ambient = rng.uniform(0.2, 0.45) * np.array([1 - warmth / 2, 1.0, 1 + warmth / 2])
    return Light(direction_world=direction, color=color, ambient=ambient)


def choose_categories(rng, count):
    """`count` categories with at least min(count, 3) distinct ones; the rest may repeat, as in REAL."""
    distinct = min(count, 3)
    chosen = list(rng.permutation(len(CLASS_NAMES))[:distinct])
    chosen += list(rng.integers(len(CLASS_NAMES), size=count - distinct))
    return [CLASS_NAMES[int(i)] for i in chosen]


def _resting_pose(model, rng, position_xz, allow_tilt=True):
    """Random yaw (and a small tilt for some objects) with the lowest vertex touching the table."""
    rotation = rotation_y(rng.uniform(0, 2 * np.pi))
    if allow_tilt and rng.random() < 0.3:
        tilt_axis = np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), 0.0, np.sin(a)])
        rotation = rotation_about(tilt_axis, np.radians(rng.uniform(0, TILT_MAX_DEG))) @ rotation
    metric = model.vertices.astype(np.float64) * model.scale @ rotation.T
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = [position_xz[0], -metric[:, 1].min(), position_xz[1]]
    return pose


def place_objects(rng, models, region_radius, gap=0.01, attempts=300):
    """Positions (x, z) on the table for `models`, each footprint circle inside `region_radius` (grown when
    crowded) and no two circles overlapping: the objects cannot interpenetrate. Largest objects go first."""
    radii = [0.5 * float(np.hypot(m.size[0], m.size[2])) + gap for m in models]
    order = np.argsort(radii)[::-1]
    positions = [None] * len(models)
    placed = []
    for index in order:
        radius = radii[index]
        grow = region_radius
        for attempt in range(attempts):
            if attempt and attempt % 50 == 0:
                grow *= 1.15
            distance = np.sqrt(rng.random()) * max(grow - radius, 0.0)
            angle = rng.uniform(0, 2 * np.pi)
            candidate = np.array([distance * np.cos(angle), distance * np.sin(angle)])
            if all(np.linalg.norm(candidate - p) >= radius + r for p, r in placed):
                break
        else:
            raise RuntimeError(f'could not place {len(models)} objects without overlap')
        positions[index] = candidate
        placed.append((candidate, radius))
    return positions, radii


def make_scene(rng, model_source, background_source, object_count_range=(3, 6), name_prefix='obj', models=None):
    """A random table-top scene. `models`: optional list of ObjectModel to use instead of drawing new ones
    (CAMERA-style folders reuse a pool)."""
    if models is None:
        count = int(rng.integers(object_count_range[0], object_count_range[1] + 1))
        categories = choose_categories(rng, count)
        models = [
            model_source.draw(category, rng, name=f'{name_prefix}{i + 1}') for i, category in enumerate(categories)
        ]
    total_area = sum(np.pi * (0.5 * np.hypot(m.size[0], m.size[2])) ** 2 for m in models)
    # clutter like REAL: objects within a few tens of centimetres of the table centre
    region_radius = max(rng.uniform(0.22, 0.38), np.sqrt(total_area / np.pi / 0.35))
    positions, radii = place_objects(rng, models, region_radius)
    objects = []
    for i, (model, position, radius) in enumerate(zip(models, positions, radii)):
        pose = _resting_pose(model, rng, position, allow_tilt=model.category != 'laptop')
        objects.append(
            PlacedObject(
                model=model,
                appearance=random_appearance(rng, model.category),
                instance_id=i + 1,
                world_from_object=pose,
                footprint_radius=radius,
            )
        )
    reach = max(np.linalg.norm(p) + r for p, r in zip(positions, radii))
    table_half = np.maximum(reach + 0.1, rng.uniform(0.45, 1.2, 2))
    table = procedural_texture(
        rng, 128, kind=str(rng.choice(['wood', 'wood', 'noise', 'checker', 'stripes', 'gradient']))
    )
    # mirror-tile so the repeated texture has no seams
    table = np.concatenate([table, table[:, ::-1]], 1)
    table = np.ascontiguousarray(np.concatenate([table, table[::-1]], 0))
    return Scene(
        objects=objects,
        table_half_size=table_half,
        table_texture=table,
        background=background_source.draw(rng),
        light=random_light(rng),
        table_tiles=float(rng.uniform(0.6, 2.5)),
    )


# ---------------------------------------------------------------------------------------------------------
# Cameras


def look_at(eye, target, roll=0.0, up=(0.0, 1.0, 0.0)):
    """OpenCV camera_from_world looking from `eye` at `target`, world `up` towards the image top, then rolled."""
    eye, target = np.asarray(eye, np.float64), np.asarray(target, np.float64)
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    if roll:
        c, s = np.cos(roll), np.sin(roll)
        rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ rotation
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = -rotation @ eye
    return pose


def _spherical_eye(target, azimuth, elevation, distance):
    return target + np.asarray(distance)[..., None] * np.stack(
        [np.cos(elevation) * np.cos(azimuth), np.sin(elevation), np.cos(elevation) * np.sin(azimuth)], -1
    )


def _smooth_wave(rng, times, frequency_range, components=2):
    """Sum of a few random sinusoids, amplitude about 1: a smooth random function of time."""
    value = np.zeros_like(times)
    for _ in range(components):
        value += np.sin(2 * np.pi * rng.uniform(*frequency_range) * times + rng.uniform(0, 2 * np.pi))
    return value / np.sqrt(components)


def video_trajectory(rng, frames, fps=FPS):
    """camera_from_world (frames, 4, 4) of a smooth hand-held orbit around the table centre.

    The orbit angle, elevation, distance and look-at point are smooth random functions of a path parameter;
    the parameter's rate is then set so the camera's mean speed is a random 5-15 cm/s. A faster, small
    hand tremor (millimetres, a degree of roll) is added in real time.
    """
    times = np.arange(frames) / fps
    speed = rng.uniform(*SPEED_RANGE)
    direction = rng.choice([-1.0, 1.0])
    base = dict(
        azimuth0=rng.uniform(0, 2 * np.pi),
        elevation0=np.radians(rng.uniform(32, 53)),
        elevation_amp=np.radians(rng.uniform(2, 7)),
        distance0=rng.uniform(0.6, 1.05),
        distance_amp=rng.uniform(0.03, 0.12),
        target_amp=rng.uniform(0.02, 0.06),
        target_height=rng.uniform(0.02, 0.08),
    )
    wave_seeds = rng.integers(0, 2**31, size=6)

    def path(parameter):
        # frequencies per radian of orbit: at the usual rates (~0.1-0.25 rad/s) that is 0.05-0.3 Hz
        waves = [_smooth_wave(np.random.default_rng(s), parameter, (0.3, 1.2)) for s in wave_seeds]
        # orbit mostly one way with varying pace (sometimes lingering)
        azimuth = base['azimuth0'] + direction * (parameter + 0.15 * waves[0])
        elevation = np.clip(base['elevation0'] + base['elevation_amp'] * waves[1], *np.radians(ELEVATION_RANGE_DEG))
        distance = np.clip(base['distance0'] + base['distance_amp'] * waves[2], *DISTANCE_RANGE)
        target = np.stack(
            [
                base['target_amp'] * waves[3],
                base['target_height'] + 0.3 * base['target_amp'] * waves[4],
                base['target_amp'] * waves[5],
            ],
            -1,
        )
        return _spherical_eye(target, azimuth, elevation, distance), target

    # speed is proportional to the parameter rate: measure it at rate 1 on a fine grid, then rescale
    fine = np.linspace(0, max(times[-1], 1 / fps), max(frames, 2) * 4)
    eyes, _ = path(fine)
    unit_speed = np.linalg.norm(np.diff(eyes, axis=0), axis=1).sum() / max(fine[-1] - fine[0], 1e-9)
    rate = speed / max(unit_speed, 1e-9)
    eyes, targets = path(times * rate)

    tremor = np.stack([_smooth_wave(rng, times, (0.5, 2.0)) for _ in range(3)], -1) * rng.uniform(0.001, 0.004)
    roll = np.radians(rng.uniform(0.3, 1.5)) * _smooth_wave(rng, times, (0.1, 0.5)) + np.radians(rng.uniform(-3, 3))
    return np.stack(
        [look_at(eye + shake, target, roll=r) for eye, shake, target, r in zip(eyes, tremor, targets, roll)]
    )


def random_view(rng):
    """One independent camera_from_world looking at the table, like a CAMERA frame."""
    target = np.array([rng.uniform(-0.08, 0.08), rng.uniform(0.0, 0.08), rng.uniform(-0.08, 0.08)])
    eye = _spherical_eye(
        target, rng.uniform(0, 2 * np.pi), np.radians(rng.uniform(*ELEVATION_RANGE_DEG)), rng.uniform(*DISTANCE_RANGE)
    )
    return look_at(eye, target, roll=np.radians(rng.uniform(-5, 5)))
