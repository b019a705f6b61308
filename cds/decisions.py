"""The CDS decision service: what the EHR hears at prescribing time.

Implements ``hooks.DecisionService``. Nothing heavy happens here: note extraction is the sync's job; this
path reads the prefetch (or fetches what is missing from the EHR's ``fhirServer`` under a deadline), looks up
the patient's recorded adverse events for the drugs being ordered, asks the order assessor (recommender +
overprescription rules) and turns the answers into cards. Patient context fetched at ``patient-view`` /
``order-select`` is kept briefly so that ``order-sign`` does not fetch it again.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from adapters import (
    AdapterError,
    BearerTokenAuth,
    FhirClient,
    FhirClientConfig,
    MedicationOrder,
    PatientContext,
    RecordedAdverseEvent,
    fetch_adverse_events,
    fetch_patient_context,
    parse_medication_requests,
    parse_prefetch,
)
from cds.findings_map import identify_drug
from cds.state import StateStore
from hooks import (
    BadHookRequest,
    Card,
    CdsResponse,
    FeedbackItem,
    HookCall,
    OrderSelectContext,
    OrderSignContext,
    PrefetchUnavailable,
    PriorEvent,
    overprescription_card,
    prior_ade_card,
)

log = logging.getLogger(__name__)

_PATIENT_KEYS = ("patient", "conditions", "medications", "allergies")
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@dataclass(frozen=True)
class OrderWarning:
    medication_request_id: str
    drug_display: str
    reasons: tuple[str, ...]
    score: float
    # the policy's reason kinds (``cds.overprescription.ReasonKind``), parallel to ``reasons``; the sync keys
    # its DetectedIssues by them
    kinds: tuple[str, ...] = ()


class OrderAssessor(Protocol):
    """Scores draft orders against the patient (the LAMO-style recommender plus the overprescription rules)."""

    async def assess(
        self, context: PatientContext, drafts: Sequence[MedicationOrder], prior: Sequence[RecordedAdverseEvent]
    ) -> list[OrderWarning]: ...


@dataclass
class _Prepared:
    context: PatientContext
    prior: list[RecordedAdverseEvent]
    at: float = field(default_factory=time.monotonic)


class PreparedContextCache:
    """Per-patient context kept for a few minutes between hooks of the same ordering session."""

    def __init__(self, ttl_s: float = 600.0, max_entries: int = 2048) -> None:
        self._ttl_s = ttl_s
        self._max = max_entries
        self._items: dict[tuple[str, str], _Prepared] = {}

    def get(self, server: str, patient_id: str) -> _Prepared | None:
        item = self._items.get((server, patient_id))
        if item is None or time.monotonic() - item.at > self._ttl_s:
            return None
        return item

    def put(self, server: str, patient_id: str, item: _Prepared) -> None:
        if len(self._items) >= self._max:
            oldest = min(self._items, key=lambda k: self._items[k].at)
            del self._items[oldest]
        self._items[(server, patient_id)] = item


ClientFactory = Callable[[str, str | None, float], FhirClient]


class CallbackClientFactory:
    """FHIR clients for the EHR's callbacks, with timeouts inside the request budget and no retries.

    One TLS context serves every client: building one loads the CA bundle, about 50 ms of CPU, which on the
    event loop of every hook call without prepared context would stall all other calls.
    """

    def __init__(self, max_connections: int = 8) -> None:
        self._ssl = httpx.create_ssl_context()
        self._max_connections = max_connections

    def __call__(self, base_url: str, token: str | None, timeout_s: float) -> FhirClient:
        t = max(0.2, timeout_s)
        config = FhirClientConfig(
            base_url=base_url, connect_timeout_s=min(t, 2.0), read_timeout_s=t, write_timeout_s=t, pool_timeout_s=t,
            max_retries=0, max_connections=self._max_connections,
        )
        limits = httpx.Limits(max_connections=self._max_connections, max_keepalive_connections=self._max_connections)
        transport = httpx.AsyncHTTPTransport(verify=self._ssl, limits=limits, retries=0)
        return FhirClient(config, auth=BearerTokenAuth(token) if token else None, transport=transport)


def _matches(event: RecordedAdverseEvent, order: MedicationOrder) -> bool:
    if event.drug_rxnorm and order.rxnorm_code and event.drug_rxnorm == order.rxnorm_code:
        return True
    ordered = identify_drug(order.ingredient or order.display or "")
    recorded = identify_drug(event.drug_display or "")
    if ordered.rxnorm and ordered.rxnorm == (event.drug_rxnorm or recorded.rxnorm):
        return True
    return bool(ordered.ingredient) and ordered.ingredient == recorded.ingredient


class CdsDecisions:
    """``hooks.DecisionService`` for OncoVigil; collaborators are injected by ``cds.app``."""

    def __init__(
        self,
        store: StateStore,
        assessor: OrderAssessor | None,
        cache: PreparedContextCache | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self._store = store
        self._assessor = assessor
        self._cache = cache or PreparedContextCache()
        self._client_factory = client_factory or CallbackClientFactory()

    async def decide(self, call: HookCall) -> CdsResponse:
        patient_id = call.context.patientId
        with _client_data("draftOrders"):
            drafts = self._drafts(call)
        prepared = await self._prepare(call, patient_id)
        cards: list[Card] = []
        for order in drafts:
            events = [e for e in prepared.prior if _matches(e, order)]
            if events:
                cards.append(prior_ade_card(
                    order.display or order.ingredient or "this drug",
                    [PriorEvent(term=e.ctcae_term or "adverse event", grade=e.grade,
                                when=e.date.date() if e.date else None,
                                note_ref=f"DocumentReference/{e.note_id}" if e.note_id else None) for e in events],
                    hook_instance=call.hook_instance,
                ))
        if call.hook == "patient-view":
            cards += self._patient_view_cards(call, prepared)
        if drafts and self._assessor is not None:
            remaining = call.time_left_s()
            try:
                warnings = await asyncio.wait_for(
                    self._assessor.assess(prepared.context, drafts, prepared.prior), timeout=max(0.05, remaining)
                )
            except TimeoutError:
                warnings = []
                log.warning("order assessment skipped: deadline", extra={"hook_instance": call.hook_instance})
            for w in warnings:
                cards.append(overprescription_card(
                    w.drug_display, f"MedicationRequest/{w.medication_request_id}", list(w.reasons), w.score,
                    hook_instance=call.hook_instance,
                    model_doubts="low_score" in w.kinds if w.kinds else True,
                ))
        logged = [(c.uuid, c.source.topic.code if c.source.topic else "unknown") for c in cards if c.uuid]
        if logged:  # a database write: off the event loop, like every other state access here
            await asyncio.to_thread(self._store.log_cards, call.service_id, patient_id, logged)
        log.info("hook answered", extra={"service": call.service_id, "cards": len(cards), "drafts": len(drafts)})
        return CdsResponse(cards=cards)

    async def record_feedback(self, service_id: str, items: Sequence[FeedbackItem]) -> None:
        rows = []
        for item in items:
            reason = item.overrideReason
            rows.append({
                "service_id": service_id, "card_uuid": item.card, "outcome": item.outcome,
                "override_code": reason.reason.code if reason and reason.reason else None,
                "override_display": reason.reason.display if reason and reason.reason else None,
                "user_comment": reason.userComment if reason else None,
                "accepted_suggestions": [s.id for s in (item.acceptedSuggestions or [])],
                "outcome_ts": item.outcomeTimestamp.isoformat() if item.outcomeTimestamp else None,
            })
        await asyncio.to_thread(self._store.add_feedback, rows)

    # -----------------------------------------------------------------------------------------------
    def _drafts(self, call: HookCall) -> list[MedicationOrder]:
        ctx = call.context
        if isinstance(ctx, OrderSignContext | OrderSelectContext):
            orders = _well_typed(parse_medication_requests(ctx.draftOrders))
            bad = [o.id for o in orders if not _FHIR_ID.match(o.id)]
            if bad:
                # A card's delete/update action must name the draft by its id; without one we cannot answer.
                raise BadHookRequest(
                    f"draftOrders has {len(bad)} MedicationRequest(s) whose id is not a FHIR id "
                    "([A-Za-z0-9-.]{1,64}); give every draft order its id"
                )
            if isinstance(ctx, OrderSelectContext):
                selected = {s.split("/", 1)[1] for s in ctx.selections if s.startswith("MedicationRequest/")}
                orders = [o for o in orders if o.id in selected] or orders
            return orders
        return []

    async def _prepare(self, call: HookCall, patient_id: str) -> _Prepared:
        with _client_data("prefetch"):
            parsed = parse_prefetch(call.prefetch)
            _well_typed(parsed.medications)
            _well_typed_events(parsed.adverse_events)
        missing = call.missing_prefetch()
        server = call.fhir_server or ""
        need_patient = any(k in missing for k in _PATIENT_KEYS)
        need_events = "adverseEvents" in missing
        if not (need_patient or need_events):
            context = parsed.context() or PatientContext(patient_id=patient_id, age=None, sex=None)
            return _Prepared(context, list(parsed.adverse_events))
        cached = self._cache.get(server, patient_id) if server else None
        if cached is not None:
            return cached
        if not call.fhir_server:
            raise PrefetchUnavailable(missing, f"prefetch {', '.join(missing)} missing and no fhirServer given")
        token = call.fhir_authorization.access_token.get_secret_value() if call.fhir_authorization else None
        budget = call.time_left_s() * 0.6
        try:
            async with self._client_factory(call.fhir_server, token, budget) as client:
                fetched_context, fetched_events = await asyncio.wait_for(
                    _fetch(client, patient_id, need_patient, need_events), timeout=max(0.1, budget)
                )
        except (AdapterError, TimeoutError, OSError) as exc:
            log.warning("prefetch fallback failed", extra={"missing": missing, "error": type(exc).__name__})
            raise PrefetchUnavailable(
                missing, f"could not fetch {', '.join(missing)} from the FHIR server ({type(exc).__name__})"
            ) from exc
        prepared = _Prepared(
            fetched_context or parsed.context() or PatientContext(patient_id=patient_id, age=None, sex=None),
            fetched_events if fetched_events is not None else list(parsed.adverse_events),
        )
        self._cache.put(server, patient_id, prepared)
        return prepared

    def _patient_view_cards(self, call: HookCall, prepared: _Prepared) -> list[Card]:
        """At chart opening: recorded ADEs grouped by drug for the drugs the patient is currently on."""
        cards = []
        active = [m for m in prepared.context.medications if m.is_active]
        by_drug: dict[str, tuple[str, list[RecordedAdverseEvent]]] = {}
        for order in active:
            events = [e for e in prepared.prior if _matches(e, order)]
            if events:
                name = identify_drug(order.ingredient or order.display or "").display
                by_drug.setdefault(name, (order.display or name, events))
        for name in sorted(by_drug):
            display, events = by_drug[name]
            cards.append(prior_ade_card(
                display,
                [PriorEvent(term=e.ctcae_term or "adverse event", grade=e.grade,
                            when=e.date.date() if e.date else None,
                            note_ref=f"DocumentReference/{e.note_id}" if e.note_id else None) for e in events],
                hook_instance=call.hook_instance,
            ))
        return cards


@contextmanager
def _client_data(what: str) -> Iterator[None]:
    """Malformed FHIR JSON from the EHR is the EHR's error (400), not ours (500)."""
    try:
        yield
    except (AdapterError, TypeError, AttributeError, ValueError, KeyError) as exc:
        raise BadHookRequest(
            f"{what} is not valid FHIR R4 JSON ({type(exc).__name__}); send resources as the R4 spec shapes them"
        ) from exc


def _text_or_none(*values: object) -> bool:
    return all(v is None or isinstance(v, str) for v in values)


def _well_typed(orders: list[MedicationOrder]) -> list[MedicationOrder]:
    # The adapters map JSON leniently; a number where FHIR has a string must not reach the card code.
    for o in orders:
        if not _text_or_none(o.rxnorm_code, o.display, o.ingredient, o.status):
            raise TypeError(f"MedicationRequest {o.id!r} has a non-string code, display or status")
    return orders


def _well_typed_events(events: Sequence[RecordedAdverseEvent]) -> None:
    for e in events:
        if not _text_or_none(e.drug_rxnorm, e.drug_display, e.ctcae_term, e.note_id) or not (
            e.grade is None or (isinstance(e.grade, int) and not isinstance(e.grade, bool))
        ):
            raise TypeError(f"AdverseEvent {e.id!r} has a non-string drug, term or note, or a non-integer grade")


async def _fetch(
    client: FhirClient, patient_id: str, need_patient: bool, need_events: bool
) -> tuple[PatientContext | None, list[RecordedAdverseEvent] | None]:
    async def context() -> PatientContext | None:
        if not need_patient:
            return None
        return await fetch_patient_context(client, patient_id, recent_days=365, max_notes=1)

    async def events() -> list[RecordedAdverseEvent] | None:
        return await fetch_adverse_events(client, patient_id) if need_events else None

    return await asyncio.gather(context(), events())
