"""Sentence builders: each returns a rendered sentence together with the facts it states."""

from __future__ import annotations

import random
from collections.abc import Sequence

from cds.cohort import templates as t
from cds.cohort.codes import DRUGS
from cds.cohort.lexicon import EVENT_SURFACES, LAB_TERMS, SEVERITY_WORDS
from cds.cohort.text import (
    AdeMention,
    ComboMention,
    Fragment,
    Sentence,
    ToxMention,
    render,
    sentence_case,
)


class Phraser:
    """Chooses phrasings with the patient's own random stream; never states a fact it does not record."""

    def __init__(self, rng: random.Random, sex: str) -> None:
        self._rng = rng
        female = sex == "female"
        self._kg = str(rng.randint(52, 104))  # one weight per patient, not one per sentence
        self._used: set[str] = set()
        self._pronouns = {
            "he": "she" if female else "he",
            "He": "She" if female else "He",
            "his": "her" if female else "his",
        }

    # -- building blocks -------------------------------------------------------------------

    def _values(self, **extra: str | Fragment) -> dict[str, str | Fragment]:
        rng = self._rng
        values: dict[str, str | Fragment] = dict(self._pronouns)
        values.update(
            n=str(rng.randint(1, 4)),
            kg=self._kg,
            sbp=str(rng.randint(104, 148)),
            dbp=str(rng.randint(62, 92)),
            job=rng.choice(t.JOBS),
        )
        values.update(extra)
        return values

    def _sentence(self, template: str, **values: str | Fragment) -> Fragment:
        return sentence_case(render(template, self._values(**values)))

    def drug_surface(self, drug: str) -> str:
        """Mostly the generic name; sometimes capitalised or a brand, as clinicians write."""
        brands = DRUGS[drug].brands
        roll = self._rng.random()
        if brands and roll < 0.15:
            return self._rng.choice(brands)
        if roll < 0.22:
            return drug.capitalize()
        return drug

    def graded(self, surface: str, grade: int | None, lab: bool = False) -> Fragment:
        """``surface`` with a grade phrase around it; the surface itself is span ``event``."""
        rng = self._rng
        if grade is None:
            style = "{event}" if lab else rng.choice(t.UNGRADED_STYLES)
            return render(style, {"event": surface})
        if grade in SEVERITY_WORDS and not lab and rng.random() < 0.25:
            sev = rng.choice(SEVERITY_WORDS[grade])
            return render(rng.choice(t.SEVERITY_STYLES), {"event": surface, "sev": sev})
        return render(rng.choice(t.GRADE_STYLES), {"event": surface, "g": str(grade)})

    def event(self, term: str, grade: int | None) -> Fragment:
        return self.graded(self._rng.choice(EVENT_SURFACES[term]), grade, lab=term in LAB_TERMS)

    # -- adverse drug events ---------------------------------------------------------------

    def ade(self, drug: str, term: str, grade: int | None, cycle: int) -> Sentence:
        pool = t.ADE_POSITIVE_ANY + (t.ADE_POSITIVE_LAB if term in LAB_TERMS else t.ADE_POSITIVE_SYMPTOM)
        frag = self._sentence(
            self._rng.choice(pool), drug=self.drug_surface(drug), ev=self.event(term, grade), n=str(cycle)
        )
        return Sentence(frag, ades=(AdeMention(drug, term, grade, False, "drug", "ev.event"),))

    def ade_pair(
        self, drug: str, first: tuple[str, int | None], second: tuple[str, int | None], cycle: int
    ) -> Sentence:
        frag = self._sentence(
            self._rng.choice(t.ADE_POSITIVE_PAIR),
            drug=self.drug_surface(drug),
            ev=self.event(*first),
            ev2=self.event(*second),
            n=str(cycle),
        )
        return Sentence(
            frag,
            ades=(
                AdeMention(drug, first[0], first[1], False, "drug", "ev.event"),
                AdeMention(drug, second[0], second[1], False, "drug", "ev2.event"),
            ),
        )

    def negated(self, drug: str, term: str, cycle: int) -> Sentence:
        pool = t.ADE_NEGATED_LAB if term in LAB_TERMS else t.ADE_NEGATED
        surface = self._rng.choice(EVENT_SURFACES[term])
        frag = self._sentence(self._rng.choice(pool), drug=self.drug_surface(drug), event=surface, n=str(cycle))
        return Sentence(frag, ades=(AdeMention(drug, term, None, True, "drug", "event"),))

    def negated_pair(self, drug: str, first: str, second: str) -> Sentence:
        frag = self._sentence(
            self._rng.choice(t.ADE_NEGATED_PAIR),
            drug=self.drug_surface(drug),
            event=self._rng.choice(EVENT_SURFACES[first]),
            event2=self._rng.choice(EVENT_SURFACES[second]),
        )
        return Sentence(
            frag,
            ades=(
                AdeMention(drug, first, None, True, "drug", "event"),
                AdeMention(drug, second, None, True, "drug", "event2"),
            ),
        )

    # -- drug and event together without an adverse drug event (hard negatives) -----------

    def treats(self, drug: str, term: str) -> Sentence:
        surface = self._rng.choice(EVENT_SURFACES[term])
        return Sentence(self._sentence(self._rng.choice(t.TREATS), drug=self.drug_surface(drug), event=surface))

    def counsel(self, drug: str, term: str) -> Sentence:
        surface = self._rng.choice(EVENT_SURFACES[term])
        return Sentence(self._sentence(self._rng.choice(t.COUNSEL), drug=self.drug_surface(drug), event=surface))

    def drug_only(self, drug: str, starting: bool = False) -> Sentence:
        pool = t.DRUG_START if starting else t.DRUG_ONLY
        frag = self._sentence(self._rng.choice(pool), drug=self.drug_surface(drug), dose=DRUGS[drug].dose)
        return Sentence(frag)

    def serious_stop(self, drug: str) -> Sentence:
        return Sentence(self._sentence(self._rng.choice(t.SERIOUS_STOP), drug=self.drug_surface(drug)))

    # -- combinations ------------------------------------------------------------------------

    def combo(
        self, drugs: Sequence[str], label: str, *, acronym: str | None, cycle: int, date: str, days: int
    ) -> Sentence:
        """A sentence naming ``drugs`` together; POS = it worked, COMB = given, NEG = it failed."""
        rng = self._rng
        names = {f"d{i}": self.drug_surface(d) for i, d in enumerate(drugs)}
        listed = render(rng.choice(t.COMBO_LISTS[len(drugs)]), names)
        if acronym and rng.random() < 0.5:
            listed = render(rng.choice(t.REGIMEN_WRAP), {"name": acronym, "combo": listed})
            prefix = "combo.combo."
        else:
            prefix = "combo."
        pool = {"POS": t.COMBO_POS, "COMB": t.COMBO_COMB, "NEG": t.COMBO_NEG}[label]
        frag = self._sentence(rng.choice(pool), combo=listed, n=str(cycle), date=date, days=str(days))
        keys = tuple(f"{prefix}d{i}" for i in range(len(drugs)))
        return Sentence(frag, combos=(ComboMention(tuple(drugs), label, keys),))

    # -- noise -------------------------------------------------------------------------------

    def distractor(self, kind: str = "general") -> Sentence:
        """A sentence stating no fact: ``kind`` is general, exam or radiotherapy."""
        pool = {"general": t.DISTRACTORS, "exam": t.EXAM, "radiotherapy": t.RT_DISTRACTORS}[kind]
        fresh = [p for p in pool if p not in self._used] or list(pool)
        template = self._rng.choice(fresh)
        self._used.add(template)
        return Sentence(self._sentence(template))

    def new_note(self) -> None:
        """Forget which distractors were used: within one note none repeats."""
        self._used.clear()

    # -- radiotherapy symptoms -----------------------------------------------------------------

    def symptom_present(self, symptom: str, surface: str, grade: int | None, treat_drug: str | None) -> Sentence:
        mention = self.graded(surface, grade)
        if treat_drug is not None:
            template = self._rng.choice(t.RT_TREATED)
            frag = self._sentence(template, m=mention, drug=self.drug_surface(treat_drug))
        else:
            frag = self._sentence(self._rng.choice(t.RT_PRESENT), m=mention)
        return Sentence(frag, toxicities=(ToxMention(symptom, "present", grade, "m.event"),))

    def symptoms_absent(self, items: Sequence[tuple[str, str]]) -> Sentence:
        """One denial sentence for ``(symptom, surface)`` pairs."""
        rng = self._rng
        if len(items) == 1:
            frag = self._sentence(rng.choice(t.RT_ABSENT_ONE), a=items[0][1])
            return Sentence(frag, toxicities=(ToxMention(items[0][0], "absent", None, "a"),))
        fields = [f"{{a{i}}}" for i in range(len(items))]
        joiner = rng.choice((" or ", ", or ")) if len(items) > 2 else rng.choice((" or ", " and "))
        listed = render(", ".join(fields[:-1]) + joiner + fields[-1], {f"a{i}": s for i, (_, s) in enumerate(items)})
        frag = self._sentence(rng.choice(t.RT_ABSENT_LIST), list=listed)
        tox = tuple(ToxMention(sym, "absent", None, f"list.a{i}") for i, (sym, _) in enumerate(items))
        return Sentence(frag, toxicities=tox)
