"""Shared fixtures: the real embedder once per session, stores in temporary folders, a Chroma server.

Nothing here fakes the store or the model: tests that need them get the real ones.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from ingest.embed import Embedder
from ingest.settings import Settings, get_settings

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "corpus"


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build their own Settings; a developer's RAG_* variables must not leak in."""
    for key in list(os.environ):
        if key.startswith("RAG_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The packaged all-MiniLM-L6-v2, loaded once for the whole session."""
    return Embedder(Settings())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, *, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"nothing answered at {url} within {timeout} s")


@contextmanager
def server_process(
    args: list[str],
    *,
    ready_url: str,
    log_path: Path,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server on loopback until the block ends; its output goes to ``log_path``, whose tail
    is shown if it never answers ``ready_url``. ``env`` replaces the inherited environment; ``cwd``
    is where it runs. Yields the process, for tests that kill it."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        try:
            try:
                wait_for_http(ready_url, timeout=timeout, proc=proc)
            except RuntimeError as exc:
                log.flush()
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{exc}\n--- {log_path} ---\n{tail}") from exc
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `chroma run` server on loopback for the session; yields its URL."""
    chroma = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    port = free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    url = f"http://127.0.0.1:{port}"
    args = [chroma, "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)]
    with server_process(args, ready_url=f"{url}/api/v2/heartbeat", log_path=data / "server.log"):
        yield url


@pytest.fixture(params=["embedded", "server"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for a fresh, empty store: embedded Chroma in tmp_path, or the loopback server."""
    if request.param == "server":
        url = request.getfixturevalue("chroma_server")
        # Each test gets its own collection name on the shared server.
        name = f"t{abs(hash(request.node.nodeid)) % 10**10}"
        return Settings(chroma_url=url, collection=name)
    return Settings(chroma_path=tmp_path / "chroma")


@pytest.fixture(scope="session")
def corpus_settings(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Settings:
    """A store holding corpus/ in the collection 'default', ingested once per session."""
    from ingest.pipeline import Ingestor

    settings = Settings(chroma_path=tmp_path_factory.mktemp("corpus") / "chroma", generator="extractive")
    report = Ingestor(settings, embedder=embedder).ingest_paths([CORPUS])
    assert report.count("added") >= 40, report.of("failed")
    return settings


@contextmanager
def serve_app(app: object, *, timeout: float = 30.0) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port in a thread; yields its base URL.

    For clients that need a real socket (the openai SDK, the MCP client, a browser); the lifespan
    runs as in production."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")  # type: ignore[arg-type]
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/healthz", timeout=timeout)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


LIVE_ADMIN_KEY = "live-admin-2f9a"
LIVE_READ_KEY = "live-read-7c41"


@pytest.fixture(scope="session")
def live_url(corpus_settings: Settings, embedder: Embedder) -> Iterator[str]:
    """The service over corpus/ on a real loopback socket, with an admin and a read key
    (``LIVE_ADMIN_KEY``, ``LIVE_READ_KEY``). Shared by the chat, MCP and browser tests; tests that
    write use a collection of their own."""
    from pydantic import SecretStr

    from service.api.app import create_app

    settings = corpus_settings.model_copy(
        update={"api_keys": SecretStr(f"{LIVE_ADMIN_KEY}:admin,{LIVE_READ_KEY}:read")}
    )
    with serve_app(create_app(settings, embedder=embedder)) as url:
        yield url
