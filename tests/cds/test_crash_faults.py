"""The fault hook behind the crash tests: parsing, a real SIGKILL at the N-th pass, the pause handshake."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from cds.errors import ConfigError
from cds.faults import checkpoint_from_env

CHILD = """
import sys
from cds.faults import checkpoint_from_env
check = checkpoint_from_env({"ONCOVIGIL_FAULT_KILL_AT": sys.argv[1]})
for stage in ("pull", "infer", "pull", "infer", "pull", "infer"):
    print(stage, flush=True)
    check(stage)
print("finished", flush=True)
"""


@pytest.mark.parametrize("value", ["pull", "pull:0", "nowhere:2", "infer:x", ":3"])
def test_a_bad_fault_point_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="OV-0009"):
        checkpoint_from_env({"ONCOVIGIL_FAULT_KILL_AT": value})


def test_no_fault_variables_means_no_checkpoint() -> None:
    assert checkpoint_from_env({}) is None
    with pytest.raises(ConfigError, match="ONCOVIGIL_FAULT_PAUSE_FILE"):
        checkpoint_from_env({"ONCOVIGIL_FAULT_PAUSE_AT": "infer:1"})


def test_the_process_dies_by_sigkill_at_the_nth_pass_of_its_stage() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD, "infer:2"], capture_output=True, text=True, timeout=60)
    assert done.returncode == -9
    assert done.stdout.split() == ["pull", "infer", "pull", "infer"]


def test_the_pause_waits_for_the_resume_file(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    env = {"ONCOVIGIL_FAULT_PAUSE_AT": "write:1", "ONCOVIGIL_FAULT_PAUSE_FILE": str(flag)}
    code = (
        "from cds.faults import checkpoint_from_env\n"
        f"check = checkpoint_from_env({env!r})\n"
        "check('pull'); check('write'); print('resumed', flush=True)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "flag.paused").exists():
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
        time.sleep(0.5)
        assert child.poll() is None, "the checkpoint did not wait"
        (tmp_path / "flag.resume").touch()
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0 and out.strip() == "resumed"
