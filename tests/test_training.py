"""The training loop as a plain function: callbacks, cooperative stop, validation split."""
import math
import os

import numpy as np

from layerloom.project import loom as projectfile
from layerloom.train.session import Session
from layerloom.data.prepare import prepare_data
from layerloom.train.fit import Callback, evaluate

PROJECT = {
    "format": "layerloom-project", "version": 1,
    "graph": {"nodes": [{"id": "in", "type": "Input", "params": {"shape": [2]}},
                        {"id": "h", "type": "Dense", "params": {"units": 16, "activation": "relu"}},
                        {"id": "drop", "type": "Dropout", "params": {"rate": 0.2}},
                        {"id": "out", "type": "Dense", "params": {"units": 2,
                                                                  "activation": "softmax"}}],
              "edges": [{"from": ["in", 0], "to": ["h", 0]}, {"from": ["h", 0], "to": ["drop", 0]},
                        {"from": ["drop", 0], "to": ["out", 0]}]},
    "dataset": {"source": "synthetic", "name": "moons", "params": {"samples": 500}},
    "training": {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"],
                 "epochs": 5, "batch_size": 50, "validation_split": 0.2,
                 "optimizer": {"name": "sgd", "params": {"learning_rate": 0.1, "momentum": 0.9}}},
}


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_train_begin(self, info):
        self.events.append(("begin", info))

    def on_batch_end(self, epoch, batch, num_batches, logs):
        self.events.append(("batch", epoch, batch, num_batches, logs))

    def on_epoch_end(self, epoch, logs):
        self.events.append(("epoch", epoch, logs))


def test_callbacks_validation_split_and_learning(rt):
    import json
    proj = projectfile.loads(json.dumps(PROJECT))
    data = prepare_data(proj)
    s = Session(proj, runtime=rt)
    rec = Recorder()
    h = s.fit(data, callbacks=[rec])
    begin = rec.events[0]
    assert begin[0] == "begin" and begin[1]["samples"] == 400 and begin[1]["batches"] == 8
    batches = [e for e in rec.events if e[0] == "batch"]
    assert len(batches) == 5 * 8 and batches[-1][4] is not None  # logs read at epoch end
    assert [e[1] for e in rec.events if e[0] == "epoch"] == [1, 2, 3, 4, 5]
    assert h["epochs"][-1]["val_accuracy"] > 0.8 and "test" in h
    # evaluate agrees with a numpy computation on predictions
    logs = evaluate(s.trainer, data.x_test, data.y_test, 50)
    pred = s.model.predict(data.x_test)["out"]
    acc = (pred.argmax(1) == data.y_test["out"]).mean()
    assert math.isclose(logs["accuracy"], acc, rel_tol=1e-6)
    ce = s.losses["out"].reference(pred, data.y_test["out"]).mean()
    assert math.isclose(logs["loss"], ce, rel_tol=1e-4)


def test_cooperative_stop_leaves_consistent_weights(rt):
    import json
    proj = projectfile.loads(json.dumps(PROJECT))
    data = prepare_data(proj)
    s = Session(proj, runtime=rt)
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] >= 3
    h = s.fit(data, should_stop=should_stop)
    assert h["stopped"] and len(h["epochs"]) == 1 and "test" not in h
    w = s.model.get_weights()
    assert all(np.isfinite(v).all() for v in w.values())
    # training can go on from there
    h2 = s.fit(data, epochs=1)
    assert not h2["stopped"]


def _session(rt, **training):
    import json
    d = json.loads(json.dumps(PROJECT))
    d["training"].update(training)
    proj = projectfile.loads(json.dumps(d))
    return Session(proj, runtime=rt), prepare_data(proj)


def test_a_registered_metric_is_trained_with_and_logged_under_its_name(rt, monkeypatch):
    """Issue 27, item 3: a MetricKind registered from outside the package is read by the
    project file, computed in fit and evaluate and logged under the name the project wrote."""
    from layerloom.train import metrics
    for name in ("KINDS", "ALIASES"):
        monkeypatch.setattr(metrics, name, dict(getattr(metrics, name)))
    monkeypatch.setattr(metrics, "NAMES", metrics.NAMES)
    metrics.register(metrics.MetricKind(
        "error_rate", "Share of wrong class indices.", "acc_sparse",
        lambda m, p, t: 1 - (p.argmax(-1) == t).mean(), aliases=("err",),
        finalize=lambda m, sums, rows: 1 - sums[0] / max(rows, 1),
        targets=metrics.CLASS_INDICES, instead="accuracy"))
    s, data = _session(rt, epochs=2, metrics=["accuracy", "err"])
    last = s.fit(data)["epochs"][-1]
    assert math.isclose(last["err"], 1 - last["accuracy"], abs_tol=1e-6)
    assert math.isclose(last["val_err"], 1 - last["val_accuracy"], abs_tol=1e-6)
    logs = evaluate(s.trainer, data.x_test, data.y_test, 50)
    pred = s.model.predict(data.x_test)["out"]
    assert math.isclose(logs["err"], 1 - (pred.argmax(1) == data.y_test["out"]).mean(),
                        abs_tol=1e-6)


def test_early_stopping_restores_best_weights(rt, tmp_path):
    s, data = _session(rt, epochs=30, callbacks=[{"name": "early_stopping", "monitor": "val_loss",
                                                   "patience": 2, "restore_best_weights": True}],
                       optimizer={"name": "sgd", "params": {"learning_rate": 0.5,
                                                            "momentum": 0.9}})
    seen = {}

    class Keep(Callback):
        def on_epoch_end(self, epoch, logs):
            seen[epoch] = s.model.get_weights()
    h = s.fit(data, callbacks=[Keep()])
    es = h["early_stopping"]
    assert es["stopped_epoch"] == len(h["epochs"]) < 30
    losses = [e["val_loss"] for e in h["epochs"]]
    assert es["best_epoch"] == 1 + int(np.argmin(losses))
    assert es["stopped_epoch"] - es["best_epoch"] == 2
    now = s.model.get_weights()
    assert all(np.array_equal(now[k], seen[es["best_epoch"]][k]) for k in now)


def test_checkpoint_and_reduce_lr(rt, tmp_path):
    s, data = _session(rt, epochs=6, callbacks=[
        {"name": "model_checkpoint", "filepath": "best.npz", "monitor": "val_accuracy",
         "save_best_only": True},
        {"name": "model_checkpoint", "filepath": "e{epoch}.npz", "monitor": "loss"},
        {"name": "reduce_lr_on_plateau", "monitor": "loss", "patience": 0, "factor": 0.5,
         "min_delta": 10.0}])
    s.fit(data, out_dir=str(tmp_path))
    names = ["best"] + [f"e{i}" for i in range(1, 7)]  # each with the training state beside
    assert sorted(os.listdir(tmp_path)) == sorted([f"{n}.npz" for n in names]
                                                  + [f"{n}.state.npz" for n in names])
    # min_delta 10 means no epoch counts as an improvement after the first: halve every epoch
    assert np.isclose(s.optimizer.config["learning_rate"], 0.1 * 0.5 ** 5)
    with np.load(tmp_path / "e6.npz", allow_pickle=False) as z:
        now = s.model.get_weights()
        assert all(np.array_equal(z[k], now[k]) for k in now)


def test_callback_monitor_must_be_logged(rt):
    import pytest
    from layerloom.core.errors import ParamError
    s, data = _session(rt, validation_split=0.0,
                       callbacks=[{"name": "early_stopping", "monitor": "val_loss"}])
    with pytest.raises(ParamError, match=r"training.callbacks\[0\].monitor: 'val_loss' is not "
                                         r"logged in this run; logged: loss, accuracy"):
        s.fit(data)


def test_terminate_on_nan_stops_at_the_batch(rt):
    s, data = _session(rt, epochs=3, callbacks=[{"name": "terminate_on_nan"}],
                       optimizer={"name": "sgd", "params": {"learning_rate": 1e30}})
    initial = s.model.get_weights()
    h = s.fit(data)
    assert "the loss became" in h["stopped_reason"] and len(h["epochs"]) == 1
    # the weights kept are the last finite ones (here the initial weights: epoch 1 diverged),
    # not the NaN ones the diverging updates left
    assert h["weights_from_epoch"] == 0
    now = s.model.get_weights()
    assert all(np.array_equal(now[k], initial[k]) for k in now)


def test_max_mode_monitor_tracks_improvement():
    from layerloom.train.callbacks import EarlyStopping
    cb = EarlyStopping(monitor="val_accuracy", mode="auto", min_delta=0.0, patience=1,
                       restore_best_weights=False, start_from_epoch=0)

    class T:
        stop_training = False
    cb.trainer, cb.wait, cb.best_weights, cb.stopped_epoch, cb.best_epoch = T(), 0, None, 0, 0
    for epoch, acc in enumerate([0.5, 0.6, 0.7, 0.65], 1):
        cb.on_epoch_end(epoch, {"val_accuracy": acc})
    assert cb.best == 0.7 and cb.best_epoch == 3 and cb.stopped_epoch == 4


def test_the_gpu_kernels_train_like_the_cpu_kernels(rt, monkeypatch):
    """The kernels a GPU gets (the local-memory GEMM, one element per work-item) run here on the
    CPU device: a small CNN trains to the same losses and weights as with the CPU kernels."""
    import json

    import layerloom.train.model
    from layerloom.backend.ops import Ops
    from layerloom.data.prepare import RunData
    chain = [("in", "Input", {"shape": [9, 9, 1]}),
             ("c1", "Conv2D", {"filters": 8, "kernel_size": [3, 3], "activation": "relu"}),
             ("p1", "MaxPooling2D", {"pool_size": [2, 2]}),
             ("c2", "Conv2D", {"filters": 16, "kernel_size": [2, 2], "activation": "tanh"}),
             ("f", "Flatten", {}), ("d", "Dense", {"units": 20, "activation": "relu"}),
             ("drop", "Dropout", {"rate": 0.25}),
             ("out", "Dense", {"units": 3, "activation": "softmax"})]
    proj = projectfile.loads(json.dumps({
        "format": "layerloom-project", "version": 1,
        "graph": {"nodes": [{"id": i, "type": t, "params": p} for i, t, p in chain],
                  "edges": [{"from": [a[0], 0], "to": [b[0], 0]}
                            for a, b in zip(chain, chain[1:])]},
        "dataset": {"source": "synthetic", "name": "moons"},
        "training": {"loss": "sparse_categorical_crossentropy", "epochs": 3, "batch_size": 16,
                     "optimizer": {"name": "adam", "params": {"learning_rate": 0.01}}}}))
    rng = np.random.default_rng(3)
    x = rng.normal(size=(70, 9, 9, 1)).astype(np.float32)
    y = (x[:, :4].sum((1, 2, 3)) > 0).astype(np.int64) + (x[:, 5:].mean((1, 2, 3)) > 0.2)
    data = RunData({"in": x}, {"out": y})

    def train():
        s = Session(proj, runtime=rt)
        return s, [e["loss"] for e in s.fit(data)["epochs"]]

    cpu_session, cpu_losses = train()

    class GpuFormOps(Ops):
        def __init__(self, runtime):
            super().__init__(runtime, ew=1)
            self.gemm_path, self.local_tile = "local", (8, 2)

    monkeypatch.setattr(layerloom.train.model, "Ops", GpuFormOps)
    gpu_session, gpu_losses = train()
    assert gpu_session.model.ops.gemm_path == "local" and gpu_session.model.ops.ew == 1
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-4)
    assert cpu_losses[-1] < cpu_losses[0]
    for k, w in cpu_session.model.get_weights().items():
        np.testing.assert_allclose(gpu_session.model.get_weights()[k], w, rtol=1e-3, atol=1e-5)
