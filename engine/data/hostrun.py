"""The host layers run (issue 28): StringLookup, IntegerLookup and TextVectorization
(layers/text.py) take the raw rows of their Input and give the device model numbers. Each
adapts to the TRAINING rows before the first epoch, as Keras' adapt does, unless its
`vocabulary` parameter gives one or a previous training saved one (dataset.fitted.vocabulary,
by node id, as the normalisation statistics are saved); then it is applied to every split, and
to a trained model's raw inputs (prepare_inputs) with the saved vocabulary."""
import numpy as np

from layerloom.core import host
from layerloom.core.errors import DataError, quote


def host_inputs(graph):
    """The Input ids whose rows only host layers read (kept raw: strings, integers)."""
    if not host.has_host(graph):
        return set()
    return {nid for nid in graph.inputs()
            if graph.out_edges(nid) and all(host.is_host(graph, e.dst)
                                            for e in graph.out_edges(nid))}


def saved_vocabularies(project):
    return dict(((project.dataset or {}).get("fitted") or {}).get("vocabulary") or {})


def adapt(graph, x, saved):
    """{host node id: vocabulary}: each given one, else the saved one, else adapted to the
    training rows x ({Input id: rows}). An empty adapted vocabulary is refused on its node."""
    vocabs, vals = {}, dict(x)
    for nid in host.host_order(graph):
        node = graph.nodes[nid]
        src = graph.in_edges(nid)[0].src
        vocab = node.params.get("vocabulary") or saved.get(nid)
        if not vocab:
            vocab = node.layer.adapt_host(node.params, vals[src])
            if not vocab:
                raise DataError(f"{node.type} {quote(nid)} adapted to the training rows found "
                                "no tokens (its vocabulary is empty): the rows it reads hold "
                                "no text", graph.place(nid))
        vocabs[nid] = list(vocab)
        vals[nid] = _apply(node, vals[src], vocabs[nid])
    return vocabs


def _apply(node, rows, vocab):
    try:
        return node.layer.apply_host(node.params, rows, vocab)
    except (ValueError, TypeError) as e:
        raise DataError(f"{node.type} {quote(node.id)}: {e}", f"graph.nodes.{node.id}") from None


def run(graph, x, vocabs):
    """The device model's inputs from raw rows x ({Input id: rows}): each host layer a device
    layer reads, applied with its vocabulary, beside the Inputs device layers read."""
    if x is None or not host.has_host(graph):
        return x
    vals = dict(x)
    for nid in host.host_order(graph):
        node = graph.nodes[nid]
        vals[nid] = _apply(node, vals[graph.in_edges(nid)[0].src], vocabs[nid])
    ins = host.device_graph(graph).inputs()
    return {nid: np.ascontiguousarray(vals[nid], np.float32) for nid in ins}


def vocabularies_for_predict(graph, saved):
    """The vocabularies a trained model's raw inputs are looked up in: given or saved by
    training; a host layer with neither is refused."""
    out = {}
    for nid in host.host_order(graph):
        node = graph.nodes[nid]
        vocab = node.params.get("vocabulary") or saved.get(nid)
        if not vocab:
            raise DataError(f"{node.type} {quote(nid)} has no vocabulary adapted by training; "
                            "use the trained.loom that training wrote", "dataset.fitted")
        out[nid] = list(vocab)
    return out
