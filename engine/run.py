"""From a loaded project to a trained model: the one path shared by `layerloom --run` and the
editor's training dock."""
import os

import numpy as np

from . import builtin_data, datasets, preprocess, schedules, trainstate, userdata
from .errors import DataError, quote
from .graph import fmt_shape
from .losses import Loss
from .model import Model
from .optimizers import OPTIMIZERS
from .runtime import Runtime
from .callbacks import ModelCheckpoint, build as build_callbacks
from .training import Trainer, fit


class RunData:
    def __init__(self, x, y, x_test=None, y_test=None, description=""):
        self.x, self.y, self.x_test, self.y_test = x, y, x_test, y_test
        self.description = description
        self.validation = None  # (x, y) from the dataset's split, if any
        self.fitted = {}  # normalisation statistics and categories, for dataset.fitted
        self.class_names = None
        self.mapping = {"inputs": {}, "targets": {}}  # array names per Input / output node

    @property
    def test(self):
        return (self.x_test, self.y_test) if self.x_test is not None else None


def build_losses(project):
    return {o: Loss(s["name"], s.get("weight", 1.0), s.get("from_logits", False),
                    s.get("delta", 1.0))
            for o, s in project.training["loss"].items()}


def fused_outputs(graph, losses):
    """Outputs whose final activation the loss can absorb (softmax+CE, sigmoid+BCE)."""
    out = set()
    for o, loss in losses.items():
        node = graph.nodes[o]
        ap = node.layer.activation_param
        if ap and loss.can_fuse(node.params[ap]):
            out.add(o)
    return out


def load_arrays(project, progress=None, table=None):
    """progress(url, bytes_done, bytes_total): called while a built-in set downloads (the
    console bar when None). table: a CSV dataset's file as tabular.read already read it."""
    d = project.dataset
    if not d:
        raise DataError("the project has no dataset", "dataset")
    src = d.get("source")
    if src == "synthetic":
        arrays = datasets.synthetic(d["name"], **d.get("params", {}))
    elif src == "keras":
        extra = {"progress": progress} if progress else {}
        (x, y), (xt, yt) = builtin_data.load(d["name"], **d.get("params", {}), **extra)
        spec = builtin_data.DATASETS[d["name"]]
        classes = int(max(y.max(initial=0), yt.max(initial=0))) + 1 if spec["classes"] else None
        arrays = datasets.Arrays({"x": x, "y": y}, {"x": xt, "y": yt}, spec["description"],
                                 classes)
        if spec["classes"] and len(spec["classes"]) == classes:
            arrays.class_names = list(spec["classes"])
    elif src == "csv":
        return userdata.load_csv(d, project.resolve(d["path"]), table)
    elif src == "images":
        return userdata.load_images(d, project.resolve(d["path"]))
    elif src == "npy":
        return userdata.load_npy(d, project.resolve)
    else:
        arrays = datasets.load_npz(project.resolve(d["path"]))
    return userdata.apply_split(arrays, d)


def default_normalization(d):
    return "scale" if d.get("source") == "images" else "none"


def array_names(project):
    """Names of the training arrays the project's dataset provides, without loading it all."""
    d = project.dataset
    if not d:
        return []
    if d.get("source") == "synthetic":
        if d.get("name") not in datasets.SYNTHETIC:
            return []
        return sorted(datasets.synthetic(d["name"], samples=2, test_samples=0).train)
    if d.get("source") in ("keras", "csv", "images"):
        return ["x", "y"]
    if d.get("source") == "npy":
        return sorted(k for k in (d.get("arrays") or {}) if not k.endswith("_test"))
    try:
        with np.load(project.resolve(d["path"]), allow_pickle=False) as z:
            return sorted(k for k in z.files if not k.endswith("_test"))
    except Exception:
        return []


def _check_finite(a, what, place, chunk=4096):
    """Refuse NaN and infinite values (a CSV cell of 1e400, a damaged .npy) before they turn
    every loss into NaN; a memory-mapped array is read in chunks of rows."""
    for s in range(0, len(a), chunk):
        part = np.asarray(a[s:s + chunk], np.float32)
        bad = ~np.isfinite(part)
        if bad.any():
            row = s + int(np.argwhere(bad)[0][0])
            raise DataError(f"{what} holds NaN or infinite values (first in sample {row}); "
                            "fill or drop them first", place)


def prepare_data(project, arrays=None, progress=None):
    """Map the dataset's arrays onto the graph's inputs and outputs, checking every shape."""
    g = project.graph
    arrays = arrays or load_arrays(project, progress)
    shapes, _ = g.infer_shapes()
    losses = build_losses(project)
    d = project.dataset
    ins, outs = g.inputs(), g.outputs()
    in_map = dict(d.get("inputs") or {})
    out_map = dict(d.get("targets") or {})
    if not in_map and len(ins) == 1:
        in_map = {ins[0]: "x"}
    if not out_map and len(outs) == 1:
        out_map = {outs[0]: "y"}
    have = ", ".join(sorted(arrays.train)) or "(none)"

    def fetch(split, name, place):
        if name not in split:
            raise DataError(f"the dataset has no array {quote(name)}; it has: {have}", place)
        return preprocess.as_rows(split[name])

    def check(split, tag):
        x, y = {}, {}
        for nid in ins:
            place = f"dataset.inputs.{nid}"
            if nid not in in_map:
                raise DataError(f"Input {quote(nid)} has no array mapped to it; arrays: {have}",
                                "dataset.inputs")
            a = fetch(split, in_map[nid], place)
            want = shapes[nid][0]
            if a.ndim < 1 or a.shape[1:] != want:
                raise DataError(f"array {quote(in_map[nid])}{tag} has samples shaped "
                                f"{fmt_shape(a.shape[1:])}, Input {quote(nid)} expects "
                                f"{fmt_shape(want)}; set the Input's shape to "
                                f"{list(a.shape[1:])}, or map another array", place)
            x[nid] = preprocess.as_rows(a, np.float32)
            _check_finite(x[nid], f"array {quote(in_map[nid])}{tag}", place)
        for nid in outs:
            place = f"dataset.targets.{nid}"
            if nid not in out_map:
                raise DataError(f"output {quote(nid)} has no target array mapped to it; arrays: "
                                f"{have}", "dataset.targets")
            a = fetch(split, out_map[nid], place)
            oshape = shapes[nid][0]
            want = losses[nid].target_shape(oshape)
            if losses[nid].sparse and a.shape[1:] == want + (1,):
                a = a.reshape(a.shape[:-1])
            if a.shape[1:] != want:
                hint = (" (sparse_categorical_crossentropy takes one class index per sample)"
                        if losses[nid].sparse else "")
                raise DataError(f"array {quote(out_map[nid])}{tag} has targets shaped "
                                f"{fmt_shape(a.shape[1:])}, output {quote(nid)} with loss "
                                f"{losses[nid].name} needs {fmt_shape(want)}{hint}", place)
            if losses[nid].sparse and a.size:
                classes = oshape[-1]
                if (not np.all(np.equal(np.mod(a, 1), 0))) or a.min() < 0 or a.max() >= classes:
                    raise DataError(f"labels in {quote(out_map[nid])}{tag} must be class indices "
                                    f"0..{classes - 1} (output {quote(nid)} has {classes} units); "
                                    f"found {a.min():g}..{a.max():g}; give {quote(nid)} "
                                    f"{int(a.max()) + 1} units if those are the classes", place)
            y[nid] = np.ascontiguousarray(a, np.float32)
            _check_finite(y[nid], f"array {quote(out_map[nid])}{tag}", place)
        lens = {len(v) for v in list(x.values()) + list(y.values())}
        if len(lens) > 1:
            raise DataError("mapped arrays have different numbers of samples: " + ", ".join(
                f"{k}: {len(v)}" for k, v in {**x, **y}.items()), "dataset")
        return x, y

    x, y = check(arrays.train, "")
    x_test = y_test = None
    names = list(in_map.values()) + list(out_map.values())
    if arrays.test and all(n in arrays.test for n in names):
        x_test, y_test = check(arrays.test, " (test split)")
    val = check(arrays.validation, " (validation split)") if arrays.validation else None
    # normalisation: fitted on the training rows only (or taken from the project, where a
    # previous training saved it), then applied to every split
    kind = d.get("normalize") or default_normalization(d)
    saved = (d.get("fitted") or {}).get("normalization") or {}
    stats_by_array = {}
    for nid in ins:
        name = in_map[nid]
        stats = saved.get(name)
        if not preprocess.matches(stats, kind, shapes[nid][0]):
            stats = preprocess.fit(kind, x[nid])
        if stats is not None:
            stats_by_array[name] = stats
            for part in (x, x_test, val[0] if val else None):
                if part is not None:
                    part[nid] = preprocess.apply(stats, part[nid])
    out = RunData(x, y, x_test, y_test, arrays.description)
    out.validation = val
    out.mapping = {"inputs": in_map, "targets": out_map}
    out.class_names = arrays.class_names
    out.fitted = {k: v for k, v in (("normalization", stats_by_array),
                                    ("categories", arrays.categories)) if v}
    return out


class Session:
    """A compiled model with its trainer, ready to fit; weights can be read back any time."""

    def __init__(self, project, runtime=None, device=None, batch_size=None, seed=None,
                 initial_weights=None):
        t = project.training
        self.project = project
        self.batch_size = int(batch_size or t["batch_size"])
        self.seed = int(t["seed"] if seed is None else seed)
        self.runtime = runtime or Runtime(device)
        self.losses = build_losses(project)
        self.model = Model(project.graph, self.runtime, self.batch_size, seed=self.seed,
                           fused_logits=fused_outputs(project.graph, self.losses),
                           weights=initial_weights)
        opt = t["optimizer"]
        cls = OPTIMIZERS[opt["name"]]
        params = {p.name: p.default for p in cls.params}
        params.update(opt.get("params", {}))
        if isinstance(params.get("learning_rate"), dict):
            params["learning_rate"] = schedules.build(params["learning_rate"])
        self.optimizer = cls(**params)
        self.trainer = Trainer(self.model, self.losses, t.get("metrics", []), self.optimizer)

    def fit(self, data, epochs=None, callbacks=(), should_stop=None, out_dir=None,
            resume=None):
        """callbacks: extra Callback objects (progress display...); the project's own
        callbacks are added; ModelCheckpoint writes under out_dir. resume: a TrainingState
        (engine/trainstate.py) this run continues, to `epochs` in all."""
        t = self.project.training
        epochs = int(epochs or t["epochs"])
        if resume is not None:
            resume.check(self.project, self.batch_size, self.seed, epochs)
        self.project_callbacks = build_callbacks(t.get("callbacks", []), out_dir)
        for cb in self.project_callbacks:
            if isinstance(cb, ModelCheckpoint):  # the training state beside its weights
                cb.capture_state = self.training_state
        return fit(self.trainer, data.x, data.y, epochs, self.batch_size,
                   seed=self.seed, validation_split=t.get("validation_split", 0.0),
                   validation_data=data.validation, test_data=data.test,
                   callbacks=list(callbacks) + self.project_callbacks,
                   should_stop=should_stop, shuffle=t.get("shuffle", True), resume=resume,
                   resume_callbacks=self.project_callbacks)

    def training_state(self):
        """Where the last fit left training, to resume it exactly (engine/trainstate.py)."""
        return trainstate.capture(self.trainer, self.project_callbacks, self.trainer.position,
                                  trainstate.fingerprint(self.project, self.batch_size,
                                                         self.seed))


def load_weights(path, place="weights"):
    if not os.path.exists(path):
        raise DataError(f"weights file not found: {path}", place)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # corrupt zip, pickled arrays...
        raise DataError(f"{path}: not a readable weights file ({e})", place) from None
