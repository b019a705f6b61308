"""Per-drug ADE summaries: the grouped record as plain data, prompts, the deterministic narrative, the
faithfulness guard and the ONNX generators (causal LM with past key values, or seq2seq).

torch, transformers and optimum are imported only inside training, export and the seq2seq generator.
"""

from models.summariser.guard import GuardReport, check_summary
from models.summariser.narrative import PROMPT_VERSION, narrate, render_prompt
from models.summariser.record import SERIOUS_GRADE, DrugGroup, EvidenceRef, TermCount

__all__ = [
    "PROMPT_VERSION",
    "SERIOUS_GRADE",
    "DrugGroup",
    "EvidenceRef",
    "GuardReport",
    "TermCount",
    "check_summary",
    "narrate",
    "render_prompt",
]
