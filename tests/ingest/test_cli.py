"""The `ingest` command as a user runs it: exit codes, summary, list, delete, collections."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ingest.cli import app
from ingest.settings import get_settings

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAG_CHROMA_PATH", str(tmp_path / "chroma"))
    get_settings.cache_clear()
    docs = tmp_path / "docs"
    (docs / "hr").mkdir(parents=True)
    (docs / "hr" / "leave.md").write_text("# Leave\n\nParental leave is 16 weeks at full pay.\n")
    (docs / "faq.txt").write_text("FAQ\n\nThe help desk extension is 4357.\n")
    return docs


def test_add_list_delete(env: Path) -> None:
    result = runner.invoke(app, ["add", str(env), "--collection", "handbook"])
    assert result.exit_code == 0, result.output
    assert "2 added" in result.output and "0 failed" in result.output

    again = runner.invoke(app, ["add", str(env), "-c", "handbook"])
    assert "2 unchanged" in again.output and "0 chunks embedded" in again.output

    listed = runner.invoke(app, ["list", "-c", "handbook"])
    assert listed.exit_code == 0
    assert "hr/leave.md" in listed.output and "2 documents" in listed.output

    deleted = runner.invoke(app, ["delete", "hr/leave.md", "-c", "handbook"])
    assert deleted.exit_code == 0 and "deleted hr/leave.md" in deleted.output
    missing = runner.invoke(app, ["delete", "hr/leave.md", "-c", "handbook"])
    assert missing.exit_code == 1 and "no document" in missing.output

    collections = runner.invoke(app, ["collections"])
    assert collections.output.split() == ["handbook"]


def test_failed_file_gives_exit_1_and_its_reason(env: Path) -> None:
    (env / "scan.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (env / "logo.png").write_bytes(b"\x89PNG\r\n")
    result = runner.invoke(app, ["add", str(env)])
    assert result.exit_code == 1
    assert "scan.pdf" in result.output and "PDF" in result.output
    assert "logo.png" in result.output and "unsupported" in result.output
    assert "2 added" in result.output and "1 failed" in result.output


def test_unknown_collection_and_bad_name(env: Path) -> None:
    result = runner.invoke(app, ["list", "-c", "nope"])
    assert result.exit_code == 2 and "does not exist" in result.output
    bad = runner.invoke(app, ["add", str(env), "-c", "../etc"])
    assert bad.exit_code != 0 and "invalid collection name" in bad.output
