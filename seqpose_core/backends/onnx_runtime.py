"""The exported graphs (backends.export) in ONNX Runtime, behind the interface the runner and the stages call on
SeqPose: `model(images, K, memory, camera_motion, dense=False, score_fusion)` -> (outputs, memory),
`second_stage(crops, class_ids)` with `.rotations(outputs)` and `.scores`, `cfg`.

The memory is a model.memory.PaddedMemory whose tensors go into the frame graph and come back from it; torch
tensors in and out (zero-copy views of ONNX Runtime's numpy arrays on the CPU).

Execution providers follow inference.device: 'cpu' -> CPU; 'cuda[:N]' -> TensorRT (fp16, engines cached in
inference.engine_cache) then CUDA then CPU, each used when this onnxruntime has it; what is missing is said
in one log line and the next provider serves.
"""

import logging
from pathlib import Path

import numpy as np
import torch

from seqpose_core.backends.export import read_export
from seqpose_core.model.graph import FRAME_OUTPUTS
from seqpose_core.model.memory import PaddedMemory
from seqpose_core.model.pose_refiner import allocentric_rotations
from seqpose_core.timing import timed_stage

log = logging.getLogger(__name__)


def execution_providers(device, engine_cache, available):
    """[(provider, options)] for `device` among the `available` provider names, best first, and the log lines
    saying which wanted ones are missing."""
    device = str(device)
    notes = []
    if not device.startswith('cuda'):
        return [('CPUExecutionProvider', {})], notes
    index = int(device.split(':')[1]) if ':' in device else 0
    wanted = [
        (
            'TensorrtExecutionProvider',
            {
                'device_id': index,
                'trt_fp16_enable': True,
                'trt_engine_cache_enable': True,
                'trt_engine_cache_path': str(engine_cache),
            },
        ),
        ('CUDAExecutionProvider', {'device_id': index}),
    ]
    chosen = [(name, options) for name, options in wanted if name in available]
    missing = [name for name, _ in wanted if name not in available]
    if missing:
        notes.append(
            f'onnxruntime: {", ".join(missing)} not available in this onnxruntime (it has {sorted(available)}); '
            + (f'using {chosen[0][0]}' if chosen else 'running on the CPU (install onnxruntime-gpu for CUDA)')
        )
    return chosen + [('CPUExecutionProvider', {})], notes


class _Session:
    """One graph in an InferenceSession; numpy in, torch out."""

    def __init__(self, path, providers, threads=0):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: the exporter's unused constants are warned about otherwise
        options.intra_op_num_threads = threads or torch.get_num_threads()
        # ONNX Runtime's workers spin after a run by default: they would take the cores from the torch code between
        # the graphs (cropping, the stages), which then runs many times slower
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        self.session = onnxruntime.InferenceSession(
            str(path),
            options,
            providers=[name for name, _ in providers],
            provider_options=[options_ for _, options_ in providers],
        )
        self.input_names = [item.name for item in self.session.get_inputs()]
        self.output_names = [item.name for item in self.session.get_outputs()]

    @property
    def providers(self):
        return self.session.get_providers()

    def __call__(self, *inputs):
        feed = {name: _numpy(value) for name, value in zip(self.input_names, inputs)}
        return [torch.from_numpy(value) for value in self.session.run(self.output_names, feed)]


def _numpy(value):
    if torch.is_tensor(value):
        return value.detach().cpu().numpy()
    return np.asarray(value)


class OnnxSecondStage:
    """refiner.onnx as the stages call model.crop_scorer.SecondStage."""

    def __init__(self, session, box, num_bins):
        self.session = session
        self.box = box
        self.num_bins = num_bins

    @property
    def scores(self):
        return 'class_logits' in self.session.output_names

    def __call__(self, crops, class_ids):
        values = self.session(crops.float(), class_ids.long())
        return dict(zip(self.session.output_names, values))

    def rotations(self, outputs):
        return allocentric_rotations(outputs, self.num_bins)


class OnnxRuntimeModel:
    """An export directory in ONNX Runtime, called as the runner calls SeqPose (model.seqpose)."""

    def __init__(self, directory, model_cfg, device='cpu', engine_cache='', threads=0):
        directory = Path(directory)
        self.directory = directory
        self.cfg = model_cfg
        self.metadata = read_export(directory)
        self.input_size = tuple(self.metadata['input_size'])
        self.score_fusion = self.metadata['score_fusion']
        import onnxruntime

        providers, notes = execution_providers(
            device, Path(engine_cache) if engine_cache else directory / 'engines', onnxruntime.get_available_providers()
        )
        for note in notes:
            log.warning(note)
        graphs = self.metadata['graphs']
        self.frame = _Session(directory / graphs['frame'], providers, threads)
        self.second_stage = None
        if 'refiner' in graphs:
            session = _Session(directory / graphs['refiner'], providers, threads)
            self.second_stage = OnnxSecondStage(session, model_cfg.refiner_box, model_cfg.refiner_azimuth_bins)
        self.stage_timer = None

    @property
    def providers(self):
        return self.frame.providers

    # the runner's calls on a model ------------------------------------------------------------------------
    def to(self, device):
        return self

    def eval(self):
        return self

    def check_score_fusion(self, score_fusion):
        if score_fusion != self.score_fusion:
            raise ValueError(
                f'score_fusion {score_fusion!r}: the graphs in {self.directory} were exported with '
                f'{self.score_fusion!r} (export again with the setting you run)'
            )

    def init_memory(self, batch_size=1):
        cfg = self.cfg
        return PaddedMemory.empty(batch_size, cfg.memory_frames, cfg.memory_top_k, cfg.hidden_dim)

    def __call__(self, images, K, memory=None, camera_motion=None, dense=False, score_fusion=None):
        if dense:
            raise ValueError('the exported frame graph has no dense outputs (dense=True needs the torch backend)')
        if score_fusion is not None:
            self.check_score_fusion(score_fusion)
        if tuple(images.shape) != (1, 3) + self.input_size:
            raise ValueError(
                f'images: the exported graph takes (1, 3, {self.input_size[0]}, {self.input_size[1]}), '
                f'got {tuple(images.shape)}'
            )
        memory = memory if memory is not None else self.init_memory(1)
        motion = camera_motion if camera_motion is not None else torch.eye(4)[None]
        with timed_stage(self.stage_timer, 'network'):
            values = self.frame(images.float(), K.float(), motion.float(), *memory.tensors())
        outputs = dict(zip(FRAME_OUTPUTS[:4], values[:4]))
        if not bool(memory.valid[0, 0]):
            # no frame in the newest slot: its K propagated queries were padding (PaddedMemory.query_valid)
            top_k = self.cfg.memory_top_k
            outputs = {name: value[:, top_k:] for name, value in outputs.items()}
        return outputs, PaddedMemory(*values[4:])
