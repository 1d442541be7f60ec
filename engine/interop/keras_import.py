"""Keras in: a Keras 3 `.keras` file (a zip of config.json and model.weights.h5) or a legacy
HDF5 `.h5` (Keras 2 / tf.keras, or Keras 3's model.save("x.h5"): the model_config attribute and
the model_weights group) as a Layerloom project with its weights and its compile config as the
project's training section. Read with zipfile, json and h5py only: Keras is not needed.

    from layerloom.interop import keras_import
    project, weights = keras_import.read("model.keras")
    keras_import.convert("model.keras", "project.loom")   # `layerloom --import ... --to ...`

Sequential and Functional models (several inputs and outputs, nested Sequential/Functional
models inlined); each layer becomes the Layerloom layer of the same name and parameters
(keras_in_layers.py), named by its Keras name. Layerloom is channels-last and keeps Keras'
weight layouts, so weights are copied as they are (GRU's (2, 3 units) bias is split into bias
and recurrent_bias). A layer, option or call Layerloom cannot express, a layer with weights
called at two places (shared weights), a compile setting without a Layerloom form: DataError
naming the layer, its class and the option, nothing guessed (exit 2 from the command line).
docs/keras.md has the mapping."""
import io
import json
import os
import re
import zipfile

import numpy as np

from layerloom.core.errors import DataError, LayerloomError
from layerloom.core.graph import Graph
from layerloom.interop import keras_in_layers as kl

MODELS = ("Sequential", "Functional", "Model")
INPUT_DTYPES = re.compile(r"^(float(16|32|64)|bfloat16|u?int(8|16|32|64)|bool)$")


def _h5py():
    try:
        import h5py
    except ImportError:
        raise LayerloomError("Keras import needs h5py: pip install 'layerloom[keras]'",
                             "--import") from None
    return h5py


def _text(v):
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


# -- the file ----------------------------------------------------------------------------------
class _File:
    """What a Keras file holds: model config, compile config, weights, whether tf.keras 2."""

    def __init__(self, config, compile_config, weights, keras2, handle):
        self.config, self.compile_config, self.weights = config, compile_config, weights
        self.keras2, self.handle = keras2, handle


def _open(path):
    h5py = _h5py()
    if not os.path.isfile(path):
        raise DataError(f"file not found: {path}", path)
    if zipfile.is_zipfile(path):
        return _open_zip(path, h5py)
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as e:
        raise DataError(f"not a Keras model (neither a .keras zip nor HDF5): {e}", path) from None
    try:
        if "model_config" not in f.attrs:
            raise DataError("the HDF5 file has no model_config (only weights, saved by "
                            "save_weights?): Layerloom needs the model itself", path)
        config = json.loads(f.attrs["model_config"])
        training = f.attrs.get("training_config")
        training = json.loads(training) if training is not None else None
        if "model_weights" not in f:
            raise DataError("the HDF5 file has no model_weights group", path)
        version = _text(f.attrs.get("keras_version", "2"))
        return _File(config, _legacy_compile(training), _LegacyWeights(f["model_weights"]),
                     version.split(".")[0] in ("1", "2"), f)
    except (ValueError, KeyError, TypeError) as e:
        f.close()
        raise DataError(f"not a readable Keras HDF5 model ({e})", path) from None
    except DataError:
        f.close()
        raise


def _open_zip(path, h5py):
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            for want in ("config.json", "model.weights.h5"):
                if want not in names:
                    raise DataError(f"no {want} in the zip: not a Keras 3 .keras file", path)
            config = json.loads(z.read("config.json"))
            data = z.read("model.weights.h5")
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"not a readable .keras file ({e})", path) from None
    try:
        f = h5py.File(io.BytesIO(data), "r")
    except (OSError, ValueError) as e:
        raise DataError(f"model.weights.h5 is not readable HDF5 ({e})", path) from None
    if not isinstance(config, dict):
        raise DataError("config.json is not a model config", path)
    return _File(config, config.get("compile_config"), _V3Weights(f), False, f)


def _legacy_compile(training):
    """Keras 2's training_config in Keras 3's compile_config spelling."""
    if not training:
        return None
    t = dict(training)
    t["optimizer"] = t.pop("optimizer_config", None)
    return t


class _Where:
    """Where a layer's weights are: Keras 3's model.weights.h5 path (by the class-based key
    Keras saves under, or the layer's name), the legacy file's top layer and inner layer."""

    def __init__(self, v3, v3_by_name, legacy_top, legacy_inner):
        self.v3, self.v3_by_name = v3, v3_by_name
        self.legacy_top, self.legacy_inner = legacy_top, legacy_inner


class _V3Weights:
    def __init__(self, f):
        self.f = f

    def arrays(self, where):
        """[(None, array)] in the layer's order, or None if the layer has no group."""
        g = self.f.get(where.v3)
        g = g if g is not None else self.f.get(where.v3_by_name)
        if g is None:
            return None
        for sub in ("vars", "cell/vars"):  # recurrent layers keep theirs in their cell
            if sub in g and len(g[sub]):
                return [(None, np.asarray(g[sub][k])) for k in sorted(g[sub], key=int)]
        return []


class _LegacyWeights:
    def __init__(self, group):
        self.g = group

    def arrays(self, where):
        """[(short name, array)] from the weight_names of the layer's group."""
        if where.legacy_top not in self.g:
            return None
        lg = self.g[where.legacy_top]
        names = [_text(n) for n in lg.attrs.get("weight_names", [])]
        if where.legacy_inner is not None:  # a layer of a nested model: its names
            names = [n for n in names if where.legacy_inner in n.split("/")[:-1]]
        return [(n.split("/")[-1].split(":")[0], np.asarray(lg[n])) for n in names]


class _Scope:
    """A model being read: the top one or one nested in it."""

    def __init__(self, v3="", legacy_top=None):
        self.v3, self.legacy_top = v3, legacy_top

    def where(self, name, key):
        return _Where(f"{self.v3}layers/{key}", f"{self.v3}layers/{name}",
                      self.legacy_top or name, name if self.legacy_top else None)

    def child(self, name, key):
        return _Scope(f"{self.v3}layers/{key}/", self.legacy_top or name)


def _keys(layers):
    """Layer name -> the key Keras 3 saves its weights under: the class in snake case, _1, _2
    ... for the second and third of a class, in the model's layer order."""
    used, keys = {}, {}
    for layer in layers:
        base = kl.snake(layer.get("class_name", ""))
        used[base] = used.get(base, -1) + 1
        keys[_name(layer)] = base if used[base] == 0 else f"{base}_{used[base]}"
    return keys


def _name(layer):
    return layer.get("name") or (layer.get("config") or {}).get("name")


# -- the graph ---------------------------------------------------------------------------------
def _inbound(node, fail):
    """([(layer, node index, tensor index)], call kwargs) of one inbound node: Keras 3's
    {"args": [...], "kwargs": {...}} with __keras_tensor__ histories, or Keras 2's
    [[layer, node index, tensor index, kwargs], ...]."""
    if isinstance(node, dict):
        args, kwargs = node.get("args") or [], dict(node.get("kwargs") or {})
        if len(args) != 1:
            fail(f"is called with {len(args)} positional arguments; expected its input(s)")
        items = args[0] if isinstance(args[0], list) else [args[0]]
        if not all(isinstance(t, dict) and t.get("class_name") == "__keras_tensor__"
                   for t in items):
            fail("is called on something that is not a Keras tensor (a constant?)")
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
        keys = _keys(layers)
        rest = [lay for lay in layers if lay.get("class_name") != "InputLayer"]
        if inputs is not None:
            x = list(inputs)
        elif layers[0].get("class_name") == "InputLayer":
            x = [self.input_node(layers[0]["config"], _name(layers[0]))]
        else:  # Keras 2: the first layer's batch_input_shape
            first = layers[0].get("config") or {}
            shape = first.get("batch_input_shape") or first.get("batch_shape") or \
                config.get("build_input_shape")
            x = [self.input_node({"batch_shape": shape, "dtype": first.get("dtype")},
                                 f"{_name(layers[0])}_input")]
        for layer in rest:
            x = self.call(layer, x, scope, keys, 0, {})
        return x

    def functional(self, config, scope, inputs):
        layers = config.get("layers") or []
        keys, by_name = _keys(layers), {_name(lay): lay for lay in layers}
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
                self.fail(f"layer {_name(lay)!r} ({lay.get('class_name')}): its inputs are "
                          "never computed")
            pending.remove(ready)
            lay, k, node = ready
            refs, kwargs = self.node_inputs(lay, node, tensors)
            for t, ref in enumerate(self.call(lay, refs, scope, keys, k, kwargs)):
                tensors[(_name(lay), k, t)] = ref
        outs = []
        for t in _triples(config.get("output_layers") or []):
            if t not in tensors:
                self.fail(f"output {t[0]!r} is not computed by the model's layers")
            outs.append(tensors[t])
        return outs

    def ready(self, pending, tensors):
        lay, _, node = pending
        return all(t in tensors for t in self.inbound(lay, node)[0])

    def inbound(self, lay, node):
        def fail(why):
            self.fail(f"layer {_name(lay)!r} ({lay.get('class_name')}) {why}")
        return _inbound(node, fail)

    def node_inputs(self, lay, node, tensors):
        refs, kwargs = self.inbound(lay, node)
        return [tensors[t] for t in refs], kwargs

    # -- layers ---------------------------------------------------------------------------
    def input_node(self, config, name):
        config = config or {}
        shape = config.get("batch_shape") or config.get("batch_input_shape")
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
        self.graph.add_node("Input", {"shape": list(shape[1:])}, id=nid)
        return (nid, 0)

    def call(self, lay, refs, scope, keys, k, kwargs):
        """The output refs of one call (inbound node k) of the layer `lay` on refs."""
        cls, config, name = lay.get("class_name"), lay.get("config") or {}, _name(lay)
        self.check_kwargs(name, cls, kwargs)
        if cls in MODELS:
            if k > 0:
                self.shared(name, cls)
            return self.model(cls, config, scope.child(name, keys[name]), refs, name)
        if cls in kl.PASS_THROUGH:
            return refs
        if cls == "InputLayer":
            self.fail(f"layer {name!r} (InputLayer) is called on a tensor")
        if cls == "Normalization":
            return self.input_normalization(name, config, refs, scope.where(name, keys[name]))
        shapes = [self.shape(r) for r in refs]
        type_id, params = kl.convert(name, cls, config, shapes, self.file.keras2, self.place)
        nid = self.add(name, cls, type_id, params, refs)
        node = self.graph.nodes[nid]
        specs = node.layer.weights(node.params, shapes)
        if specs and k > 0:
            self.shared(name, cls)
        if specs:
            self.load_weights(nid, name, cls, node, specs, scope.where(name, keys[name]))
        return [(nid, p) for p in range(len(node.layer.output_names(node.params)))]

    def input_normalization(self, name, config, refs, where):
        """A Normalization layer right after an Input (as Layerloom's Keras export writes one)
        becomes that Input's fitted normalisation in the project (dataset.fitted), which
        --predict and training apply: Layerloom has no Normalization layer in the graph."""
        def fail(why):
            self.fail(f"layer {name!r} (Normalization): {why}")
        src = refs[0][0] if len(refs) == 1 else None
        if src is None or not self.graph.nodes[src].layer.is_input or src in self.normalization:
            fail("Layerloom has it only right after an Input, once (as the project's input "
                 "normalisation); elsewhere it has no Layerloom form")
        if config.get("invert"):
            fail("option invert=True has no Layerloom form")
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
            fail(f"option axis={config.get('axis')!r} with {mean.size} statistics has no "
                 "Layerloom form (one statistic, or one per feature of the last axis)")
        scale = 1.0 / np.maximum(np.sqrt(variance), 1e-7)  # keras: max(sqrt(var), epsilon)
        self.normalization[src] = {"shift": mean.tolist(), "scale": scale.tolist()}
        return refs

    def check_kwargs(self, name, cls, kwargs):
        for key, value in kwargs.items():
            if value not in (None, False):  # training=False, mask=None
                self.fail(f"layer {name!r} ({cls}): its call's option {key}={value!r} has no "
                          "Layerloom form")

    def shared(self, name, cls):
        self.fail(f"layer {name!r} ({cls}) is called at two places, sharing its weights: "
                  "Layerloom's layers each have their own weights (call a copy of it instead)")

    def add(self, name, cls, type_id, params, refs):
        nid = self.new_id(name)
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
                self.weights[f"{nid}/{w}"] = np.ascontiguousarray(arr, np.float32)

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
        for nid in [n for n in self.graph.nodes if n not in needed
                    and not self.graph.nodes[n].layer.is_input]:
            self.graph.remove_node(nid)
            self.weights = {k: v for k, v in self.weights.items()
                            if k.split("/")[0] != nid}


# -- the compile config ------------------------------------------------------------------------
OPTIMIZERS = {"Adam": "adam", "AdamW": "adamw", "Nadam": "nadam", "SGD": "sgd",
              "RMSprop": "rmsprop", "Adagrad": "adagrad"}
OPTIMIZER_HARMLESS = {"name", "ema_momentum", "ema_overwrite_frequency", "jit_compile",
                      "is_legacy_optimizer"}
OPTIMIZER_FIXED = {"use_ema": (False, None), "amsgrad": (False, None), "decay": (0, 0.0, None),
                   "loss_scale_factor": (None,), "gradient_accumulation_steps": (None,)}
SCHEDULES = {"ExponentialDecay": "exponential_decay", "CosineDecay": "cosine_decay",
             "PiecewiseConstantDecay": "piecewise_constant_decay"}
LOSSES = {"SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
          "CategoricalCrossentropy": "categorical_crossentropy",
          "BinaryCrossentropy": "binary_crossentropy", "MeanSquaredError": "mean_squared_error",
          "MeanAbsoluteError": "mean_absolute_error", "Huber": "huber",
          "KLDivergence": "kl_divergence", "huber_loss": "huber"}
LOSS_FIXED = {"reduction": ("sum_over_batch_size", "auto", None), "label_smoothing": (0, 0.0),
              "axis": (-1,), "ignore_class": (None,)}
METRICS = {"acc": "accuracy", "sparse_categorical_accuracy": "accuracy",
           "categorical_accuracy": "accuracy", "binary_accuracy": "accuracy",
           "SparseCategoricalAccuracy": "accuracy", "CategoricalAccuracy": "accuracy",
           "BinaryAccuracy": "accuracy", "MeanAbsoluteError": "mean_absolute_error",
           "MeanSquaredError": "mean_squared_error",
           "TopKCategoricalAccuracy": "top_k_categorical_accuracy",
           "SparseTopKCategoricalAccuracy": "sparse_top_k_categorical_accuracy",
           "Precision": "precision", "Recall": "recall", "AUC": "auc"}
METRIC_FIXED = {"threshold": (0.5,), "top_k": (None,), "class_id": (None,),
                "curve": ("ROC",), "summation_method": ("interpolation", "trapezoidal"),
                "multi_label": (False,), "from_logits": (False,), "num_labels": (None,),
                "label_weights": (None,), "thresholds": (None, 0.5, [0.5])}


class _Compile:
    """Keras' compile config as the project's training section (train/ names, Keras')."""

    def __init__(self, place):
        self.place = place

    def fail(self, what, value, why="has no Layerloom form"):
        raise DataError(f"compile config: {what}={value!r} {why}", self.place)

    def fixed(self, what, key, value, table):
        if key in table and value not in table[key]:
            self.fail(f"{what} option {key}", value,
                      f"has no Layerloom form (only {', '.join(map(repr, table[key]))})")
        return key in table

    def optimizer(self, spec):
        from layerloom.train.optimizers import OPTIMIZERS as OURS
        cls, cfg = (spec, {}) if isinstance(spec, str) else (
            spec.get("class_name"), dict(spec.get("config") or {}))
        name = OPTIMIZERS.get(cls) or (cls.lower() if str(cls).lower() in OURS else None)
        if name is None:
            self.fail("optimizer", cls, f"has no Layerloom optimizer ({', '.join(OPTIMIZERS)})")
        declared = {p.name for p in OURS[name].params}
        params = {}
        for key, v in cfg.items():
            key = "learning_rate" if key == "lr" else key
            if key in OPTIMIZER_HARMLESS or self.fixed(f"optimizer {cls}", key, v,
                                                       OPTIMIZER_FIXED) or v is None:
                continue
            if key == "learning_rate" and isinstance(v, dict):
                params[key] = self.schedule(v)
            elif key in declared:
                params[key] = kl.f32(v) if isinstance(v, float) else v
            elif v is not False:
                self.fail(f"optimizer {cls} option {key}", v)
        return {"name": name, "params": params}

    def schedule(self, spec):
        cls, cfg = spec.get("class_name"), dict(spec.get("config") or {})
        if cls not in SCHEDULES:
            self.fail("learning_rate schedule", cls, f"has no Layerloom schedule "
                                                     f"({', '.join(SCHEDULES)})")
        out = {"schedule": SCHEDULES[cls]}
        for key, v in cfg.items():
            if key != "name" and v is not None:
                out[key] = [kl.f32(x) if isinstance(x, float) else x for x in v] if \
                    isinstance(v, list) else (kl.f32(v) if isinstance(v, float) else v)
        return out

    def loss(self, spec):
        if spec is None:
            return None
        if isinstance(spec, dict) and isinstance(spec.get("config"), str):  # a function
            spec = spec["config"]
        if isinstance(spec, str):
            return {"name": LOSSES.get(spec, spec)}
        cls, cfg = spec.get("class_name"), dict(spec.get("config") or {})
        if cls not in LOSSES:
            self.fail("loss", cls, f"has no Layerloom loss ({', '.join(sorted(LOSSES))})")
        entry = {"name": LOSSES[cls]}
        for key, v in cfg.items():
            if key in ("name", "dtype") or self.fixed(f"loss {cls}", key, v, LOSS_FIXED):
                continue
            if key in ("from_logits", "delta"):
                entry[key] = bool(v) if key == "from_logits" else kl.f32(v)
            elif v not in (None, False):
                self.fail(f"loss {cls} option {key}", v)
        return entry

    def metric(self, spec):
        if isinstance(spec, str):
            return METRICS.get(spec, spec)  # an unknown name: parse_training names it
        cls, cfg = spec.get("class_name"), dict(spec.get("config") or {})
        if cls == "MeanMetricWrapper":  # tf.keras 2's metric given by name
            return self.metric(cfg.get("fn") or cfg.get("name"))
        if cls not in METRICS:
            self.fail("metric", cls, f"has no Layerloom metric ({', '.join(sorted(METRICS))})")
        entry = {"name": METRICS[cls]}
        for key, v in cfg.items():
            if key in ("name", "dtype") or self.fixed(f"metric {cls}", key, v, METRIC_FIXED):
                continue
            if key in ("k", "num_thresholds"):
                entry[key] = v
            else:
                self.fail(f"metric {cls} option {key}", v)
        return entry if len(entry) > 1 else entry["name"]

    def training(self, cc, outputs, graph):
        """The training section: outputs is {Keras output name: node id}, in Keras' order."""
        cc = cc or {}
        names = list(outputs)
        t = {}
        if cc.get("optimizer") is not None:
            t["optimizer"] = self.optimizer(cc["optimizer"])
        if cc.get("weighted_metrics"):
            self.fail("weighted_metrics", cc["weighted_metrics"],
                      "has no Layerloom form (no sample weights)")
        losses = self.per_output(cc.get("loss"), names, "loss")
        weights = self.per_output(cc.get("loss_weights"), names, "loss_weights")
        loss = {}
        for kname, nid in outputs.items():
            entry = self.loss(losses.get(kname)) or _guess_loss(graph, nid)
            if weights.get(kname) is not None:
                entry["weight"] = kl.f32(weights[kname])
            loss[nid] = entry
        t["loss"] = loss
        t["metrics"] = self.metrics(cc.get("metrics"), outputs)
        return t

    def per_output(self, spec, names, what):
        """{Keras output name: item} of one item for every output, a dict by output name or a
        list in the outputs' order."""
        if spec is None:
            return {}
        if isinstance(spec, dict) and "class_name" not in spec:
            unknown = sorted(set(spec) - set(names))
            if unknown:
                self.fail(f"{what} for output {unknown[0]!r}", spec[unknown[0]],
                          f"names no output ({', '.join(names)})")
            return spec
        if isinstance(spec, list):
            if len(spec) != len(names):
                self.fail(what, spec, f"has {len(spec)} entries for {len(names)} outputs")
            return dict(zip(names, spec))
        return {n: spec for n in names}

    def metrics(self, spec, outputs):
        if not spec:
            return []
        names = list(outputs)
        per_output = isinstance(spec, dict) or all(m is None or isinstance(m, list)
                                                   for m in spec)  # Keras 2: per output
        if not per_output:
            return [self.metric(m) for m in spec]
        spec = self.per_output(spec, names, "metrics")
        return {outputs[k]: [self.metric(m) for m in (v if isinstance(v, list) else [v])]
                for k, v in spec.items() if v}


def _guess_loss(graph, nid):
    """An uncompiled model's loss, from its output's activation (for a later fit)."""
    act = graph.nodes[nid].params.get("activation")
    return {"name": {"softmax": "sparse_categorical_crossentropy",
                     "sigmoid": "binary_crossentropy"}.get(act, "mean_squared_error")}


# -- the project -------------------------------------------------------------------------------
def read(path):
    """(Project, weights) of the Keras model at `path` (.keras or .h5)."""
    from layerloom.project.loom import Project
    from layerloom.project.training import parse_training
    file = _open(path)
    try:
        top = file.config
        if "class_name" not in top or "config" not in top:
            raise DataError("the model config has no class_name and config", path)
        b = _Builder(file, path)
        name = _name(top) or (top.get("config") or {}).get("name") or "model"
        refs = b.model(top["class_name"], top["config"], _Scope(), None, name)
        outputs = b.outputs(_output_names(top, refs), refs)
    finally:
        file.handle.close()
    problems = []
    t = _Compile(path).training(file.compile_config, outputs, b.graph)
    training = parse_training(t, b.graph, problems)
    if problems:
        raise DataError(f"compile config: {problems[0]}", path)
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
        return [_name(last)] * len(refs)
    return [t[0] for t in _triples(cfg.get("output_layers") or [])]


def _project_name(path, name):
    return os.path.splitext(os.path.basename(path))[0] or name


def convert(path, to):
    """Write the Keras model at `path` as the project `to` with `to`.weights.npz beside it,
    laid out, each file atomically. Returns the project."""
    from layerloom.core.layout import auto_layout
    from layerloom.project import loom as projectfile
    from layerloom.project.fileio import atomic_write_bytes, atomic_write_text, npz_bytes
    project, weights = read(path)
    folder = os.path.dirname(os.path.abspath(to))
    wname = os.path.basename(to) + ".weights.npz"
    project.ui = {"positions": {k: list(p) for k, p in auto_layout(project.graph).items()}}
    d = projectfile.trained_dict(project, folder, None, weights=wname)
    atomic_write_bytes(os.path.join(folder, wname), npz_bytes(weights))
    atomic_write_text(to, json.dumps(d, indent=2) + "\n")
    return project
