"""Fact-copy decoding rules (pure): what is copied from the record, and when the model is left alone."""

from __future__ import annotations

from models.summariser import DrugGroup, TermCount, narrate
from models.summariser.fact_copy import Continuation, copy_plan, forced_continuation

GROUP = DrugGroup(
    "cisplatin",
    "2555",
    "2024-01-01",
    "2024-12-30",
    5,
    18,
    (
        TermCount("Peripheral sensory neuropathy", 7, 4, {1: 2, 2: 2, 3: 2, 4: 1}, 3),
        TermCount("Vomiting", 3, 3, {1: 2, 3: 1}, 1),
        TermCount("Hearing impaired", 2, 2, {1: 1, 2: 1}),
    ),
    21.0,
)
QUIET = DrugGroup("lopinavir", "", "2024-01-01", "2024-12-30", 2, 4, (TermCount("Mania", 1, 1, {}),), None)


def test_the_paragraph_opens_with_the_record_drug() -> None:
    assert forced_continuation(copy_plan(GROUP), "") == Continuation("cisplatin:")


def test_the_serious_sentence_is_copied_after_the_counts() -> None:
    plan = copy_plan(GROUP)
    step = forced_continuation(plan, "cisplatin: 5 patients, 18 reports, 4 serious.")
    assert step is not None and step.then is None
    expected = " Serious: Peripheral sensory neuropathy (3 serious, grades 3, 4); Vomiting (1 serious, grade 3)."
    assert step.text == expected
    assert expected.strip() in narrate(GROUP)  # the very sentence of the reference narrative
    # once written, never again; a serious sentence the model opened itself is completed, not repeated
    assert forced_continuation(plan, "cisplatin: 5 patients, 18 reports, 4 serious." + expected) is None
    opened = forced_continuation(plan, "cisplatin: 5 patients, 18 reports. Serious:")
    assert opened == Continuation(expected.removeprefix(" Serious:"))


def test_no_serious_sentence_without_serious_events() -> None:
    assert forced_continuation(copy_plan(QUIET), "lopinavir: 2 patients, 4 reports, 0 serious.") is None


def test_a_chosen_term_is_completed_and_its_bracket_copied_then_closed_by_the_model() -> None:
    plan = copy_plan(GROUP)
    head = "cisplatin: 5 patients. Serious: x. Most reported: "
    step = forced_continuation(plan, head + "Hear")
    assert step == Continuation("ing impaired (2 reports, grades 1, 2", then=")")
    # lower case as the model wrote it; the term's rest and its facts from the record
    assert forced_continuation(plan, head + "vom") == Continuation("iting (3 reports, grades 1, 3", then=")")
    # a full term followed by a bracket: the bracket's content
    assert forced_continuation(plan, head + "Vomiting (") == Continuation("3 reports, grades 1, 3", then=")")


def test_the_model_is_left_alone_where_nothing_is_certain() -> None:
    plan = copy_plan(GROUP)
    head = "cisplatin: 5 patients. Most reported: "
    assert forced_continuation(plan, head + "P") is None  # one letter: too little to choose a term
    assert forced_continuation(plan, head + "Pain") is None  # not a record term: the guard will judge it
    assert forced_continuation(plan, head + "Vomiting (3 reports); Nau") is None
    assert forced_continuation(plan, "cisplatin: 5 patients, 18 rep") is None  # the counts are the model's
    assert forced_continuation(plan, "cisplatin: Hear") is None  # terms are completed only in "Most reported"
