"""Keras in: a Keras 3 `.keras` file (a zip of config.json and model.weights.h5) or a legacy
HDF5 `.h5` (Keras 2 / tf.keras, or Keras 3's model.save("x.h5"): the model_config attribute and
the model_weights group) as a Layerloom project with its weights and its compile config as the
project's training section. Read with zipfile, json and h5py only: Keras is not needed.

    from layerloom.interop import keras_import
    project, weights = keras_import.read("model.keras")
    keras_import.convert("model.keras", "project.loom")   # `layerloom --import ... --to ...`

Sequential and Functional models (several inputs and outputs, nested Sequential/Functional
models inlined, keras.applications bases among them, then grouped as blocks: keras_blocks.py,
read(path, blocks=False) keeps them flat); each layer becomes the Layerloom layer of
the same name and parameters (keras_in_layers.py), named by its Keras name; a layer called with
several tensors (MultiHeadAttention(query, value)) takes them as its inputs in order. Keras'
mask of an Embedding(mask_zero=True) (Keras 3: NotEqual and a call's mask=; Keras 2: implicit)
becomes the ids wired to the mask input of the recurrent layers it reaches. Layerloom is
channels-last and keeps Keras' weight layouts, so weights are copied as they are (GRU's (2, 3
units) bias is split into bias and recurrent_bias).

A layer called at several places (shared weights: a siamese network) is one node per call: the
first call is named as the layer, the n-th `<name>_call<n>`, wired to that call's tensors, each
later one `shares` the first (graph.py) and the weights are the first's only. A nested model
called twice: its layers again, each `<name>_call<n>` sharing the first call's; with blocks, the
second call is a second instance of the first's block type sharing the first instance
(keras_blocks.py). A layer, option or call Layerloom cannot express, a compile setting without
a Layerloom form: DataError naming the layer, its class and the option, nothing guessed (exit 2
from the command line). docs/keras.md has the mapping."""
import os
import re

import numpy as np

from layerloom.core.errors import DataError, LayerloomError
from layerloom.core.graph import Graph
from layerloom.core.registry import get_layer
from layerloom.interop import keras_blocks, keras_compile, keras_in_layers as kl
from layerloom.interop.keras_file import PLACE, Scope, layer_keys, layer_name, open_model

# the call options a layer's declaration takes as parameters (Keras passes them at call time)
CALL_PARAMS = ("use_causal_mask", "return_attention_scores")

MODELS = ("Sequential", "Functional", "Model")
MASK = "<mask>"  # (MASK, ids ref): Keras 3's NotEqual(ids, 0), the mask a recurrent layer takes
# Keras' masks (an Embedding(mask_zero=True)'s): the layers that take one as their mask input
# (the ids), those that pass it on unchanged (supports_masking, no mask in their call), and those
# whose call would use it in a way Layerloom has no form for; any other drops it, as in Keras
MASK_TAKERS = {"SimpleRNN", "LSTM", "GRU", "Bidirectional"}
MASK_PASS = {"Dense", "Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout",
             "AlphaDropout", "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU",
             "BatchNormalization", "LayerNormalization", "UnitNormalization", "Identity",
             "Rescaling"}
MASK_USERS = {"GlobalAveragePooling1D", "GlobalAvgPool1D", "Softmax", "Attention",
              "AdditiveAttention", "MultiHeadAttention", "GroupedQueryAttention",
              "TimeDistributed", "Lambda", "Masking"}
INPUT_DTYPES = re.compile(r"^(float(16|32|64)|bfloat16|u?int(8|16|32|64)|bool|string)$")


# -- the graph ---------------------------------------------------------------------------------
# the call arguments that are tensors, in the order a layer's inputs take them, where a Keras
# layer may be called with them by name (mha(query=q, value=v, key=k))
CALL_TENSORS = {"MultiHeadAttention": ("query", "value", "key"),
                "GroupedQueryAttention": ("query", "value", "key")}


def _is_tensor(t):
    return isinstance(t, dict) and t.get("class_name") == "__keras_tensor__"


def _inbound(node, fail, cls=None):
    """([(layer, node index, tensor index)], call kwargs) of one inbound node: Keras 3's
    {"args": [...], "kwargs": {...}} with __keras_tensor__ histories, or Keras 2's
    [[layer, node index, tensor index, kwargs], ...]. Several positional tensors
    (mha(query, value)) are the layer's inputs in order, then the tensors passed by name in
    CALL_TENSORS' order; the kwargs returned are the options that are not tensors."""
    if isinstance(node, dict):
        args, kwargs = node.get("args") or [], dict(node.get("kwargs") or {})
        items = []
        for i, arg in enumerate(args):
            group = arg if isinstance(arg, list) else [arg]
            if not group or not all(_is_tensor(t) for t in group):
                fail(f"is called with something that is not a Keras tensor (a constant?) as "
                     f"its positional argument {i + 1}")
            items += group
        named = [k for k, v in kwargs.items() if _is_tensor(v)]
        order = CALL_TENSORS.get(cls, ())
        for k in [k for k in order if k in named] + [k for k in named if k not in order]:
            if k not in order:
                fail(f"is called with a tensor as its argument {k}=, which Layerloom does not "
                     "map to an input")
            items.append(kwargs.pop(k))
        if not items:
            fail("is called on no tensor")
        return [tuple(t["config"]["keras_history"]) for t in items], kwargs
    tensors, kwargs = [], {}
    for item in node:
        tensors.append(tuple(item[:3]))
        if len(item) > 3 and item[3]:
            kwargs.update(item[3])
    return tensors, kwargs


def _triples(spec):
    """input_layers / output_layers: [[name, node, tensor], ...], one [name, node, tensor], or
    Keras 3's {key: [name, node, tensor]} of a model called with a dict."""
    if isinstance(spec, dict):
        spec = list(spec.values())
    if spec and isinstance(spec[0], str):
        spec = [spec]
    return [tuple(s) for s in spec]


class _Builder:
    def __init__(self, file, place):
        self.file, self.place = file, place
        self.graph, self.weights = Graph(), {}
        self.normalization = {}  # Input id -> {"shift", "scale"}: its Normalization layer
        self.masks = {}  # (node, port) -> the ids ref whose zeros mask it (Keras' mask)
        self.nested = []  # keras_blocks.Nested of each nested model's call, inner ones first
        # a layer called at several places (shared weights): (scope, name) -> the calls made so
        # far, and the node of the first; {node of a later call: the first call's node}
        self.calls, self.firsts, self.same = {}, {}, {}
        self.first_models = {}  # (scope, name) -> the Nested of a nested model's first call

    def fail(self, message):
        raise DataError(message, self.place)

    def new_id(self, name):
        base = re.sub(r"[^A-Za-z0-9_]+", "_", str(name)).strip("_") or "layer"
        nid, k = base, 2
        while nid in self.graph.nodes:
            nid, k = f"{base}_{k}", k + 1
        return nid

    def shape(self, ref):
        return self.graph.analysis().shapes[ref[0]][ref[1]]

    # -- models ---------------------------------------------------------------------------
    def model(self, cls, config, scope, inputs=None, name="model"):
        """The output refs [(node id, port)] of a Sequential or Functional model."""
        if isinstance(config, list):  # Keras 2.2's Sequential: the config is its layers
            config = {"layers": config}
        if cls == "Sequential":
            return self.sequential(config, scope, inputs, name)
        if cls in ("Functional", "Model"):
            return self.functional(config, scope, inputs)
        self.fail(f"the model {name!r} is a {cls}: expected a Sequential or Functional model "
                  "(a subclassed model's file holds no config of its layers)")

    def sequential(self, config, scope, inputs, name):
        layers = config.get("layers") or []
        if not layers:
            self.fail(f"the Sequential model {name!r} has no layers")
        keys = layer_keys(layers)
        rest = [lay for lay in layers if lay.get("class_name") != "InputLayer"]
        if inputs is not None:
            x = list(inputs)
        elif layers[0].get("class_name") == "InputLayer":
            x = [self.input_node(layers[0]["config"], layer_name(layers[0]))]
        else:  # Keras 2: the first layer's batch_input_shape
            first = layers[0].get("config") or {}
            shape = first.get("batch_input_shape") or first.get("batch_shape") or \
                config.get("build_input_shape")
            x = [self.input_node({"batch_shape": shape, "dtype": first.get("dtype")},
                                 f"{layer_name(layers[0])}_input")]
        for layer in rest:
            x = self.call(layer, x, scope, keys, 0, {})
        return x

    def functional(self, config, scope, inputs):
        layers = config.get("layers") or []
        keys, by_name = layer_keys(layers), {layer_name(lay): lay for lay in layers}
        tensors = {}
        for i, t in enumerate(_triples(config.get("input_layers") or [])):
            if t[0] not in by_name:
                self.fail(f"input layer {t[0]!r} is not among the model's layers")
            tensors[t] = (self.input_node(by_name[t[0]]["config"], t[0]) if inputs is None
                          else inputs[i])
        pending = [(lay, k, node) for lay in layers if lay.get("class_name") != "InputLayer"
                   for k, node in enumerate(lay.get("inbound_nodes") or [])]
        while pending:  # in the model's order, each call once its inputs are computed
            ready = next((p for p in pending if self.ready(p, tensors)), None)
            if ready is None:
                lay = pending[0][0]
                self.fail(f"layer {layer_name(lay)!r} ({lay.get('class_name')}): its inputs are "
                          "never computed")
            pending.remove(ready)
            lay, k, node = ready
            refs, kwargs = self.node_inputs(lay, node, tensors)
            for t, ref in enumerate(self.call(lay, refs, scope, keys, k, kwargs)):
                tensors[(layer_name(lay), k, t)] = ref
        outs = []
        for t in _triples(config.get("output_layers") or []):
            if t not in tensors:
                self.fail(f"output {t[0]!r} is not computed by the model's layers")
            outs.append(tensors[t])
        return outs

    def ready(self, pending, tensors):
        lay, _, node = pending
        refs, kwargs = self.inbound(lay, node)
        mask = kwargs.get("mask")
        return all(t in tensors for t in refs) and (
            not _is_tensor(mask) or tuple(mask["config"]["keras_history"]) in tensors)

    def inbound(self, lay, node):
        def fail(why):
            self.fail(f"layer {layer_name(lay)!r} ({lay.get('class_name')}) {why}")
        if lay.get("class_name") == "NotEqual" and isinstance(node, dict):  # a mask: ids != 0
            args = node.get("args") or []
            if len(args) == 2 and _is_tensor(args[0]) and args[1] == 0 and \
                    not isinstance(args[1], bool):
                return [tuple(args[0]["config"]["keras_history"])], {"not_equal_zero": True}
        op = kl.number_operand(lay, node, fail)  # keras.ops arithmetic with a number
        if op is not None:
            return [op[0]], {"lambda_formula": op[1]}
        mask = (node.get("kwargs") or {}).get("mask") if isinstance(node, dict) else None
        if _is_tensor(mask):  # Keras 3 records the mask a layer is called with
            node = {"args": node.get("args"), "kwargs": {
                k: v for k, v in (node.get("kwargs") or {}).items() if k != "mask"}}
            refs, kwargs = _inbound(node, fail, lay.get("class_name"))
            return refs, dict(kwargs, mask=mask)
        return _inbound(node, fail, lay.get("class_name"))

    def node_inputs(self, lay, node, tensors):
        refs, kwargs = self.inbound(lay, node)
        refs = [tensors[t] for t in refs]
        if any(r[0] == MASK for r in refs) and lay.get("class_name") != "NotEqual":
            self.fail(f"layer {layer_name(lay)!r} ({lay.get('class_name')}) is called on a "
                      "mask (ids != 0) as data; Layerloom's masks reach only recurrent layers")
        mask = kwargs.get("mask")
        if _is_tensor(mask):
            ref = tensors[tuple(mask["config"]["keras_history"])]
            if ref[0] != MASK:
                self.fail(f"layer {layer_name(lay)!r} ({lay.get('class_name')}) is called with "
                          "a mask that is not an Embedding's ids != 0")
            kwargs["mask"] = ref
        return refs, kwargs

    # -- layers ---------------------------------------------------------------------------
    def input_node(self, config, name):
        config = config or {}
        shape = config.get("batch_shape") or config.get("batch_input_shape")
        if kl.dtype_name(config.get("dtype")) == "string" and isinstance(shape, list) and \
                len(shape) == 1:
            shape = shape + [1]  # one string per sample, as Layerloom's string Input holds it
        bad = (not isinstance(shape, list) or len(shape) < 2 or
               any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in shape[1:]))
        if bad:
            key = "batch_input_shape" if "batch_input_shape" in config else "batch_shape"
            self.fail(f"layer {name!r} (InputLayer): option {key}={shape!r} has no Layerloom "
                      "form (a batch axis and fixed sizes: Layerloom's inputs are not ragged)")
        dtype = kl.dtype_name(config.get("dtype")) or "float32"
        for key, value in (("dtype", not INPUT_DTYPES.match(str(dtype))),
                           ("sparse", config.get("sparse")), ("ragged", config.get("ragged"))):
            if value:
                self.fail(f"layer {name!r} (InputLayer): option {key}="
                          f"{config.get(key)!r} has no Layerloom form")
        nid = self.new_id(name)
        text = {"dtype": "string"} if dtype == "string" else {}  # for the text layers
        self.graph.add_node("Input", {"shape": list(shape[1:]), **text}, id=nid)
        return (nid, 0)

    def call(self, lay, refs, scope, keys, k, kwargs):
        """The output refs of one call (inbound node k) of the layer `lay` on refs."""
        cls, config, name = lay.get("class_name"), lay.get("config") or {}, layer_name(lay)
        not_equal = kwargs.pop("not_equal_zero", False)
        formula = kwargs.pop("lambda_formula", None)  # keras.ops arithmetic with a number
        given = kwargs.pop("mask", None)  # Keras 3: the mask it is called with, (MASK, ids)
        # call options that are the layer's parameters here (MultiHeadAttention's and
        # Attention's use_causal_mask, return_attention_scores)
        call_params = {key: kwargs.pop(key) for key in CALL_PARAMS
                       if isinstance(kwargs.get(key), bool)}
        self.check_kwargs(name, cls, kwargs)
        ident = (scope.v3, scope.legacy_top, name)  # the Keras layer object, wherever called
        if cls in MODELS:
            n = self.calls[ident] = self.calls.get(ident, 0) + 1
            before = set(self.graph.nodes)
            out = self.model(cls, config, scope.child(name, keys[name]), refs, name)
            added = [n for n in self.graph.nodes if n not in before]
            if config.get("trainable") is False:  # a frozen nested model: all of its layers
                for nid in added:
                    self.graph.set_trainable(nid, False)
            record = keras_blocks.Nested(name, added, call=n, twin_of=self.first_models.get(
                ident), same={nid: self.same[nid] for nid in added if nid in self.same})
            self.first_models.setdefault(ident, record)
            self.nested.append(record)
            return out
        if cls == "InputLayer":
            self.fail(f"layer {name!r} (InputLayer) is called on a tensor")
        if cls == "NotEqual" and not_equal:
            return [(MASK, refs[0])]  # Keras 3's mask of an Embedding(mask_zero=True)
        if given is not None and not (isinstance(given, tuple) and given[0] == MASK):
            self.fail(f"layer {name!r} ({cls}): its call's option mask={given!r} has no "
                      "Layerloom form")
        if cls == "Normalization":  # right after an Input: the project's input normalisation
            out = self.input_normalization(name, config, refs, scope.where(name, keys[name]))
            if out is not None:
                return out
        shapes = [self.shape(r) for r in refs]
        type_id, params = ("Lambda", {"expression": formula}) if formula else \
            kl.convert(name, cls, config, shapes, self.file.keras2, self.place)
        if call_params:
            declared = {q.name for q in get_layer(type_id).params}
            for key, value in call_params.items():
                if key not in declared:
                    self.fail(f"layer {name!r} ({cls}): its call's option {key}={value!r} has "
                              "no Layerloom form")
                params[key] = value
        mask = given[1] if given is not None else self.mask_of(name, cls, refs)
        if given is not None and cls not in MASK_TAKERS:
            self.fail(f"layer {name!r} ({cls}) is called with the mask of an Embedding with "
                      "mask_zero=True: Layerloom's mask reaches only the recurrent layers "
                      "(SimpleRNN, LSTM, GRU, Bidirectional)")
        n = self.calls[ident] = self.calls.get(ident, 0) + 1
        first = self.firsts.get(ident)
        nid = self.add(name, cls, type_id, params, refs + ([mask] if mask and cls in
                                                            MASK_TAKERS else []),
                       base=name if n == 1 else f"{name}_call{n}")
        if first is None:
            self.firsts[ident] = nid
        else:
            self.same[nid] = first
        self.pass_mask(nid, cls, params, mask, refs)
        if config.get("trainable") is False:  # Keras' layer.trainable = False: frozen
            self.graph.set_trainable(nid, False)
        node = self.graph.nodes[nid]
        specs = node.layer.weights(node.params, shapes)
        if specs and first is not None:  # a later call of a layer with weights: the first's
            self.share(nid, first, name, cls)
        elif specs and cls == "Normalization" and config.get("mean") is not None:  # values given
            try:
                given = node.layer.given(node.params, shapes[0], config["mean"],
                                         config.get("variance"))
            except LayerloomError as e:
                self.fail(f"layer {name!r} ({cls}): {e}")
            self.weights.update({f"{nid}/{k}": v for k, v in given.items()})
        elif specs:
            self.load_weights(nid, name, cls, node, specs, scope.where(name, keys[name]))
            if cls == "Normalization" and not node.layer.adapted(
                    {s.name: self.weights[f"{nid}/{s.name}"] for s in specs}):
                # never adapted in Keras (EfficientNet's, built without weights): Keras
                # computes and trains with these statistics, so they are given, not adapted
                self.weights[f"{nid}/count"] = np.float32(1)
        return [(nid, p) for p in range(len(node.layer.output_names(node.params)))]

    # -- Keras' mask: an Embedding(mask_zero=True)'s ids, wired to the recurrent layers --------
    def mask_of(self, name, cls, refs):
        """The ids ref whose zeros mask the layer's input (Keras' mask), or None; a layer that
        would use a mask otherwise than a recurrent layer does is refused."""
        mask = next((self.masks[r] for r in refs if r in self.masks), None)
        if mask is not None and (cls in MASK_USERS or len(refs) > 1 and cls not in MASK_TAKERS):
            self.fail(f"layer {name!r} ({cls}) is handed the mask of an Embedding with "
                      "mask_zero=True: Layerloom's mask reaches only the recurrent layers "
                      "(SimpleRNN, LSTM, GRU, Bidirectional)")
        return mask

    def pass_mask(self, nid, cls, params, mask, refs):
        """Keras' rules: an Embedding(mask_zero=True) makes a mask of its ids; a recurrent
        layer returning sequences and a layer that only supports masking pass it on; any
        other drops it."""
        if cls == "Embedding" and params.get("mask_zero"):
            self.masks[(nid, 0)] = refs[0]
        elif mask is not None and (cls in MASK_PASS or cls in MASK_TAKERS and
                                   params.get("return_sequences")):
            self.masks[(nid, 0)] = mask

    def input_normalization(self, name, config, refs, where):
        """A Normalization layer right after an Input (as Layerloom's Keras export writes one)
        becomes that Input's fitted normalisation in the project (dataset.fitted), which
        --predict and training apply; None where it is not that (elsewhere, a second one,
        invert, statistics along other axes): then it is a Normalization layer in the graph."""
        def fail(why):
            self.fail(f"layer {name!r} (Normalization): {why}")
        src = refs[0][0] if len(refs) == 1 else None
        if src is None or not self.graph.nodes[src].layer.is_input or src in self.normalization \
                or config.get("invert"):
            return None
        axis = config.get("axis", -1)
        if isinstance(axis, list):  # Keras 3 writes None as [] and -1 as [-1]
            axis = axis[0] if len(axis) == 1 else None if not axis else axis
        mean, variance = config.get("mean"), config.get("variance")
        if mean is None or variance is None:  # adapted: its variables mean, variance, count
            found = self.file.weights.arrays(where) or []
            named = dict(found)  # legacy files name them; Keras 3's are in order
            if "mean" in named and "variance" in named:
                mean, variance = named["mean"], named["variance"]
            elif len(found) >= 2:
                mean, variance = found[0][1], found[1][1]
        if mean is None or variance is None:
            fail("its mean and variance are neither in its config nor in the weights file")
        mean = np.asarray(mean, np.float64).reshape(-1)
        variance = np.asarray(variance, np.float64).reshape(-1)
        features = self.shape(refs[0])[-1] if self.shape(refs[0]) else 1
        if axis not in (-1, None, len(self.shape(refs[0]))) or mean.size not in (1, features) \
                or variance.size != mean.size:
            return None
        scale = 1.0 / np.maximum(np.sqrt(variance), 1e-7)  # keras: max(sqrt(var), epsilon)
        self.normalization[src] = {"shift": mean.tolist(), "scale": scale.tolist()}
        return refs

    def check_kwargs(self, name, cls, kwargs):
        for key, value in kwargs.items():
            # training=False, mask=None; training=True too: Keras 3's image preprocessing
            # layers record their call's default, and a Functional model hands every layer its
            # own training flag when it runs (a recorded one is not used)
            if value not in (None, False) and key != "training":
                self.fail(f"layer {name!r} ({cls}): its call's option {key}={value!r} has no "
                          "Layerloom form")

    def share(self, nid, first, name, cls):
        """Node `nid` (a later call of the layer) uses the weights of `first` (its first
        call's node): refused where Layerloom's sharing cannot hold (other parameters or weight
        shapes for this call's inputs)."""
        why = self.graph.share_problem(nid, first)
        if why is None:
            self.graph.set_shares(nid, first)
            problems = self.graph.analysis().node_problems(nid)
            why = problems[0] if problems else None
        if why:
            self.fail(f"layer {name!r} ({cls}) is called at two places, sharing its weights, "
                      f"and its call {nid!r} cannot use the weights of its first, {first!r}: "
                      f"{why}")

    def add(self, name, cls, type_id, params, refs, base=None):
        nid = self.new_id(base or name)
        try:
            self.graph.add_node(type_id, params, id=nid)
            for port, (src, sport) in enumerate(refs):
                self.graph.connect(src, sport, nid, port)
        except LayerloomError as e:  # a value or a wiring our layer refuses
            self.fail(f"layer {name!r} ({cls}): {e}")
        problems = self.graph.analysis().node_problems(nid)
        if problems:
            self.fail(f"layer {name!r} ({cls}): {problems[0]}")
        return nid

    def load_weights(self, nid, name, cls, node, specs, where):
        found = self.file.weights.arrays(where)
        order = kl.keras_order(node.type, node.params)
        if not found:
            self.fail(f"layer {name!r} ({cls}): its weights are not in the file")
        short = [n if isinstance(n, str) else "bias" for n in order]
        if all(s for s, _ in found) and sorted(s for s, _ in found) == sorted(short):
            arrays = dict(found)  # the legacy file's names: kernel, bias, gamma...
            found = [(s, arrays[s]) for s in short]
        if len(found) != len(order):
            self.fail(f"layer {name!r} ({cls}): the file has {len(found)} weights, Layerloom's "
                      f"{node.type} has {len(order)} ({', '.join(short)})")
        want = {s.name: s.shape for s in specs}
        for ours, (_, a) in zip(order, found):
            parts = [(ours, a)] if isinstance(ours, str) else list(zip(ours, a))
            for w, arr in parts:
                if tuple(arr.shape) != want[w]:
                    self.fail(f"layer {name!r} ({cls}): weight {w} has shape {tuple(arr.shape)} "
                              f"in the file, Layerloom's is {want[w]}")
                self.weights[f"{nid}/{w}"] = np.array(arr, np.float32, order="C")  # 0-d stays

    # -- outputs --------------------------------------------------------------------------
    def outputs(self, names, refs):
        """{Keras output name: node id}: the node computing it where it feeds nothing else,
        else a linear Activation after it (Layerloom's outputs are the nodes that feed
        nothing); then the nodes no output needs are dropped."""
        out = {}
        used = {e.src for e in self.graph.edges}
        for kname, (nid, port) in zip(names, refs):
            node = self.graph.nodes[nid]
            if port == 0 and nid not in used and not node.layer.is_input and \
                    nid not in out.values():
                out[kname] = nid
                continue
            oid = self.new_id(kname if kname not in self.graph.nodes else f"{kname}_output")
            self.graph.add_node("Activation", {"activation": "linear"}, id=oid)
            self.graph.connect(nid, port, oid, 0)
            out[kname] = oid
        self.prune(set(out.values()))
        return out

    def prune(self, keep):
        needed, stack = set(), list(keep)
        while stack:
            n = stack.pop()
            if n not in needed:
                needed.add(n)
                stack.extend(e.src for e in self.graph.in_edges(n))
        dropped = [n for n in self.graph.nodes if n not in needed
                   and not self.graph.nodes[n].layer.is_input]
        for nid in dropped:  # a dropped call's weights go to the first call that stays
            users = [u for u in self.graph.sharers(nid) if u in needed]
            if users:
                heir = users[0]
                for u in users:
                    self.graph.set_shares(u, None)
                for u in users[1:]:
                    self.graph.set_shares(u, heir)
                self.weights.update({f"{heir}/{key.split('/', 1)[1]}": v for key, v in
                                     self.weights.items() if key.split("/")[0] == nid})
                for m, f in list(self.same.items()):
                    if f == nid:
                        self.same[m] = heir
                self.same.pop(heir, None)
        for nid in dropped:
            self.graph.remove_node(nid)
            self.weights = {k: v for k, v in self.weights.items()
                            if k.split("/")[0] != nid}


# -- the project -------------------------------------------------------------------------------
def read(path, blocks=True):
    """(Project, weights) of the Keras model at `path` (.keras or .h5). blocks=True (the
    default): nested models and keras.applications' repeated units become block instances
    (keras_blocks.py); False: every layer a node of one flat graph."""
    from layerloom.project.loom import Project
    from layerloom.project.training import parse_training
    file = open_model(path)
    try:
        top = file.config
        if "class_name" not in top or "config" not in top:
            raise DataError("the model config has no class_name and config", PLACE)
        b = _Builder(file, PLACE)
        name = layer_name(top) or (top.get("config") or {}).get("name") or "model"
        refs = b.model(top["class_name"], top["config"], Scope(), None, name)
        outputs = b.outputs(_output_names(top, refs), refs)
    finally:
        file.handle.close()
    if blocks:
        b.weights, outputs = keras_blocks.group(b.graph, b.weights, outputs, b.nested)
    problems = []
    t = keras_compile.Compile(PLACE).training(file.compile_config, outputs, b.graph)
    training = parse_training(t, b.graph, problems)
    if problems:
        raise DataError(f"compile config: {problems[0]}", PLACE)
    return Project(b.graph, dataset=_dataset(b.graph, b.normalization), training=training,
                   name=_project_name(path, name)), b.weights


def _dataset(graph, normalization):
    """The imported project's dataset part: none, or where the model normalises its inputs,
    those statistics as fitted ones (kind scale for x / 255, else standardize; an Input
    without a Normalization gets the identity), its Inputs fed by arrays of their names."""
    if not normalization:
        return {}
    stats = {nid: normalization.get(nid, {"shift": [0.0], "scale": [1.0]})
             for nid in graph.inputs()}
    scaled = all(s["shift"] == [0.0] and np.isclose(s["scale"], [1 / 255]).all() or
                 nid not in normalization for nid, s in stats.items())
    kind = "scale" if scaled else "standardize"
    return {"inputs": {nid: nid for nid in graph.inputs()}, "normalize": kind,
            "fitted": {"normalization": {nid: {"kind": kind, **s} for nid, s in stats.items()}}}


def _output_names(top, refs):
    """The Keras names of the model's outputs: its output layers' (Functional) or the last
    layer's (Sequential)."""
    cfg = top["config"] if isinstance(top["config"], dict) else {"layers": top["config"]}
    if top["class_name"] == "Sequential":
        last = (cfg.get("layers") or [{}])[-1]
        return [layer_name(last)] * len(refs)
    return [t[0] for t in _triples(cfg.get("output_layers") or [])]


def _project_name(path, name):
    return os.path.splitext(os.path.basename(path))[0] or name


def convert(path, to, blocks=True):
    """Write the Keras model at `path` as the project `to` with `to`.weights.npz beside it,
    laid out, each file atomically (blocks: as read's). Returns the project."""
    from layerloom.interop import write_imported
    return write_imported(*read(path, blocks=blocks), to)
