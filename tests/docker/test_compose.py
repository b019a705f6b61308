"""docker/compose.yaml, checked without a Docker engine: its structure with PyYAML, its OncoVigil settings
against the real Settings, and, where a Compose CLI is installed, ``docker compose config`` (or Debian's
``docker-compose config``), which validates the file against the Compose schema.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from cds.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker" / "compose.yaml"
_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _defaults(value: str) -> str:
    """``${NAME:-default}`` -> default (what Compose substitutes when NAME is unset)."""
    return _DEFAULTED.sub(lambda m: m.group(2), value)


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {k: _defaults(str(v)) for k, v in service["environment"].items()}


def test_the_three_services_wait_for_each_other_by_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"hapi", "postgres", "oncovigil"}
    for name in ("hapi", "postgres"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    assert "healthcheck" not in services["oncovigil"]  # the image's HEALTHCHECK (GET /readyz) applies
    assert services["oncovigil"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"}, "hapi": {"condition": "service_healthy"},
    }
    hapi_build = REPO / "docker" / services["hapi"]["build"]["context"]
    assert (hapi_build / "Dockerfile").is_file() and (hapi_build / "pom.xml").is_file()
    build = services["oncovigil"]["build"]
    assert (REPO / "docker" / build["context"] / build["dockerfile"]).resolve() == REPO / "docker" / "Dockerfile"


def test_every_oncovigil_setting_is_a_real_documented_setting(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(compose["services"]["oncovigil"])
    fields = {k.removeprefix("ONCOVIGIL_").lower() for k in env}
    assert all(k.startswith("ONCOVIGIL_") for k in env)
    assert fields <= set(Settings.model_fields), fields - set(Settings.model_fields)
    for key in [k for k in os.environ if k.startswith("ONCOVIGIL_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():  # as the container gets them: environment variables
        monkeypatch.setenv(key, value)
    settings = load_settings(home=str(tmp_path))
    assert settings.environment == "production" and settings.cds_require_jwt
    # documented twice: a comment right above each setting in the file, and the README's configuration table
    lines = COMPOSE.read_text().splitlines()
    readme = (REPO / "README.md").read_text()
    for key in env:
        [at] = [i for i, line in enumerate(lines) if line.strip().startswith(f"{key}:")]
        above = [line.strip() for line in lines[max(0, at - 3):at]]
        assert any(line.startswith("#") for line in above), f"{key} has no comment above it in compose.yaml"
        assert f"`{key}`" in readme, f"{key} is missing from the README's configuration table"


def test_the_service_points_at_the_other_two_and_its_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = _env(services["oncovigil"])
    pg = _env(services["postgres"])
    state = make_url(env["ONCOVIGIL_STATE_DB_URL"])
    assert (state.get_backend_name(), state.host, state.port) == ("postgresql", "postgres", 5432)
    assert (state.username, state.password, state.database) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"],
                                                                pg["POSTGRES_DB"])
    fhir = urlsplit(env["ONCOVIGIL_FHIR_BASE_URL"])
    [hapi_port] = services["hapi"]["ports"]
    assert (fhir.hostname, fhir.port, fhir.path) == ("hapi", int(_defaults(hapi_port).rsplit(":", 1)[1]), "/fhir")
    mounts = {_defaults(v).split(":")[1]: _defaults(v) for v in services["oncovigil"]["volumes"]}
    assert mounts[env["ONCOVIGIL_MODELS_DIR"]].endswith(":ro")
    assert Path(env["ONCOVIGIL_CDS_TRUSTED_ISSUERS_FILE"]).parent.as_posix() in mounts
    [published] = services["oncovigil"]["ports"]
    assert _defaults(published).rsplit(":", 1)[1] == env["ONCOVIGIL_SERVE_PORT"]
    [gpu] = services["oncovigil"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    assert set(compose["volumes"]) == {"hapi-data", "postgres-data", "oncovigil-home"}


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_config_accepts_the_file(prerequisite: Callable[[bool, str], None]) -> None:
    cli = _compose_cli()
    prerequisite(cli is not None, "no Compose CLI installed (apt-get install docker-compose); the structure tests ran")
    assert cli is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONCOVIGIL_", "POSTGRES_", "HAPI_"))}
    result = subprocess.run([*cli, "-f", str(COMPOSE), "config"], capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    assert set(rendered["services"]) == {"hapi", "postgres", "oncovigil"}
    assert rendered["services"]["oncovigil"]["environment"]["ONCOVIGIL_SYNC_CRON"] == "0 2 * * *"
