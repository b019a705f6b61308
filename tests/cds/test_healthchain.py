"""A third-party CDS Hooks client against the real service: HealthChain's ``SandboxClient`` and its
``healthchain sandbox run`` CLI call our ``patient-view`` service and get valid cards.

HealthChain sends no JWT and no ``fhirServer``, so the service runs in development mode here
(``environment=development``, ``cds_require_jwt=false``) and the prefetch must carry our keys.
HealthChain 0.16.1 pins fastapi<0.138, httpx<0.28 and fhir.resources<8.2, older than ours, so it lives in
its own virtualenv (``var/healthchain-venv``, or ``ONCOVIGIL_HEALTHCHAIN_VENV``), created here on first use
from PyPI, and is driven by subprocess: it never touches the project's ``.venv``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cds_service_kit import (
    VIEW,
    Scenario,
    Service,
    ehr_prefetch,
    make_settings,
    prepare_scenario,
    running_service,
    spec_problems,
)

REPO = Path(__file__).resolve().parents[2]
HEALTHCHAIN_VERSION = "0.16.1"
HEALTHCHAIN = f"healthchain[sandbox]=={HEALTHCHAIN_VERSION}"  # [sandbox] brings Faker for its synthetic requests

CLIENT_SCRIPT = r'''
import json, sys
from healthchain.models.hooks.patientview import PatientViewContext
from healthchain.models.requests.cdsrequest import CDSRequest
from healthchain.models.responses.cdsresponse import CDSResponse
from healthchain.sandbox import SandboxClient

url, prefetch_file, patient_id = sys.argv[1:4]
prefetch = json.load(open(prefetch_file))
client = SandboxClient(url=url, workflow="patient-view")
context = PatientViewContext(userId="Practitioner/hc-tester", patientId=patient_id)
client.requests.append(CDSRequest(hook="patient-view", context=context, prefetch=prefetch))
client.requests.append(CDSRequest(hook="patient-view", context=context))  # no prefetch, no fhirServer
responses = client.send_requests()
# send_requests falls back to the raw JSON when its model refuses it: validate explicitly too.
strict = [CDSResponse(**r).model_dump(mode="json", exclude_none=True) if r else None for r in responses]
print(json.dumps({"responses": responses, "validated": strict}))
'''


def _strict() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("ONCOVIGIL_REQUIRE_SANDBOX") == "1"


@pytest.fixture(scope="session")
def healthchain_venv() -> Path:
    """HealthChain in a virtualenv of its own, installed from PyPI when missing."""
    venv = Path(os.environ.get("ONCOVIGIL_HEALTHCHAIN_VENV", REPO / "var" / "healthchain-venv"))
    python = venv / "bin" / "python"
    code = "import importlib.metadata as m, faker, healthchain.sandbox; print(m.version('healthchain'))"
    probe = [str(python), "-c", code]
    if python.exists():
        found = subprocess.run(probe, capture_output=True, text=True, timeout=120)
        if found.returncode == 0 and found.stdout.strip() == HEALTHCHAIN_VERSION:
            return venv
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True,
                       timeout=300)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", HEALTHCHAIN],
                       check=True, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        reason = f"could not install {HEALTHCHAIN} into {venv}: {exc} {str(detail)[-1000:]}"
        if _strict():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return venv


@pytest.fixture(scope="module")
def sc(seeded_sandbox: Any) -> Scenario:
    return prepare_scenario(seeded_sandbox.base_url)


@pytest.fixture(scope="module")
def dev_service(tmp_path_factory: pytest.TempPathFactory, sc: Scenario) -> Iterator[Service]:
    settings = make_settings(
        tmp_path_factory.mktemp("healthchain"), [], environment="development", cds_require_jwt=False,
        cds_trusted_issuers_file=None,
    )
    with running_service(settings) as svc:
        yield svc


@pytest.fixture(scope="module")
def prefetch_file(tmp_path_factory: pytest.TempPathFactory, seeded_sandbox: Any, sc: Scenario) -> Path:
    """Our prefetch keys read from the sandbox, as HealthChain's ``--from-path`` takes it."""
    path = tmp_path_factory.mktemp("hc-prefetch") / "prefetch.json"
    path.write_text(json.dumps(ehr_prefetch(seeded_sandbox.base_url, sc.patient)))
    return path


def assert_ade_card(doc: dict[str, Any], sc: Scenario) -> None:
    assert spec_problems(doc) == []
    name = sc.ade_drug.display.casefold()
    (card,) = [c for c in doc["cards"] if name in c["summary"].casefold()]
    assert card["indicator"] == "critical"
    assert card["source"]["label"] == "OncoVigil" and "Acute kidney injury" in card["detail"]


def test_sandbox_client_gets_valid_cards(
    healthchain_venv: Path, dev_service: Service, prefetch_file: Path, sc: Scenario, tmp_path: Path
) -> None:
    script = tmp_path / "hc_client.py"
    script.write_text(CLIENT_SCRIPT)
    run = subprocess.run(
        [str(healthchain_venv / "bin" / "python"), str(script), dev_service.url(VIEW), str(prefetch_file), sc.patient],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    with_prefetch, without = out["responses"]
    assert_ade_card(with_prefetch, sc)
    assert out["validated"][0]["cards"]  # HealthChain's own CDSResponse model accepts our cards
    # Without prefetch and without fhirServer the service cannot read the record: 412, which SandboxClient
    # logs and reports as an empty response (never a 500, never an empty card list pretending "no advice").
    assert without == {}
    assert "Error response 412" in run.stderr


def test_cli_sandbox_run_gets_valid_cards(
    healthchain_venv: Path, dev_service: Service, prefetch_file: Path, sc: Scenario, tmp_path: Path
) -> None:
    """``healthchain sandbox run --from-path``: it invents the context's patientId, the prefetch decides."""
    out_dir = tmp_path / "hc-output"
    run = subprocess.run(
        [str(healthchain_venv / "bin" / "healthchain"), "sandbox", "run", "--url", dev_service.url(VIEW),
         "--workflow", "patient-view", "--from-path", str(prefetch_file), "--output", str(out_dir)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "1/1 successful" in run.stdout, run.stdout[-2000:]
    (saved,) = sorted((out_dir / "responses").glob("*.json"))
    responses = json.loads(saved.read_text())
    assert_ade_card(responses[0] if isinstance(responses, list) else responses, sc)


def test_cli_synthetic_requests_are_412_not_errors(
    healthchain_venv: Path, dev_service: Service, tmp_path: Path
) -> None:
    """Its synthetic patient-view requests prefetch only patient/encounter/condition and send no fhirServer:
    the service answers 412 (what it needs is named), and HealthChain counts them as failed."""
    run = subprocess.run(
        [str(healthchain_venv / "bin" / "healthchain"), "sandbox", "run", "--url", dev_service.url(VIEW),
         "--workflow", "patient-view", "--size", "2", "--no-save"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "0/2 successful" in run.stdout, run.stdout[-2000:]
    assert run.stderr.count("Error response 412") == 2, run.stderr[-3000:]
    assert "prefetch.adverseEvents" in run.stderr
