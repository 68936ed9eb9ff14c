"""The exported graphs and the backend switch (seqpose_core.backends): the padded memory is the queue's arithmetic,
`seqpose export` writes checked graphs that refuse another model, and ONNX Runtime publishes what torch publishes
through eval, bag replay and bench on generated video."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from helpers.bags import synthetic_frame_bag
from helpers.evaluation import eval_results
from helpers.generated_scenes import generate_scenes
from seqpose_core.backends.export import ExportMismatch, export_graphs, read_export
from seqpose_core.backends.network import cache_directory
from seqpose_core.backends.onnx_runtime import execution_providers
from seqpose_core.cli import main as seqpose
from seqpose_core.config import load_config
from seqpose_core.model import build_model, save_checkpoint
from seqpose_core.model.graph import FRAME_OUTPUTS, FrameGraph
from seqpose_core.model.memory import PaddedMemory
from seqpose_core.runner import Frame, build_runner

pytest.importorskip('onnxruntime')
TOLERANCE = 1e-4  # fp32, torch eager vs ONNX Runtime


def full_tiny():
    """The tiny config with every exported part: proposals (proposal score fusion), a refiner with a box part
    and a crop scorer."""
    config = load_config('tiny')
    model_cfg = dataclasses.replace(
        config.model, proposal_queries=4, refiner_width=4, refiner_box=True, refiner_scoring=True
    )
    inference = dataclasses.replace(config.inference, score_fusion='proposal', score_threshold=0.0)
    config = dataclasses.replace(config, model=model_cfg, inference=inference)
    torch.manual_seed(1)
    return config, build_model(model_cfg, load_pretrained=False).eval()


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """(checkpoint path, export directory, cache root holding the same export) of full_tiny; XDG_CACHE_HOME
    points at the cache root for the module, so `backend: onnxruntime` finds the export there."""
    root = tmp_path_factory.mktemp('backends')
    config, model = full_tiny()
    checkpoint = save_checkpoint(root / 'tiny.pt', model, config)
    directory = root / 'export'
    model.train()
    export_graphs(model, directory, (config.data.input_height, config.data.input_width), 'proposal')
    assert model.training  # the export works on a copy: the caller's model keeps its mode (and its device)
    model.eval()
    cache = root / 'cache'
    patch = pytest.MonkeyPatch()
    patch.setenv('XDG_CACHE_HOME', str(cache))
    # the cache's entry for this model is a copy of the export: the tests that do not name onnx_dir find it there
    input_hw = (config.data.input_height, config.data.input_width)
    shutil.copytree(directory, cache_directory(model, input_hw, 'proposal'))
    yield checkpoint, directory, cache
    patch.undo()


def camera_motion(angle_deg, shift):
    angle = np.radians(angle_deg)
    motion = np.eye(4)
    motion[0, 0] = motion[2, 2] = np.cos(angle)
    motion[0, 2], motion[2, 0] = np.sin(angle), -np.sin(angle)
    motion[0, 3] = shift
    return motion


def test_padded_memory_forward_is_the_queue_forward():
    """FrameGraph (fixed slots, padding masked) gives the eager queue's outputs and memory, frame after frame,
    from the empty memory (its K padded queries dropped) to a full one, with camera motion."""
    config, model = full_tiny()
    graph = FrameGraph(model, 'proposal')
    cfg = model.cfg
    torch.manual_seed(2)
    K = torch.tensor([[[60.0, 0.0, 35.0], [0.0, 60.0, 28.0], [0.0, 0.0, 1.0]]])
    queue, padded = None, PaddedMemory.empty(1, cfg.memory_frames, cfg.memory_top_k, cfg.hidden_dim)
    with torch.no_grad():
        for index in range(cfg.memory_frames + 2):
            image = torch.randn(1, 3, config.data.input_height, config.data.input_width)
            motion = torch.as_tensor(camera_motion(2.0 * index, 0.01), dtype=torch.float32)[None]
            outputs, queue = model(image, K, queue, motion if index else None, dense=False, score_fusion='proposal')
            values = graph(image, K, motion if index else torch.eye(4)[None], *padded.tensors())
            skip = 0 if index else cfg.memory_top_k  # the first frame's propagated queries are padding
            for name, value in zip(FRAME_OUTPUTS[:4], values[:4]):
                assert torch.allclose(value[:, skip:], outputs[name], atol=1e-5), (index, name)
            padded = PaddedMemory(*values[4:])
            expected = PaddedMemory.from_queue(queue, 1, cfg.hidden_dim)
            assert torch.equal(padded.valid, expected.valid)
            slots = padded.valid[0]  # what empty slots hold is never read
            for name in ('features', 'reference_points', 'scores', 'motions', 'ages'):
                assert torch.allclose(getattr(padded, name)[0, slots], getattr(expected, name)[0, slots], atol=1e-5), (
                    index,
                    name,
                )
    assert bool(padded.valid.all())  # the loop reached a full memory


def test_export_metadata_and_refusals(exported, tmp_path):
    checkpoint, directory, _ = exported
    metadata = json.loads((directory / 'export.json').read_text())
    assert set(metadata['graphs']) == {'frame', 'refiner'}
    assert metadata['score_fusion'] == 'proposal' and metadata['opset'] >= 17
    import onnx

    for name in metadata['graphs'].values():
        onnx.checker.check_model(str(directory / name), full_check=True)
    runner = build_runner(checkpoint, overrides={'backend': 'onnxruntime', 'onnx_dir': str(directory)})
    assert runner.model.directory == directory
    # another model's weights, another input size, another score fusion: each refused by name
    config, other = full_tiny()
    with torch.no_grad():
        other.decoder.anchors.content.weight.add_(1.0)
    with pytest.raises(ExportMismatch, match='weights'):
        read_export(directory, model=other)
    with pytest.raises(ExportMismatch, match='input size'):
        read_export(directory, input_hw=(56, 84))
    with pytest.raises(ValueError, match='score_fusion'):
        build_runner(
            checkpoint, overrides={'backend': 'onnxruntime', 'onnx_dir': str(directory), 'score_fusion': 'query'}
        )
    with pytest.raises(ExportMismatch, match='no export.json'):
        build_runner(checkpoint, overrides={'backend': 'onnxruntime', 'onnx_dir': str(tmp_path)})


def test_export_command(exported, tmp_path, capsys):
    checkpoint, directory, _ = exported
    assert seqpose(['export', '--checkpoint', str(checkpoint), '--out', str(tmp_path / 'out')]) == 0
    written = json.loads((tmp_path / 'out' / 'export.json').read_text())
    assert written['weights_sha256'] == json.loads((directory / 'export.json').read_text())['weights_sha256']
    assert '"input_size"' in capsys.readouterr().out
    assert (
        seqpose(['export', '--checkpoint', str(checkpoint), '--out', str(tmp_path / 'bad'), '--input-size', '50x70'])
        == 2
    )
    assert '--input-size 50x70: height and width must be multiples of 14' in capsys.readouterr().err


def assert_same_published(torch_frames, onnx_frames):
    """Per frame: the same published detections (count, classes, track ids) with boxes, rotations, sizes and
    scores within TOLERANCE."""
    assert len(torch_frames) == len(onnx_frames)
    compared = 0
    for expected, got in zip(torch_frames, onnx_frames):
        assert len(expected) == len(got)
        for a, b in zip(expected, got):
            assert (a.class_id, a.track_id) == (b.class_id, b.track_id)
            assert abs(a.score - b.score) <= TOLERANCE
            for name in ('translation', 'rotation', 'size'):
                assert np.abs(getattr(a, name) - getattr(b, name)).max() <= TOLERANCE, name
            compared += 1
    return compared


def test_onnxruntime_runner_publishes_what_torch_publishes(exported):
    """A video with camera motion, memory carried across frames: every stage on (refiner with boxes, crop
    scoring, tracks, support plane, world fusion)."""
    checkpoint, directory, _ = exported
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(8)]
    K = np.array([[110.0, 0.0, 64.0], [0.0, 110.0, 48.0], [0.0, 0.0, 1.0]])
    published = {}
    for backend in ('torch', 'onnxruntime'):
        runner = build_runner(checkpoint, overrides={'backend': backend, 'onnx_dir': str(directory)})
        published[backend] = [
            runner.step(Frame(image, K, index / 30, 'camera', camera_motion=camera_motion(1.0, 0.01))).detections
            for index, image in enumerate(images)
        ]
    assert assert_same_published(published['torch'], published['onnxruntime']) >= 8
    assert runner.memory.valid.all()  # the memory went through the graph and filled


def test_eval_backend_switch(exported, tmp_path):
    """`seqpose eval --backend onnxruntime` (the export found in the cache) scores what torch scores."""
    checkpoint, _, _ = exported
    data = generate_scenes(tmp_path / 'data', scenes=1, frames=6, size='128x96', split='test', seed=11)
    results = {
        backend: eval_results(checkpoint, data, tmp_path / backend, 'mf', '--backend', backend)
        for backend in ('torch', 'onnxruntime')
    }
    assert len(results['torch']) == 6
    for expected, got in zip(results['torch'], results['onnxruntime']):
        assert np.array_equal(expected['pred_class_ids'], got['pred_class_ids'])
        assert np.abs(expected['pred_scores'] - got['pred_scores']).max(initial=0) <= TOLERANCE
        assert np.abs(expected['pred_RTs'] - got['pred_RTs']).max(initial=0) <= TOLERANCE
        assert np.abs(expected['pred_scales'] - got['pred_scales']).max(initial=0) <= TOLERANCE


def test_bag_replay_backend_switch(exported, tmp_path):
    from seqpose_core.bag.replay import evaluate_bag

    checkpoint, _, _ = exported
    bag = synthetic_frame_bag(tmp_path / 'frames', frames=5)
    reports = {
        backend: evaluate_bag(
            bag, tmp_path / backend, checkpoint=checkpoint, backend=backend, video=False, output_bag=False
        ).to_dict()
        for backend in ('torch', 'onnxruntime')
    }
    assert reports['torch']['frames_replayed'] == reports['onnxruntime']['frames_replayed'] == 5
    assert reports['torch']['object_counts'] == reports['onnxruntime']['object_counts']
    assert reports['torch']['metrics'] == reports['onnxruntime']['metrics']


def test_bench_compares_backends(exported, capsys):
    checkpoint, _, _ = exported
    code = seqpose(
        [
            'bench',
            '--checkpoint',
            str(checkpoint),
            '--frames',
            '3',
            '--warmup',
            '1',
            '--gemm-size',
            '64',
            '--no-interleave',
            '--backend',
            'torch',
            '--backend',
            'onnxruntime',
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert 'backend onnxruntime' in out and 'network' in out
    assert 'onnxruntime' in out.split('same detections as torch')[1]
    assert '3/3 frames' in out.split('same detections as torch')[1]


def test_execution_providers_fall_back_by_name(tmp_path):
    providers, notes = execution_providers('cpu', tmp_path, ['CPUExecutionProvider'])
    assert providers == [('CPUExecutionProvider', {})] and not notes
    providers, notes = execution_providers('cuda', tmp_path, ['CPUExecutionProvider'])
    assert [name for name, _ in providers] == ['CPUExecutionProvider']
    assert 'TensorrtExecutionProvider' in notes[0] and 'CPU' in notes[0]
    providers, notes = execution_providers('cuda:1', tmp_path, ['CUDAExecutionProvider', 'CPUExecutionProvider'])
    assert [name for name, _ in providers] == ['CUDAExecutionProvider', 'CPUExecutionProvider']
    assert providers[0][1]['device_id'] == 1 and 'using CUDAExecutionProvider' in notes[0]
    providers, _ = execution_providers(
        'cuda', tmp_path / 'engines', ['TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider']
    )
    assert providers[0][0] == 'TensorrtExecutionProvider'
    assert providers[0][1]['trt_fp16_enable'] and providers[0][1]['trt_engine_cache_path'] == str(tmp_path / 'engines')
