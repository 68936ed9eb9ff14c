#!/bin/bash
# The paper's S config on a GPU, torch vs ONNX Runtime (CUDA / TensorRT fp16), one prepared run for a lent
# device machine (its budget is minutes: run this once, results into OUT).
#
#   benchmarks/gpu_backends.sh OUT          (from the repository root; needs a CUDA torch and onnxruntime-gpu,
#                                            TensorRT for the TensorRT provider: pip install tensorrt)
#
# Writes OUT/bench_s_cuda.json (seqpose bench, torch bf16 autocast and ONNX Runtime side by side, same frames) and
# OUT/log.txt. ONNX Runtime picks TensorRT (fp16, engines cached beside the graphs), else CUDA, and says which in the
# first lines of the log.
set -euo pipefail
OUT=${1:?usage: benchmarks/gpu_backends.sh OUT}
mkdir -p "$OUT"
PY=${PY:-python}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  $PY -c "import onnxruntime, torch; print('onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers()); print('torch', torch.__version__, torch.cuda.is_available())"
  # the S config (random weights: speed does not depend on them) at the paper's 238x322; its graphs are exported
  # once into the cache (OUT/cache/seqpose/onnx/...), TensorRT's engines beside them
  XDG_CACHE_HOME="$OUT/cache" $PY -m seqpose_core.cli bench --config seqpose_vits --mode mf --device cuda --frames 200 --warmup 30 \
    --backend torch --backend onnxruntime --json "$OUT/bench_s_cuda.json"
} 2>&1 | tee "$OUT/log.txt"
