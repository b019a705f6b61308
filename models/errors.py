"""Errors raised by the ML leaf: loading, verifying, running, training and exporting models.

Every message starts with a stable code (``OV-2xxx``) and says what to do. Codes are never reused.

Exception tree::

    ModelError                 OV-2000  base; ``code`` is stable across releases
    ├── ModelLoadError         OV-2001..2019, OV-2080..2099  a model directory, backbone or tokenizer
    │                          cannot be loaded
    ├── ModelIntegrityError    OV-2020..2029  a file's sha256 differs from the card, or a file is missing
    ├── ProviderError          OV-2030..2039  onnxruntime did not take a required execution provider
    ├── TrainingError          OV-2040..2059  training, merging, exporting or a failed parity check
    └── DataFormatError        OV-2060..2079  user-supplied data in the wrong format (CLI exit code 2)
    (all of the above)         OV-2100..2119  the per-drug summariser (models.summariser): records,
                               artifacts, export parity, generators

    OV-2120..2139: the phenotype extractor (OV-2120 load) and its data (OV-2121, OV-2122), the toxicity
    retrieval index (OV-2123, OV-2124); raised as the classes above.

    OV-2190..2199: a damaged file in a model directory (``models.model_files``) where the loader had no code
    of its own: encoder_task.json (OV-2190), the ADE CTCAE term list and vectors (OV-2191), the recommender's
    baselines.json (OV-2192) and tokenizer.json (OV-2193), a summariser stage's tokenizer.json (OV-2194);
    raised as ModelLoadError. Then, ranges being full: ADE-Corpus-V2 offsets that do not span their string
    (OV-2195) and a drug or effect not in its sentence (OV-2196), as DataFormatError; a user's Hugging Face
    directory transformers cannot load (OV-2197), as ModelLoadError; an unknown onnxruntime provider name
    (OV-2198), as ProviderError.
"""

from __future__ import annotations


class ModelError(Exception):
    """Base of every error ``models`` raises."""

    code: str = "OV-2000"
    user_error: bool = False

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class ModelLoadError(ModelError):
    """A model directory, backbone package or tokenizer could not be loaded."""


class ModelIntegrityError(ModelError):
    """A model directory does not match the hashes its model card records."""


class ProviderError(ModelError):
    """onnxruntime did not use an execution provider the caller required."""


class TrainingError(ModelError):
    """Training, adapter merging, ONNX export or the parity check failed."""


class DataFormatError(ModelError):
    """Training or evaluation data is not in the expected format; the user must fix the input."""

    user_error = True
