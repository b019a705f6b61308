"""The phenotype extractor: normalisers, misspelling injection, the note generator, decoding rules, metrics,
and the committed default model through the real merge -> optimum export -> onnxruntime path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cds.cohort.phenotype import generate_phenotype_notes
from models.encoder_infer import EntitySpan
from models.errors import DataFormatError
from models.phenotype import (
    FIELD_TYPES,
    FIELDS,
    field_metrics,
    fields_from_mentions,
    inject_misspellings,
    normalise,
    parse_record,
)
from models.phenotype.build import build_phenotype_dir
from models.registry import RuntimeConfig, default_registry
from models.runtime import CPU

REPO = Path(__file__).resolve().parents[2]
ARTIFACT = REPO / "models" / "artifacts" / "phenotype"
TYPE_FIELD = {kind: name for name, kind in FIELD_TYPES.items()}


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        ("ER", "ER+", "positive"),
        ("ER", "ER-", "negative"),
        ("ER", "estrogen receptor: negative (0%)", "negative"),
        ("PR", "PR postive, 40%", "positive"),
        ("HER2", "HER2 IHC 2+, FISH amplified", "positive"),
        ("HER2", "HER2 2+ (equivocal)", "equivocal"),
        ("HER2", "HER2 2+, FISH not amplified", "negative"),
        ("HER2", "HER2 0", "negative"),
        ("HER2", "HER2 3+", "positive"),
        ("PDL1", "PD-L1 TPS 80%", "high"),
        ("PDL1", "PD-L1 TPS 5%", "low"),
        ("PDL1", "PD-L1 <1%", "negative"),
        ("PDL1", "PD-L1 CPS 25", "high"),
        ("EGFR", "EGFR exon 19 deletion", "positive"),
        ("EGFR", "no EGFR mutation", "negative"),
        ("EGFR", "EGFR testing not performed", None),
        ("KRAS", "KRAS G12C", "positive"),
        ("ALK", "ALK rearangement detected", "positive"),
        ("TNM", "ypT1c, pN0, cM0", "T1cN0M0"),
        ("TNM", "T3N2bM0", "T3N2bM0"),
        ("STAGE", "Stage 3a", "IIIA"),
        ("STAGE", "AJCC stage IIB", "IIB"),
        ("GRADE", "moderately diferentiated", "2"),
        ("GRADE", "Grade III", "3"),
        ("SIZE", "2.3 x 1.8 cm", "23 mm"),
        ("SIZE", "54F with a 1.8 cm", "18 mm"),
        ("SIZE", "grade 3", None),
        ("SITE", "RUL", "lung"),
        ("SITE", "sigmoid colon", "colon"),
        ("HIST", "IDC", "invasive ductal carcinoma"),
        ("HIST", "adenocarcinma", "adenocarcinoma"),
        ("DX", "NSCLC", "non-small cell lung cancer"),
        ("LAT", "Lt", "left"),
    ],
)
def test_normalisers_read_abbreviations_and_slips(kind: str, text: str, value: str | None) -> None:
    assert normalise(kind, text) == value


def test_misspellings_keep_spans_on_the_same_words() -> None:
    text = "Biopsy of the left breast showed invasive ductal carcinoma, HER2 3+."
    spans = [
        (text.index(w), text.index(w) + len(w), kind)
        for w, kind in [("left", "LAT"), ("breast", "SITE"), ("invasive ductal carcinoma", "HIST"), ("HER2 3+", "HER2")]
    ]
    noisy, moved = inject_misspellings(text, spans, rate=1.0, seed=3)
    assert noisy != text
    for (a, b, kind), (c, d, kind2) in zip(spans, moved, strict=True):
        assert kind == kind2
        assert len(noisy[c:d].split()) == len(text[a:b].split())
    assert noisy[moved[3][0] : moved[3][1]] == "HER2 3+"  # abbreviations are never misspelled


def test_generator_is_deterministic_and_its_spans_state_the_truth() -> None:
    notes = generate_phenotype_notes(200, 5, typo_rate=0.0)
    assert [n.to_json() for n in notes[:20]] == [n.to_json() for n in generate_phenotype_notes(20, 5, 0.0)]
    assert {n.kind for n in notes} == {"pathology", "consult"}
    checked = 0
    for note in notes:
        for start, end, kind in note.spans:
            assert normalise(kind, note.text[start:end]) == note.truth[TYPE_FIELD[kind]]
            checked += 1
    assert checked > 1000
    assert {n.truth["site"] for n in notes} >= {"breast", "lung", "colon", "prostate", "head and neck"}


def test_the_existing_cohort_is_untouched() -> None:
    from cds.cohort import generate_cohort

    assert not any(n.note_id.startswith("ov-phe") for n in generate_cohort(2, 7).notes)


def test_fields_from_mentions_picks_the_confident_value_and_infers_diagnosis_and_side() -> None:
    text = "Mass in the RUL. Biopsy: adenocarcinoma. no EGFR mutation. EGFR L858R."
    mentions = [
        EntitySpan(12, 15, "SITE", 0.9),
        EntitySpan(25, 39, "HIST", 0.9),
        EntitySpan(44, 57, "EGFR", 0.8),  # "EGFR mutation": the cue before it makes it negative
        EntitySpan(59, 70, "EGFR", 0.4),
    ]
    phenotype = fields_from_mentions(text, mentions)
    assert phenotype.value("site") == "lung" and phenotype.value("laterality") == "right"
    assert phenotype.value("diagnosis") == "non-small cell lung cancer"
    assert phenotype.get("diagnosis").inferred  # type: ignore[union-attr]
    egfr = phenotype.get("egfr")
    assert egfr is not None and egfr.value == "negative" and text[egfr.span[0] : egfr.span[1]] == "no EGFR mutation"
    assert fields_from_mentions(text, mentions, min_confidence=0.95).fields == ()


def test_field_metrics_count_exact_match_and_f1() -> None:
    truth = [{"site": "lung", "stage_group": "IIIA"}, {"site": "breast", "stage_group": None}]
    pred = [{"site": "lung", "stage_group": "IIIB"}, {"site": "breast", "stage_group": None}]
    metrics = field_metrics(truth, pred)
    assert set(metrics["per_field"]) == set(FIELDS)
    assert metrics["per_field"]["site"]["f1"] == 1.0
    stage = metrics["per_field"]["stage_group"]
    assert stage["exact_match"] == 0.5 and stage["precision"] == 0.0 and stage["recall"] == 0.0
    assert metrics["per_field"]["her2"]["exact_match"] == 1.0


def test_bad_records_get_coded_errors() -> None:
    with pytest.raises(DataFormatError, match="OV-2121"):
        parse_record({"text": 3, "truth": {}}, "line 1")
    with pytest.raises(DataFormatError, match="OV-2122"):
        parse_record({"text": "x", "truth": {"colour": "red"}}, "line 1")


@pytest.fixture(scope="module")
def default_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("phenotype-default") / "phenotype"
    build_phenotype_dir(ARTIFACT, model_dir, int8=False, threads=1)
    return model_dir


@pytest.mark.slow
def test_committed_default_model_reads_pathology_and_consult_notes(default_dir: Path) -> None:
    extractor = default_registry().create("phenotype-extractor.v1", default_dir, RuntimeConfig(providers=(CPU,)))
    notes = [
        "SURGICAL PATHOLOGY REPORT\nSpecimen: right breast, resection.\nDiagnosis: invasive ductal carcinoma, "
        "grade 3.\nTumor size: 2.4 cm.\nPathologic stage: pT2 N1 M0.\nStage group: stage IIB.\n"
        "Biomarkers: ER positive (90%), PR negative, HER2 3+.\n",
        "Oncology consult. 70 y/o referred for newly diagnosed NSCLC. Imaging showed a mass in the LUL measuring "
        "41 mm. Pathology: adenocarcinoma. Staging: cT2b N2 M1a, stage IVA. Testing shows PD-L1 TPS 80%. "
        "EGFR wild-type. ALK negative.",
    ]
    breast, lung = extractor.predict(notes)
    assert breast.values() | {} == {
        **dict.fromkeys(FIELDS),
        "site": "breast",
        "histology": "invasive ductal carcinoma",
        "diagnosis": "breast cancer",
        "tnm": "T2N1M0",
        "stage_group": "IIB",
        "grade": "3",
        "size_mm": "24 mm",
        "laterality": "right",
        "er": "positive",
        "pr": "negative",
        "her2": "positive",
    }
    her2 = breast.get("her2")
    assert her2 is not None and notes[0][her2.span[0] : her2.span[1]] == "HER2 3+"
    assert lung.value("diagnosis") == "non-small cell lung cancer" and lung.value("laterality") == "left"
    assert (lung.value("pdl1"), lung.value("egfr"), lung.value("alk")) == ("high", "negative", "negative")
    assert lung.value("stage_group") == "IVA" and lung.value("tnm") == "T2bN2M1a"


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ONCOVIGIL_HOME": str(home), "ONCOVIGIL_ONNX_PROVIDERS": '["CPUExecutionProvider"]'}
    return subprocess.run(
        [sys.executable, "-c", "from cds.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )


@pytest.mark.slow
def test_eval_command_reports_per_field_scores_clean_and_misspelled(default_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "notes.jsonl"
    data.write_text("".join(json.dumps(n.to_json()) + "\n" for n in generate_phenotype_notes(12, 99, 0.0)))
    done = _cli("eval", "phenotype", "--data", str(data), "--model", str(default_dir), "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)
    assert {"micro", "macro_f1", "macro_exact_match", "per_field", "misspelled"} <= set(metrics)
    assert set(metrics["per_field"]) == set(FIELDS)
    assert metrics["misspelled"]["rate"] == 0.1 and set(metrics["misspelled"]["per_field"]) == set(FIELDS)
    assert metrics["micro"]["f1"] >= 0.95
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": 3}\n', encoding="utf-8")
    done = _cli("eval", "phenotype", "--data", str(bad), "--model", str(default_dir), "--json", home=tmp_path)
    assert done.returncode == 2 and "OV-2121" in done.stderr and done.stdout == ""
