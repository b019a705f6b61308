"""The typed records at the FHIR edge: what ``adapters`` hands out and takes in (no FHIR JSON beyond here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

CURRENT_NOTE_STATUSES = frozenset({"current"})
ACTIVE_ORDER_STATUSES = frozenset({"active", "on-hold", "draft"})
WITHDRAWN_ISSUE_STATUSES = frozenset({"cancelled", "entered-in-error"})


@dataclass(frozen=True, slots=True)
class Note:
    """A clinical note from a DocumentReference, its text already decoded to plain text."""

    id: str
    patient_id: str | None
    encounter_id: str | None
    date: datetime | None
    type_code: str | None
    type_display: str | None
    status: str
    text: str
    version_id: str | None
    last_updated: datetime | None
    doc_status: str | None = None
    content_type: str = "text/plain"

    @property
    def is_current(self) -> bool:
        """Superseded and entered-in-error documents are history, not the patient's current record."""
        return self.status in CURRENT_NOTE_STATUSES and self.doc_status != "entered-in-error"


@dataclass(frozen=True, slots=True)
class MedicationOrder:
    """A MedicationRequest with its drug resolved (from the CodeableConcept or the referenced Medication)."""

    id: str
    patient_id: str | None
    encounter_id: str | None
    rxnorm_code: str | None
    display: str | None
    ingredient: str | None
    status: str
    intent: str
    authored_on: datetime | None
    dosage_text: str | None
    requester: str | None
    last_updated: datetime | None
    medication_id: str | None = None
    version_id: str | None = None
    reasons: tuple[str, ...] = ()  # reasonCode labels: why the prescriber ordered it ("urinary frequency")

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_ORDER_STATUSES


@dataclass(frozen=True, slots=True)
class ConditionRecord:
    id: str
    code: str | None
    system: str | None
    display: str | None
    clinical_status: str | None
    verification_status: str | None
    onset: datetime | None
    # Code.text: the label as the clinician chose it ("breast cancer, HER2-positive"); often more specific
    # than the coding's display ("Malignant neoplasm of breast").
    text: str | None = None


@dataclass(frozen=True, slots=True)
class PatientRecord:
    id: str
    birth_date: date | None
    sex: str | None
    deceased: bool = False

    def age_on(self, day: date) -> int | None:
        if self.birth_date is None:
            return None
        born = self.birth_date
        return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


@dataclass(frozen=True, slots=True)
class PatientContext:
    """What the recommender needs to know about a patient at prescribing time."""

    patient_id: str
    age: int | None
    sex: str | None
    conditions: list[ConditionRecord] = field(default_factory=list)
    medications: list[MedicationOrder] = field(default_factory=list)
    allergies: list[str] = field(default_factory=list)
    recent_notes: list[Note] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RecordedAdverseEvent:
    """An AdverseEvent read back from the server (ours or another system's)."""

    id: str
    patient_id: str | None
    drug_rxnorm: str | None
    drug_display: str | None
    ctcae_term: str | None
    meddra_code: str | None
    grade: int | None
    date: datetime | None
    note_id: str | None
    medication_request_id: str | None
    finding_key: str | None
    serious: bool | None
    severity: str | None
    generated_by_oncovigil: bool = False


@dataclass(frozen=True, slots=True)
class AdverseEventInput:
    """One ADE finding to record; ``finding_key`` is deterministic (same finding, same key), <= 200 chars."""

    finding_key: str
    patient_id: str
    note_id: str | None
    drug_rxnorm: str | None
    drug_display: str
    medication_request_id: str | None
    ctcae_term: str
    meddra_code: str | None
    grade: int | None
    date: datetime
    evidence_text: str | None
    model_name: str
    model_version: str
    evidence_start: int | None = None
    evidence_end: int | None = None
    encounter_id: str | None = None
    medication_id: str | None = None
    serious: bool | None = None


IssueSeverity = Literal["high", "moderate", "low"]


@dataclass(frozen=True, slots=True)
class DetectedIssueInput:
    """An overprescription warning about one MedicationRequest."""

    key: str
    patient_id: str
    medication_request_id: str | None
    drug_rxnorm: str | None
    drug_display: str
    severity: IssueSeverity
    detail: str
    identified: datetime
    model_name: str
    model_version: str
    score: float | None = None
    evidence_refs: tuple[str, ...] = ()
    evidence_text: str | None = None
    code: str = "overprescription"
    code_display: str = "Likely overprescription"
    also_implicated: tuple[str, ...] = ()  # further MedicationRequests of the same warning, after the first


@dataclass(frozen=True, slots=True)
class RecordedDetectedIssue:
    """A DetectedIssue read back from the server; ``key`` is our identifier value (None: not ours)."""

    id: str
    key: str | None
    patient_id: str | None
    status: str
    code: str | None
    severity: str | None
    identified: datetime | None
    medication_request_ids: tuple[str, ...]
    detail: str | None
    score: float | None
    version_id: str | None = None

    @property
    def withdrawn(self) -> bool:
        """Cancelled or entered in error: no longer a warning anyone should act on."""
        return self.status in WITHDRAWN_ISSUE_STATUSES


@dataclass(frozen=True, slots=True)
class AdeSummaryInput:
    """A per-drug ADE summary for one period, in Markdown; re-running with the same key replaces it."""

    key: str
    drug_rxnorm: str | None
    drug_display: str
    period_start: date
    period_end: date
    markdown: str
    model_name: str
    model_version: str
    title: str | None = None


@dataclass(frozen=True, slots=True)
class WriteFailure:
    """One item the server refused; ``diagnostics`` are the server's own words (OperationOutcome)."""

    key: str
    resource_type: str
    status: int
    code: str
    diagnostics: str


@dataclass(slots=True)
class WriteReport:
    """Counts by resource type; ``references`` maps each input key to the ``Type/id`` it was written as."""

    created: dict[str, int] = field(default_factory=dict)
    existing: dict[str, int] = field(default_factory=dict)
    references: dict[str, str] = field(default_factory=dict)
    failures: list[WriteFailure] = field(default_factory=list)

    def count(self, bucket: dict[str, int], resource_type: str) -> None:
        bucket[resource_type] = bucket.get(resource_type, 0) + 1

    @property
    def total_created(self) -> int:
        return sum(self.created.values())

    def merge(self, other: WriteReport) -> None:
        for mine, theirs in ((self.created, other.created), (self.existing, other.existing)):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value
        self.references.update(other.references)
        self.failures.extend(other.failures)


@dataclass(slots=True)
class PullStats:
    """Filled while a pull runs: counts, skip reasons and the newest ``meta.lastUpdated`` seen.

    ``watermark`` covers skipped resources too; store it only after the pulled items were processed.
    """

    seen: int = 0
    yielded: int = 0
    pages: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    watermark: datetime | None = None

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def saw(self, last_updated: datetime | None) -> None:
        self.seen += 1
        if last_updated is not None and (self.watermark is None or last_updated > self.watermark):
            self.watermark = last_updated


@dataclass(frozen=True, slots=True)
class TypeLoadCounts:
    sent: int = 0
    created: int = 0
    updated_or_unchanged: int = 0


@dataclass(slots=True)
class LoadReport:
    """Bulk-load counts per resource type."""

    by_type: dict[str, TypeLoadCounts] = field(default_factory=dict)

    def add(self, resource_type: str, *, sent: int = 0, created: int = 0, updated_or_unchanged: int = 0) -> None:
        old = self.by_type.get(resource_type, TypeLoadCounts())
        self.by_type[resource_type] = TypeLoadCounts(
            old.sent + sent, old.created + created, old.updated_or_unchanged + updated_or_unchanged
        )

    @property
    def created(self) -> int:
        return sum(c.created for c in self.by_type.values())

    @property
    def sent(self) -> int:
        return sum(c.sent for c in self.by_type.values())
