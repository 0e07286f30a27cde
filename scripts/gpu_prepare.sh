#!/usr/bin/env bash
# Here, before any device call (and by make gpu-rehearsal): everything the lent GPU needs that it lacks, into
# git-ignored folders of this checkout that the device call carries:
#   .whl/        wheels for CPython 3.12 x86-64 of what the device image does not have, at this project's pins
#   .gpu-media/  the benchmark's photo and clip sources, and COMMIT (the device gets no .git)
set -euo pipefail
cd "$(dirname "$0")/.."
for folder in /.whl/ /.gpu-media/; do
  grep -qx "$folder" .git/info/exclude 2>/dev/null || echo "$folder" >> .git/info/exclude
done
# What the device image already has (the device tool's KINDS.md, read 2026-11-17): its wheels are not carried.
DEVICE_HAS="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-
cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-
operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py
mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda
numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13
nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec
patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-
cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu
safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-
data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq
torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions typing-
inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp"
pin() { grep -ix "$1==.*" requirements.lock | head -1; }  # this project's pinned version of a package
plat=(--only-binary=:all: --python-version 3.12 --implementation cp)
for p in manylinux_2_34_x86_64 manylinux_2_31_x86_64 manylinux_2_28_x86_64 manylinux_2_27_x86_64 \
         manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do plat+=(--platform "$p"); done
dl() { python3 -m pip download -q "${plat[@]}" -d .whl "$@"; }
# with their dependencies (none of them is torch); the device resolves what it already has first
rm -rf .whl
dl "$(pin bentoml)" "$(pin av)" "$(pin lap)" "$(pin pi-heif)" "$(pin httptools)" "$(pin pydantic-settings)"
# these name torch / opencv-python, which the device has in its own build: without dependencies
dl --no-deps "$(pin ultralytics)" "$(pin ultralytics-thop)" "$(pin ultralytics-platform)" "$(pin open_clip_torch)" \
   "$(pin ftfy)" "$(pin wcwidth)"
# the device's own packages stay the device's (numpy alone is 16 MB of the 64 MiB carried); their names go to
# .whl/DEVICE-PROVIDED, which the rehearsal's device-like environment installs
: > .whl/DEVICE-PROVIDED
for wheel in .whl/*.whl; do
  name=$(basename "$wheel" | cut -d- -f1 | tr '_A-Z' '-a-z')
  if echo " $DEVICE_HAS " | tr '\n' ' ' | grep -q " $name "; then rm "$wheel"; echo "$name" >> .whl/DEVICE-PROVIDED; fi
done
mkdir -p .gpu-media
cp ../shared/media/basketball1.png ../shared/media/messi5.jpg ../shared/media/people-walking.mp4 .gpu-media/
git rev-parse HEAD > .gpu-media/COMMIT
du -sh .whl .gpu-media
