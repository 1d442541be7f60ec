"""The host layers run (issue 28): StringLookup, IntegerLookup and TextVectorization
(layers/text.py), WordPieceTokenizer and StartEndPacker (layers/text_pieces.py) take the raw
rows of their Input and give the device model numbers. Each adapts to the TRAINING rows before
the first epoch, as Keras' adapt does, unless its `vocabulary` parameter gives one or a
previous training saved one (dataset.fitted.vocabulary, by node id, as the normalisation
statistics are saved); then it is applied to every split, and to a trained model's raw inputs
(prepare_inputs) with the saved vocabulary. StartEndPacker has no vocabulary (`adapts`)."""
import numpy as np

from layerloom.core import host
from layerloom.core.errors import DataError, LayerloomError, quote


def host_inputs(graph):
    """The Input ids whose rows only host layers read (kept raw: strings, integers)."""
    if not host.has_host(graph):
        return set()
    return {nid for nid in graph.inputs()
            if graph.out_edges(nid) and all(host.is_host(graph, e.dst)
                                            for e in graph.out_edges(nid))}


# the parameters that shape an adapted vocabulary (output_sequence_length does not)
SHAPING = ("max_tokens", "standardize", "split", "mask_token", "oov_token", "num_oov_indices",
           "vocabulary_size", "reserved_tokens", "lowercase", "strip_accents", "split_on_cjk",
           "suffix_indicator")


def shaped_by(node):
    """What shaped a host layer's vocabulary: its type and the parameters adapt reads, saved
    beside it (dataset.fitted.vocabulary_params) as normalisation's kind and shape are."""
    return {"type": node.type, **{k: node.params[k] for k in SHAPING if k in node.params}}


def saved_vocabularies(project):
    """{host node id: (saved vocabulary, the parameters that shaped it or None)}."""
    fitted = (project.dataset or {}).get("fitted") or {}
    shapes = fitted.get("vocabulary_params") or {}
    return {nid: (v, shapes.get(nid)) for nid, v in (fitted.get("vocabulary") or {}).items()}


def _differs(node, shaped):
    """Why a saved vocabulary no longer fits its node ("" where it does). One saved without
    the record (a trained.loom of before it, one that fine-tuning carried the vocabulary
    into) is taken as it is; _checked still holds it to max_tokens."""
    now = shaped_by(node)
    if not isinstance(shaped, dict):
        return ""
    diff = [f"{k} {shaped.get(k)!r}, now {now.get(k)!r}" for k in sorted(set(now) | set(shaped))
            if shaped.get(k) != now.get(k)]
    return "; ".join(diff)


def _checked(node, vocab):
    """A saved or given vocabulary fits max_tokens with the special tokens."""
    try:
        node.layer.check_vocabulary({**node.params, "vocabulary": list(vocab)})
    except LayerloomError as e:
        raise DataError(f"{node.type} {quote(node.id)}: {e}", f"graph.nodes.{node.id}") from None
    return list(vocab)


def adapt(graph, x, saved):
    """{host node id: vocabulary}: each given one, else the saved one, else adapted to the
    training rows x ({Input id: rows}). A saved one is reused only where the parameters that
    shaped it are the node's (else adapted again, as normalisation's statistics are). An empty
    adapted vocabulary is refused on its node."""
    vocabs, vals = {}, dict(x)
    for nid in host.host_order(graph):
        node = graph.nodes[nid]
        src = graph.in_edges(nid)[0].src
        _exact(graph, node, src, vals[src])
        if not node.layer.adapts:
            vals[nid] = _apply(node, vals[src], [])
            continue
        vocab, shaped = saved.get(nid) or (None, None)
        if vocab and _differs(node, shaped):
            vocab = None
        vocab = node.params.get("vocabulary") or vocab
        if vocab:
            vocab = _checked(node, vocab)
        else:
            try:
                vocab = node.layer.adapt_host(node.params, vals[src])
            except (ValueError, TypeError) as e:
                raise DataError(f"{node.type} {quote(nid)}: {e}", graph.place(nid)) from None
            if not vocab:
                raise DataError(f"{node.type} {quote(nid)} adapted to the training rows found "
                                "no tokens (its vocabulary is empty): the rows it reads hold "
                                "no text", graph.place(nid))
        vocabs[nid] = list(vocab)
        vals[nid] = _apply(node, vals[src], vocabs[nid])
    return vocabs


FLOAT32_EXACT = 2 ** 24  # float32 holds every integer up to it, not beyond


def _exact(graph, node, src, rows):
    """Integers an IntegerLookup reads as float32 (a column of encoding number, a float32
    array): above 2^24 distinct ids have merged into one float32; refused, never merged."""
    if getattr(node.layer, "input_dtype", None) != "int" or src not in graph.inputs():
        return
    a = rows if isinstance(rows, np.ndarray) else None
    if a is None or a.dtype != np.float32 or not a.size:
        return
    top = float(np.abs(a).max())
    if top > FLOAT32_EXACT:
        raise DataError(f"{node.type} {quote(node.id)} reads Input {quote(src)} as float32, "
                        f"and its values reach {top:.0f}, above 2^24 where distinct integers "
                        "merge: give the column (or array) as integers (a CSV column's encoding "
                        "auto, an int64 .npy)", f"graph.nodes.{src}")


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
        src = graph.in_edges(nid)[0].src
        _exact(graph, node, src, vals[src])
        vals[nid] = _apply(node, vals[src], vocabs[nid] if node.layer.adapts else [])
    ins = host.device_graph(graph).inputs()
    return {nid: np.ascontiguousarray(vals[nid], np.float32) for nid in ins}


def vocabularies_for_predict(graph, saved):
    """The vocabularies a trained model's raw inputs are looked up in: given or saved by
    training with the node's parameters; a host layer with neither is refused."""
    out = {}
    for nid in host.host_order(graph):
        node = graph.nodes[nid]
        if not node.layer.adapts:
            continue
        vocab = node.params.get("vocabulary")
        if not vocab:
            vocab, shaped = saved.get(nid) or (None, None)
            why = vocab and _differs(node, shaped)
            if why:
                raise DataError(f"{node.type} {quote(nid)}: its vocabulary was adapted by "
                                f"training with other parameters ({why}); train again",
                                "dataset.fitted")
        if not vocab:
            raise DataError(f"{node.type} {quote(nid)} has no vocabulary adapted by training; "
                            "use the trained.loom that training wrote", "dataset.fitted")
        out[nid] = _checked(node, vocab)
    return out
