"""Map an adverse-event mention to its CTCAE v5 term (and MedDRA code).

Three steps, first hit wins:
1. the mention *is* a term (case-insensitive, a plural ``s`` dropped);
2. a short hand-written table of clinical synonyms (``SYNONYMS``) for names that share no words with
   their CTCAE term ("neutropenia" is "Neutrophil count decreased");
3. cosine similarity of mean-pooled hidden states from the same encoder (mention vs. every term name),
   accepted above ``threshold``.
The term list is an input (a CSV with ``term`` / ``CTCAE Term`` and ``meddra_code`` / ``MedDRA Code``
columns); the model directory keeps its own copy with the precomputed term vectors.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from models.errors import DataFormatError, ModelError
from models.text_files import read_text

TERMS_FILE = "ctcae_terms.csv"
VECTORS_FILE = "ctcae_vectors.npy"
DEFAULT_THRESHOLD = 0.55

SYNONYMS: dict[str, str] = {
    "neutropenia": "Neutrophil count decreased",
    "agranulocytosis": "Neutrophil count decreased",
    "granulocytopenia": "Neutrophil count decreased",
    "low neutrophil count": "Neutrophil count decreased",
    "low anc": "Neutrophil count decreased",
    "decreased anc": "Neutrophil count decreased",
    "neutropenic fever": "Febrile neutropenia",
    "leukopenia": "White blood cell decreased",
    "leucopenia": "White blood cell decreased",
    "lymphopenia": "Lymphocyte count decreased",
    "thrombocytopenia": "Platelet count decreased",
    "low platelets": "Platelet count decreased",
    "low platelet count": "Platelet count decreased",
    "neuropathy": "Peripheral sensory neuropathy",
    "peripheral neuropathy": "Peripheral sensory neuropathy",
    "polyneuropathy": "Peripheral sensory neuropathy",
    "sensory neuropathy": "Peripheral sensory neuropathy",
    "motor neuropathy": "Peripheral motor neuropathy",
    "aki": "Acute kidney injury",
    "renal failure": "Acute kidney injury",
    "acute renal failure": "Acute kidney injury",
    "nephrotoxicity": "Acute kidney injury",
    "elevated creatinine": "Creatinine increased",
    "ototoxicity": "Hearing impaired",
    "hearing loss": "Hearing impaired",
    "hand-foot syndrome": "Palmar-plantar erythrodysesthesia syndrome",
    "hand foot syndrome": "Palmar-plantar erythrodysesthesia syndrome",
    "palmar-plantar erythrodysesthesia": "Palmar-plantar erythrodysesthesia syndrome",
    "mucositis": "Mucositis oral",
    "stomatitis": "Mucositis oral",
    "mouth sores": "Mucositis oral",
    "hair loss": "Alopecia",
    "emesis": "Vomiting",
    "tiredness": "Fatigue",
    "low energy": "Fatigue",
    "lack of energy": "Fatigue",
    "ringing in the ears": "Tinnitus",
    "breast enlargement": "Gynecomastia",
    "rash": "Rash maculo-papular",
    "maculopapular rash": "Rash maculo-papular",
    "acneiform rash": "Rash acneiform",
    "elevated alt": "Alanine aminotransferase increased",
    "alt elevation": "Alanine aminotransferase increased",
    "transaminase elevation": "Alanine aminotransferase increased",
    "elevated transaminases": "Alanine aminotransferase increased",
    "elevated ast": "Aspartate aminotransferase increased",
    "hepatotoxicity": "Hepatic failure",
    "cardiotoxicity": "Heart failure",
    "reduced ejection fraction": "Ejection fraction decreased",
    "low magnesium": "Hypomagnesemia",
    "myalgias": "Myalgia",
    "muscle aches": "Myalgia",
    "joint pain": "Arthralgia",
    "infusion reaction": "Infusion related reaction",
    "infusion-related reaction": "Infusion related reaction",
    "peripheral edema": "Edema limbs",
    "leg swelling": "Edema limbs",
    "itching": "Pruritus",
    "nosebleeds": "Epistaxis",
    "nosebleed": "Epistaxis",
    "hot flushes": "Hot flashes",
    "trouble sleeping": "Insomnia",
    "hemorrhagic cystitis": "Cystitis noninfective",
    "elevated blood sugars": "Hyperglycemia",
    "qt prolongation": "Electrocardiogram QT corrected interval prolonged",
    "hypersensitivity": "Allergic reaction",
    "hypersensitivity reaction": "Allergic reaction",
    "interstitial lung disease": "Pneumonitis",
    "seizures": "Seizure",
    "convulsions": "Seizure",
    "lactic acidosis": "Acidosis",
    "loose stools": "Diarrhea",
    "watery stools": "Diarrhea",
}

FloatArray = npt.NDArray[np.float32]
Embedder = Callable[[Sequence[str]], FloatArray]


@dataclass(frozen=True)
class CtcaeTerm:
    term: str
    meddra_code: str


@dataclass(frozen=True)
class CtcaeMatch:
    term: str
    meddra_code: str
    score: float
    method: str  # "exact", "synonym" or "embedding"


def read_terms(path: Path) -> list[CtcaeTerm]:
    """Terms from a CTCAE CSV: the vendored compact list or NCI's CTCAE_v5.0.csv."""
    if not path.is_file():
        raise DataFormatError("OV-2064", f"CTCAE term list {path} does not exist; pass the CTCAE v5 CSV")
    text = read_text(path, "OV-2064", "the CTCAE v5 CSV")
    return parse_terms(text, lambda code, problem: DataFormatError(code, f"{path} {problem}"))


def parse_terms(text: str, fail: Callable[[str, str], ModelError]) -> list[CtcaeTerm]:
    """Terms from the text of a CTCAE CSV; ``fail(code, problem)`` builds the error for a bad one.

    The caller picks the error: a term list the user passes is data (``DataFormatError``), the copy in a
    model directory is part of the model (``ModelLoadError``).
    """
    # newline="" keeps a line break inside a quoted field, as csv expects of the files it reads
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        fields = {name.strip().lower(): name for name in reader.fieldnames or []}
        term_col = fields.get("term") or fields.get("ctcae term")
        code_col = fields.get("meddra_code") or fields.get("meddra code")
        if term_col is None or code_col is None:
            raise fail(
                "OV-2065", "needs a term column (term / CTCAE Term) and a code column (meddra_code / MedDRA Code)"
            )
        terms = [
            CtcaeTerm(" ".join(row[term_col].split()), row[code_col].strip())
            for row in reader
            if row.get(term_col) and row.get(code_col)
        ]
    except csv.Error as exc:  # e.g. a field over csv's size limit: no term list looks like that
        raise fail("OV-2065", f"is not a readable CSV file ({exc})") from exc
    if not terms:
        raise fail("OV-2066", "holds no CTCAE terms")
    return terms


def write_terms(path: Path, terms: Sequence[CtcaeTerm]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["term", "meddra_code"])
        writer.writerows([t.term, t.meddra_code] for t in terms)


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower().strip(".,;:()"))


class CtcaeIndex:
    """Term lookup: exact, synonym, then embedding similarity (when vectors and an embedder are given)."""

    def __init__(
        self,
        terms: Sequence[CtcaeTerm],
        vectors: FloatArray | None = None,
        embed: Embedder | None = None,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        if vectors is not None and len(vectors) != len(terms):
            raise DataFormatError("OV-2067", "CTCAE vectors and terms differ in length; rebuild the model directory")
        self.terms = list(terms)
        self._by_name = {normalise(t.term): t for t in self.terms}
        self._vectors = vectors
        self._embed = embed
        self.threshold = threshold

    def _lexical(self, mention: str) -> CtcaeMatch | None:
        key = normalise(mention)
        candidates = [key, key[:-1]] if key.endswith("s") and len(key) > 3 else [key]
        for candidate in candidates:
            if candidate in self._by_name:
                term = self._by_name[candidate]
                return CtcaeMatch(term.term, term.meddra_code, 1.0, "exact")
            target = SYNONYMS.get(candidate)
            if target is not None and normalise(target) in self._by_name:
                term = self._by_name[normalise(target)]
                return CtcaeMatch(term.term, term.meddra_code, 1.0, "synonym")
        return None

    def match(self, mentions: Sequence[str], cores: Sequence[str] | None = None) -> list[CtcaeMatch | None]:
        """Terms for ``mentions``; ``cores`` (the mentions without qualifiers such as "severe") are tried
        lexically before any embedding match."""
        results: list[CtcaeMatch | None] = [self._lexical(m) for m in mentions]
        for i, core in enumerate(cores or ()):
            if results[i] is None and core != mentions[i]:
                results[i] = self._lexical(core)
        missing = [i for i, r in enumerate(results) if r is None]
        if missing and self._vectors is not None and self._embed is not None:
            queries = self._embed([mentions[i] for i in missing])
            scores = queries @ self._vectors.T
            best = scores.argmax(axis=1)
            for row, index in enumerate(missing):
                score = float(scores[row, best[row]])
                if score >= self.threshold:
                    term = self.terms[int(best[row])]
                    results[index] = CtcaeMatch(term.term, term.meddra_code, round(score, 4), "embedding")
        return results
