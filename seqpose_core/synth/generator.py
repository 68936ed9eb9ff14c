"""The generation loop: scenes -> renders -> NOCS files. Deterministic for a seed: every scene draws from its
own numpy Generator seeded by (seed, mode, scene index), so a scene does not depend on the others, on the
split assignment, or on how many scenes are generated.

Splits (`split='auto'`): with N >= 2 scenes the last max(1, round(N / 5)) scenes are held out (video: `test`,
single: `val`), the others are `train`; N = 1 gives `train`. Any other value puts every scene in that split.
Scene numbers restart per split: REAL folders scene_1, scene_2, ...; CAMERA folders 00000, 00001, ...
"""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass
from queue import Empty
from typing import Optional

import numpy as np

from seqpose_core import CLASS_NAMES
from seqpose_core.synth.meshes import ModelSource
from seqpose_core.synth.odometry import OdometryNoise, simulate_odometry
from seqpose_core.synth.render import Renderer
from seqpose_core.synth.scene import (
    FPS,
    choose_categories,
    make_scene,
    object_poses_over_time,
    random_view,
    shadow_blobs,
    video_trajectory,
)
from seqpose_core.synth.textures import BackgroundSource
from seqpose_core.synth.writer import NocsWriter

SPLITS = {'video': ('train', 'test'), 'single': ('train', 'val')}
_MODE_SEED = {'video': 1, 'single': 2}
SPLIT_CODES = {'train': 0, 'test': 1, 'val': 2}
# CAMERA-style folders draw their frames' objects from a pool of this many instances per category
POOL_PER_CATEGORY = 2


@dataclass
class SynthOptions:
    out: str
    scenes: int
    frames: int
    seed: int = 0
    width: int = 640
    height: int = 480
    mode: str = 'video'
    split: str = 'auto'
    models: Optional[str] = None
    backgrounds: Optional[str] = None
    overwrite: bool = False
    objects_min: int = 3
    objects_max: int = 6
    workers: int = 1  # processes rendering scenes side by side (each its own renderer)
    moving_objects: float = 0.0  # video: the chance that one object of a video is slid elsewhere mid-video


def split_assignment(mode, scenes, split='auto'):
    """[(split, number within split)] for each scene index."""
    train, held_out = SPLITS[mode]
    if split == 'auto':
        holdout = 0 if scenes < 2 else max(1, int(round(scenes / 5)))
        names = [train] * (scenes - holdout) + [held_out] * holdout
    elif split in SPLITS[mode]:
        names = [split] * scenes
    else:
        raise ValueError(f'--split {split!r}: expected auto or one of {SPLITS[mode]} for --mode {mode}')
    counters, assignment = {}, []
    for name in names:
        counters[name] = counters.get(name, 0) + 1
        # REAL scenes are numbered from 1, CAMERA folders from 0
        assignment.append((name, counters[name] if mode == 'video' else counters[name] - 1))
    return assignment


def scene_rng(seed, mode, index):
    return np.random.default_rng([int(seed), _MODE_SEED[mode], int(index)])


def _named_models(rng, model_source, writer, split, number, categories):
    models, per_category = [], {}
    for category in categories:
        per_category[category] = per_category.get(category, 0) + 1
        name = writer.model_name(split, number, category, per_category[category])
        models.append(model_source.draw(category, rng, name))
    return models


def video_views(rng, options, model_source, background_source, writer, split, number):
    """A REAL-style scene: one static scene, a hand-held camera path through it. Yields (scene,
    camera_from_world, noise seed) per frame; every draw from `rng` happens before the first frame."""
    count = int(rng.integers(options.objects_min, options.objects_max + 1))
    models = _named_models(rng, model_source, writer, split, number, choose_categories(rng, count))
    writer.write_models(split, models)
    scene = make_scene(rng, model_source, background_source, models=models)
    trajectory = video_trajectory(rng, options.frames)
    noise_seeds = rng.uniform(0, 100, options.frames)
    # the odometry and the moves draw from streams of their own: the images of a seed without moves do not change
    odometry_rng = np.random.default_rng([int(options.seed), _MODE_SEED['video'], SPLIT_CODES[split], number, 7])
    writer.write_odometry(split, number, simulate_odometry(odometry_rng, trajectory, FPS), OdometryNoise())
    move_rng = np.random.default_rng([int(options.seed), _MODE_SEED['video'], SPLIT_CODES[split], number, 8])
    poses = object_poses_over_time(scene, options.frames, move_rng, options.moving_objects)
    for frame, (camera_from_world, noise_seed) in enumerate(zip(trajectory, noise_seeds)):
        yield scene, camera_from_world, noise_seed, poses[frame]


def single_views(rng, options, model_source, background_source, writer, split, number):
    """A CAMERA-style folder: every frame a new scene drawn from the folder's pool of instances, seen from a
    random view. Yields (scene, camera_from_world, noise seed) per frame."""
    pool = _named_models(
        rng, model_source, writer, split, number, [c for c in CLASS_NAMES for _ in range(POOL_PER_CATEGORY)]
    )
    writer.write_models(split, pool)
    for _ in range(options.frames):
        count = int(rng.integers(options.objects_min, options.objects_max + 1))
        chosen, used = [], set()
        for category in choose_categories(rng, count):
            candidates = [i for i, m in enumerate(pool) if m.category == category and i not in used]
            if not candidates:  # more of a category than the pool holds: skip that object
                continue
            pick = candidates[int(rng.integers(len(candidates)))]
            used.add(pick)
            chosen.append(pool[pick])
        scene = make_scene(rng, model_source, background_source, models=chosen)
        camera_from_world = random_view(rng)
        yield scene, camera_from_world, rng.uniform(0, 100), scene.objects


VIEWS = {'video': video_views, 'single': single_views}


def _check_options(options):
    if options.scenes < 1 or options.frames < 1:
        raise ValueError(f'--scenes and --frames must be >= 1 (got {options.scenes}, {options.frames})')
    if not 0.0 <= options.moving_objects <= 1.0:
        raise ValueError(f'--moving-objects {options.moving_objects}: expected a chance in [0, 1]')
    if options.frames > 10000:
        raise ValueError(f'--frames {options.frames}: frame ids have 4 digits (at most 10000 frames per scene)')
    if not 1 <= options.objects_min <= options.objects_max <= 8:
        raise ValueError(
            f'objects per scene must satisfy 1 <= min <= max <= 8, got {options.objects_min}..{options.objects_max}'
        )
    if options.workers < 1:
        raise ValueError(f'--workers {options.workers}: expected at least 1 process')


def generate(options, progress=None, on_frame=None):
    """Generate `options.scenes` scenes of `options.frames` frames. `progress`: callable(n) per frame written;
    `on_frame(folder, frame_index, rendered, scene, camera_from_world, label)` for previews (one process
    only). Returns the writer, whose lists hold every frame written.

    With `options.workers` > 1 the scenes are shared among that many processes, each with its own renderer;
    the files are the same as with one, since every scene draws from its own generator."""
    _check_options(options)
    scenes = [
        (index, split, number)
        for index, (split, number) in enumerate(split_assignment(options.mode, options.scenes, options.split))
    ]
    if options.workers == 1 or len(scenes) == 1:
        return render_scenes(options, scenes, progress, on_frame)
    if on_frame is not None:
        raise ValueError('generate: on_frame needs workers=1 (it is called in the rendering process)')
    writer = NocsWriter(
        options.out, options.mode, options.width, options.height, overwrite=options.overwrite, workers=0
    )
    workers = min(options.workers, len(scenes))
    # several interleaved shares per process: early and late scenes (the held-out split) spread over every
    # process, and a failure stops the run after the shares in flight rather than after whole halves
    shares = min(len(scenes), 4 * workers)
    context = multiprocessing.get_context('spawn')  # a forked EGL context is not usable in the child
    with context.Manager() as manager, ProcessPoolExecutor(workers, mp_context=context) as pool:
        frames_written = manager.Queue()
        futures = [
            pool.submit(_render_share, options, scenes[share::shares], frames_written) for share in range(shares)
        ]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2)
            _report_frames(frames_written, progress)
            failed = [future for future in done if future.exception() is not None]
            if failed:
                for future in pending:
                    future.cancel()
                raise failed[0].exception()  # a worker's exception, as it was raised there
        _report_frames(frames_written, progress)
        for future in futures:
            writer.add_lists(*future.result())
    writer.close()
    return writer


def _report_frames(queue, progress):
    """Pass the frames the workers have reported so far on to `progress`."""
    while True:
        try:
            count = queue.get_nowait()
        except Empty:
            return
        if progress:
            progress(count)


def _render_share(options, scenes, frames_written):
    """One worker process: render `scenes`, report each frame on the queue; returns the writer's lists."""
    writer = render_scenes(options, scenes, frames_written.put, write_lists=False)
    return writer.lists_all, writer.lists_labelled


def render_scenes(options, scenes, progress=None, on_frame=None, write_lists=True):
    """Render `scenes` [(scene index, split, number)] in this process; returns the closed writer."""
    model_source = ModelSource(options.models)
    background_source = BackgroundSource(options.backgrounds)
    writer = NocsWriter(options.out, options.mode, options.width, options.height, overwrite=options.overwrite)
    renderer = Renderer(options.width, options.height)
    try:
        for index, split, number in scenes:
            rng = scene_rng(options.seed, options.mode, index)
            folder = writer.scene_folder(split, number)
            views = VIEWS[options.mode](rng, options, model_source, background_source, writer, split, number)
            loaded = None
            for frame_index, (scene, camera_from_world, noise_seed, placed) in enumerate(views):
                if scene is not loaded:  # a video renders one scene from every view; single, a scene per view
                    renderer.load_scene(
                        [(o.model, o.appearance, o.instance_id) for o in scene.objects],
                        scene.table_half_size,
                        scene.table_texture,
                        scene.background,
                        scene.light,
                        table_tiles=scene.table_tiles,
                    )
                    loaded = scene
                rendered = renderer.render(
                    writer.K,
                    camera_from_world,
                    [o.world_from_object for o in placed],
                    shadow_blobs(placed),
                    noise_seed=noise_seed,
                )
                label = writer.write_frame(folder, frame_index, rendered, placed, camera_from_world)
                if on_frame:
                    on_frame(folder, frame_index, rendered, scene, camera_from_world, label)
                if progress:
                    progress(1)
    finally:
        writer.close(write_lists=write_lists)
        renderer.release()
    return writer
