"""From a loaded project to a trained model: the one path shared by `layerloom --run` and the
editor's training dock."""
from layerloom.train import schedules, state as trainstate
from layerloom.core.fileio import load_weights  # noqa: F401 (read from here by callers)
from layerloom.train.losses import build_losses
from layerloom.train.model import Model
from layerloom.train.optimizers import OPTIMIZERS
from layerloom.backend.runtime import Runtime
from layerloom.train.callbacks import ModelCheckpoint, build as build_callbacks
from layerloom.train.fit import Trainer, fit
from layerloom.core import host
from layerloom.core.errors import ProjectError, quote


def fused_outputs(graph, losses):
    """Outputs whose final activation the loss can absorb (softmax+CE, sigmoid+BCE)."""
    out = set()
    for o, loss in losses.items():
        node = graph.nodes[o]
        ap = node.layer.activation_param
        if ap and loss.can_fuse(node.params[ap]):
            out.add(o)
    return out


def adapt_layers(model, graph, x):
    """Keras' adapt, before the first epoch: a layer that adapts to data (one declaring
    adapt(params, rows) and adapted(weights), Normalization) and was not adapted yet (no
    imported or trained statistics) takes them from the training rows of the Input it reads."""
    current = None
    for nid in graph.topo_order():
        node = graph.nodes[nid]
        if not hasattr(node.layer, "adapt"):
            continue
        current = current or model.get_weights()
        if node.layer.adapted({k.rsplit("/", 1)[1]: v for k, v in current.items()
                               if k.rsplit("/", 1)[0] == nid}):
            continue
        src = graph.in_edges(nid)[0].src
        if not graph.nodes[src].layer.is_input:
            raise ProjectError(f"{node.type} layer {quote(nid)} was never adapted: it adapts to "
                               "the training rows right after an Input; elsewhere it needs its "
                               "statistics (imported, or trained before)", f"graph.nodes.{nid}")
        model.set_weights({f"{nid}/{k}": v for k, v in node.layer.adapt(node.params,
                                                                         x[src]).items()})


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
        # host layers (text) run in numpy before it: the device model starts from their
        # outputs (core/host.py)
        self.graph = host.device_graph(project.graph)
        self.model = Model(self.graph, self.runtime, self.batch_size, seed=self.seed,
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
        (engine/train/state.py) this run continues, to `epochs` in all."""
        t = self.project.training
        epochs = int(epochs or t["epochs"])
        if resume is not None:
            resume.check(self.project, self.batch_size, self.seed, epochs)
        adapt_layers(self.model, self.graph, data.x)
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
        """Where the last fit left training, to resume it exactly (engine/train/state.py)."""
        return trainstate.capture(self.trainer, self.project_callbacks, self.trainer.position,
                                  trainstate.fingerprint(self.project, self.batch_size,
                                                         self.seed))
