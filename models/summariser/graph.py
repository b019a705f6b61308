"""ONNX graph surgery for the causal summariser: logits of the last position only.

optimum's ``text-generation-with-past`` export projects every input position onto the 49,152-entry vocabulary.
Decoding reads one position per row, so the prompt pass and every copied run of tokens paid for logits it
threw away (16 prompts of 70-180 tokens: ~0.5 GB of float32 per batch). A ``Slice`` of the hidden states in
front of the vocabulary projection keeps the graph's output name and rank; its sequence axis becomes 1.
"""

from __future__ import annotations

from pathlib import Path

from models.errors import ModelLoadError

LAST_POSITION = "last-position"  # the export record's ``logits`` value once the graph is cut
_SLICE = "ov_last_position"


def keep_last_position_logits(onnx_path: Path) -> None:
    """Rewrite ``onnx_path`` in place so that ``logits`` holds the last position only (idempotent)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    if any(node.name == _SLICE for node in graph.node):
        return
    producers = [node for node in graph.node if "logits" in node.output]
    if len(producers) != 1 or producers[0].op_type != "MatMul":
        raise ModelLoadError("OV-2108", f"{onnx_path}: no single MatMul produces 'logits'; cannot cut it")
    projection = producers[0]
    constants = {
        f"{_SLICE}.starts": [-1],
        f"{_SLICE}.ends": [np.iinfo(np.int64).max],
        f"{_SLICE}.axes": [1],
    }
    graph.initializer.extend(numpy_helper.from_array(np.array(v, dtype=np.int64), k) for k, v in constants.items())
    hidden = f"{_SLICE}.hidden"
    cut = helper.make_node("Slice", [projection.input[0], *constants], [hidden], name=_SLICE)
    graph.node.insert(list(graph.node).index(projection), cut)
    projection.input[0] = hidden
    for output in graph.output:
        if output.name == "logits":
            sequence = output.type.tensor_type.shape.dim[1]
            sequence.ClearField("dim_param")
            sequence.dim_value = 1
    onnx.save(model, str(onnx_path))
