"""Bad settings and arguments exit 2 with one coded line, never a traceback or an internal error (OV-0099).

Each case runs the real CLI in a subprocess, the way an operator meets it; a few unit tests beside them pin
the line between the user's mistake (exit 2) and an operation that failed (exit 1).
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from cds.cohort import generate_cohort, write_truth
from cds.errors import CohortError, ConfigError, RayEngineError, SyncError
from cds.settings import load_settings
from tests.cds.test_sync_kit import cli_env as sync_kit_env
from tests.cds.test_sync_kit import run_cli

REPO = Path(__file__).resolve().parents[2]


def cli_env(home: Path, **settings: str) -> dict[str, str]:
    """The sync kit's clean environment, models under ``home`` and a FHIR URL where nothing listens, should a
    refusal ever fail open."""
    defaults = {"models_dir": str(home / "models"), "fhir_base_url": "http://127.0.0.1:9/fhir"}
    return sync_kit_env(home, **{**defaults, **settings})


def assert_usage_error(done: subprocess.CompletedProcess[str], code: str) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "OV-0099" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"oncovigil: {code}: "), done.stderr
    return last


# settings ------------------------------------------------------------------------------------------------
def test_a_config_path_that_is_a_folder_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "conf.d"
    folder.mkdir()
    done = run_cli(["--config", str(folder), "runs"], cli_env(tmp_path / "home"))
    assert str(folder) in assert_usage_error(done, "OV-0142")


def test_a_config_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    latin1 = tmp_path / "oncovigil.toml"
    latin1.write_bytes("[oncovigil]\ncohort_patients = 5 # réglé\n".encode("latin-1"))
    done = run_cli(["--config", str(latin1), "runs"], cli_env(tmp_path / "home"))
    line = assert_usage_error(done, "OV-0003")
    assert str(latin1) in line and "UTF-8" in line


def test_an_unknown_log_level_is_a_configuration_error(tmp_path: Path) -> None:
    done = run_cli(["runs"], cli_env(tmp_path / "home", log_level="LOUD"))
    line = assert_usage_error(done, "OV-0001")
    assert "log_level" in line and "WARNING" in line


@pytest.mark.parametrize(("given", "level"), [("debug", "DEBUG"), (" Info ", "INFO"), ("warn", "WARNING")])
def test_log_levels_are_read_in_any_case(monkeypatch: pytest.MonkeyPatch, given: str, level: str) -> None:
    monkeypatch.setenv("ONCOVIGIL_LOG_LEVEL", given)
    assert load_settings().log_level == level


# arguments -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sql", [False, True], ids=["migrate", "sql"])
def test_db_upgrade_to_an_unknown_revision_lists_the_known_ones(tmp_path: Path, sql: bool) -> None:
    home = tmp_path / "home"
    done = run_cli(["db", "upgrade", "bogusrev", *(["--sql"] if sql else [])], cli_env(home))
    line = assert_usage_error(done, "OV-0140")
    assert "'bogusrev'" in line and "(head)" in line
    assert not (home / "state.db").exists()  # refused before the database was opened


def test_runs_limit_has_a_ceiling(tmp_path: Path) -> None:
    done = run_cli(["runs", "--limit", "99999999999999999999999"], cli_env(tmp_path / "home"))
    assert done.returncode == 2, done.stderr
    assert "--limit" in done.stderr and "Traceback" not in done.stderr and "OV-0099" not in done.stderr


def test_serve_port_is_checked_even_when_only_the_scheduler_runs(tmp_path: Path) -> None:
    # --scheduler-only binds no socket, so a bad port would otherwise pass unseen until the API is enabled
    done = run_cli(["serve", "--port", "-1", "--scheduler-only"], cli_env(tmp_path / "home"))
    assert done.returncode == 2, done.stderr
    assert "'--port'" in done.stderr and "Traceback" not in done.stderr
    setting = run_cli(["runs"], cli_env(tmp_path / "home", serve_port="70000"))
    assert "serve_port" in assert_usage_error(setting, "OV-0001")


# paths and URLs ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("below", ["", "sub"], ids=["home-is-a-file", "home-below-a-file"])
def test_a_home_that_cannot_hold_the_state_database_is_named(tmp_path: Path, below: str) -> None:
    blocker = tmp_path / "home"
    blocker.write_text("not a folder\n")
    home = blocker / below if below else blocker
    for args in (["runs"], ["db", "upgrade"]):
        line = assert_usage_error(run_cli(args, cli_env(home)), "OV-0141")
        assert str(home) in line and "ONCOVIGIL_HOME" in line


@pytest.mark.parametrize("url", ["notaurl", "bogus://x"])
def test_an_unusable_state_database_url_exits_2(tmp_path: Path, url: str) -> None:
    done = run_cli(["runs"], cli_env(tmp_path / "home", state_db_url=url))
    assert "state_db_url" in assert_usage_error(done, "OV-0076")


def test_cohort_generate_into_a_file_exits_2(tmp_path: Path) -> None:
    target = tmp_path / "cohort"
    target.write_text("a file, not a folder\n")
    done = run_cli(["cohort", "generate", "--out", str(target), "--patients", "2"], cli_env(tmp_path / "home"))
    assert str(target) in assert_usage_error(done, "OV-0043")


@pytest.mark.parametrize("how", ["option", "setting"])
def test_a_malformed_ray_address_is_refused_before_anything_starts(tmp_path: Path, how: str) -> None:
    # an importable stand-in for Ray: the address must be refused without ever reaching it
    fake = tmp_path / "fake-ray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    home = tmp_path / "home"
    env = cli_env(home, **({"ray_address": "bogus"} if how == "setting" else {}))
    env["PYTHONPATH"] = os.pathsep.join([str(fake.parent), str(REPO)])
    args = ["sync", "--engine", "ray", *(["--ray-address", "bogus"] if how == "option" else [])]
    line = assert_usage_error(run_cli(args, env), "OV-0111")
    assert "'bogus'" in line and "ONCOVIGIL_RAY_ADDRESS" in line
    assert not (home / "state.db").exists()


# the line between a mistake and a failure ----------------------------------------------------------------
@pytest.mark.parametrize("address", ["auto", "local", "head:6379", "[::1]:6379", "ray://head:10001", "ray://head"])
def test_well_formed_ray_addresses_pass_the_check(address: str) -> None:
    from cds.sync_ray import check_address

    check_address(address)


@pytest.mark.parametrize("address", ["bogus", "head:", ":6379", "ray://", "ray://head:x", "http://head:8265"])
def test_malformed_ray_addresses_are_configuration_errors(address: str) -> None:
    from cds.sync_ray import check_address

    with pytest.raises(RayEngineError, match="OV-0111") as caught:
        check_address(address)
    assert isinstance(caught.value, ConfigError)


def _full_disk(*_args: object, **_kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_is_a_failed_operation_not_a_bad_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cds.db_migrate import make_state_folder

    monkeypatch.setattr(Path, "mkdir", _full_disk)
    with pytest.raises(SyncError, match="OV-0075") as state:
        make_state_folder(tmp_path / "state")
    assert not isinstance(state.value, ConfigError)
    with pytest.raises(CohortError, match="OV-0043") as cohort:
        write_truth(generate_cohort(2, 7), tmp_path / "cohort")
    assert not isinstance(cohort.value, ConfigError)
