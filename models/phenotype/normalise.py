"""Deterministic normalisers: a tagged mention's text -> a normalised value (or None when it says nothing).

Pure functions, tolerant of the abbreviations and slips clinicians type: words are matched to a small
vocabulary with ``difflib`` (ratio >= 0.75) before any rule looks at them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable

from models.phenotype.labels import (
    ALK,
    DX,
    EGFR,
    ER,
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

_VOCAB = (
    "breast",
    "lung",
    "lobe",
    "upper",
    "lower",
    "middle",
    "pulmonary",
    "bronchus",
    "colon",
    "sigmoid",
    "ascending",
    "descending",
    "transverse",
    "cecum",
    "rectum",
    "rectal",
    "prostate",
    "prostatic",
    "pancreas",
    "pancreatic",
    "head",
    "tail",
    "oropharynx",
    "tonsil",
    "tongue",
    "larynx",
    "laryngeal",
    "hypopharynx",
    "oral",
    "cavity",
    "neck",
    "invasive",
    "infiltrating",
    "ductal",
    "lobular",
    "carcinoma",
    "adenocarcinoma",
    "squamous",
    "cell",
    "acinar",
    "cancer",
    "non",
    "small",
    "positive",
    "negative",
    "equivocal",
    "amplified",
    "nonamplified",
    "detected",
    "mutation",
    "mutated",
    "mutant",
    "rearrangement",
    "rearranged",
    "fusion",
    "deletion",
    "insertion",
    "wild",
    "type",
    "left",
    "right",
    "bilateral",
    "grade",
    "well",
    "moderately",
    "poorly",
    "differentiated",
    "undifferentiated",
    "stage",
    "estrogen",
    "progesterone",
    "receptor",
    "absent",
    "present",
    "expression",
    "high",
    "low",
)
_ABBREVIATIONS = {
    "idc": "invasive ductal carcinoma",
    "ilc": "invasive lobular carcinoma",
    "scc": "squamous cell carcinoma",
    "adenoca": "adenocarcinoma",
    "nsclc": "non small cell lung cancer",
    "hnscc": "head neck squamous cell carcinoma",
    "crc": "colon cancer",
    "rul": "right upper lobe",
    "rml": "right middle lobe",
    "rll": "right lower lobe",
    "lul": "left upper lobe",
    "lll": "left lower lobe",
    "lt": "left",
    "rt": "right",
    "l": "left",
    "r": "right",
    "wt": "wild type",
    "neg": "negative",
    "pos": "positive",
    "ca": "cancer",
    "mut": "mutation",
}


_STOP = frozenset({"the", "and", "not", "for", "with", "was", "has", "yes", "her", "his"})


def words(text: str) -> list[str]:
    """Lower-case words of ``text``, abbreviations expanded and misspellings snapped to the vocabulary."""
    out: list[str] = []
    for raw in re.findall(r"[A-Za-z]+", text.lower()):
        if raw in _ABBREVIATIONS:
            out += _ABBREVIATIONS[raw].split()
        elif len(raw) >= 3 and raw not in _VOCAB and raw not in _STOP:
            close = difflib.get_close_matches(raw, _VOCAB, n=1, cutoff=0.75)
            out.append(close[0] if close else raw)
        else:
            out.append(raw)
    return out


def site(text: str) -> str | None:
    w = set(words(text))
    if w & {"breast"}:
        return "breast"
    if w & {"lung", "lobe", "pulmonary", "bronchus"}:
        return "lung"
    if w & {"rectum", "rectal"}:
        return "rectum"
    if w & {"colon", "sigmoid", "cecum", "ascending", "descending", "transverse"}:
        return "colon"
    if w & {"prostate", "prostatic"}:
        return "prostate"
    if w & {"pancreas", "pancreatic"}:
        return "pancreas"
    if w & {"oropharynx", "tonsil", "tongue", "larynx", "laryngeal", "hypopharynx", "neck"}:
        return "head and neck"
    return None


def implied_laterality(text: str) -> str | None:
    """RUL / left lower lobe name a side as well as a site."""
    return laterality(text) if site(text) == "lung" else None


def histology(text: str) -> str | None:
    w = set(words(text))
    if "lobular" in w:
        return "invasive lobular carcinoma"
    if "squamous" in w:
        return "squamous cell carcinoma"
    if "adenocarcinoma" in w or ("acinar" in w and "carcinoma" in w):
        return "adenocarcinoma"
    if "ductal" in w:
        return "invasive ductal carcinoma"
    return None


_DX_BY_SITE = {
    "breast": "breast cancer",
    "lung": "non-small cell lung cancer",
    "colon": "colon cancer",
    "rectum": "rectal cancer",
    "prostate": "prostate cancer",
    "pancreas": "pancreatic cancer",
    "head and neck": "head and neck squamous cell carcinoma",
}


def diagnosis(text: str) -> str | None:
    """A diagnosis mention ("NSCLC", "ca of the sigmoid colon", "breast cancer") -> its label."""
    return diagnosis_from(site(text), histology(text))


def diagnosis_from(site_value: str | None, histology_value: str | None) -> str | None:
    """The most likely diagnosis label from the site (the histology only confirms; no site, no label)."""
    del histology_value  # every site we label has one dominant carcinoma; kept for the signature's sake
    return _DX_BY_SITE.get(site_value or "")


_ROMAN = {"1": "I", "2": "II", "3": "III", "4": "IV", "i": "I", "ii": "II", "iii": "III", "iv": "IV"}


def stage_group(text: str) -> str | None:
    """ "Stage IIIA", "stage 3a", "AJCC stage group IIB" -> "IIIA"; stage 0 -> "0"."""
    match = re.search(r"(?i)\b(iv|i{1,3}|[0-4])\s*([abc])?\b", re.sub(r"(?i)stage|group|ajcc|:", " ", text))
    if not match:
        return None
    number = match.group(1).lower()
    roman = "0" if number == "0" else _ROMAN[number]
    return roman + (match.group(2) or "").upper()


_TNM_PART = re.compile(r"(?i)(?:y?[cp])?([TNM])\s*(is|[0-4x][abc]?\d?)")


def tnm(text: str) -> str | None:
    """ "pT2 N1 M0", "T2N1M0", "ypT1c, pN0, cM0" -> "T2N1M0" (prefixes c/p/y dropped; what is absent stays absent)."""
    parts: dict[str, str] = {}
    for match in _TNM_PART.finditer(text):
        letter = match.group(1).upper()
        parts.setdefault(letter, letter + match.group(2).lower().replace("x", "X"))
    if "T" not in parts:
        return None
    return "".join(parts[k] for k in "TNM" if k in parts)


def grade(text: str) -> str | None:
    """ "grade 2", "G3", "Grade II", "poorly differentiated", "grade group 2" -> "1" | "2" | "3" | "4"."""
    w = words(text)
    if "well" in w:
        return "1"
    if "moderately" in w:
        return "2"
    if "poorly" in w or "undifferentiated" in w:
        return "3"
    match = re.search(r"(?i)(?:\bg(?:rade)?\s*(?:group\s*)?)(iv|i{1,3}|[1-5])\b", text)
    if not match:
        match = re.search(r"(?i)\b(iv|i{1,3}|[1-5])\b", text)
    if not match:
        return None
    value = match.group(1).lower()
    return str({"i": 1, "ii": 2, "iii": 3, "iv": 4}.get(value, value))


_MEASURE = re.compile(r"(?i)(\d+(?:\.\d+)?(?:\s*[x×]\s*\d+(?:\.\d+)?)*)\s*(cm|mm|centimet\w*|millimet\w*)\b")


def size_mm(text: str) -> str | None:
    """ "2.3 x 1.8 cm", "23 mm", "measuring 4 cm" -> the largest dimension in whole mm ("23 mm"); no unit, no size."""
    sizes = [
        max(float(n) for n in re.findall(r"\d+(?:\.\d+)?", m.group(1)))
        * (1 if m.group(2).lower().startswith("m") else 10)
        for m in _MEASURE.finditer(text)
    ]
    return f"{round(max(sizes))} mm" if sizes else None


def laterality(text: str) -> str | None:
    w = set(words(text))
    if "bilateral" in w or {"left", "right"} <= w:
        return "bilateral"
    if "left" in w:
        return "left"
    if "right" in w:
        return "right"
    return None


_NEGATIVE_WORDS = {"negative", "absent", "wild", "nonamplified"}


def _is_negative(text: str) -> bool:
    w = words(text)
    joined = " ".join(w)
    return (
        bool(set(w) & _NEGATIVE_WORDS)
        or "not detected" in joined
        or "not amplified" in joined
        or re.search(r"(?i)\bno\b|\bnot\b|\bneg\b", text) is not None
        or re.search(r"[A-Za-z0-9]-(?=\s|$|[),;.])|\(-\)", text) is not None
    )


def receptor(text: str) -> str | None:
    """ER / PR: "ER positive (95%)", "ER+", "estrogen receptor negative", "ER 0%" -> positive | negative."""
    percent = re.search(r"(\d+(?:\.\d+)?)\s*%", text)
    if re.search(r"\+|pos", text, re.I) and not re.search(r"\bneg|\bnot\b|\bno\b", text, re.I):
        return "positive"
    if "positive" in words(text):
        return "positive"
    if _is_negative(text):
        return "negative"
    if percent:
        return "positive" if float(percent.group(1)) >= 1 else "negative"
    return None


def her2(text: str) -> str | None:
    """IHC 3+ or FISH amplified -> positive; IHC 0/1+ or not amplified -> negative; IHC 2+ alone -> equivocal."""
    w = words(text)
    joined = " ".join(w)
    score = re.search(r"\b([0-3])\s*\+|\bIHC\s*([0-3])\b|\bscore\s*([0-3])\b", text, re.I)
    if "not amplified" in joined or "nonamplified" in w or re.search(r"non-?\s*amplified", text, re.I):
        return "negative"
    if "amplified" in w:
        return "positive"
    if score is None:
        score = re.search(r"(?i)HER-?2(?:[-/]neu)?\s*(?:IHC\s*)?([0-3])\b", text)
    if score:
        value = int(next(g for g in score.groups() if g is not None))
        return "positive" if value == 3 else "equivocal" if value == 2 else "negative"
    if "equivocal" in w:
        return "equivocal"
    if "negative" in w or _is_negative(text):
        return "negative"
    if "positive" in w or re.search(r"HER-?2\s*\+|\(\+\)", text, re.I):
        return "positive"
    return None


def pdl1(text: str) -> str | None:
    """TPS (lung) or CPS (head and neck) -> high | low | negative (TPS >= 50 % or CPS >= 20 is high)."""
    cps = re.search(r"(?i)\bCPS\b", text) is not None or "combined" in words(text)
    less = re.search(r"<\s*1\b", text) is not None
    number = re.search(r"(\d+(?:\.\d+)?)\s*%?", re.sub(r"(?i)PD-?L-?1|PD-?L1", " ", text))
    if less:
        return "negative"
    if number:
        value = float(number.group(1))
        cut = 20.0 if cps else 50.0
        return "high" if value >= cut else "low" if value >= 1 else "negative"
    w = set(words(text))
    if "high" in w:
        return "high"
    if "low" in w:
        return "low"
    if "negative" in w or _is_negative(text):
        return "negative"
    if "positive" in w:
        return "low"
    return None


def driver(text: str) -> str | None:
    """EGFR / ALK / KRAS: a named variant, "mutation detected", "rearranged" -> positive; wild type / no -> negative."""
    if re.search(r"(?i)not\s+(?:performed|done|sent)|pending|ordered", text):
        return None  # a test not (yet) resulted states no value
    if _is_negative(text):
        return "negative"
    w = set(words(text))
    hits = {"positive", "detected", "mutation", "mutated", "mutant", "rearrangement", "rearranged", "fusion"}
    if w & hits or re.search(r"\b[A-Z]\d{2,4}[A-Z]\b|exon\s*\d+", text):
        return "positive"
    return None


_MARKER_NAMES = (
    (ER, re.compile(r"(?i)\b(?:ER|estrogen|oestrogen)\b")),
    (PR, re.compile(r"(?i)\b(?:PR|PgR|progesterone)\b")),
    (HER2, re.compile(r"(?i)\bHER-?2|\berbb2\b")),
    (PDL1, re.compile(r"(?i)\bPD-?L-?1\b")),
    (EGFR, re.compile(r"(?i)\bEGFR\b")),
    (ALK, re.compile(r"(?i)\bALK\b")),
    (KRAS, re.compile(r"(?i)\bKRAS\b")),
)


def marker_kind(text: str) -> str | None:
    """The biomarker a mention names first ("ER positive (90%)" -> ER), whatever type the tagger gave it.

    The values of ER and PR read alike ("positive (90%)"), so the tagger can carry one name's type over
    the other's words; the name the text states is the better witness.
    """
    found = [(m.start(), kind) for kind, pattern in _MARKER_NAMES if (m := pattern.search(text))]
    return min(found)[1] if found else None


MARKER_TYPES = frozenset(kind for kind, _ in _MARKER_NAMES)

NORMALISERS: dict[str, Callable[[str], str | None]] = {
    SITE: site,
    HIST: histology,
    DX: diagnosis,
    TNM: tnm,
    STAGE: stage_group,
    GRADE: grade,
    SIZE: size_mm,
    LAT: laterality,
    ER: receptor,
    PR: receptor,
    HER2: her2,
    PDL1: pdl1,
    EGFR: driver,
    ALK: driver,
    KRAS: driver,
}


def normalise(kind: str, text: str) -> str | None:
    return NORMALISERS[kind](text)
