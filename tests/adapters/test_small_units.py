"""Pure helpers: capability assessment, Retry-After, NDJSON reading, config checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters import (
    CapabilityError,
    FhirClientConfig,
    FhirConfigError,
    LoadInputError,
    assess,
    read_ndjson_dir,
)
from adapters.bulk_load import _checked
from adapters.retry import retry_after_s


def statement(version: str = "4.0.1", resources: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "fhirVersion": version,
        "software": {"name": "Tiny", "version": "1"},
        "rest": [{"mode": "server", "interaction": [{"code": "batch"}], "resource": resources or []}],
    }


def test_capability_report_names_everything_missing() -> None:
    docs = {
        "type": "DocumentReference",
        "interaction": [{"code": "read"}],
        "searchParam": [{"name": "patient"}],
    }
    report = assess(statement("4.3.0", [docs]))
    assert not report.ok
    text = "; ".join(report.missing)
    assert "FHIR version 4.0.x (server speaks 4.3.0)" in text
    assert "system interaction 'transaction'" in text
    assert "DocumentReference interaction 'search-type'" in text
    assert "DocumentReference search parameter 'date'" in text
    assert "resource type AdverseEvent" in text
    assert any("_lastUpdated" in w for w in report.warnings)  # _-parameters only warn
    with pytest.raises(CapabilityError) as caught:
        report.raise_if_missing()
    assert caught.value.code == "OV-1060" and "Tiny 1" in str(caught.value)


def test_retry_after_forms() -> None:
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s("7") == 7.0
    assert retry_after_s("Mon, 01 Jan 2024 12:00:30 GMT", now=now) == 30.0
    assert retry_after_s("Mon, 01 Jan 2024 11:00:00 GMT", now=now) == 0.0
    assert retry_after_s("soon") is None and retry_after_s(None) is None


def test_config_is_checked() -> None:
    with pytest.raises(FhirConfigError) as caught:
        FhirClientConfig("localhost:8080/fhir")
    assert caught.value.code == "OV-1001" and caught.value.user_error
    with pytest.raises(FhirConfigError):
        FhirClientConfig("http://h/fhir", page_size=0)
    assert FhirClientConfig("http://H:1/fhir/").base == "http://H:1/fhir"


def test_ndjson_dir_in_dependency_order(tmp_path: Path) -> None:
    def write(name: str, rows: list[dict[str, Any]]) -> None:
        (tmp_path / name).write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")

    write("DocumentReference.000.ndjson", [{"resourceType": "DocumentReference", "id": "d1"}])
    write("Patient.000.ndjson", [{"resourceType": "Patient", "id": "p1"}])
    write("Organization.000.ndjson", [{"resourceType": "Organization", "id": "o1"}])
    write("log.ndjson", [{"eventId": "kickoff"}])
    assert [r["resourceType"] for r in read_ndjson_dir(tmp_path)] == ["Organization", "Patient", "DocumentReference"]
    (tmp_path / "Encounter.000.ndjson").write_text('{"resourceType": "Encounter", "id": "e1"}\n{broken\n')
    with pytest.raises(LoadInputError) as caught:
        list(read_ndjson_dir(tmp_path))
    assert caught.value.code == "OV-1091" and "Encounter.000.ndjson:2" in str(caught.value)


def test_bulk_load_refuses_what_cannot_be_idempotent() -> None:
    with pytest.raises(LoadInputError) as numeric:
        _checked({"resourceType": "Patient", "id": "123"})
    assert numeric.value.code == "OV-1094"
    with pytest.raises(LoadInputError) as missing:
        _checked({"resourceType": "Patient"})
    assert missing.value.code == "OV-1093"
