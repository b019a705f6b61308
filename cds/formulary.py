"""Drug knowledge the overprescription decision explains itself with: ingredient, RxNorm, class, indications.

Each entry is one ingredient (or a fixed combination product) at the level the recommender and the
extractors reason at, with its RxNorm *ingredient* RxCUI (``None`` where we do not vouch for a code), a
therapeutic class fine enough that two drugs of one class are redundant (two platinum agents, two 5-HT3
antagonists; never "antineoplastic"), and indication keywords matched as words in a patient's condition
labels. Supportive oncology drugs are indicated by any cancer. A targeted drug whose label restricts it to a
biomarker names the tumour phenotypes that rule it out (``excluded_by``: trastuzumab and pertuzumab by
"HER2-negative", cetuximab by "KRAS-mutant"), matched against the phrases the phenotype extractor stores.
The oncology entries use the same names, RxCUIs and classes as the synthetic cohort (``cds.cohort.codes``),
which a test checks.

Matching is deliberately simple and explainable: lower-case word matching, no fuzzy logic. A drug the
formulary does not know has no class and no indication check, so it never gets a rule-based reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_CANCER = (
    "cancer",
    "carcinoma",
    "lymphoma",
    "leukemia",
    "leukaemia",
    "neoplasm",
    "tumor",
    "tumour",
    "malignant",
    "myeloma",
    "sarcoma",
    "melanoma",
)
_NAUSEA = (*_CANCER, "nausea", "vomiting")


@dataclass(frozen=True)
class FormularyDrug:
    name: str
    rxnorm: str | None
    drug_class: str
    indications: tuple[str, ...]
    synonyms: tuple[str, ...] = ()
    excluded_by: tuple[str, ...] = ()  # tumour phenotype phrases under which the labelled indication fails


def _f(name: str, rxnorm: str | None, drug_class: str, indications: Sequence[str], *synonyms: str) -> FormularyDrug:
    return FormularyDrug(name, rxnorm, drug_class, tuple(indications), tuple(synonyms))


def _targeted(drug: FormularyDrug, *excluded_by: str) -> FormularyDrug:
    return FormularyDrug(drug.name, drug.rxnorm, drug.drug_class, drug.indications, drug.synonyms, excluded_by)


_LUNG = ("lung",)
_BREAST = ("breast",)
_COLORECTAL = ("colon", "rectal", "rectum", "colorectal")
_HER2 = ("her2-positive", "her2 positive")
_HN = ("head and neck", "head and/or neck")

DEFAULT_DRUGS: tuple[FormularyDrug, ...] = (
    # chemotherapy, immunotherapy, targeted and hormonal therapy (names, codes, classes as in the cohort)
    _f(
        "cisplatin",
        "2555",
        "platinum",
        (*_LUNG, *_HN, "bladder", "cervical", "testicular", "ovarian", "esophageal", "gastric"),
    ),
    _f("carboplatin", "40048", "platinum", (*_LUNG, *_BREAST, "ovarian", *_HN), "paraplatin"),
    _f("oxaliplatin", "32592", "platinum", (*_COLORECTAL, "gastric", "pancreatic"), "eloxatin"),
    _f("paclitaxel", "56946", "taxane", (*_LUNG, *_BREAST, "ovarian", "gastric"), "taxol"),
    _f("docetaxel", "72962", "taxane", (*_LUNG, *_BREAST, "prostate", "gastric", *_HN), "taxotere"),
    _f(
        "fluorouracil",
        "4492",
        "fluoropyrimidine",
        (*_COLORECTAL, *_BREAST, "gastric", "pancreatic", "anal", *_HN),
        "5-fu",
    ),
    _f("capecitabine", "194000", "fluoropyrimidine", (*_COLORECTAL, *_BREAST, "gastric", "pancreatic"), "xeloda"),
    _f("leucovorin", "6313", "folate analog", (*_COLORECTAL, "gastric", "pancreatic", "methotrexate")),
    _f(
        "doxorubicin",
        "3639",
        "anthracycline",
        (*_BREAST, "lymphoma", "leukemia", "sarcoma", "ovarian", "bladder"),
        "adriamycin",
    ),
    _f("cyclophosphamide", "3002", "alkylating agent", (*_BREAST, "lymphoma", "leukemia", "myeloma", "ovarian")),
    _f("pemetrexed", "68446", "antifolate", (*_LUNG, "mesothelioma"), "alimta"),
    _f("irinotecan", "51499", "topoisomerase inhibitor", (*_COLORECTAL, "pancreatic", "gastric"), "camptosar"),
    _f("gemcitabine", "12574", "antimetabolite", (*_LUNG, *_BREAST, "pancreatic", "bladder", "ovarian"), "gemzar"),
    _f("vincristine", "11202", "vinca alkaloid", ("lymphoma", "leukemia", "sarcoma", "neuroblastoma")),
    _f(
        "pembrolizumab",
        "1547545",
        "anti-PD-1",
        (*_LUNG, "melanoma", *_HN, "bladder", "urothelial", "triple-negative", "cervical", "gastric", "lymphoma"),
        "keytruda",
    ),
    _f(
        "nivolumab",
        "1597876",
        "anti-PD-1",
        (*_LUNG, "melanoma", "renal cell", *_HN, "urothelial", "hodgkin", "esophageal", "gastric"),
        "opdivo",
    ),
    _targeted(_f("trastuzumab", "224905", "anti-HER2 antibody", _HER2, "herceptin"), "HER2-negative"),
    _targeted(_f("pertuzumab", "1298944", "anti-HER2 dimerization inhibitor", _HER2, "perjeta"), "HER2-negative"),
    _f(
        "bevacizumab",
        "253337",
        "anti-VEGF",
        (*_COLORECTAL, *_LUNG, "glioblastoma", "renal cell", "ovarian", "cervical"),
        "avastin",
    ),
    # RAS-mutant colorectal cancer does not respond to anti-EGFR antibodies (the label's restriction)
    _targeted(_f("cetuximab", "318341", "anti-EGFR", (*_COLORECTAL, *_HN), "erbitux"), "KRAS-mutant"),
    _f("rituximab", "121191", "anti-CD20", ("lymphoma", "leukemia", "rheumatoid arthritis", "vasculitis"), "rituxan"),
    _f("leuprolide", "42375", "GnRH agonist", ("prostate", *_BREAST, "endometriosis"), "lupron"),
    _f("bicalutamide", "83008", "antiandrogen", ("prostate",), "casodex"),
    _f("enzalutamide", "1307298", "antiandrogen", ("prostate",), "xtandi"),
    _f(
        "prednisone",
        "8640",
        "corticosteroid",
        (
            "lymphoma",
            "leukemia",
            "myeloma",
            "prostate",
            "asthma",
            "chronic obstructive",
            "arthritis",
            "lupus",
            "dermatitis",
        ),
    ),
    # supportive care: indicated by the cancer (and its treatment) or the symptom itself
    _f("ondansetron", "26225", "5-HT3 antagonist", _NAUSEA, "zofran"),
    _f("granisetron", "26237", "5-HT3 antagonist", _NAUSEA),
    _f("palonosetron", "70561", "5-HT3 antagonist", _NAUSEA, "aloxi"),
    _f("dexamethasone", "3264", "corticosteroid", (*_NAUSEA, "edema", "asthma", "chronic obstructive"), "decadron"),
    _f("aprepitant", "358255", "NK1 antagonist", _NAUSEA, "emend"),
    _f("filgrastim", "68442", "G-CSF", (*_CANCER, "neutropenia"), "neupogen"),
    _f("pegfilgrastim", "338036", "G-CSF", (*_CANCER, "neutropenia"), "neulasta"),
    _f("loperamide", "6468", "antidiarrheal", (*_CANCER, "diarrhea", "diarrhoea")),
    _f("tamsulosin", "77492", "alpha blocker", ("prostate", "urinary", "benign prostatic"), "flomax"),
    _f(
        "allopurinol",
        "519",
        "xanthine oxidase inhibitor",
        ("gout", "lymphoma", "leukemia", "tumor lysis", "hyperuricemia"),
    ),
    # the Synthea sample's community prescriptions
    _f(
        "epoetin alfa", "105694", "erythropoiesis-stimulating agent", ("anemia", "kidney", "renal"), "epogen", "procrit"
    ),
    _f(
        "lisinopril",
        "29046",
        "ACE inhibitor",
        ("hypertension", "hypertensive", "heart failure", "kidney", "diabetes", "myocardial", "heart disease"),
    ),
    _f("metformin", "6809", "biguanide", ("diabetes", "prediabetes", "metabolic syndrome", "hyperglycemia")),
    _f("insulin isophane / insulin regular", None, "insulin", ("diabetes", "hyperglycemia"), "humulin"),
    _f(
        "simvastatin",
        "36567",
        "statin",
        ("hyperlipidemia", "hypertriglyceridemia", "heart disease", "coronary", "metabolic syndrome", "diabetes"),
    ),
    _f("hydrochlorothiazide", "5487", "thiazide diuretic", ("hypertension", "hypertensive", "edema")),
    _f("budesonide", "19831", "inhaled corticosteroid", ("asthma", "chronic obstructive", "wheezing")),
    _f(
        "albuterol",
        "435",
        "short-acting beta agonist",
        ("asthma", "chronic obstructive", "wheezing", "bronchitis", "dyspnea"),
    ),
    _f("tacrolimus", "42316", "calcineurin inhibitor", ("transplant",)),
    _f("alendronic acid", "46041", "bisphosphonate", ("osteoporosis", "osteopenia")),
    _f(
        "ibuprofen",
        "5640",
        "NSAID",
        ("pain", "fever", "sprain", "fracture", "arthritis", "laceration", "pharyngitis", "sinusitis", "otitis"),
    ),
    _f("naproxen", "7258", "NSAID", ("pain", "fever", "sprain", "fracture", "arthritis")),
    _f("aspirin", "1191", "antiplatelet", ("heart disease", "coronary", "myocardial", "stroke")),
    _f(
        "acetaminophen / dextromethorphan / doxylamine",
        None,
        "cough and cold combination",
        ("cough", "sinusitis", "pharyngitis", "bronchitis", "covid"),
    ),
    _f(
        "acetaminophen",
        "161",
        "analgesic",
        (
            "pain",
            "fever",
            "sprain",
            "fracture",
            "laceration",
            "pharyngitis",
            "sinusitis",
            "otitis",
            "covid",
            "concussion",
        ),
    ),
    _f("nitrofurantoin", "7454", "urinary antibacterial", ("urinary tract infection", "cystitis")),
    _f("phenazopyridine", "8120", "urinary analgesic", ("urinary tract infection", "cystitis")),
    _f(
        "amoxicillin / clavulanate",
        None,
        "penicillin antibiotic",
        ("sinusitis", "otitis", "infection", "pharyngitis", "bronchitis"),
    ),
    _f(
        "amoxicillin",
        "723",
        "penicillin antibiotic",
        ("sinusitis", "otitis", "infection", "pharyngitis", "sore throat"),
    ),
    _f("penicillin v", "7984", "penicillin antibiotic", ("pharyngitis", "sore throat", "infection")),
    _f("nitroglycerin", "4917", "nitrate", ("heart disease", "coronary", "angina", "myocardial")),
    _f(
        "metoprolol",
        "6918",
        "beta blocker",
        ("hypertension", "heart disease", "coronary", "heart failure", "myocardial", "atrial fibrillation"),
    ),
    _f("fexofenadine", "87636", "antihistamine", ("rhinitis", "allergy", "urticaria")),
    _f("diazepam", "3322", "benzodiazepine", ("anxiety", "seizure", "muscle spasm", "alcohol withdrawal")),
    _f("meperidine", "6754", "opioid", ("pain",)),
    _f("ferrous sulfate", "24947", "iron supplement", ("anemia", "iron deficiency", "pregnancy")),
    _f("cyanocobalamin", "11248", "vitamin B12", ("anemia", "b12 deficiency"), "vitamin b12"),
    _f("epinephrine", "3992", "sympathomimetic", ("anaphylaxis", "allergy")),
    _f("levonorgestrel / ethinyl estradiol", None, "hormonal contraceptive", ("contraception",), "seasonique"),
    _f("levonorgestrel", "6373", "hormonal contraceptive", ("contraception",), "mirena", "kyleena"),
    _f("norethindrone", "7514", "hormonal contraceptive", ("contraception",), "camila", "errin"),
    _f("etonogestrel / ethinyl estradiol", None, "hormonal contraceptive", ("contraception",), "nuvaring"),
    _f("etonogestrel", None, "hormonal contraceptive", ("contraception",)),
    _f("dienogest / estradiol valerate", None, "hormonal contraceptive", ("contraception",), "natazia"),
)


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9/+\-]+", " ", text.lower()).split())


def _words(term: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![a-z0-9]){re.escape(_norm(term))}(?![a-z0-9])")


class Formulary:
    """Look-ups by ingredient name, synonym, RxCUI or free product text; pure and immutable."""

    def __init__(self, drugs: Iterable[FormularyDrug]) -> None:
        self._drugs = tuple(drugs)
        self._by_key: dict[str, FormularyDrug] = {}
        for drug in self._drugs:
            for key in (drug.name, *drug.synonyms):
                self._by_key.setdefault(_norm(key), drug)
            if drug.rxnorm:
                self._by_key.setdefault(drug.rxnorm, drug)
        # Longest first, so "amoxicillin / clavulanate" wins over "amoxicillin" in product text.
        terms = [(len(t), t, d) for d in self._drugs for t in (d.name, *d.synonyms)]
        self._patterns = [(_words(t), d) for _, t, d in sorted(terms, key=lambda x: -x[0])]
        self._combos = [(tuple(_words(p) for p in d.name.split(" / ")), d) for d in self._drugs if " / " in d.name]

    @property
    def drugs(self) -> tuple[FormularyDrug, ...]:
        return self._drugs

    def get(self, key: str | None) -> FormularyDrug | None:
        """By ingredient name, synonym (brand) or RxCUI; ``None`` when unknown."""
        if not key:
            return None
        return self._by_key.get(_norm(key)) or self._by_key.get(key.strip())

    def lookup(self, drug: str | None, rxnorm: str | None = None) -> FormularyDrug | None:
        """The entry for an order: its RxCUI first (codes beat names), then its name."""
        return self.get(rxnorm) or self.get(drug)

    def from_product_text(self, text: str) -> FormularyDrug | None:
        """The entry a product description names ("PACLitaxel 100 MG Injection" -> paclitaxel)."""
        normed = _norm(text)
        for parts, drug in self._combos:
            if all(p.search(normed) for p in parts):
                return drug
        return next((drug for pattern, drug in self._patterns if pattern.search(normed)), None)

    def indicated(self, drug: FormularyDrug, conditions: Iterable[str]) -> bool:
        """True when any condition label contains one of the drug's indication keywords as words."""
        texts = [_norm(c) for c in conditions]
        return any(_words(keyword).search(text) for keyword in drug.indications for text in texts)

    def excluded_by(self, drug: FormularyDrug, phenotype: Iterable[str]) -> str | None:
        """The first tumour phenotype phrase that rules ``drug`` out ("HER2-negative"), or None."""
        wanted = {_norm(p) for p in drug.excluded_by}
        return next((p for p in phenotype if _norm(p) in wanted), None)

    def indicated_for(self, drug: FormularyDrug, conditions: Iterable[str]) -> list[str]:
        """The condition labels that indicate ``drug`` (for the explanation shown to the prescriber)."""
        return [c for c in conditions if self.indicated(drug, [c])]


def default_formulary() -> Formulary:
    return Formulary(DEFAULT_DRUGS)
