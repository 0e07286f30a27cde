"""`make image`: the Bento and its container image, with the stock tools (`bentoml build`, `bentoml containerize
--backend docker`).

Online, nothing is special: BentoML's standard base (python:3.11-slim) and the bentofile as it is. Where no container
registry answers (or ``IMAGE_BASE=local``), a local base is made first (``scripts/image_base.sh``: debootstrap of
Debian bookworm, cached in the engine under a tag that is the hash of that recipe) and the Bento is built with
BentoML's Python SDK image form on it (``bentoml.images.Image(base_image=..., distro=...)``), which adds no apt layer
of compilers (the bentofile form would: +633 MB). Where this machine's pip reads local wheel indexes (``file://``
extra index URLs, as here), they are served read-only on loopback during the build and named in the Bento's
requirements, so the image installs the same wheels the venv has, without downloading them again.

Without a running engine, as root, a private ``dockerd`` is started (no bridge, no iptables: containers and builds
use the host network) with its data under ``$PERCEPTION_IMAGE_CACHE`` (``~/.cache/perception-image``), outside the
checkout, so its layers cache the next build; it is stopped by its pid when done.

    python scripts/image.py build [--base auto|standard|local]   # prints the image, its size and build time
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("PERCEPTION_IMAGE_CACHE", Path.home() / ".cache" / "perception-image"))
IMAGE = "perception-backend"
STANDARD_BASE = "python:3.11-slim"  # what BentoML's debian distro uses for Python 3.11
BASE_RECIPE = ROOT / "scripts" / "image_base.sh"
INDEX_PORT = 38431  # fixed, so the Bento's requirements (and the image's install layer) stay the same between builds


def log(message: str) -> None:
    print(f"image: {message}", file=sys.stderr, flush=True)


def docker(*args: str, check: bool = True, capture: bool = True, timeout: float | None = None,
           **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], check=check, text=True, timeout=timeout,
                          capture_output=capture, **kwargs)


def engine_answers() -> bool:
    try:
        return docker("version", "--format", "{{.Server.Version}}", check=False, timeout=20).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


def why_no_engine() -> str | None:
    """None when an engine runs or can be started here; else why not (the image test prints it and skips)."""
    if not shutil.which("docker"):
        return "no docker client (apt-get install docker.io: `make tools` as root)"
    if engine_answers():
        return None
    if os.geteuid() != 0:
        return "no container engine is running and this is not root (a private one needs root)"
    if not shutil.which("dockerd"):
        return "no dockerd (apt-get install docker.io: `make tools` as root)"
    return None


@contextlib.contextmanager
def engine():
    """The running engine, or a private one started here and stopped (by its pid) when the block ends."""
    if engine_answers():
        yield None
        return
    reason = why_no_engine()
    if reason:
        raise SystemExit(f"image: {reason}")
    home = CACHE / "engine"
    home.mkdir(parents=True, exist_ok=True)
    sock = home / "docker.sock"
    pidfile = home / "dockerd.pid"
    stale = _pid_of(pidfile)
    if stale:  # a private engine of an earlier run that was killed before it could stop it
        log(f"stopping a private engine left behind (pid {stale})")
        _stop(stale)
    with open(home / "dockerd.log", "ab") as out:
        process = subprocess.Popen(
            ["dockerd", "--data-root", str(home / "data"), "--exec-root", "/run/perception-image",
             "-H", f"unix://{sock}", "--pidfile", str(pidfile), "--bridge=none", "--iptables=false",
             "--ip6tables=false", "--ip-forward=false"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    previous = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = f"unix://{sock}"
    try:
        deadline = time.monotonic() + 60
        while not engine_answers():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"image: the private engine did not start; see {home / 'dockerd.log'}")
            time.sleep(0.5)
        log(f"private engine pid {process.pid} at unix://{sock}")
        yield process.pid
    finally:
        _stop(process.pid)
        # dockerd leaves its default network namespace mounted under the exec root: unmount it, then remove it
        subprocess.run(["umount", "/run/perception-image/netns/default"], capture_output=True)
        shutil.rmtree("/run/perception-image", ignore_errors=True)
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous


def _pid_of(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if cmdline and cmdline[0].endswith(b"dockerd") and str(CACHE).encode() in b" ".join(cmdline) else None


def _stop(pid: int) -> None:
    """SIGTERM (dockerd stops its containers and its containerd), SIGKILL after 60 s."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def registry_reachable() -> bool:
    """Whether the standard base can be had: present already, or pulled now (fails fast where DNS has no registry)."""
    if docker("image", "inspect", STANDARD_BASE, check=False).returncode == 0:
        return True
    try:
        return docker("pull", "-q", STANDARD_BASE, check=False, timeout=300).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def local_base() -> str:
    """The local base image, made by the recipe unless the engine holds it already (tag: the recipe's hash, and the
    CA certificates copied in)."""
    digest = hashlib.sha256(BASE_RECIPE.read_bytes())
    for cert in sorted(Path("/usr/local/share/ca-certificates").glob("*.crt")):
        digest.update(cert.read_bytes())
    name = f"perception-base:{digest.hexdigest()[:12]}"
    if docker("image", "inspect", name, check=False).returncode != 0:
        if os.geteuid() != 0 or not shutil.which("debootstrap"):
            raise SystemExit("image: no registry answers, and a local base needs root and debootstrap (`make tools`)")
        started = time.monotonic()
        subprocess.run(["bash", str(BASE_RECIPE), name], check=True)
        log(f"local base {name} made in {time.monotonic() - started:.0f} s")
    return name


def local_indexes() -> list[Path]:
    """The local wheel indexes this machine's pip reads (``file://`` index URLs in its configuration)."""
    result = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    found = []
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.endswith(("index-url", "extra-index-url")):
            for url in value.strip("'\"").split():
                if url.startswith("file://") and Path(url[7:]).is_dir():
                    found.append(Path(url[7:]))
    return found


def pinned(lock: Path) -> dict[str, str]:
    """``name==version`` lines of a lock file, by normalised name."""
    found = {}
    for line in lock.read_text().splitlines():
        name, sep, version = line.split("#")[0].split(";")[0].strip().partition("==")
        if sep:
            found[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return found


def compatible(filename: str) -> bool:
    """A wheel this image's CPython 3.11 on x86-64 Linux installs (or an sdist)."""
    if not filename.endswith(".whl"):
        return filename.endswith((".tar.gz", ".zip"))
    tags = filename[:-4].split("-")[-3:]
    return (tags[0] in {"cp311", "py3", "py2.py3"} or tags[1] == "abi3" and tags[0].startswith("cp3")) and (
        tags[2] == "any" or "x86_64" in tags[2])


@contextlib.contextmanager
def index_server(indexes: list[Path], lock: Path):
    """One PEP 503 index on loopback of the locked versions that the local indexes hold (and nothing else, so uv's
    first-index rule never meets a local index without the pinned version); yields its URL, or None."""
    if not indexes:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="perception-index-") as top:
        files = Path(top, "files")
        files.mkdir()
        served = 0
        for name, version in pinned(lock).items():
            links = {}
            for index in indexes:
                page = index / name / "index.html"
                if not page.exists():
                    continue
                for href in re.findall(r'href="([^"]+)"', page.read_text()):
                    path, _, fragment = href.partition("#")
                    filename = Path(path).name
                    if filename.endswith(".whl"):
                        dist, file_version = filename.split("-")[:2]
                    else:
                        dist, _, file_version = re.sub(r"\.(tar\.gz|zip)$", "", filename).rpartition("-")
                    if (re.sub(r"[-_.]+", "-", dist).lower() != name or file_version != version
                            or not compatible(filename) or filename in links):
                        continue
                    target = (page.parent / path).resolve()
                    if target.exists():
                        with contextlib.suppress(FileExistsError):
                            os.symlink(target, files / filename)
                        links[filename] = f'<a href="../../files/{filename}#{fragment}">{filename}</a>'
            if links:
                Path(top, "simple", name).mkdir(parents=True)
                Path(top, "simple", name, "index.html").write_text("<html><body>" + "".join(links.values())
                                                                   + "</body></html>")
                served += 1

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=top, **kwargs)

            def log_message(self, *args):
                pass

        try:
            server = http.server.ThreadingHTTPServer(("127.0.0.1", INDEX_PORT), Quiet)
        except OSError:
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        log(f"{served} locked packages from this machine's wheel indexes {[str(i) for i in indexes]}")
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/simple" if served else None
        finally:
            server.shutdown()
            server.server_close()


def build_bento(base: str | None, index_url: str | None) -> str:
    """`bentoml build`; on a local base, in this process with the SDK image form set on the gateway service and a
    bentofile without the docker options that need the distro's package manager. Returns the Bento's tag."""
    if base is None and not index_url:
        result = subprocess.run([sys.executable, "-m", "bentoml", "build", ".", "-o", "tag"], cwd=ROOT, check=True,
                                capture_output=True, text=True)
        return result.stdout.strip().rsplit("__tag__:", 1)[-1].strip()
    import bentoml

    config = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    if index_url:
        config.setdefault("python", {})["extra_index_url"] = [index_url]
    image = None
    if base is not None:
        docker_options = config.pop("docker", {}) or {}
        # the base has Python 3.11 and the system packages (its distro has no name BentoML knows: no apt layer)
        config["docker"] = {"python_version": docker_options.get("python_version", "3.11")}
        image = bentoml.images.Image(base_image=base, distro="local", python_version="3.11")
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    import service

    service.Gateway.image = image
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="bentofile-") as f:
        yaml.safe_dump(config, f)
        f.flush()
        bento = bentoml.bentos.build_bentofile(f.name, build_ctx=str(ROOT))
    return str(bento.tag)


def containerize(tag: str) -> str:
    """`bentoml containerize --backend docker` (classic builder, host network); tags it :latest too."""
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    subprocess.run([sys.executable, "-m", "bentoml", "containerize", tag, "--backend", "docker",
                    "--opt", "network=host", "-t", tag], cwd=ROOT, check=True, env=env)
    docker("tag", tag, f"{IMAGE}:latest")
    return tag


def forget_older(ref: str) -> None:
    """Untag this image's earlier builds and drop the layers nothing uses any more: every build is a new tag, and the
    engine's store (``~/.cache/perception-image``, kept between runs) would otherwise grow by their code and model
    layers each time. The base and the wheels' layers stay: the new image uses them."""
    keep = ref.partition(":")[2]
    tags = docker("images", IMAGE, "--format", "{{.Tag}}", check=False).stdout.split()
    older = [f"{IMAGE}:{tag}" for tag in tags if tag not in (keep, "latest", "<none>")]
    if older:
        docker("rmi", *older, check=False)
    docker("image", "prune", "-f", check=False)


def image_size(ref: str) -> int:
    return int(docker("image", "inspect", ref, "--format", "{{.Size}}").stdout.strip())


def build(base_mode: str) -> dict:
    started = time.monotonic()
    base = None
    if base_mode == "local" or (base_mode == "auto" and not registry_reachable()):
        if base_mode == "auto":
            log(f"no registry answers for {STANDARD_BASE}: building on a local base")
        base = local_base()
    indexes = local_indexes() if base is not None else []
    with index_server(indexes, ROOT / "requirements.lock") as url:
        bento_started = time.monotonic()
        tag = build_bento(base, url)
        log(f"bento {tag} in {time.monotonic() - bento_started:.0f} s")
        ref = containerize(tag)
    forget_older(ref)
    summary = {"image": ref, "base": base or STANDARD_BASE, "size_bytes": image_size(ref),
               "build_s": round(time.monotonic() - started, 1)}
    log(f"{ref}: {summary['size_bytes'] / 1e9:.2f} GB, built in {summary['build_s']:.0f} s (base {summary['base']})")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--base", choices=["auto", "standard", "local"],
                        default=os.environ.get("IMAGE_BASE", "auto") or "auto")
    parser.add_argument("--summary", type=Path, help="write the build's figures (JSON) here")
    args = parser.parse_args()
    with engine():
        summary = build(args.base)
    if args.summary:
        args.summary.write_text(json.dumps(summary, indent=2))
    print(summary["image"])


if __name__ == "__main__":
    main()
