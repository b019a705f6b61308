from datetime import date, timedelta

from cds.grouping import AdeObservation, group_by_drug, period_for, verbalise


def _obs(pid: str, term: str, grade: int | None, day: int, rx: str = "2555") -> AdeObservation:
    return AdeObservation(
        pid,
        f"n-{pid}-{day}",
        rx,
        "cisplatin",
        term,
        grade,
        date(2026, 3, day),
        first_dose=date(2026, 3, 1),
        evidence=f"{term} grade {grade}",
    )


def test_groups_count_patients_terms_grades_and_serious_events() -> None:
    records = group_by_drug(
        [
            _obs("p1", "Nausea", 2, 5),
            _obs("p2", "Nausea", 3, 9),
            _obs("p2", "Neutrophil count decreased", 4, 11),
            _obs("p3", "Vomiting", None, 7, rx="40048"),
        ]
    )
    cis = next(r for r in records if r.drug_rxnorm == "2555")
    assert (cis.patients_affected, cis.reports, cis.serious_events) == (2, 3, 2)
    nausea = next(t for t in cis.terms if t.term == "Nausea")
    assert nausea.grades == {2: 1, 3: 1} and nausea.patients == 2
    assert cis.median_days_to_onset == 8.0
    assert len(records) == 2


def test_periods_are_fixed_windows_that_tile_the_calendar() -> None:
    day = date(2026, 3, 5)
    start, end = period_for(day, 30)
    assert start <= day <= end and (end - start).days == 29
    assert (start - date(2000, 1, 3)).days % 30 == 0  # counted from the anchor, not from the day itself
    # Every day of the window falls in that same window (a rerun groups a finding where it did before) ...
    assert {period_for(start + timedelta(days=i), 30) for i in range(30)} == {(start, end)}
    # ... and the next day opens the next one.
    assert period_for(end + timedelta(days=1), 30)[0] == end + timedelta(days=1)


def test_verbaliser_states_every_number_from_the_record() -> None:
    record = group_by_drug([_obs("p1", "Nausea", 2, 5), _obs("p2", "Febrile neutropenia", 3, 9)])[0]
    text = verbalise(record)
    assert "2 patient(s) with 2 adverse event report(s); 1 serious" in text
    assert "| Febrile neutropenia | 1 | 1 | G3: 1 | 1 |" in text
    assert "Serious events: Febrile neutropenia." in text
