"""The Python API, as a Keras user expects it:

    import layerloom
    model = layerloom.load("runs/spirals/trained.loom")  # graph, weights, setup, fitted data prep
    probs = model.predict(x)           # numpy in, numpy out (a dict for several inputs/outputs)
    model.evaluate(x, y)               # {"loss": ..., "accuracy": ...}
    history = model.fit(x, y, epochs=5, validation_split=0.2)
    model.summary(); model.save("mine.loom")
    model.freeze(before="head")        # fine-tuning: the layers before 'head' keep their weights
    tuned = model.fine_tune(cut="hidden", data="my_images/")  # frozen body, new head, low rate
    tuned.unfreeze_top(2)              # later: the top 2 frozen layers train too
    layerloom.devices()

Inputs are raw, as training read them (before normalisation): the statistics training fitted
(the project's dataset.fitted) are applied here, as `layerloom --predict` applies them. Every
error is a layerloom.LayerloomError with the place of the problem, as the command line prints.
"""
import os

from layerloom.core.errors import DataError, GraphError, LayerloomError, quote
from layerloom.core.fileio import atomic_write_bytes, atomic_write_text, npz_bytes
from layerloom.core.graph import fmt_shape
from layerloom.data.arrays import Arrays
from layerloom.project import loom as projectfile


class Model:
    """A project's graph with its weights on a device: predict, evaluate, fit, save."""

    def __init__(self, project, weights=None, device=None):
        """project: a layerloom.Project; weights: {"node/name": array} (None: initialised as
        for training); device: as --device ('cpu', 'gpu', '0:1', part of a name)."""
        self.project, self.device = project, device
        self._weights = weights
        self._session = None
        # weights given for part of the graph (a layer added or changed since they were
        # trained) are a start for fit, not a model to predict with: the rest is random.
        # Found on the first predict or evaluate (None: not yet), not at construction.
        self._untrained = None

    # -- the compiled model, made on first use -------------------------------------------------
    @property
    def session(self):
        if self._session is None:
            from layerloom.train.session import Session
            self._session = Session(self.project, device=self.device,
                                    initial_weights=self._weights)
        return self._session

    @property
    def inputs(self):
        return self.project.graph.inputs()

    @property
    def outputs(self):
        return self.project.graph.outputs()

    def get_weights(self):
        return self.session.model.get_weights() if self._session else dict(self._weights or {})

    def _check_trained(self):
        if self._untrained is None:
            self._untrained = []
            if self._weights is not None:
                from layerloom.core.trained import fit_weights
                self._untrained = fit_weights(self.project.graph,
                                              self._weights).missing_layers()
        if self._untrained:
            names = ", ".join(self._untrained)
            raise DataError(f"the weights hold no trained weights for {names} (added or changed "
                            "since training, initialised at random here); train the model "
                            "first (fit, or layerloom --run)", "weights")

    def set_weights(self, weights):
        self._weights = dict(weights)
        self._untrained = None
        if self._session is not None:
            self._session.model.set_weights(self._weights)

    # -- fine-tuning ----------------------------------------------------------------------------
    def freeze(self, *names, before=None):
        """Freeze layers, Keras' `layer.trainable = False`: the named ones, or every layer
        `before` the named node (everything it depends on). Frozen weights keep their values
        in fit and a frozen BatchNormalization runs in inference mode. Returns the frozen
        layers' names. A later fit continues from the current weights (the optimizer starts
        afresh, as after Keras' compile)."""
        return self._set_trainable(False, names, before)

    def unfreeze(self, *names, before=None):
        """Make layers trainable again: the named ones, those `before` a node, or (no names)
        every layer. Returns the frozen layers' names."""
        g = self.project.graph
        return self._set_trainable(True, names or (() if before else tuple(g.frozen())), before)

    def fine_tune(self, cut=None, data=None, classes=None, target_shape=None):
        """A new Model for fine-tuning (layerloom.project.finetune): this one's layers up to
        and including `cut` (None: the node before the classifier head) frozen with their
        weights, the layers after it replaced by a new head for `data` (None: this project's
        dataset; a folder of images; a dataset section), sized to its classes (or `classes`,
        or a regression's `target_shape`), and a low learning rate. Train it with fit."""
        from layerloom.project.finetune import fine_tune_project
        weights = self.get_weights() if (self._session or self._weights) else None
        project, kept, _ = fine_tune_project(self.project, weights, cut, data, classes,
                                             target_shape)
        return Model(project, kept or None, self.device)

    def unfreeze_top(self, n):
        """Unfreeze the top `n` frozen layers with weights (a frozen BatchNormalization stays
        in inference mode) and the weightless ones after them. Returns the ids unfrozen."""
        from layerloom.core.finetune import top_frozen
        ids = top_frozen(self.project.graph, n)
        self._set_trainable(True, ids, None)
        return ids

    @property
    def frozen(self):
        """The names of the frozen layers, in file order."""
        return self.project.graph.frozen()

    def _set_trainable(self, trainable, names, before):
        g = self.project.graph
        ids = list(names)
        if before is not None:
            if before not in g.nodes:
                raise GraphError(f"no layer {quote(before)}", "before")
            ids += g.layers_before(before)
        for nid in ids:
            if nid not in g.nodes:
                raise GraphError(f"no layer {quote(nid)}; the layers are "
                                 f"{', '.join(list(g.nodes)[:20])}", "names")
        changed = [nid for nid in ids if g.nodes[nid].trainable != trainable]
        if changed and self._session is not None:  # compiled for the old flags
            self._weights, self._session = self.get_weights(), None
        for nid in changed:
            g.set_trainable(nid, trainable)
        return g.frozen()

    # -- use ------------------------------------------------------------------------------------
    def predict(self, x, batch_size=None):
        """Outputs for inputs x: an array (one Input) or {input id or array name: array}.
        Returns an array (one output) or {output id: array}; large inputs go in batches."""
        from layerloom.data.prepare import prepare_inputs
        self._check_trained()
        rows = prepare_inputs(self.project, self._named(x, self.inputs, "inputs"))
        out = self.session.model.predict(rows, batch_size or self.session.batch_size)
        return out[self.outputs[0]] if len(self.outputs) == 1 else out

    def evaluate(self, x=None, y=None, batch_size=None):
        """{"loss": ..., metric: ...} on (x, y), or on the project's test split when both are
        None."""
        from layerloom.train.fit import evaluate
        self._check_trained()
        data = self._data(x, y, test=x is None and y is None)
        if x is None and y is None:
            if data.x_test is None:
                raise DataError("the project's dataset has no test split; give x and y",
                                "dataset.split")
            xs, ys = data.x_test, data.y_test
        else:
            xs, ys = data.x, data.y
        s = self.session
        return evaluate(s.trainer, xs, ys, batch_size or s.batch_size)

    def fit(self, x=None, y=None, epochs=None, batch_size=None, validation_split=None,
            callbacks=(), verbose=True):
        """Train on (x, y), or on the project's dataset when both are None, from the current
        weights (a second fit continues the first). Returns the history dict (its "epochs" list
        holds each epoch's logs)."""
        t = self.project.training
        kept = t.get("validation_split", 0.0)
        if validation_split is not None:  # this call's, as Keras' fit takes it
            t["validation_split"] = float(validation_split)
        try:
            return self._fit(x, y, epochs, batch_size, callbacks, verbose)
        finally:
            t["validation_split"] = kept

    def _fit(self, x, y, epochs, batch_size, callbacks, verbose):
        from layerloom.train.session import Session
        t = self.project.training
        if batch_size is not None and self._session is not None and \
                int(batch_size) != self._session.batch_size:
            self._weights, self._session = self.get_weights(), None
        if self._session is None:
            self._session = Session(self.project, device=self.device, batch_size=batch_size,
                                    initial_weights=self._weights)
        data = self._data(x, y, test=x is None and y is None, fit=True)
        extra = list(callbacks)
        if verbose:
            from layerloom.train.progress import ConsoleProgress
            extra.append(ConsoleProgress(int(epochs or t["epochs"])))
        history = self._session.fit(data, epochs=epochs, callbacks=extra)
        self._untrained = []  # every layer trained now
        ds = dict(self.project.dataset or {})
        if data.fitted:  # predict and save now prepare data as this training did
            ds["fitted"] = data.fitted
            self.project.dataset = ds
        return history

    def summary(self, print_fn=print, show_trainable=None):
        """Keras' model.summary(): layer, output shape, parameters, inputs, and the trainable
        and non-trainable counts; show_trainable (by default: when a layer is frozen) adds
        Keras' "Trainable" column (Y, or N for a frozen layer). Returns the text."""
        g = self.project.graph
        a = g.analysis()
        show = bool(g.frozen()) if show_trainable is None else show_trainable
        rows = [("Layer (type)", "Output shape", "Param #", "Connected to")
                + (("Trainable",) if show else ())]
        for nid in g.topo_order():
            count = a.params.get(nid)
            rows.append((f"{nid} ({g.nodes[nid].type})",
                         ", ".join(fmt_shape(s) for s in a.shapes.get(nid, [])) or "?",
                         f"{count.total if count else 0:,}",
                         ", ".join(f"{e.src}[{e.src_port}]" for e in g.in_edges(nid)))
                        + (("Y" if g.nodes[nid].trainable else "N",) if show else ()))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        line = "  ".join("-" * w for w in widths)
        text = [line] + ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows[:1]] + \
            [line] + ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows[1:]]
        total = a.total_params()
        text += [line, f"Total params: {total.total:,}", f"Trainable params: {total.trainable:,}",
                 f"Non-trainable params: {total.total - total.trainable:,}"]
        text = "\n".join(text)
        if print_fn is not None:
            print_fn(text)
        return text

    def save(self, path):
        """The project at `path` with its weights beside it (PATH.weights.npz, the project's
        `weights` key), each written atomically."""
        folder = os.path.dirname(os.path.abspath(path))
        wname = os.path.basename(path) + ".weights.npz"
        d = projectfile.trained_dict(self.project, folder, (self.project.dataset or {}).get(
            "fitted"), weights=wname)
        atomic_write_bytes(os.path.join(folder, wname), npz_bytes(self.get_weights()))
        import json
        atomic_write_text(path, json.dumps(d, indent=2) + "\n")

    def export(self, path, format=None):
        """Write the model for another tool: "onnx" (docs/onnx.md), "keras" (a .keras model),
        "keras-code" or "pytorch-code" (a training script with the weights beside it); by
        default from path's extension. The fitted input normalisation is part of each.
        Returns the format written (layerloom.interop lists them)."""
        from layerloom import interop
        return interop.export(self.project, self.get_weights() or
                              self.session.model.get_weights(), path, format)

    # -- helpers --------------------------------------------------------------------------------
    def _named(self, a, nodes, what):
        """{name: array} from an array (one node) or a dict by node id or array name."""
        from layerloom.data.prepare import named_arrays
        return named_arrays(self.project, a, nodes, what)

    def _data(self, x, y, test=False, fit=False):
        """The project's data (x and y None) or (x, y), prepared as training prepares data."""
        from layerloom.data.prepare import input_target, prepare_data
        if x is None and y is None:
            return prepare_data(self.project)
        targets = (self.project.dataset or {}).get("targets") or {}
        own = {o: input_target(targets.get(o)) for o in self.outputs}  # trained towards an Input
        own = {o: i for o, i in own.items() if i is not None}
        if own and y is not None:
            o, i = next(iter(own.items()))
            raise DataError(f"the output {o!r} is trained towards Input {i!r} (dataset.targets): "
                            "give x alone", "y")
        if x is None or (y is None and len(own) < len(self.outputs)):
            raise DataError("give both x and y, or neither (the project's own data)", "x, y")
        arrays = Arrays({**self._named(x, self.inputs, "inputs"),
                         **(self._named(y, self.outputs, "targets") if y is not None else {})})
        if not fit:  # evaluating: the statistics of training, not of this data
            return _with_saved_normalization(self.project, arrays)
        return prepare_data(self.project, arrays, given=True)


def _with_saved_normalization(project, arrays):
    from layerloom.data.prepare import default_normalization, prepare_data
    d = project.dataset or {}
    kind = d.get("normalize") or default_normalization(d)
    if kind != "none" and not (d.get("fitted") or {}).get("normalization"):
        raise DataError("the project has no normalisation statistics fitted by training; "
                        "use the trained.loom that training wrote", "dataset.fitted")
    return prepare_data(project, arrays, given=True)


def load(path, device=None):
    """A model from a project file: its weights (the `weights` key, e.g. a trained.loom from
    `layerloom --run`) or initialised ones."""
    from layerloom.train.session import load_weights
    project = projectfile.load(path)
    weights = load_weights(project.resolve(project.weights)) if project.weights else None
    return Model(project, weights, device)


def devices():
    """The OpenCL devices, each as --list-devices describes it."""
    from layerloom.backend.runtime import describe_device, list_devices
    return [describe_device(plat, dev) for _, _, plat, dev in list_devices()]


__all__ = ["Model", "load", "devices", "LayerloomError"]
