"""The ONNX int8 copy of the embedding model: exported once per model, CPU kind and library versions.

Dynamic int8 quantization roughly doubles CPU embedding throughput for a cosine of about 0.99 to the
fp32 vectors. The export (about 15 s on two cores) is done by sentence-transformers itself, offline,
from the model folder on disk, and lands in ``<cache>/<model>-qint8-<cpu>-<digest>/``:

* the folder name holds a digest of everything that decides the bytes of the export (the model's
  path and files, the quantization config, the versions of the libraries that write it), so another
  model or an upgraded library never reuses a stale export;
* an export is written to a temporary folder beside it and renamed into place only when complete, and
  a lock file lets one process export while the others wait: two processes starting at once, or one
  killed mid-export, never leave a half-written folder where a valid one is expected;
* a folder that is there but does not check out (missing marker, truncated file, unloadable) is set
  aside and exported again rather than crashed on.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import re
import shutil
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ingest.errors import EmbedBackendError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

QuantTarget = Literal["avx512_vnni", "avx2", "arm64"]

# Bump when the layout of an export folder changes: old folders are then never read.
EXPORT_FORMAT = "1"
MARKER = "ragfirst-export.json"
# Everything that writes the exported bytes; a new version of any may write different ones.
VERSIONED = (
    "sentence-transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "transformers", "torch"
)
# Folders of a model that hold other exports, not the weights the export is made from.
NOT_SOURCE = frozenset({"onnx", "openvino", ".git", ".cache"})
TORCH_HINT = "set RAG_EMBED_BACKEND=torch to embed with the fp32 torch model instead"


def quantization_target(machine: str | None = None, cpu_flags: frozenset[str] | None = None) -> QuantTarget:
    """The sentence-transformers quantization config that suits this CPU.

    ``avx512_vnni`` where the CPU has VNNI (int8 dot products); ``avx2`` on any other x86-64, since
    its config (reduced range) stays accurate on CPUs without VNNI; ``arm64`` on ARM.

    :raises EmbedBackendError: a CPU architecture with no int8 config.
    """
    arch = (machine or platform.machine()).lower()
    if arch in ("aarch64", "arm64"):
        return "arm64"
    if arch not in ("x86_64", "amd64"):
        raise EmbedBackendError(f"no int8 ONNX quantization for the {arch} CPU; {TORCH_HINT}")
    flags = cpu_flags if cpu_flags is not None else _cpu_flags()
    return "avx512_vnni" if "avx512_vnni" in flags else "avx2"


def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()  # not Linux: the avx2 config is the one that is right everywhere
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ragfirst/models``, else ``~/.cache/ragfirst/models``: per user, outside the repo."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ragfirst" / "models"


def export_identity(model_path: str, target: QuantTarget) -> dict[str, Any]:
    """What decides an export's bytes; the cache folder is named by its digest."""
    source = Path(model_path)
    files: list[list[Any]] = []
    if source.is_dir():
        source = source.resolve()
        for path in sorted(source.rglob("*")):
            rel = path.relative_to(source)
            if path.is_file() and not NOT_SOURCE.intersection(rel.parts):
                stat = path.stat()
                files.append([rel.as_posix(), stat.st_size, stat.st_mtime_ns])
    return {
        "format": EXPORT_FORMAT,
        "model": str(source),
        "files": files,
        "quantization": target,
        "versions": {name: _version(name) for name in VERSIONED},
    }


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def export_folder(cache_dir: Path, identity: dict[str, Any], label: str | None = None) -> Path:
    """``<label>-qint8-<cpu>-<digest>``; the label (the model's name) is only there for people."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    name = label or Path(str(identity["model"])).name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(name).name).strip("-.") or "model"
    return cache_dir / f"{slug[:60]}-qint8-{identity['quantization']}-{digest}"


def onnx_file_name(target: QuantTarget) -> str:
    """Where sentence-transformers puts the quantized file, relative to the model folder."""
    return f"onnx/model_qint8_{target}.onnx"


def load_int8_model(
    model_path: str, cache_dir: Path, *, label: str | None = None, target: QuantTarget | None = None
) -> SentenceTransformer:
    """The int8 ONNX model for ``model_path``, exported into ``cache_dir`` first if it is not there.

    :raises EmbedBackendError: the export or the load failed; the message says how to fall back.
    """
    target = target or quantization_target()
    identity = export_identity(model_path, target)
    folder = export_folder(cache_dir, identity, label)
    file_name = onnx_file_name(target)
    for attempt in (1, 2):
        if not is_complete(folder, identity) or attempt == 2:
            _export_locked(model_path, folder, identity, target, force=attempt == 2)
        try:
            return _load(folder, file_name)
        except Exception as exc:
            # A folder that passed the checks yet does not load is damaged in a way they miss:
            # export it once more; a fresh export that fails to load is a real error.
            if attempt == 2:
                raise EmbedBackendError(
                    f"the ONNX int8 export in {folder} does not load ({exc}); {TORCH_HINT}"
                ) from exc
            log.warning("ONNX int8 export in %s does not load (%s); exporting it again", folder, exc)
    raise AssertionError("unreachable")


def _load(folder: Path, file_name: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    # int8 kernels are CPU kernels: the torch device setting does not apply here.
    return SentenceTransformer(  # type: ignore[no-any-return]
        str(folder), backend="onnx", device="cpu", model_kwargs={"file_name": file_name}
    )


def is_complete(folder: Path, identity: dict[str, Any]) -> bool:
    """Whether ``folder`` holds a finished export of ``identity`` whose files have their full size."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("identity") != identity:
        return False
    sizes = marker.get("sizes")
    if not isinstance(sizes, dict) or not sizes:
        return False
    for rel, size in sizes.items():
        try:
            if (folder / rel).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def _export_locked(
    model_path: str, folder: Path, identity: dict[str, Any], target: QuantTarget, *, force: bool
) -> None:
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(folder.parent / f".{folder.name}.lock"):
            # Another process may have finished the export while this one waited for the lock.
            if not force and is_complete(folder, identity):
                return
            _clear_stale(folder)
            _export(model_path, folder, identity, target)
    except EmbedBackendError:
        raise
    except Exception as exc:
        raise EmbedBackendError(
            f"could not export {model_path} to ONNX int8 ({target}) in {folder.parent}: {exc}; "
            f"make RAG_MODEL_CACHE_DIR a writable folder, or {TORCH_HINT}"
        ) from exc


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    with open(path, "a+b") as handle:
        # The kernel drops the lock when the process dies, so a killed export never blocks the next.
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _clear_stale(folder: Path) -> None:
    """Remove a damaged export and the temporary folders of killed ones (the lock is held)."""
    for leftover in folder.parent.glob(f".tmp-{folder.name}-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    if folder.exists():
        aside = folder.parent / f".tmp-{folder.name}-broken-{uuid.uuid4().hex[:8]}"
        log.warning("ONNX int8 cache folder %s is incomplete or damaged; exporting it again", folder)
        folder.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)


def _export(model_path: str, folder: Path, identity: dict[str, Any], target: QuantTarget) -> None:
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    log.info(
        "exporting embedding model %s to ONNX int8 (%s) in %s; this happens once per model",
        model_path, target, folder,
    )  # fmt: skip
    started = time.monotonic()
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with _quiet_export():
            # Loading with backend="onnx" from a folder without an ONNX file exports the fp32
            # graph in memory; saving it gives the quantizer a complete model folder to write into.
            fp32 = SentenceTransformer(model_path, backend="onnx", device="cpu")
            fp32.save_pretrained(str(tmp))
            export_dynamic_quantized_onnx_model(fp32, target, str(tmp))
        # Only the int8 file is ever loaded from here; the fp32 one is four times its size.
        (tmp / "onnx" / "model.onnx").unlink(missing_ok=True)
        quantized = tmp / onnx_file_name(target)
        if not quantized.is_file():
            raise EmbedBackendError(f"the export wrote no {onnx_file_name(target)}; {TORCH_HINT}")
        sizes = {
            p.relative_to(tmp).as_posix(): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        # The marker goes last: a folder with a marker whose sizes match is a finished export.
        (tmp / MARKER).write_text(json.dumps({"identity": identity, "sizes": sizes}, indent=1), "utf-8")
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s in %.1f s", folder.name, time.monotonic() - started)


class _DropOnnxRuntimeInfo(logging.Filter):
    """onnxruntime's quantizer logs a line per tensor, at INFO, on the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or f"{os.sep}onnxruntime{os.sep}" not in record.pathname


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the tracer's warnings, the quantizer's per-tensor lines and sentence-transformers'
    advice to save the export (which this module does)."""
    st_log = logging.getLogger("sentence_transformers")
    level = st_log.level
    st_log.setLevel(logging.ERROR)
    root_filter = _DropOnnxRuntimeInfo()
    logging.getLogger().addFilter(root_filter)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.getLogger().removeFilter(root_filter)
        st_log.setLevel(level)
