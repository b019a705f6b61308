"""``oncovigil fhir check`` and ``fhir load`` end to end, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sandbox


def oncovigil(args: list[str], base_url: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ONCOVIGIL_FHIR_BASE_URL": base_url,
        "ONCOVIGIL_HOME": str(home),
        "ONCOVIGIL_FHIR_MAX_RETRIES": "0",
    }
    command = [sys.executable, "-c", "from cds.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=home)


def test_fhir_check_reports_the_sandbox_as_capable(fhir_base_url: str, tmp_path: Path) -> None:
    result = oncovigil(["fhir", "check"], fhir_base_url, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "FHIR 4.0.1" in result.stdout and "ok:" in result.stdout


def test_fhir_check_on_a_dead_server_is_one_clear_line(tmp_path: Path) -> None:
    result = oncovigil(["fhir", "check"], "http://127.0.0.1:9/fhir", tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("oncovigil: OV-1020:")


def test_fhir_load_twice_creates_nothing_the_second_time(fhir_base_url: str, tmp_path: Path, run_id: str) -> None:
    folder = tmp_path / "ndjson"
    folder.mkdir()
    (folder / "Patient.000.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": f"{run_id}-p"}) + "\n")
    first = oncovigil(["fhir", "load", str(folder)], fhir_base_url, tmp_path)
    second = oncovigil(["fhir", "load", str(folder)], fhir_base_url, tmp_path)
    assert first.returncode == 0 and "total: sent 1, created 1" in first.stdout, first.stderr
    assert second.returncode == 0 and "total: sent 1, created 0" in second.stdout, second.stderr
    missing = oncovigil(["fhir", "load", str(tmp_path / "nope")], fhir_base_url, tmp_path)
    assert missing.returncode == 2 and "OV-1090" in missing.stderr
