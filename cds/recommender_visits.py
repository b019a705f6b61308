"""Encounter-level recommender visits from a Synthea FHIR R4 bulk export (NDJSON), as plain records.

For every encounter with MedicationRequests: the patient's age on that day and sex, the conditions active
then (onset before the encounter ended, not abated before it started; social-history findings dropped),
the drugs of the patient's previous encounter with orders, the recorded allergies, and a history condensed
from the latest note written before this encounter (chief complaints and the procedures it lists: never
this encounter's own note, which names the drugs being ordered). ``prescribed`` is the set of ingredients
ordered at the encounter (product texts mapped through the formulary; unknown products keep their text).
Identical visits (same summary and orders) are kept at most ``max_duplicates`` times, because dialysis and
chemotherapy series repeat one visit hundreds of times.
This module reads FHIR JSON only to build training data; the service reads FHIR through ``adapters``.
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from cds.formulary import Formulary
from models.recommender.prompt import PatientSummary
from models.recommender.visits import TrainingVisit

_SOCIAL = re.compile(
    r"employment|labor force|stress|abuse|violence|social|education|school|criminal|housing|transport|"
    r"misuses|risk activity|alcohol|isolation|intimate partner|received|only received|tubal ligation"
)
_TAG = re.compile(r"\s*\((disorder|finding|situation|procedure|morphologic abnormality)\)\s*$")


def _lines(folder: Path, resource: str) -> Iterator[dict[str, Any]]:
    for path in sorted(folder.glob(f"{resource}.*.ndjson")):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value[:10]) if value else None


def _ref(reference: dict[str, Any] | None) -> str:
    return str((reference or {}).get("reference", "")).rsplit("/", 1)[-1]


def _label(text: str) -> str:
    return _TAG.sub("", text).strip()


@dataclass(frozen=True)
class _Condition:
    label: str
    onset: date | None
    abated: date | None


def _note_history(text: str, limit: int = 200) -> str:
    """Chief complaints and procedures of a Synthea note, without names or the medication list."""
    complaints = re.findall(r"^- (.+)$", text.split("# History of Present Illness")[0], flags=re.M)
    procedures = re.findall(r"^- (.+\(procedure\))$", text, flags=re.M)
    parts = []
    if complaints:
        parts.append("complaints: " + ", ".join(c.strip().lower() for c in complaints[:4]))
    if procedures:
        parts.append("procedures: " + ", ".join(_label(p).lower() for p in procedures[:3]))
    return "; ".join(parts)[:limit]


def synthea_visits(folder: Path, formulary: Formulary, max_duplicates: int = 3) -> list[TrainingVisit]:
    """Visits in encounter-date order (deterministic); candidates left empty (callers set the vocabulary)."""
    patients = {p["id"]: p for p in _lines(folder, "Patient")}
    encounters = {e["id"]: e for e in _lines(folder, "Encounter")}
    conditions: dict[str, list[_Condition]] = defaultdict(list)
    for c in _lines(folder, "Condition"):
        label = _label(str(c.get("code", {}).get("text", "")))
        if label and not _SOCIAL.search(label.lower()):
            conditions[_ref(c.get("subject"))].append(
                _Condition(label.lower(), _day(c.get("onsetDateTime")), _day(c.get("abatementDateTime")))
            )
    allergies: dict[str, list[str]] = defaultdict(list)
    for a in _lines(folder, "AllergyIntolerance"):
        allergies[_ref(a.get("patient"))].append(_label(str(a.get("code", {}).get("text", ""))).lower())
    notes: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for d in _lines(folder, "DocumentReference"):
        for content in d.get("content", []):
            data = content.get("attachment", {}).get("data")
            if data:
                notes[_ref(d.get("subject"))].append((str(d.get("date", "")), base64.b64decode(data).decode("utf-8")))
    orders: dict[str, set[str]] = defaultdict(set)
    for m in _lines(folder, "MedicationRequest"):
        text = str(m.get("medicationCodeableConcept", {}).get("text", ""))
        if text:
            entry = formulary.from_product_text(text)
            orders[_ref(m.get("encounter"))].add(entry.name if entry else text.lower())
    by_patient: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for enc_id in orders:
        enc = encounters.get(enc_id)
        if enc is not None:
            by_patient[_ref(enc.get("subject"))].append((str(enc["period"]["start"]), enc_id))
    visits: list[TrainingVisit] = []
    seen: Counter[str] = Counter()
    for patient_id in sorted(by_patient):
        patient = patients.get(patient_id)
        if patient is None:
            continue
        birth = date.fromisoformat(patient["birthDate"])
        previous: tuple[str, ...] = ()
        for start, enc_id in sorted(by_patient[patient_id]):
            enc = encounters[enc_id]
            begin = date.fromisoformat(start[:10])
            end = _day(enc["period"].get("end")) or begin
            active = sorted(
                {
                    c.label
                    for c in conditions[patient_id]
                    if (c.onset is None or c.onset <= end) and (c.abated is None or c.abated > begin)
                }
            )
            prior = [(when, text) for when, text in notes[patient_id] if when[:19] < start[:19]]
            history = _note_history(max(prior)[1]) if prior else ""
            age = begin.year - birth.year - ((begin.month, begin.day) < (birth.month, birth.day))
            summary = PatientSummary(
                age=age,
                sex=str(patient.get("gender", "unknown")),
                conditions=tuple(active),
                previous_medications=previous,
                allergies=tuple(sorted(set(allergies[patient_id]))),
                history=history,
            )
            prescribed = tuple(sorted(orders[enc_id]))
            previous = prescribed
            key = json.dumps([summary.to_json() | {"age": age // 5}, prescribed], sort_keys=True)
            seen[key] += 1
            if seen[key] > max_duplicates:
                continue
            visits.append(TrainingVisit(visit_id=enc_id, patient=summary, prescribed=prescribed, group=patient_id))
    return visits
