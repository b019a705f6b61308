"""Shared pieces of the end-to-end tests of the real CDS service (``cds.app.create_app``) on the live sandbox.

The EHR side is the hooks tests' mini-EHR (``tests/hooks/ehr.py``: signing keys, JWTs, uvicorn runner); the
FHIR side is the session's HAPI sandbox seeded with the synthetic cohort (``tests/conftest.py``). Prior
adverse events are written to the sandbox with the adapters, as the nightly sync would.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "hooks"))

from ehr import MiniEhr, medication_request, serve

from adapters import (
    AdverseEventInput,
    FhirClient,
    FhirClientConfig,
    MedicationOrder,
    PatientContext,
    RecordedAdverseEvent,
    load_resources,
    parse_adverse_events,
    write_adverse_events,
)
from cds.app import create_app
from cds.decisions import OrderAssessor, OrderWarning
from cds.settings import Settings
from hooks import DEFAULT_PREFETCH

__all__ = ["MiniEhr", "medication_request", "serve"]

SIGN = "oncovigil-order-sign"
SELECT = "oncovigil-order-select"
VIEW = "oncovigil-patient-view"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

SEEDED_PATIENTS = tuple(f"ov-pat-{i:04d}" for i in range(1, 9))  # tests/conftest.py seeds 8 patients
# Drugs a draft may name; none is assumed absent from the cohort: absence is checked on the server.
DRUG_POOL = (
    ("12574", "gemcitabine"), ("4179", "etoposide"), ("6851", "methotrexate"), ("39541", "vinorelbine"),
    ("519", "allopurinol"), ("32592", "oxaliplatin"), ("6313", "leucovorin"), ("11202", "vincristine"),
    ("51499", "irinotecan"), ("72962", "docetaxel"),
)
MODEL = ("ov-e2e-cds-test", "1")

# A patient of our own for the golden answer: the generated cohort changes with its generator, the
# golden must not. She takes pegfilgrastim and once had grade 2 fatigue on gemcitabine.
GOLDEN_PATIENT = "ov-e2e-golden"
GOLDEN_RESOURCES: tuple[dict[str, Any], ...] = (
    {"resourceType": "Patient", "id": GOLDEN_PATIENT, "gender": "female", "birthDate": "1961-04-02"},
    {**medication_request("ov-e2e-golden-mr-1", GOLDEN_PATIENT, "338036", "pegfilgrastim", status="active"),
     "authoredOn": "2025-10-01"},
)
GOLDEN_DRAFTS = (("12574", "gemcitabine"), ("338036", "pegfilgrastim"), ("6851", "methotrexate"),
                 ("4179", "etoposide"), ("519", "allopurinol"))


@dataclass(frozen=True)
class Drug:
    code: str
    display: str
    order_id: str | None = None  # the patient's active MedicationRequest for it, if any

    @property
    def pair(self) -> tuple[str, str]:
        return self.code, self.display


@dataclass(frozen=True)
class Scenario:
    """Facts read from the seeded sandbox, and the prior events written for them.

    ``patient`` is on ``ade_drug`` (a recorded CTCAE grade 3 event: critical) and ``dup_drug`` (a draft for
    it is duplicate therapy); ``others`` are drugs ``patient`` is not on. ``info_patient`` never had
    ``info_drug`` ordered and has a recorded grade 2 event for it (info).
    """

    patient: str
    ade_drug: Drug
    dup_drug: Drug
    others: tuple[Drug, ...]
    info_patient: str
    info_drug: Drug

    @property
    def sign_drugs(self) -> list[tuple[str, str]]:
        """5 draft orders: the ADE drug, the duplicate, three neutral ones (draft-1 .. draft-5)."""
        return [self.ade_drug.pair, self.dup_drug.pair, *(d.pair for d in self.others)]


def _coded(resource: Mapping[str, Any]) -> tuple[str, str] | None:
    for coding in resource.get("medicationCodeableConcept", {}).get("coding", []):
        if coding.get("system") == RXNORM and coding.get("code"):
            return str(coding["code"]), str(coding.get("display") or coding["code"])
    return None


def _entries(client: httpx.Client, query: str) -> list[dict[str, Any]]:
    r = client.get(query, headers={"accept": "application/fhir+json"})
    r.raise_for_status()
    return [e["resource"] for e in r.json().get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]


def _foreign_event_drugs(client: httpx.Client, pid: str) -> set[str]:
    """RxNorm codes with adverse events on the server that we did not write (a sync run, another test)."""
    r = client.get(f"AdverseEvent?subject=Patient/{pid}&_count=200", headers={"accept": "application/fhir+json"})
    r.raise_for_status()
    return {
        e.drug_rxnorm for e in parse_adverse_events([r.json()])
        if e.drug_rxnorm and not (e.finding_key or "").startswith("ov-e2e-cds|")
    }


def prepare_scenario(fhir_base_url: str) -> Scenario:
    """Pick patients and drugs from what the server holds, write the prior events and the golden patient.

    Drugs with adverse events someone else recorded are avoided, so that the expected cards are exact.
    """
    with httpx.Client(base_url=fhir_base_url.rstrip("/") + "/", timeout=60) as client:
        active: dict[str, dict[str, Drug]] = {}
        taken: dict[str, set[str]] = {}  # drugs ever ordered for, or with foreign events of, the patient
        for pid in SEEDED_PATIENTS:
            orders = _entries(client, f"MedicationRequest?patient={pid}&_count=200")
            foreign = _foreign_event_drugs(client, pid)
            taken[pid] = {c[0] for o in orders if (c := _coded(o))} | foreign
            active[pid] = {}
            for o in sorted(orders, key=lambda o: str(o["id"])):
                coded = _coded(o)
                if coded and o.get("status") == "active" and coded[0] not in foreign:
                    active[pid].setdefault(coded[0], Drug(coded[0], coded[1], str(o["id"])))
        patient = next(p for p in SEEDED_PATIENTS if len(active[p]) >= 2)
        ade_drug, dup_drug = sorted(active[patient].values(), key=lambda d: d.code)[:2]
        others = tuple(Drug(*d) for d in DRUG_POOL if d[0] not in taken[patient])[:3]
        info_patient = next(p for p in SEEDED_PATIENTS if p != patient)
        info_drug = next(Drug(*d) for d in DRUG_POOL if d[0] not in taken[info_patient])
        notes = {
            pid: [n["id"] for n in _entries(client, f"DocumentReference?patient={pid}&_count=1&_sort=_id")]
            for pid in (patient, info_patient)
        }
    scenario = Scenario(patient, ade_drug, dup_drug, others, info_patient, info_drug)
    when = datetime(2025, 11, 3, 9, 0, tzinfo=UTC)
    events = [
        _event(patient, ade_drug, "Acute kidney injury", "10069339", 3, when, notes[patient]),
        _event(info_patient, info_drug, "Fatigue", "10016256", 2, when, notes[info_patient]),
        _event(GOLDEN_PATIENT, Drug("12574", "gemcitabine"), "Fatigue", "10016256", 2, datetime(2025, 6, 12), []),
    ]

    async def write() -> None:
        config = FhirClientConfig(base_url=fhir_base_url, read_timeout_s=120.0, max_retries=2)
        async with FhirClient(config) as client:
            await load_resources(client, GOLDEN_RESOURCES)
            report = await write_adverse_events(client, events)
        assert report.failures == [], report.failures

    asyncio.run(write())
    return scenario


def _event(
    pid: str, drug: Drug, term: str, meddra: str, grade: int, when: datetime, notes: Sequence[str]
) -> AdverseEventInput:
    note = notes[0] if notes else None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return AdverseEventInput(
        finding_key=f"ov-e2e-cds|{pid}|{drug.code}|{meddra}",
        patient_id=pid, note_id=note, drug_rxnorm=drug.code, drug_display=drug.display,
        medication_request_id=drug.order_id, ctcae_term=term, meddra_code=meddra, grade=grade, date=when,
        evidence_text=None, model_name=MODEL[0], model_version=MODEL[1],
    )


class DuplicateTherapyAssessor:
    """Test double of the recommender (an injected collaborator): flags a draft for a drug the patient
    already takes, found in the context the service prefetched or fetched. Deterministic on purpose."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    async def assess(
        self, context: PatientContext, drafts: Sequence[MedicationOrder], prior: Sequence[RecordedAdverseEvent]
    ) -> list[OrderWarning]:
        self.calls.append((context.patient_id, len(drafts)))
        active = {m.rxnorm_code: m for m in context.medications if m.is_active and m.rxnorm_code}
        warnings = []
        for draft in drafts:
            current = active.get(draft.rxnorm_code) if draft.rxnorm_code else None
            if current is not None:
                warnings.append(OrderWarning(
                    medication_request_id=draft.id,
                    drug_display=draft.display or "this drug",
                    reasons=(f"already on {current.display} (MedicationRequest/{current.id})",),
                    score=0.91,
                ))
        return warnings


def _check(assessor: OrderAssessor) -> OrderAssessor:
    return assessor


_check(DuplicateTherapyAssessor())  # the double satisfies the real Protocol (mypy/pyright see this)


# -- settings and the running service -----------------------------------------------------------------
def make_settings(tmp: Path, ehrs: Sequence[MiniEhr], **overrides: Any) -> Settings:
    """Settings of a test deployment: JWT on, the given EHRs trusted, state in ``tmp``."""
    issuers = tmp / "trusted-issuers.json"
    issuers.write_text(json.dumps({e.iss: {"jwks": e.jwks()} for e in ehrs}))
    values: dict[str, Any] = {
        "environment": "test",
        "home": tmp,
        "state_db_url": f"sqlite:///{tmp / 'state.db'}",
        "cds_require_jwt": True,
        "cds_trusted_issuers_file": issuers,
        # The sandbox shares two cores with the whole test run: a generous deadline keeps 412s meaningful.
        "cds_decision_timeout_s": 20.0,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass(frozen=True)
class Service:
    base: str
    settings: Settings

    def url(self, service_id: str | None = None, *, feedback: bool = False) -> str:
        url = f"{self.base}/cds-services"
        if service_id:
            url += f"/{service_id}"
        return url + "/feedback" if feedback else url


@contextmanager
def running_service(settings: Settings, assessor: OrderAssessor | None = None) -> Iterator[Service]:
    """The real app (``cds.app.create_app``) served by uvicorn on a free port."""
    with serve(create_app(settings, assessor=assessor)) as base:
        yield Service(base, settings)


# -- the EHR side ---------------------------------------------------------------------------------------
def ehr_prefetch(fhir_base_url: str, patient_id: str, keys: Sequence[str] | None = None) -> dict[str, Any]:
    """What an EHR would prefetch: each advertised template expanded and read from its FHIR server."""
    wanted = list(DEFAULT_PREFETCH) if keys is None else list(keys)
    prefetch: dict[str, Any] = {}
    with httpx.Client(base_url=fhir_base_url.rstrip("/") + "/", timeout=60) as client:
        for key in wanted:
            query = DEFAULT_PREFETCH[key].replace("{{context.patientId}}", patient_id)
            r = client.get(query, headers={"accept": "application/fhir+json"})
            if r.status_code == 404 and "?" not in query:
                prefetch[key] = None  # a read that found nothing
                continue
            r.raise_for_status()
            prefetch[key] = r.json()
    return prefetch


def drafts(patient_id: str, drugs: Sequence[tuple[str, str]], prefix: str = "draft") -> dict[str, Any]:
    entries = [
        {"resource": medication_request(f"{prefix}-{i + 1}", patient_id, code, name)}
        for i, (code, name) in enumerate(drugs)
    ]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def hook_body(
    hook: str,
    patient_id: str,
    *,
    draft_orders: Mapping[str, Any] | None = None,
    selections: Sequence[str] | None = None,
    prefetch: Mapping[str, Any] | None = None,
    fhir_server: str | None = None,
) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": "Practitioner/ov-prac-e2e", "patientId": patient_id}
    if draft_orders is not None:
        context["draftOrders"] = dict(draft_orders)
    if selections is not None:
        context["selections"] = list(selections)
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if prefetch is not None:
        body["prefetch"] = dict(prefetch)
    if fhir_server is not None:
        body["fhirServer"] = fhir_server
        body["fhirAuthorization"] = {
            "access_token": "opaque-e2e-token", "token_type": "Bearer", "expires_in": 300,
            "scope": "patient/*.read", "subject": "oncovigil", "patient": patient_id,
        }
    return body


def post(
    client: httpx.Client, ehr: MiniEhr, url: str, body: Any, aud: str | None = None, **sign: Any
) -> httpx.Response:
    """POST as the EHR: a fresh JWT whose ``aud`` is the URL called (or ``aud``)."""
    return client.post(url, json=body, headers=ehr.auth(aud or url, **sign))


# -- checks ---------------------------------------------------------------------------------------------
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def empty_values(value: Any, path: str = "$") -> list[str]:
    """Paths holding null, "", [] or {} (the spec asks to omit those), except the top-level cards list."""
    found = []
    if path != "$.cards" and (value is None or (isinstance(value, str | list | dict) and len(value) == 0)):
        found.append(path)
    if isinstance(value, dict):
        for k, v in value.items():
            found += empty_values(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += empty_values(v, f"{path}[{i}]")
    return found


def spec_problems(doc: Mapping[str, Any]) -> list[str]:
    """Every CDS Hooks 2.0.1 response rule broken by ``doc`` (empty list: none)."""
    problems = empty_values(doc)
    if not isinstance(doc.get("cards"), list):
        return [*problems, "cards missing"]
    for i, card in enumerate(doc["cards"]):
        at = f"cards[{i}]"
        summary = card.get("summary")
        if not isinstance(summary, str) or not 0 < len(summary) < 140:
            problems.append(f"{at}.summary must be 1..139 chars")
        if not _UUID.match(str(card.get("uuid", ""))):
            problems.append(f"{at}.uuid missing or not a uuid")
        if card.get("indicator") not in ("info", "warning", "critical"):
            problems.append(f"{at}.indicator")
        if not card.get("source", {}).get("label"):
            problems.append(f"{at}.source.label")
        suggestions = card.get("suggestions", [])
        if suggestions and card.get("selectionBehavior") not in ("at-most-one", "any"):
            problems.append(f"{at}: suggestions without selectionBehavior")
        recommended = sum(bool(s.get("isRecommended")) for s in suggestions)
        if card.get("selectionBehavior") == "at-most-one" and recommended > 1:
            problems.append(f"{at}: more than one isRecommended under at-most-one")
        for j, s in enumerate(suggestions):
            if not s.get("label") or not _UUID.match(str(s.get("uuid", ""))):
                problems.append(f"{at}.suggestions[{j}] needs label and uuid")
            for k, action in enumerate(s.get("actions", [])):
                where = f"{at}.suggestions[{j}].actions[{k}]"
                if not action.get("description"):
                    problems.append(f"{where}.description")
                if action.get("type") == "delete" and (not action.get("resourceId") or "resource" in action):
                    problems.append(f"{where}: delete needs resourceId and no resource")
                if action.get("type") in ("create", "update") and "resource" not in action:
                    problems.append(f"{where}: {action.get('type')} needs resource")
        for j, reason in enumerate(card.get("overrideReasons", [])):
            if not reason.get("display"):
                problems.append(f"{at}.overrideReasons[{j}].display")
        for j, link in enumerate(card.get("links", [])):
            if "appContext" in link and link.get("type") != "smart":
                problems.append(f"{at}.links[{j}]: appContext on a non-smart link")
    return problems


def normalise_uuids(doc: Any) -> Any:
    """uuids replaced by ``<uuid-N>`` in order of first appearance (they depend on the hookInstance)."""
    seen: dict[str, str] = {}
    text = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False)

    def name(match: re.Match[str]) -> str:
        return seen.setdefault(match.group(0), f"<uuid-{len(seen) + 1}>")

    return json.loads(re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", name, text))


def cards_by_topic(doc: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for card in doc["cards"]:
        grouped.setdefault(card["source"]["topic"]["code"], []).append(card)
    return grouped
