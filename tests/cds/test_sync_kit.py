"""Helpers (no tests) for the sync, crash-safety and scheduling tests: real models, CLI runs, server snapshots."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from adapters import FhirClient
from adapters.identifiers import CS_TAGS, SID_PROVENANCE, TAG_GENERATED

REPO = Path(__file__).resolve().parents[2]
OV = str(Path(sys.executable).parent / "oncovigil")
GENERATED = f"{CS_TAGS}|{TAG_GENERATED}"
# what the sync writes; deleted in this order so nothing still references what goes
GENERATED_TYPES = ("Provenance", "AdverseEvent", "DetectedIssue", "Observation", "DocumentReference", "Device")


def strict() -> bool:
    """CI (and `make test`, which builds the models first) turns a missing prerequisite into a failure."""
    return bool(os.environ.get("CI")) or "1" in (
        os.environ.get("ONCOVIGIL_REQUIRE_SANDBOX"),
        os.environ.get("ONCOVIGIL_REQUIRE_MODELS"),
    )


def unavailable(reason: str) -> NoReturn:
    if strict():
        pytest.fail(f"{reason} (required here: CI, ONCOVIGIL_REQUIRE_SANDBOX=1 or ONCOVIGIL_REQUIRE_MODELS=1)",
                    pytrace=False)
    pytest.skip(reason)


def real_models_dir() -> Path:
    """The models `oncovigil models build` materialised ({models_dir}); ONCOVIGIL_TEST_MODELS_DIR overrides."""
    from cds.settings import load_settings

    override = os.environ.get("ONCOVIGIL_TEST_MODELS_DIR")
    models = Path(override) if override else load_settings().resolved_models_dir
    if not (models / "ade" / "model_card.json").is_file():
        unavailable(f"no ADE extractor built in {models} (run `oncovigil models build`); "
                    "the sync tests run the real models")
    return models


def cli_env(home: Path, **settings: str) -> dict[str, str]:
    """A clean environment for `oncovigil`: no inherited ONCOVIGIL_ settings, CPU provider.

    Logs stay at the default INFO level, the one operators run, so that every log call really runs.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCOVIGIL_")}
    env.update({"ONCOVIGIL_HOME": str(home), "ONCOVIGIL_ONNX_PROVIDERS": '["CPUExecutionProvider"]',
                "HF_HUB_OFFLINE": "1"})
    if os.environ.get("ONCOVIGIL_TEST_LOG_LEVEL"):
        env["ONCOVIGIL_LOG_LEVEL"] = os.environ["ONCOVIGIL_TEST_LOG_LEVEL"]
    env.update({f"ONCOVIGIL_{k.upper()}": v for k, v in settings.items()})
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OV, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _identity(resource: dict[str, Any]) -> str:
    """The deterministic identity of one generated resource (what a re-run must find, not re-create)."""
    if resource["resourceType"] == "Provenance":
        tags = (resource.get("meta") or {}).get("tag") or []
        target = resource["target"][0]["reference"]
        # the target's type, not its id: summaries get server-assigned ids
        return f"{next(t['code'] for t in tags if t.get('system') == SID_PROVENANCE)}|{target.split('/')[0]}"
    identifier = resource["identifier"]  # a list, except R4 AdverseEvent's single Identifier
    first = identifier[0] if isinstance(identifier, list) else identifier
    return f"{resource['id'] if resource['resourceType'] == 'AdverseEvent' else ''}|{first['value']}"


async def generated_snapshot(client: FhirClient) -> dict[str, Counter[str]]:
    """Every resource the sync wrote (our tag), per type: identity -> how many resources carry it."""
    snapshot: dict[str, Counter[str]] = {}
    for rtype in GENERATED_TYPES:
        found: Counter[str] = Counter()
        async for resource in client.search(rtype, [("_tag", GENERATED)], page_size=200):
            found[_identity(resource)] += 1
        snapshot[rtype] = found
    return snapshot


async def generated_counts(client: FhirClient) -> dict[str, int]:
    return {rtype: await client.count(rtype, [("_tag", GENERATED)]) for rtype in GENERATED_TYPES}


def duplicates(snapshot: dict[str, Counter[str]]) -> dict[str, list[str]]:
    return {t: [k for k, n in c.items() if n > 1] for t, c in snapshot.items() if any(n > 1 for n in c.values())}


def delete_generated(base_url: str) -> None:
    """Remove everything the sync wrote (conditional deletes; the sandbox allows multiple matches)."""
    with httpx.Client(timeout=120) as http:
        for rtype in GENERATED_TYPES:
            response = http.delete(f"{base_url}/{rtype}", params={"_tag": GENERATED})
            assert response.status_code in (200, 204), (rtype, response.status_code, response.text[:500])
