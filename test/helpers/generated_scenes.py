"""Small NOCS-layout sets for tests, made by the project's own generator (`seqpose synth`)."""

from seqpose_core.cli import main as seqpose


def generate_scenes(root, *, scenes, frames, size, split, seed, objects='2-3', options=()):
    """`seqpose synth` into `root`: `scenes` x `frames` images of `size` ('WxH') in `split` ('train', 'test' or
    'auto'), `objects` ('min-max') per scene, `options`: more of its command line. Returns root."""
    assert (
        seqpose(
            [
                'synth',
                '--out',
                str(root),
                '--scenes',
                str(scenes),
                '--frames',
                str(frames),
                '--size',
                size,
                '--split',
                split,
                '--seed',
                str(seed),
                '--objects',
                objects,
                *options,
            ]
        )
        == 0
    )
    return root
