"""How notes name adverse events: CTCAE term -> surface phrases, drug -> the events it plausibly causes.

Several surfaces per term so that a model must learn the mapping instead of string equality
("neutropenia", "low neutrophil count" -> Neutrophil count decreased).
"""

from __future__ import annotations

from types import MappingProxyType

# The 12 radiotherapy toxicity symptoms of the ground truth; each key is its CTCAE term lower-cased.
SYMPTOMS: tuple[str, ...] = (
    "urinary urgency",
    "urinary frequency",
    "cystitis noninfective",
    "hematuria",
    "urinary incontinence",
    "urinary retention",
    "urinary tract pain",
    "proctitis",
    "diarrhea",
    "rectal hemorrhage",
    "fatigue",
    "erectile dysfunction",
)

SYMPTOM_TERMS: MappingProxyType[str, str] = MappingProxyType(
    {
        "urinary urgency": "Urinary urgency",
        "urinary frequency": "Urinary frequency",
        "cystitis noninfective": "Cystitis noninfective",
        "hematuria": "Hematuria",
        "urinary incontinence": "Urinary incontinence",
        "urinary retention": "Urinary retention",
        "urinary tract pain": "Urinary tract pain",
        "proctitis": "Proctitis",
        "diarrhea": "Diarrhea",
        "rectal hemorrhage": "Rectal hemorrhage",
        "fatigue": "Fatigue",
        "erectile dysfunction": "Erectile dysfunction",
    }
)

# Surfaces used in drug-attributed sentences (progress notes).
EVENT_SURFACES: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "Nausea": ("nausea",),
        "Vomiting": ("vomiting", "emesis"),
        "Acute kidney injury": ("acute kidney injury", "AKI"),
        "Creatinine increased": ("elevated creatinine", "creatinine rise", "creatinine elevation"),
        "Tinnitus": ("tinnitus", "ringing in the ears"),
        "Hearing impaired": ("hearing loss", "decreased hearing"),
        "Hypomagnesemia": ("hypomagnesemia", "low magnesium"),
        "Peripheral sensory neuropathy": (
            "peripheral sensory neuropathy",
            "sensory neuropathy",
            "neuropathy",
            "numbness and tingling in the fingertips",
            "paresthesias in both feet",
        ),
        "Peripheral motor neuropathy": ("motor neuropathy", "distal weakness"),
        "Neutrophil count decreased": ("neutropenia", "low neutrophil count", "decreased ANC"),
        "Febrile neutropenia": ("febrile neutropenia", "neutropenic fever"),
        "Anemia": ("anemia",),
        "Platelet count decreased": ("thrombocytopenia", "low platelets", "decreased platelet count"),
        "Fatigue": ("fatigue", "tiredness", "low energy"),
        "Diarrhea": ("diarrhea", "loose stools", "watery stools"),
        "Alopecia": ("alopecia", "hair loss", "hair thinning"),
        "Myalgia": ("myalgias", "muscle aches"),
        "Arthralgia": ("arthralgias", "joint pain"),
        "Infusion related reaction": (
            "infusion reaction",
            "infusion-related reaction",
            "flushing during the infusion",
        ),
        "Edema limbs": ("leg swelling", "peripheral edema", "edema of the lower extremities"),
        "Nail discoloration": ("nail discoloration", "darkening of the nails"),
        "Mucositis oral": ("mucositis", "oral mucositis", "mouth sores"),
        "Palmar-plantar erythrodysesthesia syndrome": (
            "hand-foot syndrome",
            "palmar-plantar erythrodysesthesia",
            "redness and peeling of the palms",
        ),
        "Ejection fraction decreased": (
            "LVEF decline",
            "ejection fraction drop",
            "reduced ejection fraction",
        ),
        "Hypothyroidism": ("hypothyroidism",),
        "Pneumonitis": ("pneumonitis",),
        "Colitis": ("colitis",),
        "Rash maculo-papular": ("maculopapular rash", "rash"),
        "Rash acneiform": ("acneiform rash", "acne-like rash"),
        "Alanine aminotransferase increased": ("elevated ALT", "transaminase elevation", "ALT elevation"),
        "Pruritus": ("pruritus", "itching"),
        "Adrenal insufficiency": ("adrenal insufficiency",),
        "Proteinuria": ("proteinuria",),
        "Epistaxis": ("epistaxis", "nosebleeds"),
        "Constipation": ("constipation",),
        "Hyperglycemia": ("hyperglycemia", "elevated blood sugars"),
        "Insomnia": ("insomnia", "trouble sleeping"),
        "Hot flashes": ("hot flashes", "hot flushes"),
        "Headache": ("headache", "headaches"),
        "Hiccups": ("hiccups",),
        "Bone pain": ("bone pain", "diffuse bone aches"),
        "Gynecomastia": ("gynecomastia", "breast enlargement"),
        "Erectile dysfunction": ("erectile dysfunction", "difficulty with erections"),
        "Cystitis noninfective": ("hemorrhagic cystitis", "noninfective cystitis"),
    }
)

# Plausible adverse events per ingredient (CTCAE terms), most typical first.
DRUG_EVENTS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "cisplatin": (
            "Nausea",
            "Vomiting",
            "Acute kidney injury",
            "Creatinine increased",
            "Tinnitus",
            "Hearing impaired",
            "Hypomagnesemia",
            "Peripheral sensory neuropathy",
        ),
        "carboplatin": (
            "Platelet count decreased",
            "Neutrophil count decreased",
            "Anemia",
            "Nausea",
            "Fatigue",
        ),
        "oxaliplatin": (
            "Peripheral sensory neuropathy",
            "Nausea",
            "Diarrhea",
            "Fatigue",
            "Platelet count decreased",
        ),
        "paclitaxel": (
            "Peripheral sensory neuropathy",
            "Alopecia",
            "Myalgia",
            "Arthralgia",
            "Neutrophil count decreased",
            "Infusion related reaction",
        ),
        "docetaxel": (
            "Neutrophil count decreased",
            "Febrile neutropenia",
            "Edema limbs",
            "Nail discoloration",
            "Fatigue",
            "Alopecia",
            "Mucositis oral",
            "Diarrhea",
        ),
        "fluorouracil": (
            "Diarrhea",
            "Mucositis oral",
            "Neutrophil count decreased",
            "Palmar-plantar erythrodysesthesia syndrome",
            "Nausea",
        ),
        "capecitabine": ("Palmar-plantar erythrodysesthesia syndrome", "Diarrhea", "Nausea", "Fatigue"),
        "leucovorin": (),
        "doxorubicin": (
            "Nausea",
            "Vomiting",
            "Alopecia",
            "Neutrophil count decreased",
            "Mucositis oral",
            "Ejection fraction decreased",
            "Fatigue",
        ),
        "cyclophosphamide": (
            "Nausea",
            "Neutrophil count decreased",
            "Alopecia",
            "Cystitis noninfective",
            "Fatigue",
        ),
        "pemetrexed": (
            "Fatigue",
            "Anemia",
            "Neutrophil count decreased",
            "Rash maculo-papular",
            "Mucositis oral",
        ),
        "gemcitabine": (
            "Platelet count decreased",
            "Neutrophil count decreased",
            "Fatigue",
            "Alanine aminotransferase increased",
        ),
        "irinotecan": ("Diarrhea", "Neutrophil count decreased", "Nausea", "Alopecia"),
        "vincristine": ("Peripheral sensory neuropathy", "Constipation", "Peripheral motor neuropathy"),
        "pembrolizumab": (
            "Hypothyroidism",
            "Pneumonitis",
            "Colitis",
            "Diarrhea",
            "Rash maculo-papular",
            "Fatigue",
            "Alanine aminotransferase increased",
            "Pruritus",
        ),
        "nivolumab": (
            "Hypothyroidism",
            "Pneumonitis",
            "Colitis",
            "Rash maculo-papular",
            "Adrenal insufficiency",
            "Pruritus",
        ),
        "trastuzumab": ("Ejection fraction decreased", "Infusion related reaction", "Diarrhea", "Fatigue"),
        "pertuzumab": ("Diarrhea", "Rash maculo-papular"),
        "bevacizumab": ("Proteinuria", "Epistaxis"),
        "cetuximab": ("Rash acneiform", "Hypomagnesemia", "Infusion related reaction", "Diarrhea"),
        "rituximab": ("Infusion related reaction",),
        "prednisone": ("Hyperglycemia", "Insomnia"),
        "leuprolide": ("Hot flashes", "Fatigue", "Erectile dysfunction"),
        "bicalutamide": ("Gynecomastia", "Hot flashes", "Alanine aminotransferase increased"),
        "enzalutamide": ("Fatigue", "Hot flashes"),
        "ondansetron": ("Constipation", "Headache"),
        "granisetron": ("Constipation", "Headache"),
        "palonosetron": ("Constipation", "Headache"),
        "dexamethasone": ("Insomnia", "Hyperglycemia", "Hiccups"),
        "aprepitant": ("Hiccups", "Fatigue"),
        "filgrastim": ("Bone pain",),
        "pegfilgrastim": ("Bone pain",),
        "loperamide": ("Constipation",),
        "tamsulosin": (),
        "allopurinol": ("Rash maculo-papular",),
    }
)

# Supportive drugs a note may name *as treatment* of an event: a drug and an event in one
# sentence that is not an adverse drug event (a hard negative for the extractor).
TREATS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "Nausea": ("ondansetron", "granisetron"),
        "Vomiting": ("ondansetron",),
        "Diarrhea": ("loperamide",),
        "Urinary frequency": ("tamsulosin",),
        "Urinary urgency": ("tamsulosin",),
        "Neutrophil count decreased": ("filgrastim",),
    }
)

# Radiotherapy notes: surfaces when present, and when listed as denied.
SYMPTOM_PRESENT: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "urinary urgency": ("urinary urgency", "urgency to void", "urgency"),
        "urinary frequency": ("urinary frequency", "increased frequency of urination", "frequency"),
        "cystitis noninfective": (
            "radiation cystitis",
            "noninfective cystitis",
            "cystitis with a negative urine culture",
        ),
        "hematuria": ("hematuria", "blood in the urine", "pink-tinged urine"),
        "urinary incontinence": ("urinary incontinence", "leakage of urine", "stress incontinence"),
        "urinary retention": (
            "urinary retention",
            "incomplete bladder emptying",
            "difficulty emptying the bladder",
        ),
        "urinary tract pain": ("dysuria", "burning with urination", "urinary tract pain"),
        "proctitis": ("proctitis", "radiation proctitis", "rectal discomfort with tenesmus"),
        "diarrhea": ("diarrhea", "loose stools", "increased stool frequency"),
        "rectal hemorrhage": ("rectal bleeding", "blood per rectum", "bright red blood on the tissue"),
        "fatigue": ("fatigue", "tiredness", "low energy"),
        "erectile dysfunction": (
            "erectile dysfunction",
            "difficulty achieving erections",
            "decreased erectile function",
        ),
    }
)

SYMPTOM_ABSENT: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "urinary urgency": ("urgency", "urinary urgency"),
        "urinary frequency": ("urinary frequency", "increased frequency"),
        "cystitis noninfective": ("cystitis", "symptoms of cystitis"),
        "hematuria": ("hematuria", "blood in the urine", "gross hematuria"),
        "urinary incontinence": ("incontinence", "leakage of urine"),
        "urinary retention": ("retention", "urinary retention", "difficulty voiding"),
        "urinary tract pain": ("dysuria", "pain with urination"),
        "proctitis": ("proctitis", "tenesmus"),
        "diarrhea": ("diarrhea", "loose stools"),
        "rectal hemorrhage": ("rectal bleeding", "blood per rectum", "hematochezia"),
        "fatigue": ("fatigue", "significant fatigue"),
        "erectile dysfunction": ("erectile dysfunction", "change in erectile function"),
    }
)

# Events found on labs or imaging: notes do not say a patient "denies" them.
LAB_TERMS: frozenset[str] = frozenset(
    {
        "Neutrophil count decreased",
        "Platelet count decreased",
        "Anemia",
        "Creatinine increased",
        "Alanine aminotransferase increased",
        "Hypomagnesemia",
        "Ejection fraction decreased",
        "Hyperglycemia",
        "Proteinuria",
        "Acute kidney injury",
        "Hypothyroidism",
        "Adrenal insufficiency",
    }
)

SEVERITY_WORDS: MappingProxyType[int, tuple[str, ...]] = MappingProxyType(
    {1: ("mild",), 2: ("moderate",), 3: ("severe",)}
)
