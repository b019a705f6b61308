"""Fault injection for the crash-safety tests: stop the sync process dead at a named point of a run.

Read from the environment by the composition root only (``cds.runner``); the sync itself merely calls
the checkpoint it was given. Never set these variables in production.

``ONCOVIGIL_FAULT_KILL_AT=STAGE:N``
    SIGKILL this process the N-th time the sync passes STAGE (no cleanup, no flush: a real crash).
``ONCOVIGIL_FAULT_PAUSE_AT=STAGE:N`` with ``ONCOVIGIL_FAULT_PAUSE_FILE=PATH``
    The N-th time, create ``PATH.paused`` and wait until ``PATH.resume`` exists (at most 10 minutes),
    so that a test can stop the FHIR server in the middle of a run.

Stages (see ``cds.sync``): ``pull`` (a note was read), ``infer`` (a batch left the extractors),
``write`` (a batch's FHIR transaction was confirmed, the state store not yet told),
``before-watermark`` (writes and state committed, the watermark not yet advanced), ``orders`` (the changed
orders' DetectedIssues written and withdrawn, the MedicationRequest watermark not yet advanced).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from cds.errors import ConfigError

STAGES = ("pull", "infer", "write", "before-watermark", "orders")
KILL_ENV = "ONCOVIGIL_FAULT_KILL_AT"
PAUSE_ENV = "ONCOVIGIL_FAULT_PAUSE_AT"
PAUSE_FILE_ENV = "ONCOVIGIL_FAULT_PAUSE_FILE"
PAUSE_LIMIT_S = 600.0

Checkpoint = Callable[[str], None]


def parse_point(variable: str, value: str) -> tuple[str, int]:
    stage, sep, count = value.strip().rpartition(":")
    if not sep or stage not in STAGES or not count.isdigit() or int(count) < 1:
        raise ConfigError(
            "OV-0009",
            f"{variable}={value!r} must look like STAGE:N with STAGE one of {', '.join(STAGES)} and N >= 1",
        )
    return stage, int(count)


class _Counter:
    """Counts passes per stage; stages run on the event loop and in the inference thread."""

    def __init__(self, stage: str, times: int, action: Callable[[], None]) -> None:
        self._stage = stage
        self._times = times
        self._action = action
        self._seen = 0
        self._lock = threading.Lock()

    def __call__(self, stage: str) -> None:
        if stage != self._stage:
            return
        with self._lock:
            self._seen += 1
            hit = self._seen == self._times
        if hit:
            self._action()


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _pause(flag: Path) -> Callable[[], None]:
    def wait() -> None:
        flag.with_name(flag.name + ".paused").write_text(str(os.getpid()))
        resume = flag.with_name(flag.name + ".resume")
        deadline = time.monotonic() + PAUSE_LIMIT_S
        while not resume.exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    return wait


def checkpoint_from_env(environ: Mapping[str, str]) -> Checkpoint | None:
    """The checkpoint the fault variables ask for, or None (the normal case)."""
    hooks: list[Checkpoint] = []
    if environ.get(KILL_ENV):
        stage, times = parse_point(KILL_ENV, environ[KILL_ENV])
        hooks.append(_Counter(stage, times, _kill))
    if environ.get(PAUSE_ENV):
        stage, times = parse_point(PAUSE_ENV, environ[PAUSE_ENV])
        flag = environ.get(PAUSE_FILE_ENV)
        if not flag:
            raise ConfigError("OV-0009", f"{PAUSE_ENV} needs {PAUSE_FILE_ENV} (the file the test watches)")
        hooks.append(_Counter(stage, times, _pause(Path(flag))))
    if not hooks:
        return None

    def checkpoint(stage: str) -> None:
        for hook in hooks:
            hook(stage)

    return checkpoint
