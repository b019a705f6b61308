"""The faithfulness guard, the reference narrative, preference pairs and ROUGE-L, on crafted summaries."""

from __future__ import annotations

import random

import pytest

from models.summariser import DrugGroup, EvidenceRef, TermCount, check_summary, narrate, render_prompt
from models.summariser.metrics import rouge_l, score_summaries
from models.summariser.pairs import FAULTS, preference_pairs, rejected_text

VOCAB = ["Alopecia", "Anemia", "Nausea", "Fatigue", "Neutrophil count decreased", "Febrile neutropenia", "Rash"]

GROUP = DrugGroup(
    drug="cisplatin",
    rxnorm="2555",
    period_start="2024-01-01",
    period_end="2024-12-30",
    patients=12,
    reports=15,
    terms=(
        TermCount("Nausea", 6, 5, {1: 3, 2: 3}),
        TermCount("Fatigue", 3, 3, {}),
        TermCount("Neutrophil count decreased", 2, 2, {3: 1, 4: 1}, 2),
        TermCount("Febrile neutropenia", 1, 1, {3: 1}, 1),
        TermCount("Rash", 1, 1, {1: 1}),
    ),
    median_days_to_onset=8.5,
    evidence=(EvidenceRef("note-1", "Nausea", 10, 16),),
)
REFERENCE = narrate(GROUP)


def test_reference_narrative_states_every_serious_event_and_passes() -> None:
    report = check_summary(REFERENCE, GROUP, VOCAB)
    assert report.passed, report
    assert set(report.stated_events) >= {"nausea", "neutrophil count decreased", "febrile neutropenia"}
    assert report.numbers_stated > 10
    assert "Serious: Neutrophil count decreased (2 serious, grades 3, 4); Febrile neutropenia (1 serious" in REFERENCE


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("Fatigue (3 reports)", "Alopecia (3 reports)", "hallucinated"),  # invents an event
        ("; Febrile neutropenia (1 serious, grade 3)", "", "omitted_serious"),  # drops a serious event
        ("Nausea (6 reports", "Nausea (7 reports", "numeric_errors"),  # misstates a count
        ("grades 1, 2", "grades 1, 3", "numeric_errors"),  # misstates a grade
        ("8.5 days", "9 days", "numeric_errors"),  # misstates the onset
        ("12 patients", "13 patients", "numeric_errors"),  # misstates the record's patients
        ("Serious: ", "Serious: Nausea (6 serious); ", "numeric_errors"),  # calls a mild event serious
        ("Most reported", "In 2 of 41 cases, most reported", "numeric_errors"),  # a bare number from nowhere
    ],
)
def test_guard_rejects_unfaithful_summaries(old: str, new: str, field: str) -> None:
    text = REFERENCE.replace(old, new)
    assert text != REFERENCE
    report = check_summary(text, GROUP, VOCAB)
    assert not report.passed
    assert getattr(report, field), report


def test_guard_rejects_a_summary_that_omits_every_serious_event_or_is_empty() -> None:
    assert check_summary("cisplatin: 12 patients, 15 reports. No serious events.", GROUP, VOCAB).omitted_serious == (
        "Febrile neutropenia",
        "Neutrophil count decreased",
    )
    assert check_summary("   ", GROUP, VOCAB).empty


def test_guard_accepts_faithful_rewording_and_ignores_digits_in_the_drug_name() -> None:
    group = DrugGroup("5-fu", "", "2000-01-03", "2001-01-01", 2, 2, (TermCount("Diarrhea", 2, 2, {2: 2}),))
    text = "Across 2 patients on 5-fu there were 2 reports; Diarrhea (2 reports, grade 2). No serious events."
    assert check_summary(text, group, VOCAB).passed
    # a serious event named only in the "most reported" list is not stated as serious
    assert not check_summary(REFERENCE.split(" Serious:")[0], GROUP, VOCAB).passed


def test_every_preference_pair_has_a_faithful_chosen_and_an_unfaithful_rejected() -> None:
    pairs = preference_pairs([GROUP] * 8, VOCAB, per_group=2, seed=3)
    assert {p.fault for p in pairs} == set(FAULTS)
    for pair in pairs:
        assert check_summary(pair.chosen, pair.group, VOCAB).passed
        assert not check_summary(pair.rejected, pair.group, VOCAB).passed
    mild = DrugGroup("x", "", "a", "b", 1, 1, (TermCount("Rash", 1, 1, {1: 1}),))
    assert rejected_text(mild, "dropped_serious", VOCAB, random.Random(0)) is None


def test_prompt_carries_only_counts_and_terms() -> None:
    prompt = render_prompt(GROUP)
    assert "note-1" not in prompt and "ADE record of cisplatin" in prompt
    # every fact in the phrase the paragraph uses; serious events in a section of their own, first
    serious, events = prompt.split("serious events:\n")[1].split("events, most reported first:\n")
    assert "- Febrile neutropenia (1 serious, grade 3)" in serious.splitlines()
    assert "- Rash (1 report, grade 1)" in events.splitlines() and "Rash" not in serious


def test_record_json_round_trip() -> None:
    assert DrugGroup.from_json(GROUP.to_json()) == GROUP


def test_rouge_and_pooled_rates() -> None:
    assert rouge_l(REFERENCE, REFERENCE) == 1.0
    assert 0.0 < rouge_l("cisplatin: 12 patients", REFERENCE) < 0.5
    invented = REFERENCE.replace("Fatigue (3 reports)", "Alopecia (3 reports)")
    scores, reports = score_summaries([REFERENCE, invented], [GROUP, GROUP], [REFERENCE, REFERENCE], VOCAB)
    assert [r.passed for r in reports] == [True, False]
    assert scores.guard_fallback_rate == 0.5
    assert scores.hallucinated_event_rate == pytest.approx(1 / scores.events_stated)
    assert scores.omitted_serious_event_rate == 0.0 and scores.numeric_error_rate == 0.0
