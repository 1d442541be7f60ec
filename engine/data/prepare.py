"""A project's dataset as the arrays a fit takes: loaded from its source, split, checked
(shapes against the graph, finite values) and normalised with statistics from the training
split, with the mapping from array names to Input and output nodes."""
import numpy as np

from layerloom.core.errors import DataError, quote
from layerloom.core.graph import fmt_shape
from layerloom.data import preprocess, sources
from layerloom.train.losses import build_losses


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



def load_arrays(project, progress=None, table=None):
    """The project's dataset as Arrays, its split applied. progress(url, bytes_done,
    bytes_total): called while a built-in set downloads (the console bar when None). table: a
    CSV dataset's file as tabular.read already read it."""
    d = project.dataset
    return sources.source_of(d).load(d, project, progress=progress, table=table)


def default_normalization(d):
    s = sources.get(d.get("source"))
    return s.normalization if s else "none"


def array_names(project):
    """Names of the training arrays the project's dataset provides, without loading it all."""
    d = project.dataset
    s = sources.get(d.get("source")) if d else None
    return s.array_names(d, project) if s else []


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
