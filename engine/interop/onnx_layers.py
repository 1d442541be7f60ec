"""One converter per layer type, declared beside the layer (its `onnx_form`, an OnnxForm of
core/registry.py), collected here: convert(b, n) appends the node's ONNX ops to the Builder b and
returns its output tensors, one per port. n (a Node) holds the node's id, params, layer
declaration, input tensors, per-sample input and output shapes and weights (float32 arrays by
name). Tensors are batch first and channels last, as in Layerloom; convolutions and pooling
transpose to ONNX's NCHW and back around their op."""
from dataclasses import dataclass

from layerloom.core.registry import declared


@dataclass
class Node:
    id: str
    type: str
    params: dict
    layer: object
    x: list
    in_shapes: list
    out_shapes: list
    w: dict


# every layer's converter: its declaration's OnnxForm (core/registry.py)
CONVERTERS = {t: f.convert for t, f in declared("onnx").items()}
LAYER_OPS = {t: f.ops for t, f in declared("onnx").items()}
