"""Our URIs and the deterministic identifiers of everything we write.

The same finding always maps to the same identifier value and logical id, so a re-run finds what the
last run wrote instead of writing it again. Logical ids start with letters because HAPI refuses purely
numeric client-assigned ids, and stay within FHIR's 64-character id limit.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any
from urllib.parse import quote

OV = "https://oncovigil.org/fhir"

SID_ADVERSE_EVENT = f"{OV}/sid/adverse-event"
SID_DETECTED_ISSUE = f"{OV}/sid/detected-issue"
SID_ADE_SUMMARY = f"{OV}/sid/ade-summary"
SID_DEVICE = f"{OV}/sid/device"
SID_PROVENANCE = f"{OV}/sid/provenance"

EXT_CTCAE_GRADE = f"{OV}/StructureDefinition/ctcae-grade"
EXT_EVIDENCE = f"{OV}/StructureDefinition/evidence"
EXT_SUSPECT_REQUEST = f"{OV}/StructureDefinition/suspect-medication-request"
EXT_MODEL_SCORE = f"{OV}/StructureDefinition/model-score"
# R4 AdverseEvent has no status; FHIR's cross-version extension carries R5's (entered-in-error withdraws one)
EXT_R5_ADVERSE_EVENT_STATUS = "http://hl7.org/fhir/5.0/StructureDefinition/extension-AdverseEvent.status"
ENTERED_IN_ERROR = "entered-in-error"

CS_TAGS = f"{OV}/CodeSystem/tags"
TAG_GENERATED = "generated"
CS_DOCUMENT_TYPE = f"{OV}/CodeSystem/document-type"
CS_DETECTED_ISSUE = f"{OV}/CodeSystem/detected-issue"

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
MEDDRA = "https://www.meddra.org"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, OV)


def digest(*parts: str) -> str:
    """A stable hex digest of the parts (order matters; separators cannot collide)."""
    return hashlib.sha256(json.dumps(list(parts), ensure_ascii=False).encode("utf-8")).hexdigest()


def content_digest(resource: dict[str, Any]) -> str:
    """A digest of a resource's content, independent of key order."""
    return hashlib.sha256(json.dumps(resource, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def logical_id(prefix: str, key: str) -> str:
    """``ov-<prefix>-<32 hex>``: deterministic, never numeric, at most 64 characters."""
    return f"ov-{prefix}-{digest(prefix, key)[:32]}"


def placeholder(kind: str, key: str) -> str:
    """A deterministic ``urn:uuid`` fullUrl for a transaction entry."""
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{kind}|{key}')}"


def token_query(param: str, system: str, value: str) -> str:
    """A token search ``param=system|value`` for ``ifNoneExist`` and conditional URLs, percent-encoded."""
    return f"{param}={quote(system, safe=':/')}|{quote(value, safe='')}"


def device_key(model_name: str, model_version: str) -> str:
    return f"oncovigil|{model_name}|{model_version}"
