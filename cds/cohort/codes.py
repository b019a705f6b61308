"""Every code the synthetic cohort uses, in one table: RxNorm ingredients, cancers, regimens.

RxNorm codes are *ingredient* RxCUIs (term type IN), the level the extractors and the
recommender reason at. Cancer codes are SNOMED CT disorders with the matching ICD-10-CM code.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"

LOINC_PROGRESS_NOTE = ("11506-3", "Progress note")
LOINC_CONSULT_NOTE = ("11488-4", "Consult note")
LOINC_HER2 = ("85319-2", "HER2 [Presence] in Breast cancer specimen by Immune stain")
SNOMED_POSITIVE = ("10828004", "Positive (qualifier value)")
SNOMED_NEGATIVE = ("260385009", "Negative (qualifier value)")
SNOMED_TELERADIOTHERAPY = ("33195004", "Teleradiotherapy procedure (procedure)")


@dataclass(frozen=True)
class Drug:
    """One ingredient: ``role`` drives how notes talk about it, ``drug_class`` finds duplicates."""

    name: str
    rxnorm: str
    drug_class: str
    role: str  # chemotherapy | immunotherapy | targeted | hormonal | supportive
    brands: tuple[str, ...]
    dose: str


def _d(name: str, rxnorm: str, drug_class: str, role: str, dose: str, *brands: str) -> Drug:
    return Drug(name, rxnorm, drug_class, role, brands, dose)


DRUGS: MappingProxyType[str, Drug] = MappingProxyType(
    {
        d.name: d
        for d in (
            _d("cisplatin", "2555", "platinum", "chemotherapy", "75 mg/m2 IV day 1"),
            _d("carboplatin", "40048", "platinum", "chemotherapy", "AUC 5 IV day 1", "Paraplatin"),
            _d("oxaliplatin", "32592", "platinum", "chemotherapy", "85 mg/m2 IV day 1", "Eloxatin"),
            _d("paclitaxel", "56946", "taxane", "chemotherapy", "175 mg/m2 IV day 1", "Taxol"),
            _d("docetaxel", "72962", "taxane", "chemotherapy", "75 mg/m2 IV day 1", "Taxotere"),
            _d("fluorouracil", "4492", "fluoropyrimidine", "chemotherapy", "2400 mg/m2 IV over 46 h", "5-FU"),
            _d("capecitabine", "194000", "fluoropyrimidine", "chemotherapy", "1000 mg/m2 PO BID", "Xeloda"),
            _d("leucovorin", "6313", "folate analog", "chemotherapy", "400 mg/m2 IV day 1"),
            _d("doxorubicin", "3639", "anthracycline", "chemotherapy", "60 mg/m2 IV day 1", "Adriamycin"),
            _d("cyclophosphamide", "3002", "alkylating agent", "chemotherapy", "600 mg/m2 IV day 1"),
            _d("pemetrexed", "68446", "antifolate", "chemotherapy", "500 mg/m2 IV day 1", "Alimta"),
            _d("irinotecan", "51499", "topoisomerase inhibitor", "chemotherapy", "180 mg/m2 IV", "Camptosar"),
            _d(
                "gemcitabine",
                "12574",
                "antimetabolite",
                "chemotherapy",
                "1250 mg/m2 IV days 1 and 8",
                "Gemzar",
            ),
            _d("vincristine", "11202", "vinca alkaloid", "chemotherapy", "1.4 mg/m2 IV day 1"),
            _d(
                "pembrolizumab",
                "1547545",
                "anti-PD-1",
                "immunotherapy",
                "200 mg IV every 3 weeks",
                "Keytruda",
            ),
            _d("nivolumab", "1597876", "anti-PD-1", "immunotherapy", "240 mg IV every 2 weeks", "Opdivo"),
            _d("trastuzumab", "224905", "anti-HER2 antibody", "targeted", "6 mg/kg IV", "Herceptin"),
            _d(
                "pertuzumab",
                "1298944",
                "anti-HER2 dimerization inhibitor",
                "targeted",
                "420 mg IV",
                "Perjeta",
            ),
            _d("bevacizumab", "253337", "anti-VEGF", "targeted", "5 mg/kg IV", "Avastin"),
            _d("cetuximab", "318341", "anti-EGFR", "targeted", "250 mg/m2 IV weekly", "Erbitux"),
            _d("rituximab", "121191", "anti-CD20", "targeted", "375 mg/m2 IV day 1", "Rituxan"),
            _d("leuprolide", "42375", "GnRH agonist", "hormonal", "22.5 mg IM every 3 months", "Lupron"),
            _d("bicalutamide", "83008", "antiandrogen", "hormonal", "50 mg PO daily", "Casodex"),
            _d("enzalutamide", "1307298", "antiandrogen", "hormonal", "160 mg PO daily", "Xtandi"),
            _d("prednisone", "8640", "corticosteroid", "chemotherapy", "100 mg PO days 1-5"),
            _d(
                "ondansetron",
                "26225",
                "5-HT3 antagonist",
                "supportive",
                "8 mg PO every 8 h as needed",
                "Zofran",
            ),
            _d("granisetron", "26237", "5-HT3 antagonist", "supportive", "1 mg PO before chemotherapy"),
            _d("palonosetron", "70561", "5-HT3 antagonist", "supportive", "0.25 mg IV day 1", "Aloxi"),
            _d("dexamethasone", "3264", "corticosteroid", "supportive", "8 mg PO days 2-3", "Decadron"),
            _d("aprepitant", "358255", "NK1 antagonist", "supportive", "125 mg PO day 1", "Emend"),
            _d("filgrastim", "68442", "G-CSF", "supportive", "5 mcg/kg SC daily", "Neupogen"),
            _d("pegfilgrastim", "338036", "G-CSF", "supportive", "6 mg SC day 2", "Neulasta"),
            _d(
                "loperamide",
                "6468",
                "antidiarrheal",
                "supportive",
                "4 mg PO then 2 mg after each loose stool",
            ),
            _d("tamsulosin", "77492", "alpha blocker", "supportive", "0.4 mg PO daily", "Flomax"),
            _d("allopurinol", "519", "xanthine oxidase inhibitor", "supportive", "300 mg PO daily"),
        )
    }
)


@dataclass(frozen=True)
class Regimen:
    """A treatment line: ``name`` as clinicians write it, ``drugs`` repeated every cycle."""

    name: str
    drugs: tuple[str, ...]
    supportive: tuple[str, ...]
    cycle_days: int
    second_line: bool = False  # given after progression on one of the cancer's ``prior_lines``


@dataclass(frozen=True)
class Cancer:
    """A cancer type with its codes; ``radiotherapy`` says which site, if the course includes RT."""

    key: str
    label: str  # how notes and the recommender name it
    snomed: tuple[str, str]
    icd10: tuple[str, str]
    sexes: tuple[str, ...]
    radiotherapy: str | None  # None | "pelvis" | "head and neck"
    her2: str | None
    regimens: tuple[Regimen, ...]
    prior_lines: tuple[Regimen, ...]


_AE = ("ondansetron", "dexamethasone")

CANCERS: tuple[Cancer, ...] = (
    Cancer(
        "nsclc",
        "non-small cell lung cancer",
        ("254637007", "Non-small cell lung cancer (disorder)"),
        ("C34.90", "Malignant neoplasm of unspecified part of unspecified bronchus or lung"),
        ("female", "male"),
        None,
        None,
        (
            Regimen(
                "carboplatin/paclitaxel/pembrolizumab",
                ("carboplatin", "paclitaxel", "pembrolizumab"),
                _AE,
                21,
            ),
            Regimen(
                "carboplatin/pemetrexed/pembrolizumab",
                ("carboplatin", "pemetrexed", "pembrolizumab"),
                _AE,
                21,
            ),
            Regimen("cisplatin/pemetrexed", ("cisplatin", "pemetrexed"), (*_AE, "aprepitant"), 21),
            Regimen("docetaxel", ("docetaxel",), ("dexamethasone", "pegfilgrastim"), 21, second_line=True),
        ),
        (
            Regimen("carboplatin/pemetrexed", ("carboplatin", "pemetrexed"), _AE, 21),
            Regimen("cisplatin/gemcitabine", ("cisplatin", "gemcitabine"), _AE, 21),
        ),
    ),
    Cancer(
        "breast_her2_pos",
        "breast cancer, HER2-positive",
        ("254837009", "Malignant neoplasm of breast (disorder)"),
        ("C50.911", "Malignant neoplasm of unspecified site of right female breast"),
        ("female",),
        None,
        "positive",
        (
            Regimen("TH", ("paclitaxel", "trastuzumab"), ("ondansetron",), 7),
            Regimen("TCHP", ("docetaxel", "carboplatin", "trastuzumab", "pertuzumab"), (*_AE, "pegfilgrastim"), 21),
        ),
        (),
    ),
    Cancer(
        "breast_her2_neg",
        "breast cancer, HER2-negative",
        ("254837009", "Malignant neoplasm of breast (disorder)"),
        ("C50.912", "Malignant neoplasm of unspecified site of left female breast"),
        ("female",),
        None,
        "negative",
        (
            Regimen("AC-T", ("doxorubicin", "cyclophosphamide"), (*_AE, "pegfilgrastim"), 14),
            Regimen("TC", ("docetaxel", "cyclophosphamide"), (*_AE, "pegfilgrastim"), 21),
        ),
        (),
    ),
    Cancer(
        "colon",
        "colon cancer",
        ("363406005", "Malignant tumor of colon (disorder)"),
        ("C18.9", "Malignant neoplasm of colon, unspecified"),
        ("female", "male"),
        None,
        None,
        (
            Regimen("FOLFOX", ("oxaliplatin", "leucovorin", "fluorouracil"), _AE, 14),
            Regimen("CAPOX", ("capecitabine", "oxaliplatin"), _AE, 21),
            Regimen(
                "FOLFIRI/bevacizumab",
                ("irinotecan", "leucovorin", "fluorouracil", "bevacizumab"),
                _AE,
                14,
                second_line=True,
            ),
        ),
        (
            Regimen("FOLFOX", ("oxaliplatin", "fluorouracil"), _AE, 14),
            Regimen("CAPOX", ("capecitabine", "oxaliplatin"), _AE, 21),
        ),
    ),
    Cancer(
        "rectal",
        "rectal cancer",
        ("363351006", "Malignant tumor of rectum (disorder)"),
        ("C20", "Malignant neoplasm of rectum"),
        ("female", "male"),
        "pelvis",
        None,
        (Regimen("capecitabine with radiation", ("capecitabine",), ("ondansetron",), 14),),
        (),
    ),
    Cancer(
        "prostate",
        "prostate cancer",
        ("399068003", "Malignant tumor of prostate (disorder)"),
        ("C61", "Malignant neoplasm of prostate"),
        ("male",),
        "pelvis",
        None,
        (
            Regimen("leuprolide/bicalutamide", ("leuprolide", "bicalutamide"), (), 28),
            Regimen(
                "docetaxel/prednisone with ADT",
                ("docetaxel", "prednisone", "leuprolide"),
                ("ondansetron",),
                21,
            ),
        ),
        (),
    ),
    Cancer(
        "head_neck",
        "head and neck squamous cell carcinoma",
        ("255055008", "Malignant tumor of head and/or neck (disorder)"),
        ("C76.0", "Malignant neoplasm of head, face and neck"),
        ("female", "male"),
        "head and neck",
        None,
        (
            Regimen("cisplatin with radiation", ("cisplatin",), (*_AE, "aprepitant"), 21),
            Regimen("cetuximab with radiation", ("cetuximab",), ("ondansetron",), 7),
        ),
        (),
    ),
    Cancer(
        "dlbcl",
        "diffuse large B-cell lymphoma",
        ("109969005", "Diffuse large B-cell lymphoma (disorder)"),
        ("C83.30", "Diffuse large B-cell lymphoma, unspecified site"),
        ("female", "male"),
        None,
        None,
        (
            Regimen(
                "R-CHOP",
                ("rituximab", "cyclophosphamide", "doxorubicin", "vincristine", "prednisone"),
                ("ondansetron", "allopurinol", "filgrastim"),
                21,
            ),
        ),
        (),
    ),
)

COMORBIDITIES: tuple[tuple[str, str, str, str], ...] = (
    # (label, SNOMED, SNOMED display, ICD-10)
    ("hypertension", "38341003", "Hypertensive disorder, systemic arterial (disorder)", "I10"),
    ("type 2 diabetes", "44054006", "Diabetes mellitus type 2 (disorder)", "E11.9"),
    (
        "chronic obstructive pulmonary disease",
        "13645005",
        "Chronic obstructive lung disease (disorder)",
        "J44.9",
    ),
    ("hyperlipidemia", "55822004", "Hyperlipidemia (disorder)", "E78.5"),
)

ALLERGIES: tuple[str, ...] = (
    "penicillin",
    "sulfonamide antibiotics",
    "iodinated contrast",
    "latex",
    "codeine",
)

# (already active drug, duplicate of the same class) for deliberate duplicate therapy.
DUPLICATE_PAIRS: tuple[tuple[str, str], ...] = (
    ("ondansetron", "granisetron"),
    ("ondansetron", "palonosetron"),
    ("carboplatin", "cisplatin"),
    ("cisplatin", "carboplatin"),
    ("pegfilgrastim", "filgrastim"),
    ("filgrastim", "pegfilgrastim"),
    ("pembrolizumab", "nivolumab"),
    ("capecitabine", "fluorouracil"),
    ("fluorouracil", "capecitabine"),
    ("bicalutamide", "enzalutamide"),
)

OVERPRESCRIPTION_REASONS: tuple[str, ...] = ("duplicate_therapy", "no_indication", "prior_serious_ade")
