#!/usr/bin/env bash
# The default model's recipe end to end on one machine, in a fixed wall-clock budget: fresh training data,
# a short timing run that sizes the schedule to the budget, the training itself (warm-started from the
# shipped model unless INIT is empty), then the held-out demo video scored MF and SF, without ground truth at
# inference, beside its class-mean-size reference. Made for a lent GPU machine (DEVICE=cuda, WORKERS=14, a large
# BATCH), and it runs the same on a laptop CPU with small values.
#
#   scripts/train_default_model.sh OUT_DIR
#
# Settings (environment variables, defaults in brackets):
#   PYTHON [python3]     the interpreter with seqpose_core importable
#   DEVICE [cpu]         cpu | cuda
#   MINUTES [10]         wall-clock budget of the training itself (the timing run and evaluation come on top)
#   WORKERS [2]          processes for `seqpose synth` and DataLoader workers for training
#   SCENES [2000]        training scenes of FRAMES [12] frames, 320x240, seed TRAIN_SEED [7]
#   BATCH [3]            clips of 3 frames per step; LR [3e-4] (scale it with the batch)
#   INIT [seqpose_core/weights/default.pt]   warm start; '' trains from the model's own initialisation
#   THREADS [0]          torch threads of the training process (0: torch's default)
# What it leaves in OUT_DIR: data/, run/ (model.pt, logs, checkpoint: continue with `seqpose train --resume`),
# scorer/ (model.pt: run/model.pt with its refiner's crop scorer retrained, when it has a refiner), demo_mf/,
# demo_sf/, summary.txt (the two evaluations and the class-mean reference).
set -euo pipefail

OUT=${1:?usage: scripts/train_default_model.sh OUT_DIR}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cpu}
MINUTES=${MINUTES:-10}
WORKERS=${WORKERS:-2}
SCENES=${SCENES:-2000}
FRAMES=${FRAMES:-12}
TRAIN_SEED=${TRAIN_SEED:-7}
BATCH=${BATCH:-3}
LR=${LR:-3e-4}
INIT=${INIT-seqpose_core/weights/default.pt}
THREADS=${THREADS:-0}
SEQPOSE="$PYTHON -m seqpose_core.cli"
mkdir -p "$OUT"
started=$(date +%s)
say() { echo "[$(( $(date +%s) - started )) s] $*" | tee -a "$OUT/summary.txt"; }

say "data: $SCENES x $FRAMES training frames (seed $TRAIN_SEED), validation seed 998, demo seed 20261124"
$SEQPOSE synth --out "$OUT/data/train" --scenes "$SCENES" --frames "$FRAMES" --size 320x240 --split train \
    --seed "$TRAIN_SEED" --workers "$WORKERS"
$SEQPOSE synth --out "$OUT/data/val" --scenes 6 --frames 20 --size 320x240 --split test --seed 998 --workers "$WORKERS"
$SEQPOSE synth --out "$OUT/data/demo" --scenes 6 --frames 30 --size 320x240 --split test --seed 20261124 \
    --workers "$WORKERS"

COMMON=(--config default --data "$OUT/data/train" --val-data "$OUT/data/val" --device "$DEVICE" --no-progress
        --set "train.batch_size=$BATCH" --set "train.lr=$LR" --set "train.num_workers=$WORKERS"
        --set "train.num_threads=$THREADS" --set train.warmup_steps=100 --set train.checkpoint_every=100)
[ -n "$INIT" ] && COMMON+=(--set "train.init_weights=$INIT")

# Timing: 10 steps after 5 of warm-up (the first steps pay for start-up), to size the schedule to MINUTES.
say "timing run"
$SEQPOSE train "${COMMON[@]}" --out "$OUT/timing" --set train.max_steps=15 --set train.log_every=5 \
    --set train.val_every=0 > "$OUT/timing.log" 2>&1
seconds_per_step=$("$PYTHON" -c "
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print(sum(float(r['seconds_per_step']) for r in rows[1:]) / max(1, len(rows) - 1))" "$OUT/timing/train_log.csv")
steps=$("$PYTHON" -c "import sys; print(max(20, int(float(sys.argv[1]) * 60 / float(sys.argv[2]))))" \
        "$MINUTES" "$seconds_per_step")
say "$seconds_per_step s per step of $BATCH clips on $DEVICE: $steps steps in $MINUTES min"

$SEQPOSE train "${COMMON[@]}" --out "$OUT/run" --set "train.max_steps=$steps" \
    --set "train.val_every=$(( steps / 4 > 0 ? steps / 4 : 1 ))" > "$OUT/train.log" 2>&1
say "trained: $OUT/run/model.pt"
MODEL="$OUT/run/model.pt"
# a kept refiner's crop scorer learned the mistakes of the model before: it learns this one's
if "$PYTHON" -c "import sys; from seqpose_core.runner import load_model_and_config
sys.exit(0 if load_model_and_config(sys.argv[1])[1].model.refiner_width > 0 else 1)" "$MODEL"; then
    $SEQPOSE train-crop-scorer --checkpoint "$MODEL" --data "$OUT/data/train" --max-scenes 500 --device "$DEVICE" \
        --out "$OUT/scorer" --no-progress > "$OUT/scorer.log" 2>&1
    MODEL="$OUT/scorer/model.pt"
    say "crop scorer retrained: $MODEL"
fi

for mode in mf sf; do
    $SEQPOSE eval --checkpoint "$MODEL" --data "$OUT/data/demo" --split test --mode "$mode" \
        --device "$DEVICE" --out "$OUT/demo_$mode" > "$OUT/demo_$mode.log" 2>&1
    say "demo $mode (no ground truth at inference), mean AP %:"
    grep -E '^ *(class|mean) ' "$OUT/demo_$mode.log" | tee -a "$OUT/summary.txt"
done
"$PYTHON" benchmarks/class_mean_reference.py "$OUT/demo_mf" | tee -a "$OUT/summary.txt"
say "done"
