"""The DrugComb scorer on hand-made cases, candidate generation, decoding, parsing and the drug lexicon."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.drugcomb import (
    DrugCombDoc,
    DrugLexicon,
    DrugSpan,
    ScoredRelation,
    decide,
    drugcomb_scores,
    enumerate_candidates,
    mark_sentence,
    parse_doc,
    read_jsonl,
    relation_prf,
    split_docs,
)
from models.drugcomb.candidates import CandidateConfig, context_of, mark_with_focus, training_candidates
from models.drugcomb.data import GoldRelation, docs_from_note_records
from models.drugcomb.extractor import _after_heading
from models.errors import DataFormatError


def rel(doc: str, drugs: tuple[int, ...], label: str) -> ScoredRelation:
    return ScoredRelation(doc, frozenset(drugs), label)


def test_exact_match_scores_one_everywhere() -> None:
    gold = [rel("a", (0, 1), "POS"), rel("b", (0, 1, 2), "POS")]
    scores = drugcomb_scores(gold, list(gold))
    assert {k: scores[k] for k in ("f1_pos_exact", "f1_pos_partial", "f1_any_exact", "f1_any_partial")} == {
        "f1_pos_exact": 1.0,
        "f1_pos_partial": 1.0,
        "f1_any_exact": 1.0,
        "f1_any_partial": 1.0,
    }


def test_partial_match_earns_the_jaccard_overlap_and_exact_earns_nothing() -> None:
    gold = [rel("a", (0, 1), "POS")]
    predicted = [rel("a", (0, 1, 2), "POS")]
    partial = relation_prf(gold, predicted, exact=False, positive_only=True)
    assert partial.precision == pytest.approx(2 / 3)
    assert partial.recall == pytest.approx(2 / 3)
    assert relation_prf(gold, predicted, exact=True, positive_only=True).f1 == 0.0
    # One shared drug is not an alignment, even in partial mode.
    assert relation_prf(gold, [rel("a", (1, 2), "POS")], exact=False, positive_only=True).f1 == 0.0


def test_positive_scores_ignore_comb_and_any_scores_unify_the_classes() -> None:
    gold = [rel("a", (0, 1), "POS"), rel("b", (0, 1), "COMB")]
    predicted = [rel("a", (0, 1), "COMB"), rel("b", (0, 1), "NEG")]
    scores = drugcomb_scores(gold, predicted)
    assert scores["f1_any_exact"] == 1.0
    assert scores["f1_pos_exact"] == 0.0  # the POS gold was called COMB; no predicted POS at all
    # A predicted POS against a gold COMB is a false positive for the positive scores.
    fp = relation_prf([rel("b", (0, 1), "COMB")], [rel("b", (0, 1), "POS"), rel("c", (0, 1), "POS")], True, True)
    assert fp.precision == 0.0 and fp.recall == 0.0


def test_precision_and_recall_average_over_their_own_side() -> None:
    gold = [rel("a", (0, 1), "POS"), rel("a", (2, 3), "POS"), rel("b", (0, 1), "POS")]
    predicted = [rel("a", (0, 1), "POS"), rel("c", (0, 1), "POS")]
    prf = relation_prf(gold, predicted, exact=True, positive_only=True)
    assert prf.precision == pytest.approx(1 / 2)  # one of two predictions is right
    assert prf.recall == pytest.approx(1 / 3)  # one of three gold relations is found
    assert prf.f1 == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))


def test_duplicate_predictions_count_once_and_other_documents_never_align() -> None:
    gold = [rel("a", (0, 1), "POS")]
    predicted = [rel("a", (0, 1), "POS"), rel("a", (1, 0), "POS"), rel("z", (0, 1), "POS")]
    prf = relation_prf(gold, predicted, exact=True, positive_only=True)
    assert prf.precision == pytest.approx(1 / 2)
    assert prf.recall == 1.0


def test_the_best_aligned_prediction_counts_for_a_gold_relation() -> None:
    gold = [rel("a", (0, 1, 2, 3), "POS")]
    predicted = [rel("a", (0, 1), "POS"), rel("a", (0, 1, 2), "POS")]
    prf = relation_prf(gold, predicted, exact=False, positive_only=True)
    assert prf.recall == pytest.approx(3 / 4)
    assert prf.precision == pytest.approx((2 / 4 + 3 / 4) / 2)


def test_no_combinations_at_all_scores_zero_not_an_error() -> None:
    assert drugcomb_scores([], [])["f1_pos_exact"] == 0.0
    assert drugcomb_scores([rel("a", (0, 1), "COMB")], [])["f1_pos_partial"] == 0.0


def test_candidates_are_small_subsets_first_then_the_full_set_within_the_cap() -> None:
    assert enumerate_candidates(2, 4, 96) == [(0, 1)]
    three = enumerate_candidates(3, 4, 96)
    assert three == [(0, 1), (0, 2), (1, 2), (0, 1, 2)]
    six = enumerate_candidates(6, 4, 500)
    assert len(six) == 15 + 20 + 15 + 1 and six[-1] == (0, 1, 2, 3, 4, 5)
    capped = enumerate_candidates(15, 4, 20)
    assert len(capped) == 20 and capped[-1] == tuple(range(15)) and all(len(c) == 2 for c in capped[:-1])
    assert enumerate_candidates(1, 4, 96) == []


SENTENCE = "Cisplatin plus paclitaxel, then gemcitabine alone."
SPANS = (DrugSpan(0, "Cisplatin", 0, 9), DrugSpan(1, "paclitaxel", 15, 25), DrugSpan(2, "gemcitabine", 32, 43))


def test_marking_wraps_only_the_candidate_drugs_and_locates_every_drug() -> None:
    assert mark_sentence(SENTENCE, SPANS, (0, 1)) == "<< Cisplatin >> plus << paclitaxel >>, then gemcitabine alone."
    text, focus, other = mark_with_focus(SENTENCE, SPANS, (2, 0))
    assert text == "<< Cisplatin >> plus paclitaxel, then << gemcitabine >> alone."
    assert [text[a:b] for a, b in focus] == ["Cisplatin", "gemcitabine"]
    assert [text[a:b] for a, b in other] == ["paclitaxel"]


def test_training_candidates_keep_every_gold_relation_and_sample_negatives() -> None:
    import random

    doc = parse_doc(
        {
            "doc_id": "d",
            "sentence": SENTENCE,
            "spans": [{"span_id": s.span_id, "text": s.text, "start": s.start, "end": s.end} for s in SPANS],
            "rels": [{"class": "POS", "spans": [1, 0], "is_context_needed": False}],
            "paragraph": "Intro. " + SENTENCE + " Response was seen.",
        }
    )
    pairs = training_candidates(doc, CandidateConfig(), max_negatives=2, rng=random.Random(0))
    assert pairs[0] == ((0, 1), "POS")
    assert len(pairs) == 3 and all(label == "NO_COMB" for _, label in pairs[1:])
    assert context_of(doc, 100) == "Response was seen. Intro."
    assert context_of(doc, 0) is None


def test_decoding_keeps_confident_non_nested_combinations() -> None:
    candidates = [(0, 1), (0, 2), (1, 2), (0, 1, 2)]
    #                      NO_COMB POS  COMB NEG
    probs = np.array(
        [
            [0.1, 0.8, 0.05, 0.05],  # (0,1) POS, most confident
            [0.4, 0.1, 0.45, 0.05],  # (0,2) COMB, overlaps but is not nested: kept
            [0.9, 0.05, 0.03, 0.02],  # (1,2) below threshold
            [0.3, 0.6, 0.05, 0.05],  # (0,1,2) superset of (0,1): dropped
        ]
    )
    kept = decide(candidates, probs, threshold=0.5)
    assert [(d.members, d.label) for d in kept] == [((0, 1), "POS"), ((0, 2), "COMB")]
    assert kept[0].confidence == pytest.approx(0.8)
    largest = decide(candidates, probs, threshold=0.5, strategy="largest_disjoint")
    assert [(d.members, d.label) for d in largest] == [((0, 1, 2), "POS")]
    assert len(decide(candidates, probs, threshold=0.5, strategy="all")) == 3


def test_bad_records_raise_data_format_errors(tmp_path: Path) -> None:
    good = {"doc_id": "x", "sentence": "A and B", "spans": [{"span_id": 0, "text": "A", "start": 0, "end": 1}]}
    assert parse_doc(good).relations == ()
    with pytest.raises(DataFormatError, match="OV-2071"):
        parse_doc({**good, "spans": [{"span_id": 0, "text": "A", "start": 0, "end": 99}]})
    with pytest.raises(DataFormatError, match="OV-2071"):
        parse_doc({**good, "rels": [{"class": "MAYBE", "spans": [0, 1]}]})
    with pytest.raises(DataFormatError, match="OV-2071"):
        parse_doc({"sentence": "no id", "spans": []})
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(good) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"broken\.jsonl:2"):
        read_jsonl(broken)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="OV-2070"):
        read_jsonl(empty)
    with pytest.raises(DataFormatError, match="OV-2070"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_split_is_deterministic_and_keeps_a_paper_on_one_side() -> None:
    docs = [
        DrugCombDoc(f"d{i}", "s", (), (), "p", source=f"https://pubmed.ncbi.nlm.nih.gov/{i // 2}/") for i in range(400)
    ]
    train, dev = split_docs(docs, 0.2)
    assert split_docs(docs, 0.2) == (train, dev)
    assert 40 <= len(dev) <= 120
    dev_papers = {d.source for d in dev}
    assert not dev_papers & {d.source for d in train}


def test_lexicon_finds_whole_words_longest_first_case_insensitively() -> None:
    lexicon = DrugLexicon(["Cisplatin", "Paclitaxel", "Interferon alfa", "Interferon"], extra={"Taxol": "paclitaxel"})
    text = "Interferon alfa and CISPLATIN/Taxol; notcisplatin is not a drug."
    found = [(text[m.start : m.end], m.name) for m in lexicon.find(text)]
    assert found == [("Interferon alfa", "interferon alfa"), ("CISPLATIN", "cisplatin"), ("Taxol", "paclitaxel")]


def test_synthetic_note_combinations_become_drugcomb_sentences() -> None:
    text = "Plan: Continue Taxol plus carboplatin as scheduled. Ondansetron as needed."
    start = text.index("Continue")
    end = text.index("scheduled.") + len("scheduled.")
    record = {
        "note_id": "n1",
        "text": text,
        "combinations": [
            {
                "drugs": ["paclitaxel", "carboplatin"],
                "label": "COMB",
                "sentence_span": [start, end],
                "drug_spans": [
                    [text.index("Taxol"), text.index("Taxol") + 5],
                    [text.index("carbo"), text.index("carbo") + 11],
                ],
            }
        ],
    }
    (doc,) = docs_from_note_records([record, {"note_id": "n2", "text": "No combinations.", "combinations": []}])
    assert doc.sentence == "Continue Taxol plus carboplatin as scheduled."
    assert [(s.span_id, s.text) for s in doc.spans] == [(0, "Taxol"), (1, "carboplatin")]
    assert doc.relations == (GoldRelation((0, 1), "COMB"),) and doc.paragraph == text


def test_section_labels_are_not_part_of_the_sentence() -> None:
    text = "Impression and plan: Continue carboplatin. Ratio 3:1 kept."
    assert text[_after_heading(text, 0, 42) : 42] == "Continue carboplatin."
    assert _after_heading(text, 43, len(text)) == 43


def test_the_shipped_lexicon_adds_drug_names_the_annotators_marked_often(tmp_path: Path) -> None:
    from models.drugcomb.train import write_drug_names

    listed = tmp_path / "drugs.txt"
    listed.write_text("Carboplatin\nPaclitaxel\n", encoding="utf-8")
    sentence = "Cisplatin plus carboplatin/paclitaxel"
    spans = [
        {"span_id": 0, "text": "Cisplatin", "start": 0, "end": 9},
        {"span_id": 1, "text": "plus", "start": 10, "end": 14},  # an annotation slip, marked once
        {"span_id": 2, "text": "carboplatin/paclitaxel", "start": 15, "end": 37},
    ]
    docs = [
        parse_doc({"doc_id": str(i), "sentence": sentence, "spans": spans if i == 0 else spans[::2]}) for i in range(3)
    ]
    target = tmp_path / "out.txt"
    assert write_drug_names(target, listed, docs) == 3
    lexicon = DrugLexicon.from_file(target)
    assert [m.name for m in lexicon.find("cisplatin plus carboplatin")] == ["cisplatin", "carboplatin"]
