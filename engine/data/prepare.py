"""A project's dataset as the arrays a fit takes: loaded from its source, split, checked
(shapes against the graph, finite values) and normalised with statistics from the training
split, with the mapping from array names to Input and output nodes."""
import numpy as np

from layerloom.core.errors import DataError, quote
from layerloom.core.graph import fmt_shape
from layerloom.core import sections
from layerloom.data import forms as data_forms, hostrun, preprocess, sources


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


def named_arrays(project, a, nodes, what):
    """{array name: array} of an array (for the one node of `nodes`) or a dict by node id or
    array name (the Python API's x and y); what: "inputs" or "targets"."""
    mapping = (project.dataset or {}).get(what) or {}
    default = "x" if what == "inputs" else "y"
    if isinstance(a, dict):  # a node id names the array mapped to it (by default "x"/"y"
        # for the one input or output, as the project's data is mapped)
        lone = default if len(nodes) == 1 and not mapping else None
        return {(mapping.get(k) or lone or k) if k in nodes else k: np.asarray(v)
                for k, v in a.items()}
    if len(nodes) != 1:
        raise DataError(f"the model has {len(nodes)} {what} ({', '.join(map(repr, nodes))}); "
                        "give a dict {node id: array}", what)
    return {mapping.get(nodes[0], default): np.asarray(a)}


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


# dataset.targets' value for an output trained towards the rows an Input receives (an
# autoencoder): "=input:<Input id>", no array's name
INPUT_TARGET = "=input:"


def input_target(name):
    """The Input id a target names as "=input:<id>", or None where it names an array."""
    return name[len(INPUT_TARGET):] if isinstance(name, str) and \
        name.startswith(INPUT_TARGET) else None


class _Mapping:
    """Which array feeds each Input and which is each output's target, with the shapes the
    graph and the losses want of them."""

    def __init__(self, project, names, raw=False, given=False):
        g, d = project.graph, project.dataset
        self.project = project
        self.given = given  # the arrays are a user's, not the dataset's (input_rows)
        # the source's own preparation of each array (raw: none but a missing channel axis)
        self.forms, self.raw = data_forms.forms(project), raw
        self.shapes = g.analysis().shapes
        self.ins, self.outs = g.inputs(), g.outputs()
        # Inputs only host layers read (text): their rows stay raw, strings or integers
        self.raw_ins = hostrun.host_inputs(g)
        # a node of unknown shape (a layer dropped on the canvas, not yet wired) is the graph's
        # problem, listed as such: no output the data is mapped to
        known = [o for o in self.outs if o in self.shapes]
        self.outs = known or self.outs
        self.inputs = dict(d.get("inputs") or {})
        self.targets = dict(d.get("targets") or {})
        # unmapped: "x" and "y" for one input and output, else the arrays named like the nodes
        if not self.inputs:
            self.inputs = {self.ins[0]: "x"} if len(self.ins) == 1 else \
                {nid: nid for nid in self.ins}
        if not self.targets:
            self.targets = {self.outs[0]: "y"} if len(self.outs) == 1 else \
                {nid: nid for nid in self.outs}
        self.have = ", ".join(sorted(names)) or "(none)"

    @property
    def losses(self):  # train/ declares how (core/sections.py): data/ sits below train/
        return sections.training("losses").build(self.project)

    def names(self):
        return list(self.inputs.values()) + [t for t in self.targets.values()
                                             if input_target(t) is None]

    def _input_as_target(self, x, nid):
        """The rows the Input a target names receive (x: {Input id: rows})."""
        src = input_target(self.targets[nid])
        if src not in x:
            raise DataError(f"{quote(self.targets[nid])} names no Input node {quote(src)}; "
                            f"the Inputs: {', '.join(map(quote, self.ins))}",
                            f"dataset.targets.{nid}")
        return src, x[src]

    def relink(self, x, y):
        """Targets that are an Input's rows take them again once normalised (x, y: one
        split's dicts, or None)."""
        for nid in self.outs if y is not None else ():
            if input_target(self.targets.get(nid)) is not None:
                y[nid] = self._input_as_target(x, nid)[1]

    def _mapped(self, split, kind, nid, unmapped):
        """(array name, rows) of the array mapped to node `nid` under dataset.<kind>."""
        mapping = self.inputs if kind == "inputs" else self.targets
        if nid not in mapping:
            raise DataError(f"{unmapped} mapped to it; arrays: {self.have}", f"dataset.{kind}")
        name = mapping[nid]
        if name not in split:
            raise DataError(f"the dataset has no array {quote(name)}; it has: {self.have}",
                            f"dataset.{kind}.{nid}")
        return name, preprocess.as_rows(split[name])

    def input_rows(self, split, nid, tag):
        """given: rows a user gave a trained model (predict, evaluate), not the dataset's: a
        refusal says what the model takes, of "the input" (the array's name where the model
        has several), not placed in the project's dataset section; pixels already scaled are
        refused."""
        name, a = self._mapped(split, "inputs", nid, f"Input {quote(nid)} has no array")
        given = self.given
        if given:
            place = None
            what = "the input" if len(self.ins) == 1 else f"array {quote(name)}"
        else:
            place, what = f"dataset.inputs.{nid}", f"array {quote(name)}{tag}"
        if nid in self.raw_ins:
            return self.raw_rows(nid, a, what, place)
        if getattr(a, "dtype", None) is not None and a.dtype.kind in "OUS":
            raise DataError(f"{what} holds text; Input {quote(nid)} takes numbers: set its "
                            "dtype to string and read it with a TextVectorization or "
                            "StringLookup", place)
        form = self.forms.get(name)
        if form is not None:
            a = form.apply(a, what, place, divide=not self.raw, check_range=given)
        want = self.shapes[nid][0] if nid in self.shapes else None
        if want is not None and (a.ndim < 1 or a.shape[1:] != want):
            fix = (f"Input {quote(nid)} takes {data_forms.shape_hint(form, want)}" if given
                   else f"Input {quote(nid)} expects {fmt_shape(want)}; set the Input's "
                        f"shape to {list(a.shape[1:])}, or map another array")
            # with its kind and fields: the editor's fix (set the Input's shape) reads them
            raise DataError(f"{what} has samples shaped {fmt_shape(a.shape[1:])}, {fix}", place,
                            **({} if given else {"kind": "input_data_shape", "fields": {
                                "node": nid, "shape": [int(n) for n in a.shape[1:]]}}))
        rows = preprocess.as_rows(a, np.float32)
        _check_finite(rows, what, place)
        return rows

    def raw_rows(self, nid, a, what, place):
        """The rows of an Input only host layers read, as they are: strings for a string
        Input (one per sample: a column of them fills an Input of shape (1,)), else numbers."""
        a = np.asarray(a)
        want = self.shapes[nid][0] if nid in self.shapes else None
        if want is not None and a.ndim == 1 and tuple(want) == (1,):
            a = a.reshape(-1, 1)
        if want is not None and a.shape[1:] != tuple(want):
            raise DataError(f"{what} has samples shaped {fmt_shape(a.shape[1:])}, Input "
                            f"{quote(nid)} expects {fmt_shape(want)}", place)
        if self.project.graph.nodes[nid].params.get("dtype") == "string":
            return np.array([v if isinstance(v, str) else str(v) for v in
                             a.reshape(-1).tolist()], object).reshape(a.shape)
        if a.dtype.kind not in "biuf":
            raise DataError(f"{what} holds {a.dtype} values; Input {quote(nid)} takes numbers "
                            "(set its dtype to string for text)", place)
        return a

    def target_rows(self, split, nid, tag, x=None):
        place, loss = f"dataset.targets.{nid}", self.losses.get(nid)
        if x is not None and input_target(self.targets.get(nid)) is not None:
            name, a = self._input_as_target(x, nid)
        else:
            name, a = self._mapped(split, "targets", nid,
                                   f"output {quote(nid)} has no target array")
        if nid not in self.shapes or loss is None:
            # a problem upstream, or no loss yet to say what the targets must be: each is
            # reported as what it is, not as a data problem
            return np.ascontiguousarray(a, np.float32)
        oshape = self.shapes[nid][0]
        want = loss.target_shape(oshape)
        if loss.sparse and a.shape[1:] == want + (1,):
            a = a.reshape(a.shape[:-1])
        if a.shape[1:] != want:
            hint = (" (sparse_categorical_crossentropy takes one class index per sample)"
                    if loss.sparse else "")
            raise DataError(f"array {quote(name)}{tag} has targets shaped "
                            f"{fmt_shape(a.shape[1:])}, output {quote(nid)} with loss "
                            f"{loss.name} needs {fmt_shape(want)}{hint}", place)
        if loss.sparse and a.size:
            classes = oshape[-1]
            if (not np.all(np.equal(np.mod(a, 1), 0))) or a.min() < 0 or a.max() >= classes:
                raise DataError(f"labels in {quote(name)}{tag} must be class indices "
                                f"0..{classes - 1} (output {quote(nid)} has {classes} units); "
                                f"found {a.min():g}..{a.max():g}; give {quote(nid)} "
                                f"{int(a.max()) + 1} units if those are the classes", place)
        rows = np.ascontiguousarray(a, np.float32)
        _check_finite(rows, f"array {quote(name)}{tag}", place)
        return rows

    def split(self, split, tag):
        """(inputs, targets) of one split, each {node id: rows}, checked."""
        x = {nid: self.input_rows(split, nid, tag) for nid in self.ins}
        y = {nid: self.target_rows(split, nid, tag, x) for nid in self.outs}
        if len({len(v) for v in list(x.values()) + list(y.values())}) > 1:
            raise DataError("mapped arrays have different numbers of samples: " + ", ".join(
                f"{k}: {len(v)}" for k, v in {**x, **y}.items()), "dataset")
        return x, y


def prepare_data(project, arrays=None, progress=None, raw_inputs=False, given=False):
    """Map the dataset's arrays onto the graph's inputs and outputs, checking every shape.
    raw_inputs: the inputs as the dataset holds them, neither scaled by the source's form nor
    normalised (for an exported model, which does both itself). given: `arrays` are a user's
    (the Python API's x and y), checked as prepare_inputs checks them."""
    arrays = arrays or load_arrays(project, progress)
    m = _Mapping(project, arrays.train, raw=raw_inputs, given=given)
    x, y = m.split(arrays.train, "")
    x_test = y_test = None
    if arrays.test and all(n in arrays.test for n in m.names()):
        x_test, y_test = m.split(arrays.test, " (test split)")
    val = m.split(arrays.validation, " (validation split)") if arrays.validation else None
    stats = {} if raw_inputs else _normalize(project.dataset, m, x,
                                             [x_test, val[0] if val else None])
    for xs, ys in ((x, y), (x_test, y_test), val or (None, None)):
        m.relink(xs, ys)
    if raw_inputs and any(input_target(t) is not None for t in m.targets.values()):
        # an input as its target: as the model sees it (it scales and normalises itself)
        seen = prepare_data(project, arrays, given=given)
        for ys, formed in ((y, seen.y), (y_test, seen.y_test),
                           (val[1] if val else None, seen.validation and seen.validation[1])):
            for nid in ys or ():
                if input_target(m.targets.get(nid)) is not None:
                    ys[nid] = formed[nid]
    vocabs = {}
    if not raw_inputs and m.raw_ins:  # host layers: adapted to the training rows, then run
        g = project.graph
        vocabs = hostrun.adapt(g, x, hostrun.saved_vocabularies(project))
        x, x_test = hostrun.run(g, x, vocabs), hostrun.run(g, x_test, vocabs)
        val = (hostrun.run(g, val[0], vocabs), val[1]) if val else None
    out = RunData(x, y, x_test, y_test, arrays.description)
    out.validation = val
    out.mapping = {"inputs": m.inputs, "targets": m.targets}
    out.class_names = arrays.class_names
    out.fitted = {k: v for k, v in (("normalization", stats),
                                    ("categories", arrays.categories),
                                    ("columns", arrays.columns),
                                    ("vocabulary", vocabs),
                                    ("vocabulary_params", {
                                        nid: hostrun.shaped_by(project.graph.nodes[nid])
                                        for nid in vocabs})) if v}
    return out


def prepare_inputs(project, arrays):
    """{Input id: rows} of named arrays (a file to predict for, the Python API's x): mapped
    onto the Input nodes, shape-checked and normalised with the statistics training fitted,
    so the model sees what it saw in training."""
    m = _Mapping(project, arrays, given=True)
    x = {nid: m.input_rows(arrays, nid, "") for nid in m.ins}
    if len({len(v) for v in x.values()}) > 1:
        raise DataError("the inputs have different numbers of samples: " + ", ".join(
            f"{k}: {len(v)}" for k, v in x.items()), "--input")
    d = project.dataset
    kind = d.get("normalize") or default_normalization(d)
    saved = (d.get("fitted") or {}).get("normalization") or {}
    for nid in m.ins:
        if nid in m.raw_ins:
            continue
        name, shape = m.inputs[nid], m.shapes[nid][0]
        stats = saved.get(name)
        if kind != "none" and not preprocess.matches(stats, kind, shape):
            raise DataError(f"the project has no {kind} statistics fitted by training for array "
                            f"{quote(name)}; use the trained.loom that training wrote",
                            "dataset.fitted")
        x[nid] = preprocess.apply(stats, x[nid])
    if m.raw_ins:  # host layers, with the vocabularies training adapted
        g = project.graph
        x = hostrun.run(g, x, hostrun.vocabularies_for_predict(
            g, hostrun.saved_vocabularies(project)))
    return x


def _normalize(d, m, x, others):
    """Normalise each input: with statistics fitted on the training rows `x` only (or taken
    from the project, where a previous training saved them), applied to x and the other
    splits in place. Returns the statistics by array name."""
    kind = d.get("normalize") or default_normalization(d)
    saved = (d.get("fitted") or {}).get("normalization") or {}
    stats_by_array = {}
    for nid in m.ins:
        if nid in m.raw_ins:
            continue
        name = m.inputs[nid]
        stats = saved.get(name)
        if not preprocess.matches(stats, kind, m.shapes[nid][0]):
            stats = preprocess.fit(kind, x[nid])
        if stats is not None:
            stats_by_array[name] = stats
            for part in [x] + others:
                if part is not None:
                    part[nid] = _applied(stats, part[nid])
    return stats_by_array


def _applied(stats, a, rows=1 << 16):
    """preprocess.apply, into one new float32 array a block of rows at a time for an array in
    memory: applied whole, (x - shift) * scale held two temporaries of the array's size beside
    it (a 10M-row table: 1.6 GB more at the peak)."""
    if isinstance(a, preprocess.LazyRows):
        return preprocess.apply(stats, a)
    shift = np.asarray(stats["shift"], np.float32)  # as preprocess.transform: the same
    scale = np.asarray(stats["scale"], np.float32)  # float32 operations, in place per block
    out = np.empty(a.shape, np.float32)
    for s in range(0, len(a), rows):
        block = out[s:s + rows]
        np.subtract(np.asarray(a[s:s + rows], np.float32), shift, out=block)
        block *= scale
    return out
