"""Pure builders of OncoVigil's cards from plain inputs that ``cds`` passes (no FHIR parsing here).

uuids are deterministic per (hookInstance, card key), so a retried call yields the same card ids and
feedback can be matched to the card that was shown.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from hooks.cards import SUMMARY_MAX_CHARS, Action, Card, Source, Suggestion
from hooks.wire import Coding

SOURCE_LABEL = "OncoVigil"
TOPIC_SYSTEM = "https://oncovigil.org/fhir/CodeSystem/card-topic"
OVERRIDE_SYSTEM = "https://oncovigil.org/fhir/CodeSystem/override-reason"
_NAMESPACE = uuid.UUID("0b9c6a52-7d51-4a8e-9f0e-3c1c2f5e8a11")
_LABEL_MAX = 200
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|#])")

OVERRIDE_REASONS: tuple[Coding, ...] = (
    Coding(system=OVERRIDE_SYSTEM, code="benefit-outweighs-risk", display="Benefit outweighs risk"),
    Coding(system=OVERRIDE_SYSTEM, code="patient-tolerating", display="Patient already tolerating"),
    Coding(system=OVERRIDE_SYSTEM, code="not-applicable", display="Not applicable to this patient"),
)


@dataclass(frozen=True)
class AlternativeOrder:
    """A replacement order: its display name and the full FHIR resource to create."""

    display: str
    resource: Mapping[str, Any]


@dataclass(frozen=True)
class PriorEvent:
    """A recorded adverse event: term, CTCAE grade (None when ungraded), when, and the note it came from."""

    term: str
    grade: int | None = None
    when: date | str | None = None
    note_ref: str | None = None


def stable_uuid(hook_instance: str, key: str) -> str:
    """Same (hookInstance, key) -> same uuid."""
    return str(uuid.uuid5(_NAMESPACE, f"{hook_instance}\x1f{key}"))


def topic(code: str, display: str) -> Coding:
    return Coding(system=TOPIC_SYSTEM, code=code, display=display)


def source(topic_code: str, topic_display: str) -> Source:
    return Source(label=SOURCE_LABEL, topic=topic(topic_code, topic_display))


def fit(text: str, limit: int = SUMMARY_MAX_CHARS) -> str:
    """One line, shortened with an ellipsis to ``limit`` characters (default: the spec's < 140)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def md(text: str) -> str:
    """Inline text safe inside GitHub Markdown (tables included)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def draft_reference(resource_id: str) -> str:
    """``MedicationRequest/<id>`` whether given the bare id or the relative reference."""
    return resource_id if "/" in resource_id else f"MedicationRequest/{resource_id}"


def overprescription_card(
    drug_display: str,
    draft_resource_id: str,
    reasons: Sequence[str],
    score: float,
    alternative: AlternativeOrder | None = None,
    *,
    hook_instance: str,
    model_doubts: bool = True,
) -> Card:
    """Warning: the draft order is likely overprescription; suggest removing it, or replacing it."""
    ref = draft_reference(draft_resource_id)
    card_id = stable_uuid(hook_instance, f"overprescription/{ref}")
    remove = Action(type="delete", description=fit(f"Remove the draft order for {drug_display}", 1000), resourceId=ref)
    suggestions = [
        Suggestion(
            label=fit(f"Remove {drug_display} order", _LABEL_MAX),
            uuid=stable_uuid(card_id, "remove"),
            actions=[remove],
        )
    ]
    if alternative is not None:
        suggestions.append(
            Suggestion(
                label=fit(f"Replace with {alternative.display}", _LABEL_MAX),
                uuid=stable_uuid(card_id, "replace"),
                actions=[
                    remove,
                    Action(
                        type="create",
                        description=fit(f"Order {alternative.display} instead", 1000),
                        resource=dict(alternative.resource),
                    ),
                ],
            )
        )
    why = "\n".join(f"- {md(r)}" for r in reasons) or "- (no single dominant factor)"
    scored = score == score  # NaN when only the rules spoke (no recommender model)
    # A hard rule can warn about a drug the model would recommend: say so, or the score reads as the reason.
    if not scored:
        basis = "rule-based"
    elif model_doubts:
        basis = f"model score {score:.2f}"
    else:
        basis = f"rule-based; model score {score:.2f}"
    detail = (
        f"The draft order for **{md(drug_display)}** looks like overprescription for this patient "
        f"({basis}).\n\n**Why**\n\n{why}"
    )
    if alternative is not None:
        detail += f"\n\n**Alternative**: {md(alternative.display)}"
    return Card(
        uuid=card_id,
        summary=fit(f"{drug_display}: likely overprescription ({basis})"),
        detail=detail,
        indicator="warning",
        source=source("overprescription", "Likely overprescription"),
        suggestions=suggestions,
        selectionBehavior="at-most-one",
        overrideReasons=list(OVERRIDE_REASONS),
    )


def _when(value: date | str | None) -> str:
    if value is None:
        return "unknown date"
    return value.isoformat() if isinstance(value, date) else md(value)


def prior_ade_card(drug_display: str, events: Sequence[PriorEvent], *, hook_instance: str) -> Card:
    """Prior adverse events recorded for this drug: critical when any is CTCAE grade 3 or worse, else info."""
    if not events:
        raise ValueError("prior_ade_card needs at least one event")
    grades = [e.grade for e in events if e.grade is not None]
    worst = max(grades) if grades else None
    severe = worst is not None and worst >= 3
    rows = "\n".join(
        f"| {md(e.term)} | {e.grade if e.grade is not None else 'ungraded'} | {_when(e.when)} | "
        f"{md(e.note_ref) if e.note_ref else '—'} |"
        for e in events
    )
    detail = (
        f"Adverse events recorded for **{md(drug_display)}** in this patient's notes:\n\n"
        "| Event | CTCAE grade | When | Source note |\n|---|---|---|---|\n"
        f"{rows}"
    )
    summary = f"Prior {events[0].term}" if len(events) == 1 else f"{len(events)} prior adverse events"
    summary += f" with {drug_display}"
    if worst is not None:
        summary += f" (worst grade {worst})"
    return Card(
        uuid=stable_uuid(hook_instance, f"prior-ade/{drug_display.casefold()}"),
        summary=fit(summary),
        detail=detail,
        indicator="critical" if severe else "info",
        source=source("prior-ade", "Prior adverse drug event"),
    )
