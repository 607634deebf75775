"""The onnx-int8 embedding backend against the torch fp32 one, and its export cache on disk.

One export is made for the session (from a local copy of the packaged model, as a user's own
sentence-transformers folder would be), by two threads at once; the other tests read it, copy it or
damage a copy of it. About 30 s in all, most of it two exports.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ingest.embed import Embedder, resolve_model_path
from ingest.errors import EmbedBackendError
from ingest.onnx_export import (
    MARKER,
    export_folder,
    export_identity,
    is_complete,
    load_int8_model,
    onnx_file_name,
    quantization_target,
)
from ingest.settings import PACKAGED_EMBED_MODEL, Settings

CORPUS = Path(__file__).resolve().parents[2] / "corpus"


def corpus_sentences() -> list[str]:
    """Real paragraphs and questions of the sample company, short and long."""
    text = (CORPUS / "hr" / "pto-policy.md").read_text(encoding="utf-8")
    paragraphs = [p.strip() for p in text.split("\n\n") if len(p.strip()) > 80]
    return [
        *paragraphs[:12],
        "How much annual PTO do US employees with 3 to 5 years of service get?",
        "Can I carry over unused vacation days into next year?",
        "What is the policy for working remotely from another country?",
    ]


@dataclass
class Export:
    model_dir: Path
    cache_dir: Path
    folder: Path
    exports_logged: int


def _count_exports() -> tuple[logging.Handler, list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("exporting embedding model"):
                records.append(record)

    return Collect(level=logging.INFO), records


@pytest.fixture(scope="session")
def export(tmp_path_factory: pytest.TempPathFactory) -> Export:
    """A local model folder exported once into a fresh cache, by two threads racing for it."""
    root = tmp_path_factory.mktemp("onnx")
    model_dir = root / "my-minilm"
    shutil.copytree(resolve_model_path(PACKAGED_EMBED_MODEL), model_dir)
    cache_dir = root / "cache"
    handler, records = _count_exports()
    log = logging.getLogger("ingest.onnx_export")
    log.addHandler(handler)
    previous = log.level
    log.setLevel(logging.INFO)
    errors: list[BaseException] = []

    def load() -> None:
        try:
            load_int8_model(str(model_dir), cache_dir)
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=load) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        log.removeHandler(handler)
        log.setLevel(previous)
    assert not errors, errors
    identity = export_identity(str(model_dir), quantization_target())
    return Export(model_dir, cache_dir, export_folder(cache_dir, identity), len(records))


@pytest.fixture(scope="session")
def int8_embedder(export: Export) -> Embedder:
    embedder = Embedder(Settings(embed_model=str(export.model_dir), model_cache_dir=export.cache_dir))
    _ = embedder.model
    return embedder


@pytest.fixture(scope="session")
def torch_embedder() -> Embedder:
    return Embedder(Settings(embed_backend="torch", embed_device="cpu"))


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    return corpus_sentences()


def test_racing_processes_export_once_into_a_complete_folder(export: Export) -> None:
    assert export.exports_logged == 1
    identity = export_identity(str(export.model_dir), quantization_target())
    assert is_complete(export.folder, identity)
    assert (export.folder / onnx_file_name(quantization_target())).stat().st_size > 1_000_000
    # Nothing half-written is left beside it, and the fp32 graph was not kept.
    assert [p.name for p in export.cache_dir.iterdir() if p.is_dir()] == [export.folder.name]
    assert not (export.folder / "onnx" / "model.onnx").exists()
    assert export.folder.name.startswith("my-minilm-qint8-")


def test_int8_vectors_are_unit_length_384_and_close_to_fp32(
    int8_embedder: Embedder, torch_embedder: Embedder, sentences: list[str]
) -> None:
    int8 = np.array(int8_embedder.embed_documents(sentences))
    fp32 = np.array(torch_embedder.embed_documents(sentences))
    assert int8_embedder.dimension == 384
    assert int8.shape == fp32.shape == (len(sentences), 384)
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-4)
    cosines = (int8 * fp32).sum(axis=1)
    assert cosines.min() >= 0.98, cosines
    query = np.array(int8_embedder.embed_query(sentences[-3]))
    assert float(query @ np.array(torch_embedder.embed_query(sentences[-3]))) >= 0.98


def test_int8_keeps_the_rankings_of_fp32(
    int8_embedder: Embedder, torch_embedder: Embedder, sentences: list[str]
) -> None:
    """Quantization noise must not reorder which paragraph best matches a question."""
    passages = sentences[:-3]
    question = sentences[-3]
    best = []
    for embedder in (int8_embedder, torch_embedder):
        scores = np.array(embedder.embed_documents(passages)) @ np.array(embedder.embed_query(question))
        best.append(int(scores.argmax()))
    assert best[0] == best[1]


def test_the_tokenizer_and_limits_match_the_torch_backend(
    int8_embedder: Embedder, torch_embedder: Embedder, sentences: list[str]
) -> None:
    assert int8_embedder.max_tokens == torch_embedder.max_tokens == 256
    assert [int8_embedder.count_tokens(s) for s in sentences] == [
        torch_embedder.count_tokens(s) for s in sentences
    ]


def test_a_second_embedder_reuses_the_export(
    export: Export, int8_embedder: Embedder, sentences: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    marker = export.folder / MARKER
    before = (export.folder.stat().st_ino, marker.stat().st_mtime_ns)
    caplog.set_level(logging.INFO, logger="ingest.onnx_export")
    again = Embedder(Settings(embed_model=str(export.model_dir), model_cache_dir=export.cache_dir))
    assert again.embed_documents(sentences[:3]) == int8_embedder.embed_documents(sentences[:3])
    assert not [r for r in caplog.records if r.name == "ingest.onnx_export"]
    assert (export.folder.stat().st_ino, marker.stat().st_mtime_ns) == before


def test_a_damaged_cache_folder_is_exported_again(
    export: Export, int8_embedder: Embedder, sentences: list[str], tmp_path: Path
) -> None:
    """A truncated ONNX file (a disk filled up, a copy cut short) and the temporary folder of a
    killed export: the next load exports afresh instead of crashing or trusting either."""
    cache = tmp_path / "cache"
    shutil.copytree(export.cache_dir, cache)
    folder = cache / export.folder.name
    onnx = folder / onnx_file_name(quantization_target())
    onnx.write_bytes(onnx.read_bytes()[:100_000])
    killed = cache / f".tmp-{folder.name}-4242-deadbeef"
    (killed / "onnx").mkdir(parents=True)
    (killed / "onnx" / "model.onnx").write_bytes(b"half")
    identity = export_identity(str(export.model_dir), quantization_target())
    assert not is_complete(folder, identity)

    repaired = Embedder(Settings(embed_model=str(export.model_dir), model_cache_dir=cache))
    vectors = np.array(repaired.embed_documents(sentences[:4]))

    assert is_complete(folder, identity)
    assert not killed.exists()
    np.testing.assert_allclose(vectors, np.array(int8_embedder.embed_documents(sentences[:4])), atol=1e-5)


def test_completeness_needs_the_marker_and_the_same_identity(export: Export, tmp_path: Path) -> None:
    identity = export_identity(str(export.model_dir), quantization_target())
    copy = tmp_path / "copy"
    shutil.copytree(export.folder, copy)
    assert is_complete(copy, identity)
    other = "arm64" if quantization_target() != "arm64" else "avx2"
    other_cpu = export_identity(str(export.model_dir), other)
    assert not is_complete(copy, other_cpu)
    assert export_folder(tmp_path, other_cpu) != export_folder(tmp_path, identity)
    (copy / MARKER).unlink()
    assert not is_complete(copy, identity)


def test_another_model_gets_another_cache_folder(export: Export, tmp_path: Path) -> None:
    packaged = export_identity(resolve_model_path(PACKAGED_EMBED_MODEL), quantization_target())
    mine = export_identity(str(export.model_dir), quantization_target())
    assert export_folder(tmp_path, packaged) != export_folder(tmp_path, mine)
    # The same folder edited in place (new weights) is another model too.
    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / "model.safetensors").write_bytes(b"weights")
    first = export_identity(str(edited), quantization_target())
    (edited / "model.safetensors").write_bytes(b"new weights")
    assert export_identity(str(edited), quantization_target()) != first


def test_the_torch_backend_neither_exports_nor_uses_onnx(tmp_path: Path, sentences: list[str]) -> None:
    cache = tmp_path / "never"
    embedder = Embedder(Settings(embed_backend="torch", embed_device="cpu", model_cache_dir=cache))
    vectors = np.array(embedder.embed_documents(sentences[:2]))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.model[0].backend == "torch"
    assert not cache.exists()


def test_an_unusable_cache_folder_fails_clearly(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    embedder = Embedder(Settings(model_cache_dir=blocked / "models"))
    with pytest.raises(EmbedBackendError, match="RAG_EMBED_BACKEND=torch"):
        embedder.embed_query("anything")


@pytest.mark.parametrize(
    ("machine", "flags", "expected"),
    [
        ("x86_64", {"avx2", "avx512f", "avx512_vnni"}, "avx512_vnni"),
        ("x86_64", {"avx2", "avx512f"}, "avx2"),
        ("AMD64", {"avx2"}, "avx2"),
        ("x86_64", set(), "avx2"),
        ("aarch64", set(), "arm64"),
        ("arm64", set(), "arm64"),
    ],
)
def test_the_quantization_suits_the_cpu(machine: str, flags: set[str], expected: str) -> None:
    assert quantization_target(machine, frozenset(flags)) == expected


def test_an_unknown_cpu_is_told_to_use_torch() -> None:
    with pytest.raises(EmbedBackendError, match="RAG_EMBED_BACKEND=torch"):
        quantization_target("riscv64", frozenset())
