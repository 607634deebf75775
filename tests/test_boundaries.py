"""Package boundaries: service builds on ingest, never the reverse; ingest's public surface is pinned."""

from __future__ import annotations

import ast
from pathlib import Path

import ingest

REPO = Path(__file__).resolve().parent.parent


def test_ingest_never_imports_service() -> None:
    offenders = []
    for path in (REPO / "ingest").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "service"]
    assert offenders == []


def test_ingest_public_surface() -> None:
    assert sorted(ingest.__all__) == ["IngestError", "Settings", "get_settings"]
