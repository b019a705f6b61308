"""GASCADE-style grouping: ADE findings across patients grouped per drug and period.

The grouped record is the only input of the summariser (deterministic verbaliser or a generative model
behind the faithfulness guard). Pure functions: findings in, typed records out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from models.summariser import DrugGroup, EvidenceRef, TermCount

SERIOUS_GRADE = 3


@dataclass(frozen=True)
class AdeObservation:
    """One non-negated ADE finding, reduced to what grouping needs (no text beyond a short evidence span)."""

    patient_id: str
    note_id: str
    drug_rxnorm: str
    drug_display: str
    ctcae_term: str
    grade: int | None
    onset: date
    first_dose: date | None = None
    evidence: str = ""
    span: tuple[int, int] | None = None  # the event's characters in the note (evidence without text)


@dataclass(frozen=True)
class TermStats:
    term: str
    reports: int
    patients: int
    grades: dict[int, int]
    serious: int


@dataclass(frozen=True)
class Evidence:
    note_id: str
    term: str
    snippet: str
    span: tuple[int, int] | None = None


@dataclass(frozen=True)
class GroupedAdeRecord:
    drug_rxnorm: str
    drug_display: str
    period_start: date
    period_end: date
    patients_affected: int
    reports: int
    terms: tuple[TermStats, ...]
    serious_events: int
    median_days_to_onset: float | None
    evidence: tuple[Evidence, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return f"{self.drug_rxnorm}-{self.period_start.isoformat()}-{self.period_end.isoformat()}"


def period_for(day: date, window_days: int, anchor: date = date(2000, 1, 3)) -> tuple[date, date]:
    """Fixed windows counted from an anchor Monday, so a rerun puts each finding in the same period."""
    index = (day - anchor).days // window_days
    start = anchor + timedelta(days=index * window_days)
    return start, start + timedelta(days=window_days - 1)


def group_by_drug(
    observations: Iterable[AdeObservation], window_days: int = 365, max_evidence: int = 3
) -> list[GroupedAdeRecord]:
    buckets: dict[tuple[str, date, date], list[AdeObservation]] = defaultdict(list)
    for obs in observations:
        start, end = period_for(obs.onset, window_days)
        buckets[(obs.drug_rxnorm, start, end)].append(obs)
    records = [
        _summarise_bucket(rx, start, end, items, max_evidence) for (rx, start, end), items in buckets.items()
    ]
    return sorted(records, key=lambda r: (r.drug_display, r.period_start))


def _summarise_bucket(
    rxnorm: str, start: date, end: date, items: Sequence[AdeObservation], max_evidence: int
) -> GroupedAdeRecord:
    by_term: dict[str, list[AdeObservation]] = defaultdict(list)
    for obs in items:
        by_term[obs.ctcae_term].append(obs)
    terms = []
    for term, obs_list in by_term.items():
        grades = Counter(o.grade for o in obs_list if o.grade is not None)
        terms.append(
            TermStats(
                term=term,
                reports=len(obs_list),
                patients=len({o.patient_id for o in obs_list}),
                grades=dict(sorted(grades.items())),
                serious=sum(1 for o in obs_list if (o.grade or 0) >= SERIOUS_GRADE),
            )
        )
    terms.sort(key=lambda t: (-t.reports, t.term))
    onsets = sorted((o.onset - o.first_dose).days for o in items if o.first_dose and o.onset >= o.first_dose)
    median = None
    if onsets:
        mid = len(onsets) // 2
        median = float(onsets[mid]) if len(onsets) % 2 else (onsets[mid - 1] + onsets[mid]) / 2
    ordered = sorted(items, key=lambda o: (-(o.grade or 0), o.note_id))
    evidence = tuple(Evidence(o.note_id, o.ctcae_term, o.evidence[:160], o.span) for o in ordered[:max_evidence])
    return GroupedAdeRecord(
        drug_rxnorm=rxnorm,
        drug_display=items[0].drug_display,
        period_start=start,
        period_end=end,
        patients_affected=len({o.patient_id for o in items}),
        reports=len(items),
        terms=tuple(terms),
        serious_events=sum(t.serious for t in terms),
        median_days_to_onset=median,
        evidence=evidence,
    )


def to_drug_group(record: GroupedAdeRecord) -> DrugGroup:
    """The summariser's input: the grouped record as plain data (counts, grades, note ids and spans only)."""
    return DrugGroup(
        drug=record.drug_display,
        rxnorm=record.drug_rxnorm,
        period_start=record.period_start.isoformat(),
        period_end=record.period_end.isoformat(),
        patients=record.patients_affected,
        reports=record.reports,
        terms=tuple(TermCount(t.term, t.reports, t.patients, dict(t.grades), t.serious) for t in record.terms),
        median_days_to_onset=record.median_days_to_onset,
        evidence=tuple(EvidenceRef(e.note_id, e.term, *(e.span or (0, 0))) for e in record.evidence),
    )


def verbalise(record: GroupedAdeRecord) -> str:
    """The deterministic reference summary (markdown): every number comes straight from the record."""
    lines = [
        f"## {record.drug_display} (RxNorm {record.drug_rxnorm}): adverse events "
        f"{record.period_start.isoformat()} to {record.period_end.isoformat()}",
        "",
        f"{record.patients_affected} patient(s) with {record.reports} adverse event report(s); "
        f"{record.serious_events} serious (CTCAE grade >= 3).",
    ]
    if record.median_days_to_onset is not None:
        lines.append(f"Median time from first dose to onset: {record.median_days_to_onset:g} days.")
    lines += ["", "| CTCAE term | reports | patients | grades | serious |", "|---|---|---|---|---|"]
    for t in record.terms:
        grades = ", ".join(f"G{g}: {n}" for g, n in t.grades.items()) or "not stated"
        lines.append(f"| {t.term} | {t.reports} | {t.patients} | {grades} | {t.serious} |")
    serious_terms = [t.term for t in record.terms if t.serious]
    if serious_terms:
        lines += ["", "Serious events: " + ", ".join(serious_terms) + "."]
    if record.evidence:
        lines += ["", "Evidence:"]
        lines += [f'- DocumentReference/{e.note_id} ({e.term}): "{e.snippet}"' for e in record.evidence]
    return "\n".join(lines) + "\n"
