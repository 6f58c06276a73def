#!/usr/bin/env bash
# GPU benchmark (issue 23, item 5): one `streamanon bench` at 1080p of blur, swap and ida, with
# the ONNX Runtime provider each model ran on, in under 8 minutes on one GPU.
#
#   pip install onnxruntime-gpu            # replaces onnxruntime; TensorRT is used when its
#                                          # libraries are on the loader path
#   bash benchmarks/gpu_bench.sh [CLIP] [OUT_DIR]
#
# CLIP defaults to benchmarks/clips/crowd1080.mp4 (python benchmarks/make_coverage_clips.py);
# the first 100 frames are used. Every figure lands in OUT_DIR (default benchmarks/results/gpu):
# the bench JSON, the providers seen, nvidia-smi's view of the card, and the log.
# Nothing here was measured yet: no GPU has been available to the project (docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
CLIP=${1:-benchmarks/clips/crowd1080.mp4}
OUT=${2:-benchmarks/results/gpu}
mkdir -p "$OUT"
LOG="$OUT/gpu_bench.log"
: >"$LOG"
if [ ! -f "$CLIP" ]; then
  echo "no clip $CLIP: run python benchmarks/make_coverage_clips.py first" >&2
  exit 2
fi
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "nvidia-smi: none"
  # Which provider the detector really runs on; building it also fills the TensorRT engine
  # cache (minutes on the first run on a card), which would otherwise land in the first entry.
  python - <<'PY'
import time

import numpy as np
import onnxruntime as ort

from streamanon.detect.multiscale import MultiScaleDetector

print("onnxruntime", ort.__version__, ort.get_available_providers())
det = MultiScaleDetector()
print("CenterFace providers:", det.net.session.get_providers())
frame = np.zeros((1080, 1920, 3), np.uint8)
t0 = time.perf_counter()
for _ in range(3):
    det(frame)
print(f"warm-up (engine build included): {time.perf_counter() - t0:.1f} s")
PY
} 2>&1 | tee -a "$LOG" "$OUT/machine.txt"
# 8-minute budget: blur (every classic method costs the same detection) and the two
# generative methods; no deface (its CPU baseline is in docs/benchmarks.md).
timeout 470 streamanon bench "$CLIP" --methods blur,swap,ida --deface-scale '' \
  --samples 6 --out "$OUT" --doc "$OUT/table.md" 2>&1 | tee -a "$LOG"
echo "done: $OUT" | tee -a "$LOG"
