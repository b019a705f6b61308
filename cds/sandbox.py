"""The local HAPI FHIR sandbox (``docker/hapi``) as a background process: build, start, status, stop.

State lives in ``state_dir``: ``sandbox.pid`` (JSON: pid, port, start time, jar), ``sandbox.log``
(the server's stdout and stderr) and, for ``database="file"``, the H2 files under ``hapi-h2/``.
A pid is only ever signalled after ``/proc/<pid>/cmdline`` shows it runs our jar, so a stale pid
file can never make us kill an unrelated process that reused the number.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

from cds.errors import SandboxError
from cds.settings import Settings

JAR_NAME = "oncovigil-hapi-sandbox.jar"
Database = Literal["memory", "file"]

_POLL_S = 0.5
_BUILD_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class SandboxStatus:
    """What ``status()`` found; ``rss_mb`` and ``uptime_s`` are None when the server is not running."""

    running: bool
    pid: int | None
    port: int | None
    url: str | None
    uptime_s: float | None
    rss_mb: float | None
    stale_pid_file: bool = False


class SandboxManager:
    """Runs one sandbox per ``state_dir``; all paths and limits come from the constructor."""

    def __init__(
        self,
        sandbox_dir: Path,
        state_dir: Path,
        port: int,
        heap_mb: int,
        start_timeout_s: float,
        database: Database = "file",
        *,
        java: str = "java",
        mvn: str = "mvn",
        stop_grace_s: float = 30.0,
    ) -> None:
        if database not in ("memory", "file"):
            raise SandboxError("OV-0030", f"sandbox database must be 'memory' or 'file', got {database!r}")
        if not 0 < port < 65536:
            raise SandboxError("OV-0031", f"sandbox port {port} is not a TCP port; choose 1024-65535")
        self.sandbox_dir = sandbox_dir
        self.state_dir = state_dir
        self.port = port
        self.heap_mb = heap_mb
        self.start_timeout_s = start_timeout_s
        self.database: Database = database
        self._java = java
        self._mvn = mvn
        self._stop_grace_s = stop_grace_s
        self._child: subprocess.Popen[bytes] | None = None

    # -- paths ---------------------------------------------------------------------------------

    @property
    def jar(self) -> Path:
        return self.sandbox_dir / "target" / JAR_NAME

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "sandbox.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "sandbox.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    # -- build ---------------------------------------------------------------------------------

    def _sources(self) -> Iterator[Path]:
        yield self.sandbox_dir / "pom.xml"
        src = self.sandbox_dir / "src"
        if src.is_dir():
            yield from (p for p in src.rglob("*") if p.is_file())

    def needs_build(self) -> bool:
        """True when the jar is missing or older than ``pom.xml`` or any file under ``src/``."""
        if not self.jar.is_file():
            return True
        built = self.jar.stat().st_mtime
        return any(p.stat().st_mtime > built for p in self._sources() if p.exists())

    def build(self, force: bool = False) -> bool:
        """Run ``mvn -q -B -DskipTests package`` if needed; True when a build ran."""
        if not force and not self.needs_build():
            return False
        if not (self.sandbox_dir / "pom.xml").is_file():
            raise SandboxError(
                "OV-0020",
                f"{self.sandbox_dir} has no pom.xml; set ONCOVIGIL_SANDBOX_DIR to the docker/hapi folder",
            )
        mvn = shutil.which(self._mvn)
        if mvn is None:
            raise SandboxError(
                "OV-0021", "Maven (mvn) is not on PATH; install Maven 3.8+ and JDK 17 to build the sandbox"
            )
        try:
            done = subprocess.run(
                [mvn, "-q", "-B", "-DskipTests", "package"],
                cwd=self.sandbox_dir,
                capture_output=True,
                text=True,
                timeout=_BUILD_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise SandboxError("OV-0022", f"mvn package did not finish in {_BUILD_TIMEOUT_S:.0f} s") from exc
        if done.returncode != 0 or not self.jar.is_file():
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise SandboxError(
                "OV-0022",
                f"mvn package failed in {self.sandbox_dir} (exit {done.returncode}); "
                f"run it there to see the full output. Last lines:\n{tail}",
            )
        return True

    # -- start ---------------------------------------------------------------------------------

    def command(self) -> list[str]:
        java = shutil.which(self._java)
        if java is None:
            raise SandboxError("OV-0023", "java is not on PATH; install JDK 17 to run the sandbox")
        cmd = [java, f"-Xmx{self.heap_mb}m", "-jar", str(self.jar), f"--server.port={self.port}"]
        if self.database == "file":
            db = (self.state_dir / "hapi-h2" / "db").resolve()
            cmd.append(f"--spring.datasource.url=jdbc:h2:file:{db}")
        return cmd

    def start(self) -> float:
        """Start the server in the background and wait until it answers; returns the seconds it took."""
        current = self.status()
        if current.running:
            raise SandboxError(
                "OV-0024",
                f"the sandbox is already running at {current.url} (pid {current.pid}); stop it first",
            )
        if not self.jar.is_file():
            raise SandboxError("OV-0025", f"{self.jar} does not exist; build it first (oncovigil sandbox start builds)")
        if _port_open(self.port):
            raise SandboxError(
                "OV-0026",
                f"port {self.port} is already in use by another process; stop it or choose another port "
                "(ONCOVIGIL_SANDBOX_PORT or --port)",
            )
        cmd = self.command()
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            log = self.log_file.open("wb")
        except OSError as exc:
            raise SandboxError("OV-0027", f"cannot write to {self.state_dir}: {exc.strerror}") from exc
        began = time.monotonic()
        with log:
            # A new session: Ctrl-C in the terminal that started it does not reach the server.
            child = subprocess.Popen(
                cmd,
                cwd=self.state_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._child = child
        record = {"pid": child.pid, "port": self.port, "started_at": time.time(), "jar": str(self.jar)}
        self.pid_file.write_text(json.dumps(record) + "\n", encoding="utf-8")
        self._wait_ready(child, began)
        return time.monotonic() - began

    def _wait_ready(self, child: subprocess.Popen[bytes], began: float) -> None:
        deadline = began + self.start_timeout_s
        with httpx.Client(timeout=httpx.Timeout(5.0, connect=1.0)) as http:
            while True:
                code = child.poll()
                if code is not None:
                    self._forget()
                    raise SandboxError(
                        "OV-0028",
                        f"the sandbox exited with code {code} while starting; see {self.log_file}:\n" + self.log_tail(),
                    )
                try:
                    if http.get(f"{self.url}/metadata").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise SandboxError(
                        "OV-0029",
                        f"the sandbox did not answer {self.url}/metadata within {self.start_timeout_s:.0f} s "
                        f"and was stopped; see {self.log_file} or raise ONCOVIGIL_SANDBOX_START_TIMEOUT_S",
                    )
                time.sleep(_POLL_S)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- status and stop -------------------------------------------------------------------------

    def _record(self) -> dict[str, object] | None:
        try:
            data = json.loads(self.pid_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None

    def status(self) -> SandboxStatus:
        record = self._record()
        if record is None:
            return SandboxStatus(False, None, None, None, None, None)
        pid = int(str(record["pid"]))
        port = int(str(record.get("port", self.port)))
        if not _is_our_java(pid):
            return SandboxStatus(False, pid, port, None, None, None, stale_pid_file=True)
        started = record.get("started_at")
        uptime = time.time() - float(str(started)) if started is not None else None
        return SandboxStatus(True, pid, port, f"http://127.0.0.1:{port}/fhir", uptime, _rss_mb(pid))

    def stop(self) -> bool:
        """SIGTERM the recorded server, SIGKILL after the grace period; False when nothing was running."""
        record = self._record()
        if record is None:
            return False
        pid = int(str(record["pid"]))
        if not _alive(pid):
            self._forget()
            return False
        if not _is_our_java(pid):
            raise SandboxError(
                "OV-0032",
                f"pid {pid} in {self.pid_file} is not our sandbox (its command line lacks {JAR_NAME}); "
                "refusing to signal it. Delete the stale pid file.",
            )
        os.kill(pid, signal.SIGTERM)
        if not self._wait_exit(pid, self._stop_grace_s):
            os.kill(pid, signal.SIGKILL)
            if not self._wait_exit(pid, 10.0):
                raise SandboxError("OV-0033", f"pid {pid} survived SIGKILL; check it with ps")
        self._forget()
        return True

    def _wait_exit(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._child is not None and self._child.pid == pid:
                if self._child.poll() is not None:  # reaps our own child, so no zombie lingers
                    return True
            elif not _alive(pid):
                return True
            time.sleep(0.2)
        return False

    def _forget(self) -> None:
        self.pid_file.unlink(missing_ok=True)
        self._child = None


def manager_from_settings(
    settings: Settings, *, port: int | None = None, database: Database | None = None
) -> SandboxManager:
    """The sandbox of this installation: state under ``{home}/sandbox``."""
    return SandboxManager(
        sandbox_dir=settings.sandbox_dir,
        state_dir=settings.home / "sandbox",
        port=port if port is not None else settings.sandbox_port,
        heap_mb=settings.sandbox_heap_mb,
        start_timeout_s=settings.sandbox_start_timeout_s,
        database=database if database is not None else settings.sandbox_database,
    )


def free_port() -> int:
    """A TCP port nobody listens on right now (for tests and parallel sandboxes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]  # the comm field may itself contain spaces or ')'


def _alive(pid: int) -> bool:
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def _is_our_java(pid: int) -> bool:
    if not _alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(arg.endswith(JAR_NAME.encode()) for arg in cmdline)


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None
