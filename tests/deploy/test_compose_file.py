"""The deployment files agree with the code and with each other, checked without docker.

docker-compose.yml, the Dockerfile, .env.example and the README name settings, routes, modules and
commands that live in the code; these tests parse the files and look each name up where it is
defined, so that renaming something in one place only fails here rather than in a container.
"""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from ingest.settings import Settings
from tests.deploy.compose_files import (
    SIMPLE_FORM,
    environment,
    interpolated_names,
    interpolations,
    load_compose,
)

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
README = REPO / "README.md"
PYPROJECT = REPO / "pyproject.toml"

SETTING_VARS = frozenset(f"RAG_{name.upper()}" for name in Settings.model_fields)
# Read by docker-compose.yml itself, never by the service; documented as such in .env.example.
COMPOSE_ONLY = frozenset({"RAG_WORKERS"})
CONDITIONS = frozenset({"service_started", "service_healthy", "service_completed_successfully"})

RAG_NAME = re.compile(r"\bRAG_[A-Z0-9_]+\b")
ENV_ASSIGNMENT = re.compile(r"^#?[ \t]*(RAG_[A-Z0-9_]+)=(.*)$", re.M)


def make_settings(env_file: Path | None = None, **values: Any) -> Settings:
    """Settings from the environment and ``values``, reading ``env_file`` rather than the checkout's .env."""
    return Settings(_env_file=env_file, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    """Each service this one waits for, with the condition (compose's default when none is given)."""
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return {str(name): "service_started" for name in raw}
    return {str(name): str((spec or {}).get("condition", "service_started")) for name, spec in raw.items()}


def named_volumes(service: Mapping[str, Any]) -> Iterator[str]:
    """The named volumes a service mounts (not bind mounts, not anonymous volumes)."""
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type", "volume") == "volume" and volume.get("source"):
                yield str(volume["source"])
            continue
        source, sep, _ = str(volume).partition(":")
        if sep and not source.startswith((".", "/", "~")):
            yield source


def container_port(mapping: object) -> int:
    """The container side of a ``ports`` entry: ``8000``, ``"8000:8000"``, ``"127.0.0.1:80:8000/tcp"``."""
    if isinstance(mapping, dict):
        return int(mapping["target"])
    return int(str(mapping).rsplit(":", 1)[-1].split("/", 1)[0])


def flag(args: list[Any], name: str) -> str:
    assert name in args, f"{name} missing from {args}"
    return str(args[args.index(name) + 1])


def env_example() -> str:
    return ENV_EXAMPLE.read_text(encoding="utf-8")


def documented() -> dict[str, str]:
    """Each ``RAG_NAME=value`` line of .env.example, commented or not, as name -> value."""
    found: dict[str, str] = {}
    for name, value in ENV_ASSIGNMENT.findall(env_example()):
        assert name not in found, f"{name} is documented twice in .env.example"
        found[name] = value.strip()
    return found


def active_example_values() -> dict[str, str]:
    """What ``cp .env.example .env`` sets: the uncommented assignments."""
    return {
        name: value.strip() for name, value in re.findall(r"^(RAG_[A-Z0-9_]+)=(.*)$", env_example(), re.M)
    }


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` for each instruction, continuation lines joined."""
    text = re.sub(r"\\\n", "", DOCKERFILE.read_text(encoding="utf-8"))
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, args = stripped.partition(" ")
            result.append((keyword.upper(), args.strip()))
    return result


def dockerfile(keyword: str) -> list[str]:
    return [args for kw, args in dockerfile_instructions() if kw == keyword]


def last_exec_form(keyword: str) -> list[str]:
    """The JSON (exec) form of the last ``keyword`` instruction, which is the one that counts."""
    found = dockerfile(keyword)
    assert found, f"the Dockerfile has no {keyword}"
    args: Any = json.loads(found[-1])
    assert isinstance(args, list), f"{keyword} is not in exec form"
    return [str(a) for a in args]


def healthcheck_url() -> str:
    checks = dockerfile("HEALTHCHECK")
    assert len(checks) == 1, "the Dockerfile should have exactly one HEALTHCHECK"
    urls = re.findall(r"https?://[^\s'\"]+", checks[0])
    assert len(urls) == 1, f"one URL expected in HEALTHCHECK, found {urls}"
    return str(urls[0])


# --- docker-compose.yml on its own -----------------------------------------------------------------


def test_compose_parses_with_services(services: dict[str, dict[str, Any]]) -> None:
    assert {"chroma", "ollama", "ollama-pull", "api", "ingest"} <= set(services)
    for name, service in services.items():
        assert isinstance(service, dict), f"service {name} is not a mapping"


def test_every_service_has_an_image_or_a_build(services: dict[str, dict[str, Any]]) -> None:
    missing = [
        name for name, service in services.items() if not (service.get("image") or service.get("build"))
    ]
    assert not missing, f"services without image or build: {missing}"


def test_depends_on_names_defined_services_with_valid_conditions(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        for other, condition in depends_on(service).items():
            assert other in services, f"{name} depends on undefined service {other}"
            assert other != name, f"{name} depends on itself"
            assert condition in CONDITIONS, f"{name} waits for {other} with unknown condition {condition}"


def test_waited_for_conditions_can_be_met(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for other, condition in depends_on(service).items():
            if other not in services:
                continue  # an undefined service fails the test above
            if condition == "service_healthy":
                assert services[other].get("healthcheck") or services[other].get("build"), (
                    f"{name} waits for {other} to be healthy, but {other} has no healthcheck"
                )
            if condition == "service_completed_successfully":
                assert str(services[other].get("restart", "no")) == "no", (
                    f"{name} waits for {other} to finish, but {other} restarts"
                )


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in named_volumes(service):
            assert volume in declared, f"{name} mounts volume {volume}, not declared under volumes:"


def test_api_publishes_the_port_it_serves_on(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]
    port = int(flag(api["command"], "--port"))
    assert api.get("ports"), "the api service publishes no port"
    assert {container_port(p) for p in api["ports"]} == {port}


def test_api_command_resolves_to_valid_arguments(services: dict[str, dict[str, Any]]) -> None:
    assert int(flag(services["api"]["command"], "--workers")) >= 1


def test_chroma_image_matches_the_pinned_client(services: dict[str, dict[str, Any]]) -> None:
    image = str(services["chroma"]["image"])
    dependencies: list[str] = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]
    pins = [d.split("==", 1)[1].strip() for d in dependencies if re.match(r"chromadb\s*==", d)]
    assert pins, "pyproject.toml no longer pins chromadb=="
    assert image.rsplit(":", 1)[-1] == pins[0], f"{image} does not match chromadb=={pins[0]}"


# --- names shared with Settings ------------------------------------------------------------------


def test_compose_environment_names_are_settings(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        unknown = {v for v in environment(service) if v.startswith("RAG_")} - SETTING_VARS - COMPOSE_ONLY
        assert not unknown, f"{name} sets {sorted(unknown)}, which no Settings field reads"


def test_env_example_names_are_settings() -> None:
    unknown = set(RAG_NAME.findall(env_example())) - SETTING_VARS - COMPOSE_ONLY
    assert not unknown, f".env.example names {sorted(unknown)}, which no Settings field reads"


def test_every_setting_is_in_env_example() -> None:
    missing = SETTING_VARS - set(documented())
    assert not missing, f".env.example does not document {sorted(missing)}"


def test_compose_only_variables_are_documented_and_used() -> None:
    used = interpolated_names()
    for var in COMPOSE_ONLY:
        assert var in documented(), f"{var} is missing from .env.example"
        assert var in used, f"{var} is no longer used by docker-compose.yml; drop it from COMPOSE_ONLY"


def test_env_example_values_are_the_defaults(tmp_path: Path) -> None:
    """A value written in .env.example is the default, or empty for a setting unset by default."""
    defaults = make_settings()
    values = {k: v for k, v in documented().items() if k in SETTING_VARS}
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items() if v), encoding="utf-8")
    loaded = make_settings(env_file)
    for var, value in values.items():
        field = var.removeprefix("RAG_").lower()
        if value:
            assert getattr(loaded, field) == getattr(defaults, field), f"{var}={value} is not the default"
        else:
            assert not getattr(defaults, field), (
                f"{var} is shown empty but defaults to {getattr(defaults, field)}"
            )


def test_compose_interpolations_use_simple_forms() -> None:
    bad = [i for i in interpolations() if not SIMPLE_FORM.match(i)]
    assert not bad, f"use ${{NAME}} or ${{NAME:-default}} only, not {bad}"


def test_compose_interpolations_are_documented() -> None:
    names = interpolated_names()
    assert names, "docker-compose.yml interpolates nothing; this test no longer checks anything"
    missing = names - set(documented())
    assert not missing, f"docker-compose.yml uses {sorted(missing)}, not documented in .env.example"


@pytest.mark.parametrize("env_source", ["defaults", "env-example"])
def test_api_environment_makes_valid_settings(env_source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the api container gets, with nothing set and after ``cp .env.example .env``."""
    env = active_example_values() if env_source == "env-example" else {}
    api = load_compose(env)["services"]["api"]
    for name, value in environment(api).items():
        if value is not None:
            monkeypatch.setenv(name, value)
    settings = make_settings()
    assert settings.store_kind == "server"
    assert settings.generator == "openai"


def test_ingest_environment_makes_valid_settings(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in environment(services["ingest"]).items():
        if value is not None:
            monkeypatch.setenv(name, value)
    assert make_settings().store_kind == "server"


def test_dockerfile_env_names_are_settings() -> None:
    names = {n for args in dockerfile("ENV") for n in RAG_NAME.findall(args)}
    assert not names - SETTING_VARS, f"the Dockerfile sets {sorted(names - SETTING_VARS)}, not settings"


# --- names shared with the code ------------------------------------------------------------------


def app_paths(app: Any) -> set[str]:
    """The paths an app serves. FastAPI may keep an included router as one lazy entry of
    ``app.routes`` without a ``path``, so the OpenAPI paths are added to what ``routes`` shows."""
    paths = {str(route.path) for route in app.routes if getattr(route, "path", None)}
    return paths | set(app.openapi()["paths"])


def test_dockerfile_healthcheck_path_is_a_route() -> None:
    from service.api.app import create_app

    app = create_app(make_settings())  # no lifespan: nothing is loaded
    path = urlsplit(healthcheck_url()).path
    assert path in app_paths(app), f"HEALTHCHECK requests {path}, which the app does not serve"


def test_dockerfile_healthcheck_needs_no_key_and_no_models() -> None:
    """The probe sends no Authorization header, and must pass before (and without) the models."""
    from fastapi.testclient import TestClient

    from service.api.app import create_app

    app = create_app(make_settings(api_keys=SecretStr("k-admin:admin,k-read:read")))
    client = TestClient(app)  # outside `with`: the lifespan (Runtime, models) never starts
    response = client.get(urlsplit(healthcheck_url()).path)
    assert response.status_code < 400, response.text


def test_dockerfile_ports_agree() -> None:
    cmd_port = int(flag(last_exec_form("CMD"), "--port"))
    exposed = {int(p.split("/", 1)[0]) for args in dockerfile("EXPOSE") for p in args.split()}
    assert exposed == {cmd_port}, f"EXPOSE {exposed} but CMD serves on {cmd_port}"
    assert urlsplit(healthcheck_url()).port == cmd_port, "HEALTHCHECK polls another port than CMD serves"


def test_dockerfile_entrypoint_module_is_runnable() -> None:
    entrypoint = last_exec_form("ENTRYPOINT")
    assert "-m" in entrypoint, f"ENTRYPOINT {entrypoint} runs no module"
    module = entrypoint[entrypoint.index("-m") + 1]
    assert importlib.util.find_spec(f"{module}.__main__") is not None, f"{module} has no __main__.py"


def test_compose_ingest_entrypoint_is_a_console_script(services: dict[str, dict[str, Any]]) -> None:
    scripts = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["scripts"]
    entrypoint = services["ingest"]["entrypoint"]
    command = entrypoint[0] if isinstance(entrypoint, list) else str(entrypoint).split()[0]
    assert command in scripts, f"compose runs {command}, not in [project.scripts] {sorted(scripts)}"


def test_readme_shows_the_compose_route() -> None:
    readme = README.read_text(encoding="utf-8")
    assert "docker compose up" in readme
    assert ".env.example" in readme
