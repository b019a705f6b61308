"""The yes-minus-no logit margin in torch, with and without the shared-prefix cache.

Used by training (with gradients), by the export parity check and by the benchmark; the runtime uses the
numpy/ONNX twin in ``scorer.py``. ``margins_cached`` is the same computation as ``OnnxYesNoScorer
.score_cached``: the prefix once, its keys/values expanded to the batch, right-padded suffixes with
positions continuing after the prefix, read at each suffix's last real token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _pad_right(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def margins_cached(
    model: Any, prefix: Sequence[int], suffixes: Sequence[Sequence[int]], yes_id: int, no_id: int, pad_id: int
) -> Any:
    """logit(yes) - logit(no) per suffix (a [B] tensor; differentiable when grad is enabled)."""
    import torch
    from transformers import DynamicCache

    batch = len(suffixes)
    plen = len(prefix)
    prefix_ids = torch.tensor([list(prefix)], dtype=torch.long)
    out = model(input_ids=prefix_ids, attention_mask=torch.ones_like(prefix_ids), use_cache=True)
    present = out.past_key_values
    cache = DynamicCache()
    for layer in range(len(present.layers)):
        keys, values = present.layers[layer].keys, present.layers[layer].values
        cache.update(keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1), layer)
    ids, mask = _pad_right(suffixes, pad_id)
    width = ids.shape[1]
    attention = torch.cat([torch.ones((batch, plen), dtype=torch.long), mask], dim=1)
    positions = (plen + torch.arange(width)).unsqueeze(0).expand(batch, -1)
    logits = model(
        input_ids=ids, attention_mask=attention, position_ids=positions, past_key_values=cache, use_cache=True
    ).logits
    last = logits[torch.arange(batch), mask.sum(dim=1) - 1]
    return last[:, yes_id] - last[:, no_id]


def margins_full(model: Any, prefix: Sequence[int], suffixes: Sequence[Sequence[int]], yes_id: int, no_id: int) -> Any:
    """The same margins from one full forward pass per candidate (no cache)."""
    import torch

    out = []
    for suffix in suffixes:
        ids = torch.tensor([list(prefix) + list(suffix)], dtype=torch.long)
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits
        out.append(logits[0, -1, yes_id] - logits[0, -1, no_id])
    return torch.stack(out)


def p_yes_cached(
    model: Any,
    prefix: Sequence[int],
    suffixes: Sequence[Sequence[int]],
    yes_id: int,
    no_id: int,
    pad_id: int,
    max_batch: int = 16,
) -> list[float]:
    """P(yes) per suffix without gradients, in chunks of ``max_batch`` (the prefix re-encoded per chunk)."""
    import torch

    probs: list[float] = []
    with torch.no_grad():
        for start in range(0, len(suffixes), max(1, max_batch)):
            chunk = suffixes[start : start + max_batch]
            margins = margins_cached(model, prefix, chunk, yes_id, no_id, pad_id)
            probs.extend(torch.sigmoid(margins.double()).tolist())
    return probs
