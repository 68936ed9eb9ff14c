"""The runner's network call: the model in PyTorch, or its exported graphs in ONNX Runtime (inference.backend).

Everything after the network (the stages, the memory's bookkeeping, the sequence rules) is the runner's and
is the same under both, so eval, bag replay, bench and the node all switch with the one setting.

- `export.export_graphs(model, out_dir, input_hw, score_fusion)`: `seqpose export`'s graphs and their
  export.json (what they were made from); `export.read_export(dir, ...)` refuses a directory that does not match.
- `onnx_runtime.OnnxRuntimeModel`: the exported graphs behind SeqPose's own interface (a forward with a memory
  in and out, `second_stage`), so the runner and the stages call it as they call the model.
- `build_network(model, inference, input_hw)`: the object the runner calls under inference.backend.
"""

from seqpose_core.backends.network import build_network

__all__ = ['build_network']
