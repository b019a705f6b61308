"""Synthetic pathology and consult notes that state a cancer phenotype, with character-exact ground truth.

A separate generator from ``generate_cohort`` (its outputs and counts stay byte-identical): same
``(count, seed)`` -> the same notes. Facts are stated in varied wording, abbreviations (IDC, NSCLC, ER+,
RUL) and, at ``typo_rate``, misspelled; every fact's span is placed by the builder and remapped through
the misspelling step, and its normalised value is the truth the phenotype extractor is scored against.

A share of notes (``ehr_share``) is written the way EHR-generated encounter notes state a diagnosis: a
problem-list display in SNOMED CT's style ("Patient is presenting with non-small cell carcinoma of lung,
TNM stage 1 (disorder).", "history of ... malignant neoplasm of breast (disorder)"), next to suspected
cancers ("suspected lung cancer (situation)") that are no diagnosis. Whether a note is one of them is drawn
from its own random stream, so the other notes of a seed are the same with or without them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from models.phenotype.labels import (
    ALK,
    DX,
    EGFR,
    ER,
    FIELD_TYPES,
    GRADE,
    HER2,
    HIST,
    KRAS,
    LAT,
    PDL1,
    PR,
    SITE,
    SIZE,
    STAGE,
    TNM,
)
from models.phenotype.noise import inject_misspellings

_TYPE_FIELD = {kind: name for name, kind in FIELD_TYPES.items()}


@dataclass(frozen=True)
class _Cancer:
    site: str
    sites: tuple[str, ...]
    histologies: tuple[tuple[str, tuple[str, ...]], ...]
    diagnosis: str
    dx_phrases: tuple[str, ...]
    markers: tuple[str, ...]
    lateral: bool


_CANCERS: tuple[_Cancer, ...] = (
    _Cancer(
        "breast",
        ("breast", "breast", "breast tissue"),
        (
            ("invasive ductal carcinoma", ("invasive ductal carcinoma", "IDC", "infiltrating ductal carcinoma")),
            ("invasive lobular carcinoma", ("invasive lobular carcinoma", "ILC", "infiltrating lobular carcinoma")),
        ),
        "breast cancer",
        ("breast cancer", "carcinoma of the breast", "breast ca"),
        (ER, PR, HER2),
        True,
    ),
    _Cancer(
        "lung",
        ("lung", "upper lobe", "lower lobe", "RUL", "LLL", "LUL"),
        (
            ("adenocarcinoma", ("adenocarcinoma", "adenoCA", "adenocarcinoma, acinar predominant")),
            ("squamous cell carcinoma", ("squamous cell carcinoma", "SCC", "keratinizing squamous cell carcinoma")),
        ),
        "non-small cell lung cancer",
        ("non-small cell lung cancer", "NSCLC", "non small cell lung carcinoma"),
        (PDL1, EGFR, ALK, KRAS),
        True,
    ),
    _Cancer(
        "colon",
        ("sigmoid colon", "ascending colon", "transverse colon", "cecum"),
        (("adenocarcinoma", ("adenocarcinoma", "invasive adenocarcinoma", "mucinous adenocarcinoma")),),
        "colon cancer",
        ("colon cancer", "colon adenocarcinoma", "carcinoma of the colon"),
        (KRAS,),
        False,
    ),
    _Cancer(
        "rectum",
        ("rectum", "distal rectum", "mid rectum"),
        (("adenocarcinoma", ("adenocarcinoma", "invasive adenocarcinoma")),),
        "rectal cancer",
        ("rectal cancer", "rectal adenocarcinoma", "carcinoma of the rectum"),
        (KRAS,),
        False,
    ),
    _Cancer(
        "prostate",
        ("prostate", "prostate gland"),
        (("adenocarcinoma", ("acinar adenocarcinoma", "adenocarcinoma", "prostatic adenocarcinoma")),),
        "prostate cancer",
        ("prostate cancer", "prostatic carcinoma", "prostate ca"),
        (),
        False,
    ),
    _Cancer(
        "pancreas",
        ("pancreatic head", "pancreas", "pancreatic tail"),
        (("adenocarcinoma", ("ductal adenocarcinoma", "adenocarcinoma")),),
        "pancreatic cancer",
        ("pancreatic cancer", "pancreatic adenocarcinoma", "carcinoma of the pancreas"),
        (KRAS,),
        False,
    ),
    _Cancer(
        "head and neck",
        ("oropharynx", "base of tongue", "larynx", "tonsil"),
        (("squamous cell carcinoma", ("squamous cell carcinoma", "SCC", "HPV-associated squamous cell carcinoma")),),
        "head and neck squamous cell carcinoma",
        ("head and neck squamous cell carcinoma", "HNSCC", "head and neck cancer"),
        (PDL1,),
        False,
    ),
)

# Problem-list displays in SNOMED CT's style: (diagnosis phrase, stage phrase or None).
_EHR_DISPLAYS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "breast": (("malignant neoplasm of breast", None), ("carcinoma of breast", None), ("breast cancer", None)),
    "lung": (
        ("non-small cell carcinoma of lung", "TNM stage 1"),
        ("non-small cell carcinoma of lung", "TNM stage 3"),
        ("non-small cell lung cancer", None),
        ("malignant neoplasm of lung", None),
    ),
    "colon": (("malignant tumor of colon", None), ("carcinoma of colon", None), ("malignant neoplasm of colon", None)),
    "rectum": (("malignant tumor of rectum", None), ("malignant neoplasm of rectum", None)),
    "prostate": (("malignant tumor of prostate", None), ("neoplasm of prostate", None), ("prostate cancer", None)),
    "pancreas": (("malignant tumor of pancreas", None), ("carcinoma of pancreas", None)),
    "head and neck": (("squamous cell carcinoma of head and neck", None), ("malignant tumor of oropharynx", None)),
}
_EHR_FINDINGS: tuple[str, ...] = (
    "acute bronchitis (disorder)",
    "viral sinusitis (disorder)",
    "full-time employment (finding)",
    "stress (finding)",
    "prediabetes (finding)",
    "anemia (disorder)",
    "hypertension (disorder)",
    "social isolation (finding)",
    "body mass index 30+ - obesity (finding)",
    "chronic pain (finding)",
)
_SUSPECTED: tuple[str, ...] = (
    "suspected lung cancer (situation)",
    "suspected breast cancer (situation)",
    "suspected prostate cancer (situation)",
    "screening for malignant neoplasm of colon (procedure)",
)

# Sentences that state no tumour phenotype, in the shapes EHR notes take (medication lists, histories with
# "(disorder)", other diseases' stages, vitals): the tagger must learn to leave them alone.
_DISTRACTORS: tuple[str, ...] = (
    "Medications: ondansetron 8 mg oral tablet; dexamethasone 4 mg oral tablet; acetaminophen 325 mg oral tablet.",
    "Current meds: lisinopril 10 mg daily, metformin 500 mg oral tablet twice daily, insulin isophane 70 unt/ml.",
    "Patient has a history of hypertension (disorder), type 2 diabetes (disorder) and osteoarthritis of knee.",
    "History of chronic kidney disease stage 3 (disorder) and anemia (disorder).",
    "Social history: married, former smoker (20 pack-years), drinks alcohol socially.",
    "Allergies: penicillin (rash). No known food allergies.",
    "Vitals: BP 132/78, HR 76, T 36.8 C, SpO2 97% on room air, weight 71 kg.",
    "Labs: WBC 6.2, hemoglobin 11.8 g/dL, platelets 240, creatinine 0.9 mg/dL.",
    "Reports mild fatigue and nausea, no fever, no chest pain.",
    "ECOG performance status 1.",
    "Patient identifies as heterosexual. Lives with her husband, works part-time.",
    "Received epoetin alfa 4000 unt/ml injection and filgrastim 300 mcg last month.",
    "Prior procedures: appendectomy, colonoscopy (procedure) with removal of a benign polyp.",
    "Heart failure NYHA class II, left ventricular ejection fraction 45%.",
    "Mammography screening two years ago was normal.",
    "Immunizations: influenza vaccine, seasonal (administered).",
    "Hypertensive disorder, systemic arterial; grade 1 hypertension, well controlled.",
    "Plan: return in 3 weeks with CBC and CMP.",
)
_ROMAN = ("0", "I", "II", "III", "IV")
_IMPLIED_SIDE = {"RUL": "right", "LLL": "left", "LUL": "left"}


@dataclass
class _Builder:
    """Appends text and remembers where each stated fact sits."""

    parts: list[str] = field(default_factory=list)
    spans: list[tuple[int, int, str]] = field(default_factory=list)
    length: int = 0

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)

    def fact(self, text: str, kind: str) -> None:
        self.spans.append((self.length, self.length + len(text), kind))
        self.add(text)


@dataclass(frozen=True)
class PhenotypeNoteTruth:
    """One generated note: its text, the spans of every stated fact, and the normalised truth per field."""

    note_id: str
    kind: str  # "pathology" | "consult"
    text: str
    spans: tuple[tuple[int, int, str], ...]
    truth: dict[str, str | None]

    def to_json(self) -> dict[str, Any]:
        return {
            "note_id": self.note_id,
            "kind": self.kind,
            "text": self.text,
            "spans": [list(s) for s in self.spans],
            "truth": self.truth,
        }


def _stage(rng: random.Random) -> tuple[str, str, str, str]:
    """(T, N, M, stage group) roughly consistent with AJCC: M1 is stage IV, node-positive at least III."""
    t = rng.choice(["T1a", "T1b", "T1c", "T2", "T3", "T4"])
    n = rng.choice(["N0", "N0", "N1", "N2", "N3"])
    m = rng.choice(["M0", "M0", "M0", "M1"])
    if m == "M1":
        group = "IV" + rng.choice(["", "A", "B"])
    elif n in ("N2", "N3") or t == "T4":
        group = "III" + rng.choice(["A", "B", "C"])
    elif n == "N1" or t == "T3":
        group = "II" + rng.choice(["A", "B"])
    else:
        group = "I" + rng.choice(["", "A", "B"])
    return t, n, m, group


def _tnm_text(rng: random.Random, t: str, n: str, m: str) -> str:
    style = rng.randrange(4)
    if style == 0:
        return f"p{t} N{n[1:]} M{m[1:]}"
    if style == 1:
        return f"{t}{n}{m}"
    if style == 2:
        return f"p{t}, p{n}, c{m}"
    return f"c{t} {n} {m}"


def _stage_text(rng: random.Random, group: str) -> str:
    roman, letter = group.rstrip("ABC"), group[len(group.rstrip("ABC")) :]
    if rng.random() < 0.3:
        return f"stage {_ROMAN.index(roman)}{letter.lower()}"
    return rng.choice(["stage ", "Stage ", "AJCC stage ", "stage group "]) + group


def _grade_text(rng: random.Random, grade: int, site: str) -> str:
    if site == "prostate":
        return f"Grade Group {grade}"
    words = {1: "well differentiated", 2: "moderately differentiated", 3: "poorly differentiated"}
    return rng.choice([f"grade {grade}", f"G{grade}", f"Grade {_ROMAN[grade]}", words[grade]])


def _size_text(rng: random.Random, mm: int) -> str:
    if rng.random() < 0.4:
        return f"{mm} mm"
    second = max(1, mm - rng.randrange(1, 10))
    cm = f"{mm / 10:.1f} cm"
    return rng.choice(
        [
            cm,
            f"{mm / 10:.1f} x {second / 10:.1f} cm",
            f"{mm / 10:.1f} x {second / 10:.1f} x {max(1, second - 2) / 10:.1f} cm",
        ]
    )


def _marker(rng: random.Random, kind: str, site: str) -> tuple[str, str]:
    """(stated text, normalised value) of one biomarker."""
    if kind in (ER, PR):
        name = {ER: ("ER", "estrogen receptor"), PR: ("PR", "progesterone receptor")}[kind]
        if rng.random() < 0.7:
            pct = rng.choice([40, 70, 80, 90, 95, 100])
            text = rng.choice([f"{name[0]} positive ({pct}%)", f"{name[0]}+", f"{name[1]} positive, {pct}%"])
            return text, "positive"
        return rng.choice([f"{name[0]} negative", f"{name[0]}-", f"{name[1]}: negative (0%)"]), "negative"
    if kind == HER2:
        value = rng.choice(["positive", "negative", "negative", "equivocal"])
        options = {
            "positive": ["HER2 3+", "HER2 IHC 3+ (positive)", "HER2 2+, FISH amplified", "HER2-positive"],
            "negative": ["HER2 negative (IHC 1+)", "HER2 0", "HER2-neu 1+, negative", "HER2 2+, FISH not amplified"],
            "equivocal": ["HER2 2+ (equivocal)", "HER2 IHC 2+, equivocal, FISH pending"],
        }
        return rng.choice(options[value]), value
    if kind == PDL1:
        if site == "head and neck":
            cps = rng.choice([0, 5, 10, 25, 60])
            value = "high" if cps >= 20 else "low" if cps >= 1 else "negative"
            return rng.choice([f"PD-L1 CPS {cps}", f"PD-L1 combined positive score {cps}"]), value
        tps = rng.choice([0, 5, 30, 50, 60, 80, 95])
        value = "high" if tps >= 50 else "low" if tps >= 1 else "negative"
        text = "PD-L1 <1%" if tps == 0 and rng.random() < 0.5 else rng.choice([f"PD-L1 TPS {tps}%", f"PDL1 {tps}%"])
        return text, value
    variants = {
        EGFR: ["EGFR exon 19 deletion", "EGFR L858R mutation", "EGFR mutation detected"],
        ALK: ["ALK rearrangement detected", "ALK fusion positive", "ALK positive"],
        KRAS: ["KRAS G12C", "KRAS G12D mutation", "KRAS mutant (G12V)"],
    }[kind]
    if rng.random() < 0.35:
        return rng.choice(variants), "positive"
    negatives = [f"{kind} wild-type", f"{kind} negative", f"no {kind} mutation", f"{kind} not detected"]
    if kind == ALK:
        negatives = ["ALK negative", "no ALK rearrangement", "ALK rearrangement not detected"]
    return rng.choice(negatives), "negative"


def _note(rng: random.Random, note_id: str, typo_rate: float, distractors: bool) -> PhenotypeNoteTruth:
    cancer = rng.choice(_CANCERS)
    kind = rng.choice(["pathology", "consult"])
    site_text = rng.choice(cancer.sites)
    histology, hist_options = rng.choice(cancer.histologies)
    truth: dict[str, str | None] = dict.fromkeys(FIELD_TYPES)
    truth["site"] = cancer.site
    truth["histology"] = histology
    truth["diagnosis"] = cancer.diagnosis
    side = rng.choice(["left", "right"]) if cancer.lateral and site_text not in _IMPLIED_SIDE else None
    side_text = {"left": rng.choice(["left", "left", "Lt"]), "right": rng.choice(["right", "right", "Rt"])}.get(
        side or "", ""
    )
    truth["laterality"] = side or _IMPLIED_SIDE.get(site_text)
    t, n, m, group = _stage(rng)
    grade = rng.randint(1, 3)
    mm = rng.randrange(6, 70)
    markers = [(k, *_marker(rng, k, cancer.site)) for k in cancer.markers if rng.random() < 0.8]
    state = {"tnm": rng.random() < 0.8, "stage": rng.random() < 0.8, "grade": rng.random() < 0.7}
    state["size"] = rng.random() < 0.7
    b = _Builder()
    extra = rng.sample(_DISTRACTORS, rng.randint(0, 3)) if distractors else []

    def where() -> None:
        if side:
            b.fact(side_text, LAT)
            b.add(" ")
        b.fact(site_text, SITE)

    if kind == "pathology":
        b.add(rng.choice(["SURGICAL PATHOLOGY REPORT\n", "Pathology report\n", "FINAL PATHOLOGIC DIAGNOSIS\n"]))
        b.add("Specimen: ")
        where()
        b.add(rng.choice([", core needle biopsy.\n", ", resection.\n", " biopsy.\n"]))
        b.add("Diagnosis: ")
        b.fact(rng.choice(hist_options), HIST)
        if state["grade"]:
            b.add(", ")
            b.fact(_grade_text(rng, grade, cancer.site), GRADE)
        b.add(".\n")
        if state["size"]:
            b.add(rng.choice(["Tumor size: ", "Greatest dimension: ", "The tumor measures "]))
            b.fact(_size_text(rng, mm), SIZE)
            b.add(".\n")
        if rng.random() < 0.5:
            b.add(rng.choice(["Margins are negative.\n", "Lymphovascular invasion: not identified.\n"]))
        if state["tnm"]:
            b.add(rng.choice(["Pathologic stage: ", "pTNM: ", "AJCC 8th edition: "]))
            b.fact(_tnm_text(rng, t, n, m), TNM)
            b.add(".\n")
        if state["stage"]:
            b.add("Stage group: ")
            b.fact(_stage_text(rng, group), STAGE)
            b.add(".\n")
        if markers:
            b.add(rng.choice(["Biomarkers: ", "Ancillary studies: ", "Molecular: "]))
            for i, (marker, text, _value) in enumerate(markers):
                b.add(", " if i else "")
                b.fact(text, marker)
            b.add(".\n")
        for sentence in extra:
            b.add(sentence + "\n")
    else:
        age = rng.randrange(38, 86)
        b.add(f"Oncology consult. {age} y/o referred for newly diagnosed ")
        b.fact(rng.choice(cancer.dx_phrases), DX)
        b.add(". ")
        if rng.random() < 0.25:
            b.add(rng.choice(["Family history of colon cancer in her father. ", "Mother had breast cancer. "]))
        b.add(rng.choice(["Biopsy of the ", "Imaging showed a mass in the ", "Workup revealed a lesion of the "]))
        where()
        if state["size"]:
            b.add(" measuring ")
            b.fact(_size_text(rng, mm), SIZE)
        b.add(rng.choice([". Pathology: ", "; path showed ", ". Histology confirmed "]))
        b.fact(rng.choice(hist_options), HIST)
        if state["grade"]:
            b.add(", ")
            b.fact(_grade_text(rng, grade, cancer.site), GRADE)
        b.add(". ")
        if state["tnm"] or state["stage"]:
            b.add(rng.choice(["Staging: ", "Clinical stage ", "Staged as "]))
            if state["tnm"]:
                b.fact(_tnm_text(rng, t, n, m), TNM)
            if state["tnm"] and state["stage"]:
                b.add(", ")
            if state["stage"]:
                b.fact(_stage_text(rng, group), STAGE)
            b.add(". ")
        for marker, text, _value in markers:
            b.add(rng.choice(["Testing shows ", "Notable for ", ""]))
            b.fact(text, marker)
            b.add(". ")
        for sentence in extra:
            b.add(sentence + " ")
        b.add(rng.choice(["Plan: discuss systemic therapy at tumor board.", "Will start treatment next week."]))
    if state["tnm"]:
        truth["tnm"] = f"{t}{n}{m}"
    if state["stage"]:
        truth["stage_group"] = group
    if state["grade"]:
        truth["grade"] = str(grade)
    if state["size"]:
        truth["size_mm"] = f"{mm} mm"
    for marker, _text, value in markers:
        truth[_TYPE_FIELD[marker]] = value
    text = "".join(b.parts)
    spans = list(b.spans)
    if typo_rate > 0:
        text, spans = inject_misspellings(text, spans, typo_rate, rng.randrange(1 << 30))
    return PhenotypeNoteTruth(note_id, kind, text, tuple(spans), truth)


def _ehr_note(rng: random.Random, note_id: str, typo_rate: float) -> PhenotypeNoteTruth:
    """An encounter note in the EHR-generated style; a third state only a suspicion (no diagnosis)."""
    cancer = rng.choice(_CANCERS)
    truth: dict[str, str | None] = dict.fromkeys(FIELD_TYPES)
    b = _Builder()
    b.add(f"{rng.randrange(1990, 2026)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}\n\n")
    b.add(rng.choice(["# Chief Complaint\n- Cough\n\n", "# Chief Complaint\n- Fatigue\n\n", ""]))
    b.add("# History of Present Illness\n")
    b.add(f"Patient is a {rng.randrange(38, 86)} year-old {rng.choice(['female', 'male'])}. Patient has a history of ")
    history = rng.sample(_EHR_FINDINGS, rng.randint(1, 4))
    b.add(", ".join(history))
    suspected = rng.random() < 0.33
    in_history = not suspected and rng.random() < 0.3
    phrase, stage = rng.choice(_EHR_DISPLAYS[cancer.site])
    if in_history:
        b.add(", ")
        b.fact(phrase, DX)
        b.add(" (disorder)")
    b.add(".\n\n# Medications\n")
    b.add(rng.choice(["acetaminophen 325 mg oral tablet", "No current medications.", "lisinopril 10 mg oral tablet"]))
    b.add("\n\n# Assessment and Plan\nPatient is presenting with ")
    if suspected:
        b.add(rng.choice(_SUSPECTED))
    elif in_history:
        b.add(rng.choice(_EHR_FINDINGS))
    else:
        b.fact(phrase, DX)
        if stage is not None:
            b.add(", ")
            b.fact(stage, STAGE)
            truth["stage_group"] = "I" if stage.endswith("1") else "III"
        b.add(" (disorder)")
    b.add(". \n")
    if not suspected:
        truth["diagnosis"] = cancer.diagnosis
        truth["site"] = cancer.site  # named inside the diagnosis phrase ("... of breast"), no SITE mention of its own
    text, spans = "".join(b.parts), list(b.spans)
    if typo_rate > 0:
        text, spans = inject_misspellings(text, spans, typo_rate, rng.randrange(1 << 30))
    return PhenotypeNoteTruth(note_id, "encounter", text, tuple(spans), truth)


def generate_phenotype_notes(
    count: int, seed: int, typo_rate: float = 0.05, distractors: bool = True, ehr_share: float = 0.0
) -> list[PhenotypeNoteTruth]:
    """``count`` notes; note i depends only on (seed, i). ``typo_rate``: share of words misspelled;
    ``distractors``: up to three sentences per note that state no phenotype (medications, history, vitals);
    ``ehr_share``: share of EHR-style encounter notes (problem-list displays, suspicions)."""
    notes = []
    for i in range(1, count + 1):
        note_id = f"ov-phe-{seed}-{i:05d}"
        if ehr_share > 0 and random.Random(f"{seed}:phenotype-ehr:{i}").random() < ehr_share:
            notes.append(_ehr_note(random.Random(f"{seed}:phenotype-ehr-note:{i}"), note_id, typo_rate))
        else:
            notes.append(_note(random.Random(f"{seed}:phenotype:{i}"), note_id, typo_rate, distractors))
    return notes
