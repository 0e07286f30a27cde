# Perception backend — `make help` lists the targets.
# Two commands do all set-up on a fresh clone: `make serve` (run the service) and `make test` (run the tests).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 3000
WEIGHTS ?= auto
OPENCV := opencv-python-headless==4.14.0.94
CHROMIUM := /usr/bin/chromium

export BENTOML_HOME ?= $(CURDIR)/.bentoml
export YOLO_CONFIG_DIR ?= $(CURDIR)/.cache/ultralytics
export YOLO_AUTOINSTALL := 0
export BENTOML_DO_NOT_TRACK := true
# Serving never downloads (settings.OFFLINE_ENV, which a unit test keeps this equal to)
OFFLINE_ENV := YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

.DEFAULT_GOAL := help
.PHONY: help venv models serve serve-split test test-unit lint tools gpu-prepare gpu-rehearsal bench bento image image-test soak clean deploy-files

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## create .venv with the pinned dependencies

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt -c requirements.lock
	@# ultralytics pulls the GUI build of OpenCV; keep only the headless one (both own cv2/)
	$(PY) -m pip uninstall --quiet -y opencv-python
	$(PY) -m pip install --quiet --force-reinstall --no-deps $(OPENCV)
	@touch $@

models: venv ## import every default model (real weights when reachable, else loud placeholders); WEIGHTS=pretrained|random-init
	$(PY) scripts/import_models.py --weights $(WEIGHTS)

serve: models ## run the service on PORT (3000); WEIGHTS=pretrained refuses placeholders
	PERCEPTION_WEIGHTS=$(if $(filter pretrained,$(WEIGHTS)),pretrained,any) \
	BENTOML_DISABLE_GPU_ALLOCATION=1 $(OFFLINE_ENV) \
	$(PY) -m bentoml serve service:Gateway --port $(PORT)

serve-split: models ## every runner as its own server + the gateway against their URLs (PORT, runners on PORT+1...)
	PERCEPTION_WEIGHTS=$(if $(filter pretrained,$(WEIGHTS)),pretrained,any) $(OFFLINE_ENV) \
	$(PY) scripts/serve_split.py --port $(PORT) $(if $(RUNNER_PORT_BASE),--runner-port-base $(RUNNER_PORT_BASE))

lint: venv ## ruff
	$(PY) -m ruff check .

tools: ## Debian's headless chromium (playground test), docker-compose, redis-server (job store tests), docker.io and debootstrap (the image): apt, as root, when missing
	@if ! test -x $(CHROMIUM) || ! command -v docker-compose >/dev/null || ! command -v redis-server >/dev/null \
	  || ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && \
	    { test -x $(CHROMIUM) || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } && \
	    { command -v docker-compose >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose; } && \
	    { command -v redis-server >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server; } && \
	    { command -v dockerd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io; } && \
	    { command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap; }; \
	  else echo "note: chromium, docker-compose, redis-server, dockerd or debootstrap is missing and this is not root: the tests that need them are skipped"; fi; fi

test: venv lint tools ## run every test (unit, component, contract, integration, browser) on CPU with placeholder weights, then the image's
	$(PY) -m pytest -ra
	$(PY) scripts/image_test.py

test-unit: venv ## the quick tier: pure functions, the layer rules (seconds; no model, no server)
	$(PY) -m pytest -ra tests/unit

gpu-prepare: ## wheels (.whl) and media (.gpu-media) that a lent GPU's device call carries
	bash scripts/gpu_prepare.sh

gpu-rehearsal: ## the lent-GPU run rehearsed on this CPU in a device-like Python 3.12 (must pass before any device call)
	bash scripts/gpu_rehearsal.sh

deploy-files: venv ## regenerate deploy/ from the runner family table
	$(PY) scripts/deploy_files.py

bento: models ## build the Bento (code, pinned environment, every installed model) into the store
	$(PY) -m bentoml build .

image: models tools ## the container image (bentoml build + containerize): a local base and a private engine where none is at hand
	$(PY) scripts/image.py build

image-test: venv tools ## build the image on the test store, run it and the compose split for real, compare with the in-process answers
	$(PY) scripts/image_test.py

soak: venv ## soak test: mixed load from CLIENTS (8) for MINUTES (5) after 2 warm-up minutes; checks 5xx, memory, fds, temp files
	WEIGHTS=random-init $(PY) scripts/soak.py --minutes $(or $(MINUTES),5) --warmup-minutes 2 --clients $(or $(CLIENTS),8)

bench: venv ## benchmark a running server (URL, default http://127.0.0.1:3000) beside the library's own path
	$(PY) scripts/bench.py --url $(or $(URL),http://127.0.0.1:$(PORT)) --tasks $(or $(TASKS),all) --baseline

clean: ## remove the venv, the model store and caches
	rm -rf $(VENV) .bentoml .cache .pytest_cache .ruff_cache
