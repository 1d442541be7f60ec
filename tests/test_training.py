"""The training loop as a plain function: callbacks, cooperative stop, validation split."""
import math

import numpy as np

from engine import project as projectfile
from engine.run import Session, prepare_data
from engine.training import Callback, evaluate

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
