"""A project with its trained weights as an ONNX model ("use the trained model anywhere").

    from layerloom.interop import onnx_export
    onnx_export.export(project, weights, "model.onnx")   # or to_onnx(...) -> onnx.ModelProto

The model takes each Input as its raw float32 array, batch first (dimension "batch"), shaped as
the project's Input node, and applies the dataset's fitted normalisation itself
((x - shift) * scale, data/preprocess.py), so it takes what Layerloom's own predict takes.
Its outputs are the graph's outputs, named by their node ids, laid out as Layerloom's (channels
last). Inference form throughout: dropout and noise layers vanish, BatchNormalization uses its
moving statistics. A node that cannot be expressed raises ExportError naming it. See
docs/onnx.md for every layer's ops and the measured agreement with the engine."""
import json

import numpy as np

from layerloom.core.errors import LayerloomError, ProjectError, quote
from layerloom.project import loom
from layerloom.interop import onnx_graph
from layerloom.interop.onnx_graph import Builder, ExportError
from layerloom.interop.onnx_layers import CONVERTERS, Node

DEFAULT_OPSET = 17
OPSETS = range(17, 22)  # what the converters' op forms are written (and tested) for

__all__ = ["to_onnx", "export", "ExportError", "OnnxMissing", "DEFAULT_OPSET"]


class OnnxMissing(LayerloomError):
    """The optional onnx package is not installed."""


def require_onnx():
    if onnx_graph.onnx is None:
        raise OnnxMissing("ONNX export needs the onnx package: pip install 'layerloom[onnx]'")
    return onnx_graph.onnx


def input_normalization(project):
    """{Input id: fitted statistics or None}: what prepare_inputs applies before the model
    (data/prepare.py): the statistics saved for each Input's array, which must exist when the
    dataset normalises, with the source's pixel scaling (data/forms.py) folded in."""
    from layerloom.data import forms, preprocess
    from layerloom.data.prepare import default_normalization
    g, d = project.graph, project.dataset or {}
    ins = g.inputs()
    kind = (d.get("normalize") or default_normalization(d)) if d else "none"
    saved = (d.get("fitted") or {}).get("normalization") or {}
    shapes = g.analysis().shapes
    out, by_name = {}, forms.forms(project)
    from layerloom.data.hostrun import host_inputs
    raw = host_inputs(g)  # read by host layers (text): raw, never normalised
    for nid in ins:
        if nid in raw:
            out[nid] = None
            continue
        name = forms.array_of(project, nid)
        stats = saved.get(name)
        if kind != "none" and not preprocess.matches(stats, kind, shapes[nid][0]):
            raise ProjectError(f"the project has no {kind} statistics fitted by training for "
                               f"array {quote(name)} (Input {quote(nid)}), so the exported model "
                               "could not normalise its input; export the trained.loom that "
                               "training wrote", "dataset.fitted")
        # the source's own pixel scaling too: the model takes the raw samples predict takes
        out[nid] = forms.fold(stats, by_name.get(name))
    return out


def _node_weights(graph, nid, in_shapes, weights):
    node = graph.nodes[nid]
    owner = node.shares or nid  # a node sharing another's weights: the owner's arrays
    out = {}
    for spec in node.layer.weights(node.params, in_shapes):
        key = f"{owner}/{spec.name}"
        if key not in weights:
            raise ProjectError(f"no array {quote(key)} in the weights for {node.type} layer "
                               f"{quote(nid)}", "weights")
        a = np.asarray(weights[key])
        if a.dtype.kind not in "fiub":
            raise ProjectError(f"array {quote(key)} holds {a.dtype} values, not numbers",
                               "weights")
        if a.shape != spec.shape:
            raise ProjectError(f"array {quote(key)} has shape {a.shape}, {node.type} layer "
                               f"{quote(nid)} needs {spec.shape}", "weights")
        out[spec.name] = a.astype(np.float32)
    return out


def _check_weights(graph, shapes, weights):
    known = set()
    for nid, node in graph.nodes.items():
        if node.shares is not None:  # its weights are its owner's
            continue
        in_shapes = [shapes[e.src][e.src_port] for e in graph.in_edges(nid)]
        known.update(f"{nid}/{s.name}" for s in node.layer.weights(node.params, in_shapes))
    unknown = sorted(set(weights) - known)
    if unknown:
        raise ProjectError(f"{quote(unknown[0])}"
                           + (f" and {len(unknown) - 1} more" if len(unknown) > 1 else "")
                           + " name no weight of this graph", "weights")


def _share_initializers(b):
    """One initializer for each distinct array: a weight used by two nodes (shared weights)
    is stored once, and both nodes read it."""
    first, renamed, kept = {}, {}, []
    for t in b.initializers:
        key = (t.data_type, tuple(t.dims),
               onnx_graph.numpy_helper.to_array(t).tobytes())
        if key in first:
            renamed[t.name] = first[key]
        else:
            first[key] = t.name
            kept.append(t)
    if not renamed:
        return
    b.initializers[:] = kept
    for node in b.nodes:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]


def _normalized_input(b, nid, stats):
    if stats is None:
        return nid
    shift = b.const(np.asarray(stats["shift"], np.float32), f"{nid}/shift")
    scale = b.const(np.asarray(stats["scale"], np.float32), f"{nid}/scale")
    return b.op("Mul", [b.op("Sub", [nid, shift], hint=f"{nid}/centered"), scale],
                hint=f"{nid}/normalized")


def _value_info(onnx, name, shape):
    return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                              ["batch"] + [int(d) for d in shape])


def _name_outputs(b, outputs, produced):
    """Give each output tensor its node's id: rename the tensor where only its producer knows
    it, else (a graph input, a tensor other nodes read) add an Identity."""
    consumed = {i for node in b.nodes for i in node.input}
    producer = {o: node for node in b.nodes for o in node.output}
    renamed = {}  # tensor -> the output name it took (two outputs may share one tensor)
    for nid, tensor in zip(outputs, produced):
        node = producer.get(tensor)
        if node is not None and tensor not in consumed and tensor not in renamed:
            node.output[list(node.output).index(tensor)] = nid
            renamed[tensor] = nid
        else:
            b.nodes.append(onnx_graph.helper.make_node("Identity", [renamed.get(tensor, tensor)],
                                                       [nid], name=b.name(f"{nid}/Identity")))


def to_onnx(project, weights, opset=DEFAULT_OPSET, normalization=True):
    """The project's graph with `weights` ({"node_id/weight_name": array}, as load_weights and
    Model.get_weights give them) as an onnx.ModelProto. normalization=False leaves the fitted
    input normalisation out (the model then takes normalised inputs)."""
    onnx = require_onnx()
    if int(opset) not in OPSETS:
        raise ProjectError(f"opset {opset} is not supported; the export writes opsets "
                           f"{OPSETS.start} to {OPSETS.stop - 1}", "opset")
    top = project.graph  # with its block instances: each written as a function's call
    project = loom.flat(project)  # blocks inlined
    g = project.graph
    problems = g.validate()
    if problems:
        raise ProjectError(str(problems[0]), problems=problems)
    shapes = g.analysis().shapes
    weights = dict(weights or {})
    _check_weights(g, shapes, weights)
    stats = input_normalization(project) if normalization else {}
    b = Builder(int(opset), reserved=g.nodes)
    tensors = {}  # (node id, port) -> tensor name
    inputs = []
    for nid in g.inputs():
        inputs.append(_value_info(onnx, nid, shapes[nid][0]))
        b.where = (g, nid)
        tensors[(nid, 0)] = _normalized_input(b, nid, stats.get(nid))
    owners = []  # the inlined node each ONNX node was made for (a block's: its path)
    for nid in g.topo_order():
        node = g.nodes[nid]
        owners.extend([""] * (len(b.nodes) - len(owners)))
        if node.layer.is_input:
            continue
        b.where = (g, nid)
        convert = CONVERTERS.get(node.type)
        if convert is None:
            b.fail(node.layer.no_form.get("onnx") or
                   "no ONNX converter is written for this layer type")
        edges = g.in_edges(nid)
        in_shapes = [shapes[e.src][e.src_port] for e in edges]
        n = Node(nid, node.type, node.params, node.layer, [tensors[(e.src, e.src_port)]
                                                           for e in edges],
                 in_shapes, list(shapes[nid]), _node_weights(g, nid, in_shapes, weights))
        for port, t in enumerate(convert(b, n)):
            tensors[(nid, port)] = t
        owners.extend([nid] * (len(b.nodes) - len(owners)))
    if any(n.shares is not None for n in g.nodes.values()):
        _share_initializers(b)
    outs = g.outputs()
    _name_outputs(b, outs, [tensors[(nid, 0)] for nid in outs])
    graph = onnx.helper.make_graph(
        b.nodes, _graph_name(project), inputs,
        [_value_info(onnx, nid, shapes[nid][0]) for nid in outs], b.initializers)
    opsets = [onnx.helper.make_opsetid("", int(opset))]
    model = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="layerloom",
                                   producer_version=_version(),
                                   ir_version=onnx.helper.find_min_ir_version_for(opsets))
    model.doc_string = ("Exported by Layerloom. Inputs: raw arrays (the fitted normalisation "
                        "is part of the graph); outputs: channels last, as Layerloom's.")
    meta = {"layerloom.normalization": json.dumps({k: v for k, v in stats.items() if v}),
            "layerloom.inputs": json.dumps(g.inputs()), "layerloom.outputs": json.dumps(outs)}
    onnx.helper.set_model_props(model, meta)
    if top is not g:  # each block instance one call of a local function (onnx_functions.py)
        owners.extend([""] * (len(b.nodes) - len(owners)))
        from layerloom.interop import onnx_functions
        onnx_functions.group(model, top, owners, int(opset))
    return model


def export(project, weights, path, opset=DEFAULT_OPSET, normalization=True):
    """Write to_onnx(...) to `path` atomically (the old file or the new one, never half)."""
    from layerloom.core.fileio import atomic_write_bytes
    model = to_onnx(project, weights, opset=opset, normalization=normalization)
    atomic_write_bytes(path, model.SerializeToString())
    return model


def _graph_name(project):
    import os
    return os.path.splitext(os.path.basename(project.path))[0] if project.path \
        else "layerloom"


def _version():
    import layerloom
    return layerloom.__version__
