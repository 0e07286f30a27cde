#!/usr/bin/env bash
# The CPU rehearsal of the lent-GPU run (make gpu-rehearsal): it must pass here before any device call.
#  1. an environment like the device's: CPython 3.12 with the packages its image has (torch 2.11, torchvision
#     0.26, transformers 5.17, ...; from the package index, once, into ~/.cache/perception-gpu-rehearsal/device-site) and nothing
#     else: everything the project needs beyond them comes only from the carried wheels, offline (--no-index);
#  2. exactly what the device call carries (tracked and untracked-not-ignored files, .whl, .gpu-media), copied
#     to a scratch folder and held to the 64 MiB limit;
#  3. the same one-shot script, scripts/gpu_check.sh, end to end there, on the CPU with a short workload;
#  4. its gpu-results.json checked for every task, both paths, and every runner's device.
set -euo pipefail
cd "$(dirname "$0")/.."
PY312=${PY312:-$(ls "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12 2>/dev/null | tail -1)}
PY312=${PY312:-python3.12}
"$PY312" -c 'import sys; assert sys.version_info[:2] == (3, 12)' || { echo "needs CPython 3.12 (PY312=...)" >&2; exit 1; }
BASE=${GPU_REHEARSAL_DIR:-$HOME/.cache/perception-gpu-rehearsal}  # outside the checkout: ~5 GB
DEVICE_PACKAGES=(torch==2.11.0 torchvision==0.26.0 transformers==5.17.0 numpy opencv-python-headless pillow scipy
  httpx huggingface-hub regex safetensors tokenizers timm psutil pyyaml requests tqdm aiohttp prometheus-client
  nvidia-ml-py uvloop pytest pytest-timeout packaging attrs click cloudpickle jinja2 rich typing-extensions fsspec
  filelock anyio python-dateutil wrapt pyparsing pandas)
bash scripts/gpu_prepare.sh
# the device-like packages: the image's big ones above, and every package whose wheel gpu_prepare left to the
# device; installed once per list (a changed list rebuilds them)
WANTED=$(printf '%s\n' "${DEVICE_PACKAGES[@]}" $(cat .whl/DEVICE-PROVIDED) | sort -u)
if [ "$(cat "$BASE/device-site/.complete" 2>/dev/null)" != "$WANTED" ]; then
  echo "== the device's packages into $BASE/device-site"
  rm -rf "$BASE/device-site"
  "$PY312" -m pip install -q --target "$BASE/device-site" $WANTED
  echo "$WANTED" > "$BASE/device-site/.complete"
fi
STAGE=$(mktemp -d /tmp/gpu-rehearsal-XXXX)
trap 'rm -rf "$STAGE"' EXIT
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$STAGE"
cp -r .whl .gpu-media "$STAGE/"
carried=$(du -sb "$STAGE" | cut -f1)
echo "== carried: $((carried / 1048576)) MiB of 64"
[ "$carried" -lt $((64 * 1048576)) ] || { echo "over the 64 MiB a device call carries" >&2; exit 1; }
"$PY312" -m venv "$STAGE/.venv-device"
echo "$BASE/device-site" > "$(echo "$STAGE"/.venv-device/lib/python3.12/site-packages)/device-site.pth"
OUT_DIR=$BASE/out
rm -rf "$OUT_DIR" && mkdir -p "$OUT_DIR"
(cd "$STAGE" && env -u PYTHONPATH PATH="$STAGE/.venv-device/bin:$PATH" OUT="$OUT_DIR" GPU_CHECK_QUICK=1 \
   PIP_CONSTRAINT= PIP_CONFIG_FILE=/dev/null bash scripts/gpu_check.sh)
"$PY312" - "$OUT_DIR/gpu-results.json" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))
tasks = {row["task"] for rows in results["bench"].values() for row in rows}
wanted = {"object-detection", "depth-estimation", "sam3-concept-segmentation", "velocity-estimation"}
assert wanted <= tasks, f"tasks missing from the bench: {wanted - tasks}"
for rows in results["bench"].values():
    for row in rows:
        assert row["errors"] == {} and row["requests"] > 0, row
        if "(seed backend)" not in row["task"]:
            assert "baseline_p50_ms" in row, f"no library baseline for {row['task']}"
assert set(results["devices"].values()) == {"cpu"} and results["machine"]["commit"], results["devices"]
print("rehearsal passed:", json.dumps({k: results["machine"][k] for k in ("python", "torch", "commit")}))
PY
