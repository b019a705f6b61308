"""Small readers for raw FHIR JSON: references, codings, extensions (pure functions)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Resource = dict[str, Any]


def reference_id(reference: object, resource_type: str | None = None) -> str | None:
    """The logical id in ``{"reference": "Patient/1"}`` (relative, absolute or versioned); None otherwise.

    With ``resource_type``, a reference to another type gives None. Contained (``#x``), ``urn:uuid`` and
    conditional (``Type?identifier=...``) references have no id of their own here.
    """
    if not isinstance(reference, dict):
        return None
    text = reference.get("reference")
    if not isinstance(text, str) or not text or text.startswith(("#", "urn:")) or "?" in text:
        return None
    parts = text.rstrip("/").split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2:
        return None
    rtype, rid = parts[-2], parts[-1]
    if resource_type is not None and rtype != resource_type:
        return None
    return rid


def reference_text(reference: object) -> str | None:
    if isinstance(reference, dict) and isinstance(reference.get("reference"), str):
        return str(reference["reference"])
    return None


def codings(concept: object) -> Iterator[Resource]:
    if isinstance(concept, dict):
        for coding in concept.get("coding") or []:
            if isinstance(coding, dict):
                yield coding


def coding_in(concept: object, system: str) -> Resource | None:
    return next((c for c in codings(concept) if c.get("system") == system), None)


def first_code(concept: object) -> tuple[str | None, str | None, str | None]:
    """(system, code, display) of the first coding, display falling back to the concept's text."""
    coding = next(codings(concept), None)
    text = concept.get("text") if isinstance(concept, dict) else None
    if coding is None:
        return None, None, text if isinstance(text, str) else None
    display = coding.get("display") or text
    return coding.get("system"), coding.get("code"), display


def concept_text(concept: object) -> str | None:
    """A readable label for a CodeableConcept: its text, else the first coding's display or code."""
    if not isinstance(concept, dict):
        return None
    if isinstance(concept.get("text"), str) and concept["text"]:
        return str(concept["text"])
    for coding in codings(concept):
        label = coding.get("display") or coding.get("code")
        if label:
            return str(label)
    return None


def status_code(concept: object) -> str | None:
    """The code of a status CodeableConcept (clinicalStatus, verificationStatus)."""
    coding = next(codings(concept), None)
    return str(coding["code"]) if coding is not None and coding.get("code") else None


def extension(resource: object, url: str) -> Resource | None:
    if not isinstance(resource, dict):
        return None
    return next((e for e in resource.get("extension") or [] if isinstance(e, dict) and e.get("url") == url), None)


def meta_value(resource: Resource, key: str) -> str | None:
    meta = resource.get("meta") or {}
    value = meta.get(key) if isinstance(meta, dict) else None
    return str(value) if value is not None else None


def has_tag(resource: Resource, system: str, code: str) -> bool:
    meta = resource.get("meta") or {}
    return any(
        t.get("system") == system and t.get("code") == code for t in meta.get("tag") or [] if isinstance(t, dict)
    )
