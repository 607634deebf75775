"""The compose stack without docker: the processes docker-compose.yml starts, on loopback.

`chroma run` stands in for the ``chroma`` service, ``python -m llama_cpp.server`` with the packaged
SmolLM2 for ``ollama``, and the service and the ``ingest`` one-shot run with the environment
blocks of the compose file itself (host names mapped to 127.0.0.1). A compose file that wires the
api to the wrong URL, variable or command fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import CORPUS, free_port, server_process
from tests.deploy.compose_files import environment, load_compose

pytestmark = [pytest.mark.slow, pytest.mark.server]

ADMIN_KEY = "stack-admin-9c1e"
READ_KEY = "stack-read-51b0"
# What a user puts in .env for compose; everything else comes from the compose file's defaults.
USER_ENV = {"RAG_API_KEYS": f"{ADMIN_KEY}:admin,{READ_KEY}:read"}
DOCS = ["hr/pto-policy.md", "hr/remote-work-policy-2025.md", "it-security/backup-policy.md"]


def service_env(service: str, stand_ins: dict[str, str]) -> dict[str, str]:
    """A compose service's environment, resolved, with each ``http://NAME:PORT`` of a compose service
    replaced by the loopback address of the process that stands in for it."""
    compose = load_compose(USER_ENV)
    env: dict[str, str] = {}
    for name, value in environment(compose["services"][service]).items():
        value = value or ""
        url = urlsplit(value)
        if url.scheme in ("http", "https") and url.hostname in stand_ins:
            value = stand_ins[url.hostname] + url.path
        env[name] = value
    return env


def clean_environ() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["HF_HUB_OFFLINE"] = "1"
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """chroma + llama.cpp server + two api replicas configured from docker-compose.yml."""
    from service.generate.local import packaged_model_path

    tmp = tmp_path_factory.mktemp("stack")
    chroma_port, llm_port = free_port(), free_port()
    stand_ins = {"chroma": f"http://127.0.0.1:{chroma_port}", "ollama": f"http://127.0.0.1:{llm_port}"}
    chroma = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    compose = load_compose(USER_ENV)
    api = compose["services"]["api"]
    api_env = {**clean_environ(), **service_env("api", stand_ins)}
    with ExitStack() as stack_:
        stack_.enter_context(
            server_process(
                [
                    chroma,
                    "run",
                    "--path",
                    str(tmp / "chroma"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(chroma_port),
                ],
                ready_url=f"{stand_ins['chroma']}/api/v2/heartbeat",
                log_path=tmp / "chroma.log",
            )
        )
        stack_.enter_context(
            server_process(
                [sys.executable, "-m", "llama_cpp.server", "--model", str(packaged_model_path()),
                 "--host", "127.0.0.1", "--port", str(llm_port), "--n_ctx", "4096"],
                ready_url=f"{stand_ins['ollama']}/v1/models",
                log_path=tmp / "llama.log",
            )
        )  # fmt: skip
        urls = []
        for replica in ("a", "b"):
            port = free_port()
            args = [str(a) for a in api["command"]]
            args[args.index("--host") + 1] = "127.0.0.1"
            args[args.index("--port") + 1] = str(port)
            log = tmp / f"api-{replica}.log"
            stack_.enter_context(
                server_process(
                    [sys.executable, "-m", "service", *args],
                    ready_url=f"http://127.0.0.1:{port}/healthz",
                    log_path=log,
                    env=api_env,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        folder = tmp / "corpus"
        for doc in DOCS:
            (folder / doc).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(CORPUS / doc, folder / doc)
        ingested = run_ingest_service(stand_ins, folder)
        yield {"urls": urls, "logs": [tmp / "api-a.log", tmp / "api-b.log"], "ingested": ingested}


def run_ingest_service(stand_ins: dict[str, str], folder: Path) -> subprocess.CompletedProcess[str]:
    """The compose ``ingest`` service: its entrypoint and command, its environment, the mounted
    folder at its container path replaced by ``folder``."""
    service = load_compose(USER_ENV)["services"]["ingest"]
    mount = next(v.split(":")[1] for v in service["volumes"] if v.startswith("./corpus:"))
    args = [folder.as_posix() if a == mount else str(a) for a in service["command"]]
    entry = str(Path(sys.executable).parent / service["entrypoint"][0])
    env = {**clean_environ(), **service_env("ingest", stand_ins)}
    return subprocess.run([entry, *args], env=env, capture_output=True, text=True, timeout=300)


def test_compose_route_ingest_query_stream_upload_delete(stack: dict[str, Any]) -> None:
    done = stack["ingested"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 added" in done.stdout

    api = stack["urls"][0]
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    read = {"Authorization": f"Bearer {READ_KEY}"}
    with httpx.Client(base_url=api, timeout=120) as client:
        assert client.post("/v1/search", json={"query": "vacation days"}).status_code == 401
        ready = client.get("/readyz").json()
        assert ready["checks"] == {"store": "ok", "embedder": "ok", "generator": "ok"}, ready

        found = client.post("/v1/search", json={"query": "How many days a week in the office?"}, headers=read)
        assert found.status_code == 200
        assert found.json()["results"][0]["source"] == "hr/remote-work-policy-2025.md"

        # The api's generator is the compose file's: openai, at the stand-in for ollama.
        body = client.post(
            "/v1/query", json={"question": "How many PTO days can I carry over?"}, headers=read
        )
        assert body.status_code == 200, body.text
        answer = body.json()
        assert answer["model"] == "qwen2.5:1.5b-instruct"
        assert answer["generator"] in ("openai", "extractive")  # extractive only as the strict fallback
        assert answer["covered"] and answer["citations"]
        assert all(c["verified"] and c["source"] == "hr/pto-policy.md" for c in answer["citations"])

        events = []
        with client.stream(
            "POST",
            "/v1/query",
            json={"question": "How often are backups tested?", "stream": True},
            headers=read,
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("event:"):
                    events.append(line.split(":", 1)[1].strip())
        assert events[0] == "sources" and events[-1] == "answer" and "delta" in events

        text = b"# Bike storage\n\nBikes go in the locked cage behind the Austin office, code 4417.\n"
        up = client.post("/v1/documents", headers=admin, files={"files": ("bikes.md", text, "text/markdown")})
        assert up.status_code == 200 and up.json()["files"][0]["outcome"] == "added", up.text
        docs = client.get("/v1/documents", headers=admin).json()["documents"]
        assert sorted(d["source"] for d in docs) == sorted([*DOCS, "bikes.md"])
        bikes = next(d for d in docs if d["source"] == "bikes.md")

        # The other replica, on the same Chroma server, finds what this one indexed.
        with httpx.Client(base_url=stack["urls"][1], timeout=60) as other:
            hit = other.post("/v1/search", json={"query": "bike cage code", "top_k": 1}, headers=read).json()
            assert hit["results"][0]["source"] == "bikes.md"

        gone = client.delete(f"/v1/documents/{bikes['document_id']}", headers=admin)
        assert gone.status_code == 200
        left = client.get("/v1/documents", headers=admin).json()["documents"]
        assert "bikes.md" not in {d["source"] for d in left}

        # The compose file asks for JSON logs: every line parses and carries a request id, and the
        # keys never appear.
        marked = client.get("/healthz", headers={"X-Request-ID": "stack-check-1"})
        assert marked.headers["x-request-id"] == "stack-check-1"
    log = stack["logs"][0].read_text()
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(e.get("request_id") == "stack-check-1" and e.get("route") == "/healthz" for e in entries)
    assert ADMIN_KEY not in log and READ_KEY not in log


def test_replicas_answer_the_same(stack: dict[str, Any]) -> None:
    """Two replicas of the api on one Chroma server give the same sources and the same extractive
    answer: neither keeps state of its own that the other lacks."""
    read = {"Authorization": f"Bearer {READ_KEY}"}
    question = {
        "question": "How many days per week must employees be in the office?",
        "generator": "extractive",
    }
    answers = []
    for url in stack["urls"]:
        response = httpx.post(f"{url}/v1/query", json=question, headers=read, timeout=60)
        assert response.status_code == 200, response.text
        answers.append(response.json())
    a, b = answers
    assert a["answer"] == b["answer"] and a["covered"]
    assert [s["chunk_id"] for s in a["sources"]] == [s["chunk_id"] for s in b["sources"]]
