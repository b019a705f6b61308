"""Sentence templates, many per fact, so that trained models cannot memorise one phrasing.

Fields: ``{drug}`` a drug surface, ``{ev}`` an event with its grade phrase, ``{event}`` a bare event
surface, ``{combo}`` a list of drugs, ``{n}`` a cycle number, ``{date}``, ``{days}``, ``{he}``/``{his}``.
"""

from __future__ import annotations

# Grade phrases around an event surface ({event}); {g} is the grade, {sev} a severity word.
GRADE_STYLES: tuple[str, ...] = (
    "grade {g} {event}",
    "G{g} {event}",
    "{event} (grade {g})",
    "{event}, CTCAE grade {g}",
    "CTCAE grade {g} {event}",
    "{event} grade {g}",
    "gr {g} {event}",
    "{event} (CTCAE v5 G{g})",
)
SEVERITY_STYLES: tuple[str, ...] = ("{sev} {event}", "{event}, {sev}")
UNGRADED_STYLES: tuple[str, ...] = ("{event}", "new {event}", "some {event}")

# Attribution sentences that read well for any event, reported or measured.
ADE_POSITIVE_ANY: tuple[str, ...] = (
    "{ev} likely secondary to {drug}.",
    "{ev}, attributed to {drug}.",
    "course complicated by {ev}, felt to be related to {drug}.",
    "{drug} held this week because of {ev}.",
    "{drug} dose reduced by 20% for {ev}.",
    "{ev} is a known toxicity of {drug} and is the most likely cause here.",
    "we attribute the {ev} to {drug}.",
    "{drug}-related {ev} noted today.",
    "suspect {drug} as the culprit for the {ev}.",
    "toxicity: {ev} (attributed to {drug}).",
    "given {ev} on {drug}, the next cycle will be delayed by one week.",
    "likely {drug} toxicity: {ev}.",
    "{ev} thought to be drug-induced ({drug}).",
    "{drug} was interrupted for {ev}; will rechallenge at a reduced dose.",
    "impression is {ev}, probably related to {drug}.",
)
# Attribution sentences for symptoms the patient reports.
ADE_POSITIVE_SYMPTOM: tuple[str, ...] = (
    "after starting {drug} developed {ev}.",
    "after starting {drug}, {he} developed {ev}.",
    "developed {ev} after cycle {n} of {drug}.",
    "reports {ev} since the last dose of {drug}.",
    "patient experienced {ev} on {drug}.",
    "noted {ev} starting a few days after {drug} was given.",
    "since {drug} was added, {ev} has been a problem.",
    "{ev} developed within 48 hours of the {drug} infusion.",
    "{he} has had {ev}, which we think is from {drug}.",
)
ADE_POSITIVE_LAB: tuple[str, ...] = (
    "labs notable for {ev}, an expected nadir effect of {drug}.",
    "CBC and chemistries show {ev} after {drug}.",
    "today's labs reveal {ev}, likely due to {drug}.",
    "{ev} on labs, consistent with {drug} toxicity.",
    "{ev} after cycle {n} of {drug}.",
    "workup confirmed {ev}, attributed to {drug}.",
)
ADE_POSITIVE_PAIR: tuple[str, ...] = (
    "{ev} and {ev2}, both likely related to {drug}.",
    "reports {ev} as well as {ev2} since starting {drug}.",
    "{drug} has caused {ev} and {ev2}.",
    "since cycle {n} of {drug}: {ev}, {ev2}.",
)
ADE_NEGATED: tuple[str, ...] = (
    "on {drug}, denies {event}.",
    "tolerating {drug} without {event}.",
    "no evidence of {event} since starting {drug}.",
    "{drug} continued; no {event} reported.",
    "has not had any {event} with {drug}.",
    "denies {event} after the last {drug} infusion.",
    "no {event} so far on {drug}.",
    "specifically asked about {event} given {drug} exposure, which {he} denies.",
    "{drug} has not caused {event}.",
    "negative for {event} despite {drug}.",
    "{he} denies {event} on {drug}.",
    "no {event} with cycle {n} of {drug}.",
)
ADE_NEGATED_LAB: tuple[str, ...] = (
    "labs today without {event} on {drug}.",
    "no {event} on current labs while on {drug}.",
    "{drug} continued; no {event} on monitoring.",
    "no evidence of {event} after cycle {n} of {drug}.",
)
ADE_NEGATED_PAIR: tuple[str, ...] = (
    "denies {event} or {event2} since starting {drug}.",
    "no {event} and no {event2} on {drug}.",
    "on {drug} without {event} or {event2}.",
)
TREATS: tuple[str, ...] = (
    "continue {drug} as needed for {event}.",
    "{drug} prescribed for the {event}.",
    "started {drug} to manage the {event}.",
    "{event} controlled with {drug}.",
)
COUNSEL: tuple[str, ...] = (
    "counseled that {drug} can cause {event}; call if it occurs.",
    "reviewed that {event} is a possible side effect of {drug}.",
    "educated on the risk of {event} with {drug}.",
    "will monitor for {event}, which can occur with {drug}.",
)
DRUG_ONLY: tuple[str, ...] = (
    "{drug} dose: {dose}.",
    "continue {drug} at the current dose.",
    "{drug} given today without complication.",
    "{drug} was reordered.",
    "pharmacy verified the {drug} dose.",
)
DRUG_START: tuple[str, ...] = (
    "start {drug} {dose}.",
    "prescribed {drug} ({dose}).",
    "{drug}: {dose}.",
    "will add {drug}, {dose}.",
)
SERIOUS_STOP: tuple[str, ...] = (
    "{drug} will be discontinued going forward.",
    "plan to omit {drug} from future cycles.",
    "{drug} permanently stopped.",
)

# Combination sentences: {combo} renders the drug list (its drugs are the combination).
COMBO_COMB: tuple[str, ...] = (
    "will start {combo} on {date}.",
    "treatment will be {combo} every {days} days.",
    "cycle {n} of {combo} given today.",
    "proceed with cycle {n} of {combo} at full dose.",
    "was started on {combo}.",
    "recommend treatment with {combo}.",
    "continue {combo} as scheduled.",
    "{he} received {combo} on {date}.",
)
COMBO_POS: tuple[str, ...] = (
    "{combo} produced a partial response.",
    "restaging CT shows a partial response to {combo}.",
    "disease is responding well to {combo}, with shrinking nodal disease.",
    "excellent response after {n} cycles of {combo}.",
    "{combo} achieved a marked reduction in tumor burden.",
    "imaging after {combo} shows near-complete metabolic response.",
)
COMBO_NEG: tuple[str, ...] = (
    "previously progressed on {combo}.",
    "disease progressed after {n} cycles of {combo}.",
    "{combo} was stopped for progression.",
    "progression despite {combo}.",
    "prior {combo} failed to control the disease.",
    "{he} had progressive disease on {combo}.",
)
COMBO_LISTS: dict[int, tuple[str, ...]] = {
    2: ("{d0} plus {d1}", "{d0} and {d1}", "{d0}/{d1}", "{d0} with {d1}", "{d0}-{d1}"),
    3: ("{d0}, {d1} and {d2}", "{d0}/{d1}/{d2}", "{d0} plus {d1} with {d2}", "{d0}, {d1}, and {d2}"),
    4: ("{d0}, {d1}, {d2} and {d3}", "{d0}/{d1}/{d2}/{d3}"),
    5: ("{d0}, {d1}, {d2}, {d3} and {d4}",),
}
REGIMEN_WRAP: tuple[str, ...] = ("{name} ({combo})", "{combo} ({name})")

# Sentences without drugs, adverse events or combinations: the noise around the facts.
DISTRACTORS: tuple[str, ...] = (
    "ECOG performance status {n}.",
    "Discussed goals of care with the patient and family.",
    "CT chest, abdomen and pelvis scheduled in {n} weeks.",
    "Weight {kg} kg, stable from the last visit.",
    "{He} lives with {his} spouse and remains independent in daily activities.",
    "Social work referral placed for transportation assistance.",
    "Influenza vaccine given today.",
    "Labs reviewed with the patient.",
    "Comprehensive metabolic panel unremarkable.",
    "Return to clinic in {n} weeks with labs.",
    "Advance directive on file.",
    "Former smoker, quit {n} years ago.",
    "Family history notable for cancer in a first-degree relative.",
    "Pathology reviewed at tumor board.",
    "{He} walks {n} miles most days.",
    "Questions answered; {he} agrees with the plan.",
    "Next imaging will guide the duration of therapy.",
    "Nutrition consult requested.",
    "Genetic counseling referral offered.",
    "Appetite and weight stable.",
    "Mood is good.",
    "Dental evaluation completed before treatment.",
    "No new complaints today.",
    "Consent signed after discussion of risks and benefits.",
    "Accompanied by {his} daughter today.",
    "Works part-time as a {job}.",
    "Reviewed outside records in detail.",
    "Performance status remains excellent.",
    "Echocardiogram from last month reviewed.",
    "Will follow up on pending tumor markers.",
    "Case discussed with the attending physician.",
)
EXAM: tuple[str, ...] = (
    "Port site clean, dry and intact.",
    "Lungs clear to auscultation bilaterally.",
    "Heart regular rate and rhythm, no murmurs.",
    "Abdomen soft and nontender.",
    "Vital signs within normal limits.",
    "Blood pressure {sbp}/{dbp}.",
    "Temperature 36.{n} C, afebrile.",
    "No palpable cervical or supraclavicular lymphadenopathy.",
    "Alert and oriented, in no acute distress.",
    "Extremities warm and well perfused.",
    "Oropharynx clear.",
    "Weight {kg} kg.",
)
JOBS: tuple[str, ...] = (
    "librarian",
    "bus driver",
    "teacher",
    "carpenter",
    "accountant",
    "nurse aide",
    "chef",
)

RT_DISTRACTORS: tuple[str, ...] = (
    "Setup images reviewed and approved.",
    "Cone-beam CT shows good alignment.",
    "Daily image guidance with fiducial markers.",
    "Treatment plan unchanged.",
    "Bladder filling protocol reviewed with the patient.",
    "Continue current plan; next weekly check in 7 days.",
    "Weight {kg} kg.",
    "Immobilization mask fits well.",
    "Dosimetry reviewed; no replanning needed.",
    "Patient arrives on time for daily treatment.",
)

# Radiotherapy symptom sentences: {m} is a symptom with its grade phrase.
RT_PRESENT: tuple[str, ...] = (
    "reports {m}.",
    "{m}.",
    "complains of {m}.",
    "has {m}, managed conservatively.",
    "notes {m} over the past week.",
    "{m}, worse toward the end of the week.",
    "{he} describes {m}.",
    "{m} has improved slightly but persists.",
)
RT_ABSENT_ONE: tuple[str, ...] = ("denies {a}.", "no {a}.", "negative for {a}.", "{a}: none.", "without {a}.")
RT_ABSENT_LIST: tuple[str, ...] = ("denies {list}.", "no {list}.", "negative for {list}.")
RT_TREATED: tuple[str, ...] = (
    "{m}; started {drug}.",
    "{m}, controlled with {drug}.",
    "{m}; {drug} prescribed.",
)
RESUME: tuple[str, ...] = (
    "will resume {drug} at a reduced dose today.",
    "{drug} resumed with a 25% dose reduction.",
    "after discussion, {drug} will be restarted this cycle.",
)
RT_PLAN: tuple[str, ...] = (
    "Refer to radiation oncology for {dose} Gy in {fx} fractions to the {site}.",
    "Radiation to the {site} ({dose} Gy / {fx} fractions) to be coordinated with radiation oncology.",
    "Concurrent radiotherapy to the {site} is planned.",
)
HEAD_NECK_RT: tuple[str, ...] = (
    "Radiation dermatitis grade {g} over the neck, managed with topical care.",
    "Radiation-related mucositis, grade {g}; using saline rinses.",
    "Thick saliva and taste changes from radiation.",
    "Radiation-related dysphagia to solids, grade {g}; soft diet advised.",
    "Skin in the treatment field with faint erythema only.",
)
