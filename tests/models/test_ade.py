"""ADE extractor: corpus reading, cue rules, metrics, and predictions of the real default model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from models import AdeFinding, ModelIntegrityError, RuntimeConfig
from models.ade import AdeExtractor, corpus_metrics, read_corpus, split_by_pmid, write_corpus
from models.ade.corpus import AdeSentence, is_dev
from models.ade.ctcae import CtcaeIndex, CtcaeMatch, CtcaeTerm, read_terms
from models.ade.cues import core_mention, is_negated, severity
from models.ade.training import build_ade_dir, note_examples
from models.card import read_card
from models.encoder_export import artifact_backbone_dir
from models.runtime import CPU

ARTIFACT = Path(__file__).resolve().parents[2] / "models" / "artifacts" / "ade"
TERMS = Path(__file__).resolve().parents[2] / "cds" / "data" / "ctcae_v5_terms.csv"


def _at(sentence: str, word: str) -> tuple[int, int]:
    start = sentence.index(word)
    return start, start + len(word)


# -- corpus ----------------------------------------------------------------------------------------


def test_rel_offsets_are_document_level_and_resolved_inside_the_sentence(tmp_path: Path) -> None:
    sentence = "Rash after phenytoin; phenytoin was stopped and the rash resolved."
    # the second "phenytoin" is at 22 in the sentence; the sentence starts at 100 in its abstract
    (tmp_path / "DRUG-AE.rel").write_text(f"1|{sentence}|Rash|100|104|phenytoin|122|131\n", encoding="utf-8")
    (tmp_path / "ADE-NEG.txt").write_text(f"1 NEG {sentence}\n2 NEG Nothing happened.\n", encoding="utf-8")
    corpus = read_corpus(tmp_path)
    assert len(corpus) == 2  # the negative duplicate of a positive sentence is dropped
    positive = corpus[0]
    assert positive.pairs == {((22, 31), (0, 4))}

    write_corpus(tmp_path / "copy", corpus)
    again = read_corpus(tmp_path / "copy")
    assert [(s.text, s.pairs) for s in again] == [(s.text, s.pairs) for s in corpus]


def test_split_by_pmid_is_deterministic_and_keeps_documents_whole() -> None:
    sentences = [AdeSentence(str(pmid), f"s{pmid}-{i}") for pmid in range(400) for i in range(2)]
    train, dev = split_by_pmid(sentences)
    assert {s.pmid for s in train}.isdisjoint({s.pmid for s in dev})
    assert 0.12 < len(dev) / len(sentences) < 0.28
    assert [s.pmid for s in dev] == [s.pmid for s in split_by_pmid(sentences)[1]]
    # The side of a PubMed id is a salted hash, the same on every machine and in every release: the dev
    # figures in the README and the model cards are comparable only while these stay where they are.
    assert [p for p in map(str, range(20)) if is_dev(p)] == ["6", "10", "12", "13"]
    assert is_dev("10030778") is False


def test_note_examples_carry_truth_spans_into_sentences() -> None:
    text = "Seen today. Grade 2 nausea, attributed to cisplatin. Denies rash."
    record = {
        "text": text,
        "ades": [{"drug_span": list(_at(text, "cisplatin")), "event_span": list(_at(text, "nausea"))}],
    }
    examples = note_examples([record])
    assert [e.text for e in examples] == ["Seen today.", "Grade 2 nausea, attributed to cisplatin.", "Denies rash."]
    spans = examples[1].spans
    assert {(examples[1].text[a:b], kind) for a, b, kind in spans} == {("nausea", "AE"), ("cisplatin", "DRUG")}


# -- cue rules -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sentence", "event", "negated"),
    [
        ("On cisplatin, denies nausea.", "nausea", True),
        ("No evidence of neuropathy since starting oxaliplatin.", "neuropathy", True),
        ("Denies nausea or vomiting since starting cisplatin.", "vomiting", True),
        ("Tolerating paclitaxel without neuropathy.", "neuropathy", True),
        ("Asked about tinnitus given cisplatin exposure, which she denies.", "tinnitus", True),
        ("No nausea but grade 2 diarrhea after irinotecan.", "diarrhea", False),
        ("The patient did not tolerate cisplatin due to nausea.", "nausea", False),
        ("Clozapine-induced agranulocytosis.", "agranulocytosis", False),
    ],
)
def test_negation_cues(sentence: str, event: str, negated: bool) -> None:
    assert is_negated(sentence, *_at(sentence, event)) is negated


@pytest.mark.parametrize(
    ("sentence", "event", "grade", "word"),
    [
        ("Grade 3 neutropenia likely secondary to docetaxel.", "neutropenia", 3, None),
        ("Nausea (grade 2), attributed to cisplatin.", "Nausea", 2, None),
        ("Rash (CTCAE v5 G2) after cetuximab.", "Rash", 2, None),
        ("grade III neuropathy", "neuropathy", 3, None),
        ("Severe mucositis from fluorouracil.", "mucositis", 3, "severe"),
        ("Diarrhea, moderate, from irinotecan.", "Diarrhea", 2, "moderate"),
        ("Fatigue after cisplatin.", "Fatigue", None, None),
        ("Severe mucositis after fluorouracil.", "Severe mucositis", 3, "severe"),
    ],
)
def test_grade_cues(sentence: str, event: str, grade: int | None, word: str | None) -> None:
    found = severity(sentence, *_at(sentence, event))
    assert (found.grade, found.severity_word) == (grade, word)


def test_grade_before_the_next_event_belongs_to_it() -> None:
    sentence = "Nausea, grade 2 diarrhea after cisplatin."
    nausea, diarrhea = _at(sentence, "Nausea"), _at(sentence, "diarrhea")
    assert severity(sentence, *nausea, 0, diarrhea[0]).grade is None
    assert severity(sentence, *diarrhea, nausea[1]).grade == 2


def test_ctcae_lexical_lookup() -> None:
    index = CtcaeIndex(read_terms(TERMS))
    mentions = ["Nausea", "neutropenia", "myalgias", "xyzzy", "severe neutropenia", "Acute kidney injury"]
    found = index.match(mentions, [core_mention(m) for m in mentions])
    assert [m.term if m else None for m in found] == [
        "Nausea",
        "Neutrophil count decreased",
        "Myalgia",
        None,
        "Neutrophil count decreased",
        "Acute kidney injury",
    ]
    assert found[0] is not None and found[0].meddra_code == "10028813"


# -- metrics ---------------------------------------------------------------------------------------


def _finding(drug: tuple[int, int], event: tuple[int, int], negated: bool = False) -> AdeFinding:
    return AdeFinding("d", drug, "e", event, negated, None, None, None, None, 0.9)


def test_corpus_metrics_exact_relaxed_and_negation() -> None:
    gold = [AdeSentence("1", "x" * 50, {(0, 5)}, {(10, 20)}, {((0, 5), (10, 20))})]
    exact = corpus_metrics(gold, [[_finding((0, 5), (10, 20))]])
    assert exact["pair_f1"] == exact["drug_f1"] == exact["ade_f1"] == exact["pair_f1_relaxed"] == 1.0
    shifted = corpus_metrics(gold, [[_finding((0, 5), (12, 20))]])
    assert shifted["pair_f1"] == 0.0 and shifted["pair_f1_relaxed"] == 1.0 and shifted["drug_f1"] == 1.0
    negated = corpus_metrics(gold, [[_finding((0, 5), (10, 20), negated=True)]])
    assert negated["pair_recall"] == 0.0 and negated["pair_precision"] == 0.0


# -- the real default model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_model(tmp_path_factory: pytest.TempPathFactory, prerequisite: Callable[[bool, str], None]) -> Path:
    """The committed artifact, materialised: reuse `oncovigil models build`'s directory when it is current."""
    prerequisite((ARTIFACT / "model_card.json").is_file(), "models/artifacts/ade is not committed in this checkout")
    from cds.model_tasks import get_task, is_built
    from cds.settings import load_settings

    settings = load_settings()
    built = settings.resolved_models_dir / "ade"
    if is_built(get_task("ade"), built, ARTIFACT):
        return built
    out = tmp_path_factory.mktemp("models") / "ade"
    card = read_card(ARTIFACT)
    base = artifact_backbone_dir(ARTIFACT, settings.backbones_dir)
    build_ade_dir(ARTIFACT, out, read_terms(TERMS), int8=bool(card.export.get("int8_keep")), base_dir=base)
    return out


def test_default_model_extracts_pairs_negation_grade_and_term(default_model: Path) -> None:
    extractor = AdeExtractor.load(default_model, RuntimeConfig(providers=(CPU,), allow_int8=False))
    notes = [
        "Grade 3 neutropenia likely secondary to docetaxel.",
        "Follow-up visit. On cisplatin, denies nausea.",
        "Restaging CT shows stable disease.",
    ]
    first, second, third = extractor.predict(notes)
    assert [(f.drug, f.event, f.negated, f.grade, f.ctcae_term) for f in first] == [
        ("docetaxel", "neutropenia", False, 3, "Neutrophil count decreased")
    ]
    assert first[0].drug_span == _at(notes[0], "docetaxel") and first[0].meddra_code
    assert [(f.drug, f.event, f.negated) for f in second] == [("cisplatin", "nausea", True)]
    assert second[0].event_span == _at(notes[1], "nausea")
    assert third == []
    assert list(extractor.pipe(iter(notes), batch_size=2)) == [first, second, third]


def test_default_model_directory_refuses_tampering(default_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "ade"
    copy.mkdir()
    for path in default_model.iterdir():
        if path.name in ("ctcae_terms.csv", "model_card.json"):
            (copy / path.name).write_bytes(path.read_bytes())
        else:
            (copy / path.name).symlink_to(path)  # the big ONNX files are only read
    AdeExtractor.load(copy, RuntimeConfig(providers=(CPU,)))  # intact copy loads
    terms = copy / "ctcae_terms.csv"
    terms.write_text(terms.read_text(encoding="utf-8") + "Made up,1\n", encoding="utf-8")
    with pytest.raises(ModelIntegrityError):
        AdeExtractor.load(copy, RuntimeConfig(providers=(CPU,)))


def test_long_note_is_windowed_with_offsets_kept(default_model: Path) -> None:
    extractor = AdeExtractor.load(default_model, RuntimeConfig(providers=(CPU,), allow_int8=False))
    filler = " ".join(["The patient walked in the park and talked about the weather"] * 30)
    note = f"{filler}. Severe mucositis attributed to fluorouracil."
    [findings] = extractor.predict([note])
    assert findings, "the finding after a 300-word sentence must survive windowing"
    finding = findings[0]
    # ADE-Corpus-V2 annotates "severe hepatotoxicity" whole, so the span may keep "Severe"
    assert note[slice(*finding.event_span)] == finding.event
    assert finding.event in ("mucositis", "Severe mucositis")
    assert note[slice(*finding.drug_span)] == finding.drug == "fluorouracil"
    assert finding.grade == 3 and finding.severity_word == "severe"
    assert finding.ctcae_term == "Mucositis oral"


def test_ctcae_index_without_vectors_matches_lexically_and_leaves_the_rest_unmapped() -> None:
    terms = [CtcaeTerm("Nausea", "10028813")]
    # "xyzzy" reaches the embedding step, which an index without vectors skips instead of failing.
    nausea, unknown = CtcaeIndex(terms).match(["Nausea", "xyzzy"])
    assert nausea == CtcaeMatch("Nausea", "10028813", 1.0, "exact")
    assert unknown is None


# -- span tidying and constrained decoding ---------------------------------------------------------


def test_tidy_trims_function_words_merges_split_words_and_drops_unsure_spans() -> None:
    from models.ade.decode import tidy
    from models.encoder_infer import EntitySpan

    text = "Aseptic meningitis and orthostatic hypotension after co-trimoxazole, maybe fever."
    spans = [
        EntitySpan(0, 7, "AE", 0.9),
        EntitySpan(8, 18, "AE", 0.7),
        EntitySpan(19, 46, "AE", 0.95),
        EntitySpan(53, 67, "DRUG", 0.99),
        EntitySpan(75, 80, "AE", 0.4),
    ]
    tidied = tidy(text, spans, min_confidence=0.5)
    assert [(text[s.start : s.end], s.kind) for s in tidied] == [
        ("Aseptic meningitis", "AE"),
        ("orthostatic hypotension", "AE"),
        ("co-trimoxazole", "DRUG"),
    ]
    assert tidied[0].confidence == pytest.approx((0.9 * 7 + 0.7 * 10) / 17)


def test_an_event_tagged_on_a_nesting_word_after_a_drug_holds_the_drug() -> None:
    from models.ade.decode import nest_drug_events
    from models.encoder_infer import EntitySpan

    text = "Carbamazepine toxicity and lithium-intoxication, then phenytoin toxicity; rash from penicillin."
    carbamazepine, lithium = EntitySpan(0, 13, "DRUG", 0.99), EntitySpan(27, 34, "DRUG", 0.9)
    phenytoin, penicillin = EntitySpan(54, 63, "DRUG", 0.97), EntitySpan(84, 94, "DRUG", 0.98)
    spans = [
        carbamazepine,
        EntitySpan(14, 22, "AE", 0.8),
        lithium,
        EntitySpan(35, 47, "AE", 0.7),
        phenytoin,  # "toxicity" after it is not tagged: no event is made up
        EntitySpan(74, 78, "AE", 0.9),
        penicillin,
    ]
    nested = nest_drug_events(text, spans, "DRUG", "AE")
    assert [(text[s.start : s.end], s.kind) for s in nested] == [
        ("Carbamazepine", "DRUG"),
        ("Carbamazepine toxicity", "AE"),
        ("lithium", "DRUG"),
        ("lithium-intoxication", "AE"),
        ("phenytoin", "DRUG"),
        ("rash", "AE"),
        ("penicillin", "DRUG"),
    ]
    assert nested[1].confidence == 0.8 and nested[3].confidence == 0.7


def test_a_bare_grade_word_is_no_event() -> None:
    from models.ade.decode import drop_bare_qualifiers
    from models.encoder_infer import EntitySpan

    text = "Nausea, severe; grade 3 rash; fatal; Mild after cisplatin."
    spans = [
        EntitySpan(0, 6, "AE", 0.9),
        EntitySpan(8, 14, "AE", 0.6),  # "severe"
        EntitySpan(16, 23, "AE", 0.6),  # "grade 3"
        EntitySpan(24, 28, "AE", 0.9),
        EntitySpan(30, 35, "AE", 0.8),  # "fatal" is an event in ADE-Corpus-V2
        EntitySpan(37, 41, "AE", 0.6),  # "Mild"
        EntitySpan(48, 57, "DRUG", 0.99),
    ]
    kept = drop_bare_qualifiers(text, spans, "AE")
    assert [text[s.start : s.end] for s in kept] == ["Nausea", "rash", "fatal", "cisplatin"]


def test_default_model_grades_an_event_whose_severity_follows_it(default_model: Path) -> None:
    """The demo patient's note: "severe" after the event is its grade, not an event of its own."""
    extractor = AdeExtractor.load(default_model, RuntimeConfig(providers=(CPU,), allow_int8=False))
    note = "Reports trouble sleeping, severe as well as hyperglycemia grade 2 since starting Prednisone."
    [findings] = extractor.predict([note])
    assert {(f.event, f.grade) for f in findings} == {("trouble sleeping", 3), ("hyperglycemia", 2)}
    assert {f.ctcae_term for f in findings} == {"Insomnia", "Hyperglycemia"}


def test_default_model_nests_the_drug_in_its_toxicity(default_model: Path) -> None:
    extractor = AdeExtractor.load(default_model, RuntimeConfig(providers=(CPU,), allow_int8=False))
    note = "Theophylline intoxication after ciprofloxacin."
    [findings] = extractor.predict([note])
    assert ("Theophylline", "Theophylline intoxication") in {(f.drug, f.event) for f in findings}


def test_viterbi_never_starts_an_entity_inside() -> None:
    import numpy as np

    from models.encoder_infer import TokenOutput, decode_bio, viterbi_bio

    labels = ["O", "B-AE", "I-AE"]
    # argmax would read O, I-AE, I-AE (an orphan inside); the valid path is O, B-AE, I-AE
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.4, 0.5], [0.1, 0.1, 0.8]], dtype=np.float32)
    assert viterbi_bio(probs, labels) == [0, 1, 2]
    text = "severe hand rash"
    output = TokenOutput(offsets=[(0, 6), (7, 11), (12, 16)], probs=probs, hidden=None)
    [span] = decode_bio(text, output, labels)
    assert text[span.start : span.end] == "hand rash"


def test_registry_builds_the_extractor_named_in_the_card(default_model: Path) -> None:
    from models import default_registry

    registry = default_registry()
    name = read_card(default_model).name
    assert name == "ade-extractor.v1" and name in registry.names()
    extractor = registry.create(name, default_model, RuntimeConfig(providers=(CPU,)))
    assert isinstance(extractor, AdeExtractor)
    assert extractor.provider == CPU
    [findings] = extractor.predict(["Cisplatin-induced ototoxicity was noted."])
    assert [(f.drug, f.event) for f in findings] == [("Cisplatin", "ototoxicity")]
