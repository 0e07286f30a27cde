"""The runner families: one literal entry per family, and the only place a family is listed.

A *family* is one runner service (one process, one GPU) that serves every installed model of its kinds. Everything
that names a family is derived from this table:

- the gateway's dependencies (``service.py``) and ``/health``'s runner list;
- the remote-URL settings ``PERCEPTION_RUNNER_URL_<FAMILY>`` (``settings.py``);
- which family runs a kind of model (``KIND_FAMILY``, read by the catalog and the store);
- the import tooling's dispatch (``scripts/importers/<importer>.py``) and how it recognises a local file;
- each runner API's batch limit (``@bentoml.api(max_batch_size=...)``) and every task's chunk size;
- the split launcher (``scripts/serve_split.py``) and the deploy files (``scripts/deploy_files.py`` writes the
  Kubernetes and compose runners from here; a test checks they are up to date).

Adding a family is one entry here plus one module in ``runners/`` (its engine, service and client) and one importer.
Strings name the code (``runners.yolo:YoloRunner``): this module sits below everything and imports none of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from vocab.items import DepthItem, FlowItem, Sam2ImageItem, Sam3ImageItem, YoloItem


@dataclass(frozen=True)
class Api:
    """One runner API: its method name, the item it takes (batchable APIs), and its batch limit."""

    name: str
    item: type | None = None  # the TypedDict of one item (vocab/items.py); None: not batchable (a whole video)
    max_batch: int = 1  # the most items one adaptive batch (and one task's chunk) holds
    latency_factor: int = 1  # a queued call is shed after this × PERCEPTION_RUNNER_MAX_LATENCY_MS

    @property
    def batchable(self) -> bool:
        return self.item is not None


@dataclass(frozen=True)
class Resources:
    """Where a family runs when deployed on its own (deploy/): per replica."""

    gpu_product: str = "NVIDIA-L4"  # Kubernetes nodeSelector nvidia.com/gpu.product
    cpus: int = 2  # Kubernetes CPU request (the CPU feeds the GPU: pre/post-processing, the Bento's workers)
    memory_gi: int = 8
    cloud_instance: str = "gpu.l4.1"  # BentoCloud instance type
    max_replicas: int = 2
    cold_start_s: int | None = None  # BentoCloud cold_start_timeout, when loading takes long


@dataclass(frozen=True)
class Family:
    name: str  # the gateway's attribute, the settings' suffix, the deploy name's prefix
    kinds: tuple[str, ...]  # the model kinds it serves (models/catalog.py)
    runner: str  # ``module:Class`` of its BentoML service
    apis: tuple[Api, ...]  # its model APIs (``describe`` is every runner's too)
    importer: str  # the module under scripts/importers/ that imports its weights
    local_file: str  # how ``--file`` recognises its weights: a part of the file's name, "<dir>" (a folder) or "*" (else)
    background: bool = False  # long work (whole videos): on a CPU host its threads run at a lower priority
    timeout_s: int = 300  # BentoML traffic timeout of one call
    max_concurrency: int = 256
    resources: Resources = Resources()

    def api(self, name: str) -> Api:
        return next(api for api in self.apis if api.name == name)

    @property
    def service_name(self) -> str:
        return f"{self.name}-runner"

    @property
    def url_setting(self) -> str:
        """The ``Settings`` field (and, upper-cased with ``PERCEPTION_``, the variable) of its remote URL."""
        return f"runner_url_{self.name}"

    @property
    def url_env(self) -> str:
        return f"PERCEPTION_{self.url_setting.upper()}"


FAMILIES: dict[str, Family] = {family.name: family for family in (
    Family("yolo", kinds=("detect", "segment", "pose"), runner="runners.yolo:YoloRunner",
           apis=(Api("predict", YoloItem, max_batch=64),), importer="yolo", local_file="*",
           resources=Resources(max_replicas=4)),
    Family("sam3", kinds=("sam3",), runner="runners.sam3:Sam3Runner",
           apis=(Api("segment_images", Sam3ImageItem, max_batch=4), Api("segment_video")),
           importer="sam3", local_file="sam3", timeout_s=600, max_concurrency=64,
           resources=Resources("NVIDIA-A100-SXM4-80GB", cpus=4, memory_gi=32, cloud_instance="gpu.a100.1x80",
                               cold_start_s=900)),
    Family("sam2", kinds=("sam2",), runner="runners.sam2:Sam2Runner",
           apis=(Api("segment_images", Sam2ImageItem, max_batch=4), Api("segment_video")),
           importer="sam2", local_file="sam2", timeout_s=600, max_concurrency=64),
    Family("depth", kinds=("depth",), runner="runners.depth:DepthRunner",
           apis=(Api("estimate", DepthItem, max_batch=16),), importer="depth", local_file="<dir>"),
    # A velocity request sends many flow calls at once, so its queue may be longer than the others'; only velocity
    # uses flow, so on a CPU it yields the cores to the interactive image tasks.
    Family("flow", kinds=("flow",), runner="runners.flow:FlowRunner",
           apis=(Api("flow", FlowItem, max_batch=8, latency_factor=2),), importer="flow", local_file="raft",
           background=True),
)}

KIND_FAMILY: dict[str, str] = {kind: family.name for family in FAMILIES.values() for kind in family.kinds}


def family_of_file(file_name: str, is_dir: bool = False) -> str:
    """The family of a local weights file or folder, by its name (``--file``)."""
    if is_dir:
        return next(family.name for family in FAMILIES.values() if family.local_file == "<dir>")
    name = file_name.lower()
    named = [f.name for f in FAMILIES.values() if f.local_file not in ("*", "<dir>") and f.local_file in name]
    return named[0] if named else next(family.name for family in FAMILIES.values() if family.local_file == "*")
