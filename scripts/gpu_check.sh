#!/usr/bin/env bash
# The one prepared run for a lent GPU (H100/H200). Prepared here first, and rehearsed on this CPU machine:
#   make gpu-rehearsal        (wheels into .whl, media into .gpu-media, then this very script, end to end)
# Then, through the device tool, once:
#   run(command="bash scripts/gpu_check.sh", carry=[".whl", ".gpu-media"], timeout_s=540)
# Everything lands in $OUT: gpu-results.json (the figures), health.json, bench-*.json, gpu-tier.*, serve.log.
set -euo pipefail
cd "$(dirname "$0")/.."
export OUT=${OUT:-./gpu-out}
mkdir -p "$OUT"
test -d .whl && test -f .gpu-media/COMMIT || { echo "missing .whl or .gpu-media: run make gpu-prepare here first" >&2; exit 2; }
python3 -m pip install -q --no-index --find-links .whl bentoml av lap httptools uvloop pi-heif pydantic-settings \
  pytest pytest-timeout
python3 -m pip install -q --no-index --no-deps --find-links .whl ultralytics ultralytics-thop ultralytics-platform \
  open-clip-torch ftfy wcwidth
export PYTHONUNBUFFERED=1
exec python3 scripts/gpu_check.py "$@"
