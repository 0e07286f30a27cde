#!/usr/bin/env bash
# The one prepared run for a lent GPU (H100/H200): install, import placeholders, serve, check, benchmark.
# Here, first: ../shared/gpu/wheelhouse.sh && ../shared/gpu/wheelhouse.sh httptools uvloop
# (wheels into ./.whl, git-ignored). Then, through the device tool:
#   run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=540)
# Everything it measures lands in $OUT (or ./gpu-out): health.json, bench-*.txt, nvidia-smi.txt, serve.log.
set -uo pipefail
OUT=${OUT:-./gpu-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --find-links .whl bentoml av lap httptools uvloop &&
python3 -m pip install -q --no-index --no-deps --find-links .whl ultralytics ultralytics-thop ultralytics-platform open-clip-torch ftfy wcwidth || exit 1
export BENTOML_HOME=/tmp/store YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0 YOLO_CONFIG_DIR=/tmp/ycfg HF_HUB_OFFLINE=1 \
       BENTOML_DO_NOT_TRACK=true BENTOML_DISABLE_GPU_ALLOCATION=1 PYTHONUNBUFFERED=1
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
time python3 scripts/import_models.py --weights random-init 2>&1 | tail -12        # SAM 3: full size on CUDA
python3 scripts/make_clip.py /tmp/clip120.mp4
python3 -m bentoml serve service:Gateway --port 3000 > "$OUT/serve.log" 2>&1 &
for _ in $(seq 120); do
  curl -sf localhost:3000/health | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["ready"] else 1)' && break
  sleep 2
done
curl -s localhost:3000/health | tee "$OUT/health.json" | python3 -c '
import json, sys; h = json.load(sys.stdin)
print("devices:", h["devices"], "cuda:", h["cuda"])
assert h["devices"] == ["cuda:0"], "every runner must land on cuda:0"'
nvidia-smi --query-compute-apps=pid,used_memory --format=csv >> "$OUT/nvidia-smi.txt"
B="python3 scripts/bench.py --url http://127.0.0.1:3000"
$B --tasks object-detection --concurrency 1 --requests 200 --baseline | tee "$OUT/bench-det-c1.txt"
$B --tasks object-detection --concurrency 64 --duration 20 | tee "$OUT/bench-det-c64.txt"
$B --tasks depth-estimation --concurrency 32 --duration 20 --baseline | tee "$OUT/bench-depth-c32.txt"
$B --tasks sam3-concept-segmentation --concurrency 1 --requests 30 --baseline --baseline-requests 3 | tee "$OUT/bench-sam3.txt"
$B --tasks velocity-estimation --media /tmp/clip120.mp4 --concurrency 1 --requests 5 --baseline --baseline-requests 1 | tee "$OUT/bench-velocity.txt"
nvidia-smi --query-compute-apps=pid,used_memory --format=csv >> "$OUT/nvidia-smi.txt"
kill %1
