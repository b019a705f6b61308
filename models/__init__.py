"""The ML leaf: compact extractors, training, ONNX export and the ONNX runtime.

Text and plain records in, typed findings out; never imports ``cds``, ``adapters`` or ``hooks``.
Heavy libraries (torch, transformers, optimum) are imported only inside training and export functions.
"""

from models.card import ModelCard, read_card, verify_dir, write_card
from models.errors import (
    DataFormatError,
    ModelError,
    ModelIntegrityError,
    ModelLoadError,
    ProviderError,
    TrainingError,
)
from models.records import (
    AdeFinding,
    DrugCombination,
    Extractor,
    MedicationScore,
    ToxicityFinding,
    pipe_batches,
)
from models.registry import Registry, RuntimeConfig, default_registry
from models.runtime import (
    LoadedSession,
    bucket_by_length,
    load_model_dir_session,
    load_session,
    split_sentences_with_offsets,
    window_spans,
)

__all__ = [
    "AdeFinding",
    "DataFormatError",
    "DrugCombination",
    "Extractor",
    "LoadedSession",
    "MedicationScore",
    "ModelCard",
    "ModelError",
    "ModelIntegrityError",
    "ModelLoadError",
    "ProviderError",
    "Registry",
    "RuntimeConfig",
    "ToxicityFinding",
    "TrainingError",
    "bucket_by_length",
    "default_registry",
    "load_model_dir_session",
    "load_session",
    "pipe_batches",
    "read_card",
    "split_sentences_with_offsets",
    "verify_dir",
    "window_spans",
    "write_card",
]
