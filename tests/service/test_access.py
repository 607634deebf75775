"""API keys and roles: who reaches which route, and keys never leaking into logs or errors."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from ingest.embed import Embedder
from ingest.settings import ApiKey, Settings, parse_api_keys
from service.api.app import create_app
from service.api.deps import role_of

ADMIN_KEY = "adm-4f1c2b9e7d"
READ_KEY = "rd-77aa31c0e5"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
READ = {"Authorization": f"Bearer {READ_KEY}"}
SEARCH = {"query": "How many vacation days do employees get?", "top_k": 2}
QUERY = {"question": "How many vacation days do employees get?", "generator": "extractive"}


@pytest.fixture(scope="module")
def keyed(corpus_settings: Settings, embedder: Embedder) -> Iterator[TestClient]:
    settings = corpus_settings.model_copy(
        update={"api_keys": SecretStr(f"{ADMIN_KEY}:admin, {READ_KEY}:read")}
    )
    with TestClient(create_app(settings, embedder=embedder)) as client:
        yield client


ROUTES = [
    ("POST", "/v1/search", SEARCH),
    ("POST", "/v1/query", QUERY),
    ("GET", "/v1/collections", None),
    ("GET", "/v1/documents", None),
    ("DELETE", "/v1/documents/nope", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": ADMIN_KEY},
        {"Authorization": "Basic " + ADMIN_KEY},
    ],
    ids=["missing", "wrong", "no-scheme", "basic"],
)
def test_routes_refuse_missing_and_wrong_keys(
    keyed: TestClient, method: str, path: str, body: object, headers: dict[str, str]
) -> None:
    response = keyed.request(method, path, json=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "Unauthorized"
    assert ADMIN_KEY not in response.text


def test_read_key_searches_queries_and_lists_collections(keyed: TestClient) -> None:
    assert keyed.post("/v1/search", json=SEARCH, headers=READ).status_code == 200
    body = keyed.post("/v1/query", json=QUERY, headers=READ).json()
    assert body["covered"] and body["citations"]
    names = [c["name"] for c in keyed.get("/v1/collections", headers=READ).json()["collections"]]
    assert names == ["default"]


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/documents"), ("DELETE", "/v1/documents/x"), ("POST", "/v1/documents")]
)
def test_read_key_is_forbidden_document_routes(keyed: TestClient, method: str, path: str) -> None:
    files = {"files": ("note.md", b"# Note\n\nA note.\n", "text/markdown")} if method == "POST" else None
    response = keyed.request(method, path, headers=READ, files=files)
    assert response.status_code == 403, response.text
    assert "admin" in response.json()["detail"]


def test_admin_key_uploads_lists_and_deletes(keyed: TestClient) -> None:
    text = b"# Parking\n\nVisitor parking at the Tacoma office is on level P2, bays 40 to 52.\n"
    up = keyed.post(
        "/v1/documents",
        headers=ADMIN,
        files={"files": ("parking.md", text, "text/markdown")},
        data={"collection": "keys-test"},
    )
    assert up.status_code == 200, up.text
    assert up.json()["files"][0]["outcome"] == "added"
    listed = keyed.get("/v1/documents", params={"collection": "keys-test"}, headers=ADMIN).json()["documents"]
    assert [d["source"] for d in listed] == ["parking.md"]
    found = keyed.post(
        "/v1/search", json={"query": "visitor parking level", "collection": "keys-test"}, headers=READ
    ).json()
    assert found["results"][0]["source"] == "parking.md"
    doc_id = listed[0]["document_id"]
    gone = keyed.delete(f"/v1/documents/{doc_id}", params={"collection": "keys-test"}, headers=ADMIN)
    assert gone.status_code == 200 and gone.json()["deleted"]["source"] == "parking.md"


def test_health_and_metrics_need_no_key(keyed: TestClient) -> None:
    assert keyed.get("/healthz").status_code == 200
    assert keyed.get("/metrics").status_code == 200


def test_keys_never_reach_the_logs(keyed: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        keyed.post("/v1/search", json=SEARCH, headers=READ)
        keyed.get("/v1/documents", headers=READ)
        keyed.get("/v1/documents", headers={"Authorization": "Bearer guess-" + ADMIN_KEY})
    text = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert "/v1/search" in text  # the access lines were captured
    assert READ_KEY not in text and ADMIN_KEY not in text


def test_open_api_warns_at_start(
    corpus_settings: Settings, embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING),
        TestClient(create_app(corpus_settings, embedder=embedder)) as client,
    ):
        assert client.post("/v1/search", json=SEARCH).status_code == 200
    assert any("RAG_API_KEYS is not set" in r.getMessage() for r in caplog.records)


def test_role_of_matches_whole_keys_only() -> None:
    keys = {"abc": "read", "abcd": "admin"}
    assert role_of("abc", keys) == "read"
    assert role_of("abcd", keys) == "admin"
    assert role_of("ab", keys) is None
    assert role_of("abcde", keys) is None
    assert role_of("", keys) is None


def test_api_keys_parse_and_reject_without_echoing_the_key() -> None:
    assert parse_api_keys(" k1:admin , k2:read,") == {"k1": ApiKey("admin"), "k2": ApiKey("read")}
    assert parse_api_keys("with:colon:read") == {"with:colon": ApiKey("read")}
    for bad, message in [
        ("secret-one", "not KEY:ROLE"),
        ("secret-one:owner", "role 'owner'"),
        ("secret-one:read,secret-one:admin", "repeats"),
        (":read", "not KEY:ROLE"),
    ]:
        with pytest.raises(ValidationError) as info:
            Settings(_env_file=None, api_keys=bad)  # type: ignore[call-arg]
        assert message in str(info.value)
        assert "secret-one" not in str(info.value)
    assert "secret" not in repr(Settings(_env_file=None, api_keys="secret-two:read"))  # type: ignore[call-arg]
