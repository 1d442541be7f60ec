"""A Keras model's compile config (optimizer and its schedule, losses with their weights,
metrics, per output) as a Layerloom project's training section, with Keras' names mapped to
Layerloom's (train/): keras_import.read uses it. Settings Layerloom cannot express are a
DataError naming the setting; an uncompiled model gets a loss guessed from its outputs'
activations, so it can be fitted later."""
from layerloom.core.errors import DataError
from layerloom.interop import keras_in_layers as kl

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
def _keras_metric_names():
    """{Keras name or class: Layerloom metric}, from the metrics' declared Keras forms."""
    from layerloom.train import metrics
    out = {}
    for kind in metrics.KINDS.values():
        own = (kind.keras,) if isinstance(kind.keras, str) else ()
        out.update({n: kind.name for n in kind.keras_names + own})
    return out


METRICS = _keras_metric_names()
METRIC_FIXED = {"threshold": (0.5,), "top_k": (None,), "class_id": (None,),
                "curve": ("ROC",), "summation_method": ("interpolation", "trapezoidal"),
                "multi_label": (False,), "from_logits": (False,), "num_labels": (None,),
                "label_weights": (None,), "thresholds": (None, 0.5, [0.5])}


class Compile:
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
