"""Guarded per-drug summaries: publish a generated paragraph only when the guard passes, fall back and count
otherwise; the grouped record is typed, stored and the summariser's only input; the eval contract's shape;
and the write-back through the adapters on the live sandbox (one document per drug and period, replaced)."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from adapters import FhirClient, FhirClientConfig
from adapters.identifiers import SID_ADE_SUMMARY
from cds.grouping import AdeObservation, group_by_drug, to_drug_group
from cds.state import StateStore
from cds.summarise import (
    GROUP_KIND,
    GuardedSummariser,
    build_guarded_summariser,
    evaluate_dir,
    read_eval_file,
    read_vocabulary,
    summarise_records,
)
from cds.summary_data import cohort_groups, write_eval_file
from cds.sync import SyncJob, SyncReport
from models import RuntimeConfig
from models.summariser import DrugGroup, check_summary, narrate
from models.summariser.generator import load_summariser
from tests.cds.test_sync_kit import cli_env, run_cli

CONTRACT = {
    "rouge_l",
    "hallucinated_event_rate",
    "omitted_serious_event_rate",
    "numeric_error_rate",
    "guard_fallback_rate",
}


class FakeGenerator:
    """Stands in for the ONNX summariser: returns whatever text it is told to, per call."""

    name = "summariser.v1"
    provider = "CPUExecutionProvider"

    def __init__(self, rewrite: Any) -> None:
        self.rewrite = rewrite

    def summarise(self, groups: Sequence[DrugGroup]) -> list[str]:
        return [self.rewrite(narrate(g)) for g in groups]


def _observations(year: int, rxnorm: str = "2555") -> list[AdeObservation]:
    day = date(year, 3, 5)
    return [
        AdeObservation("p1", "n1", rxnorm, "cisplatin", "Nausea", 2, day, date(year, 3, 1), "nausea", (4, 10)),
        AdeObservation("p2", "n2", rxnorm, "cisplatin", "Nausea", 1, day, date(year, 3, 1), "nausea", (0, 6)),
        AdeObservation("p2", "n3", rxnorm, "cisplatin", "Febrile neutropenia", 3, day, None, "fn", (7, 26)),
    ]


def test_generated_text_is_published_only_when_the_guard_passes() -> None:
    records = group_by_drug(_observations(2026))
    group = to_drug_group(records[0])
    honest = GuardedSummariser(FakeGenerator(lambda t: t.replace("Most reported", "Reported most")))
    [published] = honest.summarise([group])
    assert published.generated and published.paragraph.startswith("cisplatin: 2 patients, 3 reports, 1 serious.")
    assert honest.counts.generated == 1 and honest.counts.guard_fallbacks == 0

    liar = GuardedSummariser(
        FakeGenerator(
            lambda t: t.replace("; Febrile neutropenia (1 serious, grade 3)", "").replace(
                "Serious: Febrile neutropenia (1 serious, grade 3).", ""
            )
        )
    )
    [fallback] = liar.summarise([group])
    assert not fallback.generated and fallback.paragraph == narrate(group)
    assert fallback.model_name == "oncovigil-verbaliser" and fallback.rejected_because
    assert liar.counts.guard_fallbacks == 1 and liar.counts.reasons == {"omitted_serious": 1}
    assert check_summary(fallback.paragraph, group).passed

    markdown = summarise_records(GuardedSummariser(), records)[0]
    assert markdown.startswith("## cisplatin (RxNorm 2555)") and narrate(group) in markdown
    assert "| Febrile neutropenia | 1 | 1 | G3: 1 | 1 |" in markdown  # the deterministic table stays


def test_no_model_or_a_broken_one_means_deterministic_summaries(tmp_path: Path) -> None:
    assert not build_guarded_summariser(tmp_path, RuntimeConfig()).generative
    broken = tmp_path / "summaries"
    broken.mkdir()
    (broken / "model_card.json").write_text("{}")
    assert not build_guarded_summariser(tmp_path, RuntimeConfig()).generative


def test_grouped_records_from_the_cohort_are_typed_verifiable_and_round_trip(tmp_path: Path) -> None:
    groups = cohort_groups(12, 55, (365,))
    assert groups and all(isinstance(g, DrugGroup) for g in groups)
    assert all(check_summary(narrate(g), g).passed for g in groups)
    evidence = [e for g in groups for e in g.evidence]
    assert evidence and all(e.note_id.startswith("ov-note-") and e.end > e.start for e in evidence)
    path = tmp_path / "dev.jsonl"
    assert write_eval_file(path, groups) == len(groups)
    assert read_eval_file(path) == (groups, [narrate(g) for g in groups])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny T5 summariser built from a cohort (barely trained: most of its output is rejected)."""
    from models.summariser.build import build_summariser_dir
    from models.summariser.fit import FitConfig, fit_summariser
    from models.summariser.training import SummariserTrainConfig

    root = tmp_path_factory.mktemp("summ")
    groups = cohort_groups(20, 57, (365,))
    train = SummariserTrainConfig(
        arch="seq2seq", sft_steps=60, sft_learning_rate=3e-3, dpo_steps=4, batch_size=8, threads=1
    )
    fit_summariser(
        groups,
        [],
        root / "artifact",
        FitConfig(train=train, d_model=64, layers=2, max_new_tokens=40, tokenizer_vocab=400),
    )
    build_summariser_dir(root / "artifact", root / "model", threads=1)
    from models import ModelCard, write_card

    write_card(
        root / "model",
        ModelCard(
            name="summariser.v1", task="summaries", version="test", base_model="tiny T5", base_model_source="test"
        ),
    )
    return root / "model"


def test_eval_contract_reports_before_and_after_dpo_and_nothing_unfaithful_is_published(
    tiny_model: Path, tmp_path: Path
) -> None:
    data = tmp_path / "dev.jsonl"
    write_eval_file(data, cohort_groups(10, 58, (365,))[:6])
    home = tmp_path / "home"
    proc = run_cli(["eval", "summaries", "--data", str(data), "--model", str(tiny_model), "--json"], cli_env(home))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert set(result) >= CONTRACT and result["records"] == 6
    for stage in ("before_dpo", "after_dpo"):
        assert set(result[stage]) >= CONTRACT
        assert all(0.0 <= result[stage][k] <= 1.0 for k in CONTRACT)
        published = result[stage]["published"]
        assert published["hallucinated_event_rate"] == 0.0
        assert published["omitted_serious_event_rate"] == 0.0 and published["numeric_error_rate"] == 0.0
    assert result["decoding"] == "fact-copy"
    free = result["free_decoding"]["after_dpo"]
    assert set(free) >= CONTRACT
    assert free["rouge_l"] == result["after_dpo"]["rouge_l"]  # a seq2seq model decodes freely either way
    same = evaluate_dir(data, tiny_model, RuntimeConfig(providers=("CPUExecutionProvider",), threads=1))
    assert same["after_dpo"]["rouge_l"] == result["after_dpo"]["rouge_l"]  # greedy decoding is deterministic


def test_guarded_model_summaries_in_the_sync_path(tiny_model: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "summaries").symlink_to(tiny_model, target_is_directory=True)
    summariser = build_guarded_summariser(models, RuntimeConfig(providers=("CPUExecutionProvider",), threads=1))
    assert summariser.generative
    records = group_by_drug(_observations(2026))
    [markdown] = summarise_records(summariser, records)
    group = to_drug_group(records[0])
    raw = load_summariser(tiny_model, ["CPUExecutionProvider"], threads=1).summarise([group])[0]
    verdict = check_summary(raw, group, read_vocabulary(tiny_model))
    # The model's own text is published exactly when the guard, with the model's vocabulary, passes it;
    # otherwise the deterministic narrative stands in and the fallback is counted.
    assert markdown.split("\n\n")[1] == (raw if verdict.passed else narrate(group))
    counts = summariser.counts
    assert (counts.generated, counts.guard_fallbacks) == ((1, 0) if verdict.passed else (0, 1))


def _store_findings(store: StateStore, observations: list[AdeObservation]) -> None:
    for i, o in enumerate(observations):
        store.replace_note_findings(
            o.note_id,
            "ade",
            [
                {
                    "key": f"{o.note_id}-{i}",
                    "kind": "ade",
                    "patient_id": o.patient_id,
                    "note_id": o.note_id,
                    "drug_rxnorm": o.drug_rxnorm,
                    "model": "m@1",
                    "payload": {
                        "ctcae_term": o.ctcae_term,
                        "grade": o.grade,
                        "date": o.onset.isoformat(),
                        "drug_display": o.drug_display,
                        "event": o.evidence,
                        "event_span": list(o.span or (0, 0)),
                    },
                }
            ],
        )


def test_sync_writes_one_summary_per_drug_and_period_replaced_on_change(fhir_base_url: str, tmp_path: Path) -> None:
    year = random.Random(uuid.uuid4().int).randint(2040, 2090)  # a period no other run wrote
    rxnorm = "2555"
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    _store_findings(store, _observations(year, rxnorm))
    honest = GuardedSummariser(FakeGenerator(lambda t: t.replace("Most reported", "Reported most")))
    liar = GuardedSummariser(FakeGenerator(lambda t: t.replace("Nausea (2 reports", "Nausea (5 reports")))

    async def run(summariser: GuardedSummariser) -> tuple[SyncReport, int]:
        config = FhirClientConfig(base_url=fhir_base_url, read_timeout_s=120.0, max_retries=2)
        async with FhirClient(config) as client:
            job = SyncJob(store, client, None, summariser=summariser)  # type: ignore[arg-type]
            report = SyncReport(run_id=0)
            store.reset_watermarks()  # no summary mark: every drug with findings is summarised again
            await job._write_summaries(report)  # the write-back stage alone: no notes to pull here
            key = f"ade-summary-{group_by_drug(_observations(year, rxnorm))[0].key}"
            total = await client.count("DocumentReference", {"identifier": f"{SID_ADE_SUMMARY}|{key}"})
        return report, total

    first, total = asyncio.run(run(honest))
    assert first.counts["summaries_generated"] == 1 and first.counts["AdeSummary_created"] >= 1 and total == 1
    again, total = asyncio.run(run(honest))
    assert again.counts["AdeSummary_created"] == 0 and total == 1  # same content: nothing new
    changed, total = asyncio.run(run(liar))
    assert changed.counts["summaries_guard_fallback"] == 1 and total == 1  # replaced, not duplicated
    [row] = store.findings(kind=GROUP_KIND, drug_rxnorm=rxnorm)
    assert row.payload["generated"] is False and row.payload["rejected_because"]
    stored = DrugGroup.from_json(row.payload["record"])
    expected = to_drug_group(group_by_drug(_observations(year))[0])  # the sync has no first-dose dates
    assert (stored.patients, stored.reports, stored.terms) == (expected.patients, expected.reports, expected.terms)
    assert [(e.note_id, e.start, e.end) for e in stored.evidence] == [
        (e.note_id, e.start, e.end) for e in expected.evidence
    ]
    store.close()
    env = cli_env(tmp_path, STATE_DB_URL=f"sqlite:///{tmp_path / 'state.db'}")
    shown = run_cli(["summaries", "--drug", "cisplatin"], env)
    assert shown.returncode == 0 and row.payload["markdown"].strip() in shown.stdout
