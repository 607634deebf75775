"""Reading docker-compose.yml as docker compose does: parsed, then ``${NAME:-default}`` resolved."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
# The only forms allowed in docker-compose.yml: ${NAME} and ${NAME:-default}.
SIMPLE_FORM = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?$", re.S)


def raw_compose() -> Any:
    """docker-compose.yml as parsed, before interpolation."""
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def scalars(node: Any) -> Iterator[str]:
    """Every string value in a parsed YAML tree: what compose interpolates (comments are not)."""
    if isinstance(node, dict):
        for value in node.values():
            yield from scalars(value)
    elif isinstance(node, list):
        for value in node:
            yield from scalars(value)
    elif isinstance(node, str):
        yield node


def interpolations() -> list[str]:
    """The insides of every ``${...}`` in the compose file; ``$${`` is an escaped dollar, not a variable."""
    return [
        inner for text in scalars(raw_compose()) for inner in INTERPOLATION.findall(text.replace("$$", ""))
    ]


def interpolated_names() -> set[str]:
    return {m["name"] for m in map(SIMPLE_FORM.match, interpolations()) if m}


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    """``node`` with ``${NAME}`` and ``${NAME:-default}`` replaced as docker compose replaces them."""

    def substitute(match: re.Match[str]) -> str:
        form = SIMPLE_FORM.match(match.group(1))
        assert form, f"unsupported interpolation ${{{match.group(1)}}}"
        value = env.get(form["name"], "")
        if form["default"] is not None and not value:  # ':-' also replaces a variable set empty
            return str(form["default"])
        return value

    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value, env) for value in node]
    if isinstance(node, str):
        escaped = "\0"
        return INTERPOLATION.sub(substitute, node.replace("$$", escaped)).replace(escaped, "$")
    return node


def load_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    loaded = resolve(raw_compose(), env or {})
    assert isinstance(loaded, dict) and isinstance(loaded.get("services"), dict), "no services"
    return loaded


def environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    """A service's ``environment``, in either of compose's two forms."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (str(item).partition("=") for item in raw)
        return {name: (value if sep else None) for name, sep, value in pairs}
    return {str(k): (None if v is None else str(v)) for k, v in raw.items()}
