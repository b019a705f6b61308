"""SandboxManager: staleness, refusing foreign pids and taken ports, stopping, and the live session sandbox.

The unit tests use real processes: a Python stand-in whose command line names the jar (so the
manager's /proc check accepts it) and a real ``java -jar`` on a file that is no jar.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cds.errors import SandboxError
from cds.sandbox import JAR_NAME, SandboxManager, free_port

STAND_IN = (
    "import signal, sys, time\n"
    "if sys.argv[1] == 'stubborn': signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "time.sleep(300)"
)


def _manager(tmp_path: Path, port: int | None = None, grace: float = 5.0) -> SandboxManager:
    sandbox_dir = tmp_path / "hapi"
    (sandbox_dir / "src" / "main").mkdir(parents=True, exist_ok=True)
    (sandbox_dir / "pom.xml").write_text("<project/>")
    return SandboxManager(sandbox_dir, tmp_path / "state", port or free_port(), 256, 20.0, "memory", stop_grace_s=grace)


def _touch(path: Path, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path, (mtime, mtime))


@pytest.fixture
def stand_in(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[bytes]]:
    """A process whose command line ends with the jar path, like the real sandbox's."""
    mode = getattr(request, "param", "polite")
    proc = subprocess.Popen([sys.executable, "-c", STAND_IN, mode, str(tmp_path / JAR_NAME)])
    time.sleep(0.3)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _record(manager: SandboxManager, pid: int) -> None:
    manager.state_dir.mkdir(parents=True, exist_ok=True)
    manager.pid_file.write_text(json.dumps({"pid": pid, "port": manager.port, "started_at": time.time()}))


def test_needs_build_when_jar_missing_or_older_than_sources(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    now = time.time()
    _touch(manager.sandbox_dir / "pom.xml", now - 100)
    _touch(manager.sandbox_dir / "src" / "main" / "java" / "App.java", now - 100)
    assert manager.needs_build()
    _touch(manager.jar, now - 50)
    assert not manager.needs_build()
    assert manager.build() is False  # nothing to do: mvn is not even looked for
    _touch(manager.sandbox_dir / "src" / "main" / "java" / "App.java", now)
    assert manager.needs_build()
    _touch(manager.jar, now + 10)
    _touch(manager.sandbox_dir / "pom.xml", now + 20)
    assert manager.needs_build()


def test_build_without_pom_says_where_to_point(tmp_path: Path) -> None:
    manager = SandboxManager(tmp_path / "nowhere", tmp_path / "state", free_port(), 256, 5.0)
    with pytest.raises(SandboxError, match="OV-0020"):
        manager.build()


def test_bad_database_or_port_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="OV-0030"):
        SandboxManager(tmp_path, tmp_path, 8089, 256, 5.0, "disk")  # type: ignore[arg-type]
    with pytest.raises(SandboxError, match="OV-0031"):
        SandboxManager(tmp_path, tmp_path, 70000, 256, 5.0)


def test_file_database_lives_in_the_state_dir(tmp_path: Path, prerequisite: Callable[[bool, str], None]) -> None:
    prerequisite(shutil.which("java") is not None, "java is not installed")
    manager = SandboxManager(tmp_path / "hapi", tmp_path / "state", 18123, 512, 5.0, "file")
    cmd = manager.command()
    assert cmd[1:] == [
        "-Xmx512m",
        "-jar",
        str(manager.jar),
        "--server.port=18123",
        f"--spring.datasource.url=jdbc:h2:file:{(tmp_path / 'state' / 'hapi-h2' / 'db').resolve()}",
    ]
    memory = SandboxManager(tmp_path / "hapi", tmp_path / "state", 18123, 512, 5.0, "memory")
    assert not any("datasource" in arg for arg in memory.command())


def test_start_refuses_a_port_taken_by_someone_else(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        manager = _manager(tmp_path, port=listener.getsockname()[1])
        _touch(manager.jar, time.time())
        with pytest.raises(SandboxError, match=r"OV-0026: port .* already in use"):
            manager.start()
    assert not manager.pid_file.exists()


def test_start_fails_fast_when_the_server_dies(tmp_path: Path, prerequisite: Callable[[bool, str], None]) -> None:
    prerequisite(shutil.which("java") is not None, "java is not installed")
    manager = _manager(tmp_path)
    manager.jar.parent.mkdir(parents=True)
    manager.jar.write_text("this is not a jar")
    began = time.monotonic()
    with pytest.raises(SandboxError, match="OV-0028") as info:
        manager.start()
    assert time.monotonic() - began < 15  # well before the 20 s start timeout
    assert str(manager.log_file) in str(info.value)
    assert not manager.pid_file.exists()


def test_start_without_jar_asks_for_a_build(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="OV-0025"):
        _manager(tmp_path).start()


def test_stop_refuses_a_pid_that_is_not_our_java(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    _record(manager, os.getpid())  # the test runner itself: alive, but not the sandbox
    state = manager.status()
    assert not state.running and state.stale_pid_file
    with pytest.raises(SandboxError, match=r"OV-0032: pid .* refusing"):
        manager.stop()
    assert manager.pid_file.exists()


def test_stop_without_server_is_a_no_op(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    assert manager.stop() is False
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _record(manager, dead.pid)
    assert manager.stop() is False
    assert not manager.pid_file.exists()


def test_stop_terminates_the_recorded_process(tmp_path: Path, stand_in: subprocess.Popen[bytes]) -> None:
    manager = _manager(tmp_path)
    _record(manager, stand_in.pid)
    state = manager.status()
    assert state.running and state.pid == stand_in.pid and (state.rss_mb or 0) > 1
    assert manager.stop() is True
    assert stand_in.wait(timeout=5) == -15  # SIGTERM
    assert not manager.pid_file.exists()


@pytest.mark.parametrize("stand_in", ["stubborn"], indirect=True)
def test_stop_kills_after_the_grace_period(tmp_path: Path, stand_in: subprocess.Popen[bytes]) -> None:
    manager = _manager(tmp_path, grace=1.0)
    _record(manager, stand_in.pid)
    began = time.monotonic()
    assert manager.stop() is True
    assert stand_in.wait(timeout=5) == -9  # SIGKILL
    assert 1.0 <= time.monotonic() - began < 10


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCOVIGIL_")}
    env["ONCOVIGIL_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-c", "from cds.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_cli_status_when_nothing_runs_and_bad_arguments(tmp_path: Path) -> None:
    done = _cli("sandbox", "status", home=tmp_path)
    assert done.returncode == 0 and "not running" in done.stdout
    done = _cli("sandbox", "status", "--json", home=tmp_path)
    assert json.loads(done.stdout)["running"] is False
    # Each refusal names the option at fault (an unknown command exits 2 as well, so the code alone says little).
    bad_port = _cli("sandbox", "start", "--port", "0", home=tmp_path)
    assert bad_port.returncode == 2 and "Invalid value for '--port'" in bad_port.stderr
    bad_db = _cli("sandbox", "start", "--database", "disk", home=tmp_path)
    assert bad_db.returncode == 2 and "OV-0030" in bad_db.stderr
    no_patients = _cli("sandbox", "seed", "--patients", "0", home=tmp_path)
    assert no_patients.returncode == 2 and "Invalid value for '--patients'" in no_patients.stderr
    no_out = _cli("cohort", "generate", "--patients", "3", home=tmp_path)
    assert no_out.returncode == 2 and "Missing option '--out'" in no_out.stderr
    unknown = _cli("sandbox", "frobnicate", home=tmp_path)
    assert unknown.returncode == 2 and "No such command 'frobnicate'" in unknown.stderr
    assert "Traceback" not in bad_port.stderr + no_patients.stderr + no_out.stderr + unknown.stderr


def test_cli_cohort_generate_writes_truth_and_ndjson(tmp_path: Path) -> None:
    done = _cli("cohort", "generate", "--patients", "3", "--seed", "5", "--out", str(tmp_path / "out"), home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "3 patients" in done.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["patients"] == 3 and manifest["seed"] == 5
    patients = (tmp_path / "out" / "fhir" / "Patient.ndjson").read_text().splitlines()
    assert [json.loads(p)["id"] for p in patients] == ["ov-pat-0001", "ov-pat-0002", "ov-pat-0003"]


def test_live_session_sandbox_lifecycle(
    session_sandbox: Any, fhir_base_url: str, prerequisite: Callable[[bool, str], None]
) -> None:
    """start() ran in the session fixture; here status, the CLI view and a real request; stop() runs at teardown."""
    # an external server (ONCOVIGIL_TEST_FHIR_URL) has no lifecycle of ours: skipped locally, a failure in CI
    prerequisite(session_sandbox is not None, "ONCOVIGIL_TEST_FHIR_URL given: this session did not start a sandbox")
    assert session_sandbox is not None
    manager = session_sandbox.manager
    state = manager.status()
    assert state.running and state.url == fhir_base_url and state.port == manager.port
    assert state.pid is not None and (state.rss_mb or 0) > 200 and (state.uptime_s or 0) > 0
    assert 0 < session_sandbox.startup_s < manager.start_timeout_s
    with pytest.raises(SandboxError, match="OV-0024: the sandbox is already running"):
        manager.start()
    response = httpx.get(f"{fhir_base_url}/metadata", timeout=30)
    assert response.status_code == 200 and response.json()["fhirVersion"].startswith("4.0")
    done = _cli("sandbox", "status", home=session_sandbox.home)
    assert done.returncode == 0, done.stderr
    assert f"running at {fhir_base_url} (pid {state.pid}" in done.stdout
    print(f"sandbox startup {session_sandbox.startup_s:.1f} s, RSS {state.rss_mb:.0f} MB")
