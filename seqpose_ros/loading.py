"""Start-up: resolve the checkpoint and device and build the StreamRunner (seqpose_core.runner.build_runner).
Plain functions (no rclpy) so the failure messages are tested without ROS; the node turns `StartupError` into
a fatal log line and exit code 1.
"""

import dataclasses
from pathlib import Path

# The model shipped inside the package (what `checkpoint: ''` means): the runner's
from seqpose_core.runner import DEFAULT_CHECKPOINT, build_runner


class StartupError(RuntimeError):
    """The node cannot start; the text says why and what to do."""


def resolve_checkpoint(checkpoint):
    if checkpoint:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise StartupError(f"checkpoint '{checkpoint}': no such file")
        return path
    if not DEFAULT_CHECKPOINT.is_file():
        raise StartupError(
            f'checkpoint not set and the embedded default model {DEFAULT_CHECKPOINT} is not '
            'installed; pass -p checkpoint:=/path/to/model.pt'
        )
    return DEFAULT_CHECKPOINT


def resolve_device(device, warn):
    """'cpu' / 'cuda' / 'cuda:N' -> a device that exists; CUDA that is not there falls back to CPU with a
    warning (a launch file written for a GPU robot still runs on a laptop)."""
    import torch

    if device == 'cpu':
        return 'cpu'
    if not torch.cuda.is_available():
        warn(f"device '{device}': CUDA is not available (torch {torch.__version__}); falling back to CPU")
        return 'cpu'
    index = int(device.split(':', 1)[1]) if ':' in device else 0
    if index >= torch.cuda.device_count():
        warn(f"device '{device}': only {torch.cuda.device_count()} CUDA device(s); falling back to CPU")
        return 'cpu'
    return f'cuda:{index}'


def load_runner(checkpoint, device='cpu', history_frames=0, top_k=0, warn=print, overrides=None):
    """(StreamRunner, checkpoint path, device actually used). `overrides`: inference settings that choose how the
    runner is built (backend, onnx_dir, engine_cache), by dotted name. Raises StartupError with the reason."""
    path = resolve_checkpoint(checkpoint)
    device = resolve_device(device, warn)
    try:
        runner = build_runner(str(path), device=device, overrides=dict(overrides or {}))
    except Exception as error:  # noqa: BLE001 - any load failure is fatal at start-up, with its reason
        raise StartupError(f"checkpoint '{path}' does not load: {type(error).__name__}: {error}") from None
    # history_frames / top_k size the memory queue the model creates for a new sequence (init_memory); the
    # model gets a changed copy of its config, the checkpoint's is left as it was
    changes = {
        name: int(value) for name, value in (('memory_frames', history_frames), ('memory_top_k', top_k)) if value
    }
    if changes and runner.cfg.backend != 'torch':
        raise StartupError(
            f'history_frames / top_k {changes}: the exported graphs of backend {runner.cfg.backend} have the '
            "checkpoint's memory size; leave them 0 or use backend torch"
        )
    if changes and getattr(runner.model, 'cfg', None) is not None:
        runner.model.cfg = dataclasses.replace(runner.model.cfg, **changes)
    return runner, path, device


def warm_up(runner):
    """One step of `runner` on a blank frame of its model's input size, then a reset: the first camera frame
    then runs at full speed (lazy initialisation, allocator, kernels are paid here, at configure). Seconds taken."""
    import time

    import numpy as np

    from seqpose_core.runner import Frame

    height, width = runner.input_size
    K = np.array([[float(width), 0.0, (width - 1) / 2], [0.0, float(width), (height - 1) / 2], [0.0, 0.0, 1.0]])
    started = time.monotonic()
    runner.step(Frame(np.zeros((height, width, 3), np.uint8), K, 0.0, 'warm-up'))
    runner.reset()
    return time.monotonic() - started
