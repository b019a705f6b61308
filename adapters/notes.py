"""DocumentReference -> Note, and the incremental pull of notes by ``_lastUpdated``.

Text comes from ``attachment.data`` (base64) or ``attachment.url`` (a Binary on the server, or an absolute
URL on a trusted origin, fetched with the same credentials). A note we cannot read (unsupported content
type, unknown charset, missing attachment) is skipped with a counted, logged reason; a transient failure
to fetch it is raised, so the caller keeps its watermark and loses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx

from adapters.client import FhirClient
from adapters.errors import FhirNotFoundError, FhirProtocolError
from adapters.fhirjson import codings, reference_id
from adapters.fhirtime import format_instant, parse_datetime
from adapters.records import Note, PullStats
from adapters.text import TextSkip, decode_base64, media_type, to_text

log = logging.getLogger(__name__)

Resource = dict[str, Any]
_PREFERENCE = ("text/plain", "text/markdown", "text/html")


def _pick_attachment(document: Resource) -> Resource:
    attachments: list[Resource] = [
        c["attachment"]
        for c in document.get("content") or []
        if isinstance(c, dict) and isinstance(c.get("attachment"), dict)
    ]
    if not attachments:
        raise TextSkip("no-attachment")
    for wanted in _PREFERENCE:
        for attachment in attachments:
            if media_type(attachment.get("contentType"))[0] == wanted and (
                attachment.get("data") or attachment.get("url")
            ):
                return attachment
    first = media_type(attachments[0].get("contentType"))[0] or "missing"
    raise TextSkip(f"content-type:{first}")


async def _attachment_bytes(attachment: Resource, client: FhirClient) -> tuple[bytes, str | None]:
    content_type = attachment.get("contentType")
    limit = client.config.max_attachment_bytes
    declared = attachment.get("size")
    if isinstance(declared, int) and declared > limit:
        raise TextSkip("too-large")
    if attachment.get("data"):
        raw = decode_base64(str(attachment["data"]))
    else:
        try:
            response = await client.fetch(str(attachment["url"]), accept="application/fhir+json, */*;q=0.5")
        except FhirNotFoundError as exc:
            raise TextSkip("attachment-not-found") from exc
        except FhirProtocolError as exc:
            if exc.code == "OV-1054":
                raise TextSkip("attachment-untrusted-origin") from exc
            raise
        raw, content_type = _unwrap_binary(response, content_type)
    if len(raw) > limit:
        raise TextSkip("too-large")
    return raw, content_type


def _unwrap_binary(response: httpx.Response, content_type: str | None) -> tuple[bytes, str | None]:
    """A FHIR Binary (JSON) gives its decoded data and contentType; anything else is the raw body."""
    served = media_type(response.headers.get("content-type"))[0]
    if served in ("application/fhir+json", "application/json"):
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("resourceType") == "Binary":
            return decode_base64(str(body.get("data") or "")), body.get("contentType") or content_type
    return response.content, content_type or response.headers.get("content-type")


def note_fields(document: Resource) -> dict[str, Any]:
    """Everything of a Note except its text (pure)."""
    doc_type = document.get("type")
    coding = next(codings(doc_type), {})
    context = document.get("context") or {}
    encounters = context.get("encounter") or []
    meta = document.get("meta") or {}
    return {
        "id": str(document.get("id")),
        "patient_id": reference_id(document.get("subject"), "Patient"),
        "encounter_id": reference_id(encounters[0], "Encounter") if encounters else None,
        "date": parse_datetime(document.get("date")),
        "type_code": coding.get("code"),
        "type_display": coding.get("display") or (doc_type or {}).get("text"),
        "status": str(document.get("status", "unknown")),
        "version_id": meta.get("versionId"),
        "last_updated": parse_datetime(meta.get("lastUpdated")),
        "doc_status": document.get("docStatus"),
    }


async def note_from_document(document: Resource, client: FhirClient) -> Note:
    """Map one DocumentReference; raises TextSkip when its text cannot be read."""
    attachment = _pick_attachment(document)
    raw, content_type = await _attachment_bytes(attachment, client)
    text = to_text(raw, content_type)
    if not text.strip():
        raise TextSkip("empty-text")
    return Note(text=text, content_type=media_type(content_type)[0] or "text/plain", **note_fields(document))


def since_params(since: datetime | None) -> list[tuple[str, str]]:
    """``_lastUpdated=gt<watermark>`` sorted oldest first, so a watermark taken mid-way is still safe."""
    params = [("_sort", "_lastUpdated")]
    if since is not None:
        params.append(("_lastUpdated", f"gt{format_instant(since)}"))
    return params


async def last_updated_bounds(
    client: FhirClient,
    since: datetime | None,
    resource_type: str = "DocumentReference",
    params: list[tuple[str, str]] | None = None,
) -> tuple[datetime | None, datetime | None]:
    """The oldest and newest ``meta.lastUpdated`` of the resources changed after ``since`` ((None, None): none).

    Two one-entry searches, so a caller can split a backfill into date windows before reading anything;
    ``params`` narrows them (``[("type:not", "ade-summary")]``).
    """
    bounds: list[datetime | None] = []
    for order in ("_lastUpdated", "-_lastUpdated"):
        query = [("_sort", order), *[p for p in since_params(since) if p[0] != "_sort"], *(params or [])]
        found: datetime | None = None
        async for bundle in client.search_bundles(resource_type, query, page_size=1, max_pages=1):
            for entry in bundle.get("entry") or []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(resource, dict) and resource.get("resourceType") == resource_type:
                    found = parse_datetime((resource.get("meta") or {}).get("lastUpdated"))
                    break
        bounds.append(found)
    return bounds[0], bounds[1]


async def pull_notes(
    client: FhirClient,
    since: datetime | None,
    *,
    current_only: bool = True,
    stats: PullStats | None = None,
    params: list[tuple[str, str]] | None = None,
) -> AsyncIterator[Note]:
    """Notes changed after ``since`` (all when None), oldest change first, following ``next`` links.

    With ``current_only`` superseded and entered-in-error documents are counted as skipped, not yielded.
    ``params`` narrows the search (``[("patient", "Patient/1")]``).
    """
    tally = stats if stats is not None else PullStats()
    query = [*since_params(since), *(params or [])]
    async for bundle in client.search_bundles("DocumentReference", query):
        tally.pages += 1
        for entry in bundle.get("entry") or []:
            document = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(document, dict) or document.get("resourceType") != "DocumentReference":
                continue
            fields = note_fields(document)
            tally.saw(fields["last_updated"])
            if current_only and (fields["status"] != "current" or fields["doc_status"] == "entered-in-error"):
                withdrawn = fields["doc_status"] == "entered-in-error"
                tally.skip(f"status:{'entered-in-error' if withdrawn else fields['status']}")
                continue
            try:
                note = await note_from_document(document, client)
            except TextSkip as skip:
                tally.skip(skip.reason)
                log.info("note skipped", extra={"document_id": fields["id"], "reason": skip.reason})
                continue
            tally.yielded += 1
            yield note
    if tally.skipped:
        log.info(
            "notes pulled",
            extra={"seen": tally.seen, "yielded": tally.yielded, "skipped": dict(tally.skipped)},
        )
