"""Grouped drug records for training and evaluating the summariser, from public and synthetic data.

- ADE-Corpus-V2 (``{data_dir}/ade_corpus_v2/DRUG-AE.rel``): each PubMed case report is one patient; a drug's
  reports are grouped (several random subsets per frequent drug, so one drug yields several records); the
  effect maps to a CTCAE v5 term when it matches one lexically, else it stays as written; the grade comes from
  the sentence's severity cues (``models.ade.cues``). The corpus has no dates: onset stays unknown.
- The synthetic cohort (``cds.cohort``, a seed other than the sandbox's): notes' true ADEs, grouped by drug
  and period exactly as the sync does (``cds.grouping``), with the first dose from the MedicationRequest.

Split: corpus drugs by a hash of the drug name (a dev drug is never trained on); cohort dev from its own seed.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from cds.grouping import AdeObservation, group_by_drug, to_drug_group
from cds.jsonl_files import write_jsonl
from models.summariser import DrugGroup, TermCount, narrate

_PLAIN_NAME = re.compile(r"^[a-z][a-z\- ]{2,30}$")
CORPUS_PERIOD = ("2000-01-03", "2001-01-01")
WINDOWS = (90, 182, 365)


@dataclass(frozen=True)
class _Report:
    pmid: str
    drug: str
    term: str
    grade: int | None


def is_dev_drug(drug: str, fraction: float) -> bool:
    digest = hashlib.sha256(f"oncovigil-summariser:{drug.lower()}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def ctcae_vocabulary(data_dir: Path) -> list[str]:
    """CTCAE v5 term names (the "Other, specify" catch-alls left out): events the guard can recognise."""
    from models.ade.ctcae import read_terms

    path = data_dir / "ctcae_v5" / "CTCAE_v5.0.csv"
    if not path.is_file():
        return []
    return sorted({t.term for t in read_terms(path) if "other, specify" not in t.term.lower()})


def _corpus_reports(data_dir: Path) -> list[_Report]:
    from models.ade.ctcae import CtcaeIndex, read_terms
    from models.ade.cues import core_mention, severity

    rel = data_dir / "ade_corpus_v2" / "DRUG-AE.rel"
    terms_csv = data_dir / "ctcae_v5" / "CTCAE_v5.0.csv"
    index = CtcaeIndex(read_terms(terms_csv)) if terms_csv.is_file() else None
    seen: set[tuple[str, str, str]] = set()
    out: list[_Report] = []
    for line in rel.read_text(encoding="utf-8").splitlines():
        cols = line.split("|")
        if len(cols) < 8:
            continue
        pmid, sentence, effect, drug = cols[0], cols[1], cols[2].strip(), cols[5].strip().lower()
        if not _PLAIN_NAME.match(drug):  # "4% ethyl nitrite in 70% ethyl alcohol" is a mixture, not a drug
            continue
        core = core_mention(effect)
        match = index.match([effect], [core])[0] if index else None
        term = match.term if match else core.lower()
        at = sentence.lower().find(effect.lower())
        grade = severity(sentence, at, at + len(effect)).grade if at >= 0 else None
        if (pmid, drug, term) in seen or not term or any(ch.isdigit() for ch in term):
            continue
        seen.add((pmid, drug, term))
        out.append(_Report(pmid, drug, term, grade))
    return out


def _group_reports(drug: str, reports: Sequence[_Report]) -> DrugGroup:
    by_term: dict[str, dict[str, int | None]] = defaultdict(dict)
    for r in reports:
        grades = by_term[r.term]
        old = grades.get(r.pmid)
        grades[r.pmid] = max(old or 0, r.grade or 0) or None
    terms = []
    for term, per_pmid in by_term.items():
        counts: dict[int, int] = defaultdict(int)
        for g in per_pmid.values():
            if g is not None:
                counts[g] += 1
        terms.append(
            TermCount(
                term=term,
                reports=len(per_pmid),
                patients=len(per_pmid),
                grades=dict(sorted(counts.items())),
                serious=sum(n for g, n in counts.items() if g >= 3),
            )
        )
    terms.sort(key=lambda t: (-t.reports, t.term))
    return DrugGroup(
        drug=drug,
        rxnorm="",
        period_start=CORPUS_PERIOD[0],
        period_end=CORPUS_PERIOD[1],
        patients=len({r.pmid for r in reports}),
        reports=sum(t.reports for t in terms),
        terms=tuple(terms),
    )


def corpus_groups(data_dir: Path, seed: int = 13, subsets: int = 3, max_reports: int = 12) -> list[DrugGroup]:
    """Drug groups from ADE-Corpus-V2: the whole drug when small, else ``subsets`` random report subsets."""
    by_drug: dict[str, list[_Report]] = defaultdict(list)
    for r in _corpus_reports(data_dir):
        by_drug[r.drug].append(r)
    rng = random.Random(seed)
    groups: list[DrugGroup] = []
    for drug in sorted(by_drug):
        reports = by_drug[drug]
        pmids = sorted({r.pmid for r in reports})
        if len(pmids) <= max_reports:
            groups.append(_group_reports(drug, reports))
            continue
        for _ in range(subsets):
            chosen = set(rng.sample(pmids, rng.randint(2, max_reports)))
            groups.append(_group_reports(drug, [r for r in reports if r.pmid in chosen]))
    return groups


def cohort_observations(patients: int, seed: int) -> list[AdeObservation]:
    from cds.cohort import generate_cohort

    cohort = generate_cohort(patients, seed)
    authored: dict[str, date] = {}
    for res in cohort.resources:
        if res.get("resourceType") == "MedicationRequest" and res.get("authoredOn"):
            authored[str(res["id"])] = datetime.fromisoformat(str(res["authoredOn"])).date()
    out: list[AdeObservation] = []
    for note in cohort.notes:
        day = date.fromisoformat(note.to_json()["date"])
        for ade in note.ades:
            if ade.negated:
                continue
            first = authored.get(ade.medication_request_id or "")
            out.append(
                AdeObservation(
                    patient_id=note.patient_id,
                    note_id=note.note_id,
                    drug_rxnorm=ade.rxnorm,
                    drug_display=ade.drug,
                    ctcae_term=ade.ctcae_term,
                    grade=ade.grade,
                    onset=day,
                    first_dose=first if first and first <= day else None,
                    span=(int(ade.event_span[0]), int(ade.event_span[1])),
                )
            )
    return out


def cohort_groups(patients: int, seed: int, windows: Iterable[int] = WINDOWS) -> list[DrugGroup]:
    observations = cohort_observations(patients, seed)
    return [to_drug_group(r) for w in windows for r in group_by_drug(observations, w)]


def eval_line(group: DrugGroup) -> dict[str, Any]:
    """One line of the eval file: the grouped record and its reference summary."""
    return {"record": group.to_json(), "reference": narrate(group)}


def write_eval_file(path: Path, groups: Iterable[DrugGroup]) -> int:
    return write_jsonl(path, (eval_line(group) for group in groups))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cds.summary_data --out FILE.jsonl``: an eval file for ``oncovigil eval summaries``."""
    import argparse

    parser = argparse.ArgumentParser(description="Write grouped drug records + reference summaries as JSONL.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cohort-patients", type=int, default=60)
    parser.add_argument("--cohort-seed", type=int, default=202)
    parser.add_argument("--window-days", type=int, default=365)
    parser.add_argument("--corpus-dir", type=Path, default=None, help="../shared/data, to add ADE-Corpus-V2 groups")
    args = parser.parse_args(argv)
    groups = cohort_groups(args.cohort_patients, args.cohort_seed, (args.window_days,))
    if args.corpus_dir is not None:
        groups += corpus_groups(args.corpus_dir)
    write_eval_file(args.out, groups)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
