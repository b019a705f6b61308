"""Bad bulk-load input and bad client configuration become typed, coded errors, never internal ones."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import pytest

from adapters import FhirClientConfig, FhirConfigError, LoadInputError, read_ndjson_dir
from adapters.bulk_notes import bulk_notes_and_conditions

PATIENT = json.dumps({"resourceType": "Patient", "id": "p1"})


def _write(folder: Path, name: str, body: bytes | str) -> Path:
    file = folder / name
    if isinstance(body, str):
        file.write_text(body, encoding="utf-8")
    else:
        file.write_bytes(body)
    return file


# --- 1. NDJSON files the reader cannot take


def test_non_utf8_line_is_named(tmp_path: Path) -> None:
    _write(tmp_path, "Patient.000.ndjson", PATIENT.encode() + b"\n" + b'{"resourceType": "Patient", "id": "\xff"}\n')
    with pytest.raises(LoadInputError, match=r"OV-1096: Patient\.000\.ndjson:2 is not UTF-8"):
        list(read_ndjson_dir(tmp_path))


def test_a_folder_named_like_an_ndjson_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "Patient.1.ndjson").mkdir()
    with pytest.raises(LoadInputError, match=r"OV-1096: Patient\.1\.ndjson cannot be read .*a folder"):
        list(read_ndjson_dir(tmp_path))


def test_number_over_the_digit_limit_is_named(tmp_path: Path) -> None:
    _write(
        tmp_path, "Observation.ndjson", PATIENT + "\n" + '{"resourceType": "Observation", "v": ' + "9" * 5000 + "}\n"
    )
    with pytest.raises(LoadInputError, match=r"OV-1097: Observation\.ndjson:2 has a number too long"):
        list(read_ndjson_dir(tmp_path))


def test_deep_nesting_is_named(tmp_path: Path) -> None:
    _write(tmp_path, "Patient.ndjson", "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(LoadInputError, match=r"OV-1097: Patient\.ndjson:1 nests too deeply"):
        list(read_ndjson_dir(tmp_path))


def _document(content: Any, **extra: Any) -> str:
    return json.dumps({"resourceType": "DocumentReference", "id": "d1", "content": content, **extra}) + "\n"


@pytest.mark.parametrize(
    "content",
    [
        "abc",
        ["abc"],
        [{"attachment": "abc"}],
        [{"attachment": {"data": 5}}],
        [{"attachment": {"data": "aGk=", "contentType": 7}}],
    ],
    ids=["string", "string-item", "string-attachment", "numeric-data", "numeric-content-type"],
)
def test_malformed_document_content_is_named(tmp_path: Path, content: Any) -> None:
    _write(tmp_path, "DocumentReference.ndjson", PATIENT + "\n" + _document(content))
    with pytest.raises(LoadInputError, match=r"OV-1098: DocumentReference\.ndjson:2: DocumentReference\.content"):
        bulk_notes_and_conditions(tmp_path)


def test_malformed_document_fields_are_named(tmp_path: Path) -> None:
    data = base64.b64encode(b"Rash after cetuximab.").decode()
    good = [{"attachment": {"data": data, "contentType": "text/plain"}}]
    _write(tmp_path, "DocumentReference.ndjson", _document(good) + _document(good, type="progress note"))
    with pytest.raises(LoadInputError, match=r"OV-1098: DocumentReference\.ndjson:2: DocumentReference has a field"):
        bulk_notes_and_conditions(tmp_path)


def test_well_formed_documents_still_read(tmp_path: Path) -> None:
    data = base64.b64encode(b"Rash after cetuximab.").decode()
    by_url = [{"attachment": {"url": "Binary/b1"}}]
    inline = [{"attachment": {"data": data, "contentType": "text/plain"}}]
    _write(tmp_path, "DocumentReference.ndjson", _document(by_url) + _document(inline) + _document(None))
    notes, conditions = bulk_notes_and_conditions(tmp_path)
    assert [n.text for n in notes] == ["Rash after cetuximab."] and conditions == []


# --- 2. a folder with nothing to load


def test_empty_folder_is_refused_for_loading(tmp_path: Path) -> None:
    _write(tmp_path, "log.ndjson", '{"eventId": "kickoff"}\n')
    _write(tmp_path, "Patient.000.ndjson", "\n\n")
    with pytest.raises(LoadInputError, match=r"OV-1099: .* has no FHIR resources") as caught:
        list(read_ndjson_dir(tmp_path))
    assert str(tmp_path) in str(caught.value) and caught.value.user_error


def test_empty_folder_gives_no_notes_for_evaluation(tmp_path: Path) -> None:
    # the phenotype evaluation refuses "no notes" itself (OV-0151), with a message about notes
    assert bulk_notes_and_conditions(tmp_path) == ([], [])


# --- 3. client configuration


@pytest.mark.parametrize(
    "url",
    ["http://[::1", "http://h:99999/fhir", "http://h:abc/fhir", "http://h:0/fhir", "http://:8080/fhir", "ftp://h/fhir"],
)
def test_bad_base_url_is_a_config_error(url: str) -> None:
    with pytest.raises(FhirConfigError, match="OV-1001: FHIR base URL") as caught:
        FhirClientConfig(url)
    assert caught.value.user_error


def test_good_base_urls_pass() -> None:
    assert FhirClientConfig("http://[::1]:8080/fhir/").base == "http://[::1]:8080/fhir"
    assert FhirClientConfig("https://h/fhir").origin == "https://h"


@pytest.mark.parametrize("name", ["connect_timeout_s", "read_timeout_s", "write_timeout_s", "pool_timeout_s"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 0.0, -1.0])
def test_timeouts_must_be_finite_and_positive(name: str, value: float) -> None:
    with pytest.raises(FhirConfigError, match=f"OV-1002: .*{name}="):
        FhirClientConfig("http://h/fhir", **{name: value})


@pytest.mark.parametrize("name", ["backoff_base_s", "backoff_max_s", "max_retry_after_s"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -0.5])
def test_retry_waits_must_be_finite_and_not_negative(name: str, value: float) -> None:
    with pytest.raises(FhirConfigError, match=f"OV-1002: .*{name}="):
        FhirClientConfig("http://h/fhir", **{name: value})


def test_zero_waits_and_retries_are_allowed() -> None:
    FhirClientConfig("http://h/fhir", max_retries=0, backoff_base_s=0.0, backoff_max_s=0.0, max_retry_after_s=0.0)


@pytest.mark.parametrize("retries", [-1, 21, 1_000_000_000])
def test_max_retries_has_a_ceiling(retries: int) -> None:
    with pytest.raises(FhirConfigError, match=r"OV-1002: .*max_retries=.* within 0\.\.20"):
        FhirClientConfig("http://h/fhir", max_retries=retries)
