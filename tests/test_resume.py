"""A run interrupted and resumed equals one that was not, bit for bit on the same device (Keras'
BackupAndRestore promise, checked the way its tests do: interrupt, resume, compare): weights,
every epoch's loss and metrics, the test figures. Interrupted mid-epoch and at an epoch's end,
with shuffling, dropout, Adam, Nadam, a schedule, early stopping, a plateau and checkpoints."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from layerloom.project import loom as projectfile
from layerloom.train.session import Session
from layerloom.data.prepare import prepare_data
from layerloom.train.state import TrainingState

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "assets", "examples")


def same(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def comparable(history):
    """The epochs' figures without their timing."""
    return [{k: v for k, v in e.items() if k != "seconds"} for e in history["epochs"]]


def round_trip(state, tmp_path):
    path = tmp_path / "state.npz"
    path.write_bytes(state.to_bytes())
    return TrainingState.load(str(path))


CALLBACKS = [{"name": "early_stopping", "monitor": "val_loss", "patience": 50,
              "restore_best_weights": True},
             {"name": "reduce_lr_on_plateau", "monitor": "loss", "patience": 0, "factor": 0.9,
              "min_delta": 10.0},
             {"name": "terminate_on_nan"}]
CASES = {
    "spirals, adam, shuffled": ("spirals", {}),
    "multitask, dropout, two outputs": ("multitask", {}),
    "spirals, nadam, callbacks": ("spirals", {"optimizer": {"name": "nadam", "params": {}},
                                              "callbacks": CALLBACKS}),
    "spirals, sgd, cosine schedule": ("spirals", {"optimizer": {"name": "sgd", "params": {
        "learning_rate": {"schedule": "cosine_decay", "initial_learning_rate": 0.1,
                          "decay_steps": 200, "alpha": 0.0, "warmup_target": 0.0,
                          "warmup_steps": 0}, "momentum": 0.9, "nesterov": False}}}),
}


@pytest.mark.slow
@pytest.mark.parametrize("stop_after", [37, 150, "epoch"], ids=["mid-epoch-1", "mid-epoch-3",
                                                                  "epoch-end"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_interrupted_and_resumed_equals_uninterrupted(rt, tmp_path, case, stop_after):
    name, training = CASES[case]
    with open(os.path.join(EXAMPLES, f"{name}.loom"), encoding="utf-8") as f:
        d = json.load(f)
    d["training"].update(training, epochs=5)
    proj = projectfile.loads(json.dumps(d), path=os.path.join(EXAMPLES, f"{name}.loom"))
    data = prepare_data(proj)
    whole = Session(proj, runtime=rt)
    h_whole = whole.fit(data)
    first = Session(proj, runtime=rt)
    if stop_after == "epoch":
        first.fit(data, epochs=2)
    else:
        calls = {"n": 0}

        def stop():
            calls["n"] += 1
            return calls["n"] >= stop_after
        assert first.fit(data, should_stop=stop)["stopped"]
    state = round_trip(first.training_state(), tmp_path)
    second = Session(proj, runtime=rt, initial_weights=first.model.get_weights())
    h_resumed = second.fit(data, resume=state)
    assert same(second.model.get_weights(), whole.model.get_weights())
    assert comparable(h_resumed) == comparable(h_whole)
    assert h_resumed.get("test") == h_whole.get("test")


def layerloom(*args, **kw):
    return subprocess.run([sys.executable, "-m", "layerloom.app", *args], capture_output=True, text=True,
                          timeout=600, **kw)


def outputs(folder):
    with np.load(folder / "weights.npz", allow_pickle=False) as z:
        w = {k: z[k] for k in z.files}
    with open(folder / "history.json") as f:
        return w, json.load(f)


@pytest.mark.slow
def test_the_command_line_resumes_a_run_stopped_by_sigterm(tmp_path):
    """`--run` stopped by SIGTERM after some batches, then `--run --resume DIR`: the same
    weights and epochs (numbered on, not from 1 again) as one run of all the epochs."""
    path = os.path.join(EXAMPLES, "multitask.loom")
    r = layerloom("--run", path, "--out", str(tmp_path / "whole"))
    assert r.returncode == 0, r.stderr
    p = subprocess.Popen([sys.executable, "-m", "layerloom.app", "--run", path, "--out",
                          str(tmp_path / "part")], stdout=subprocess.PIPE, text=True)
    for line in p.stdout:
        if line.startswith("Epoch  3/"):
            break
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=120)
    assert p.returncode == 143
    r = layerloom("--run", path, "--resume", str(tmp_path / "part"))
    assert r.returncode == 0, r.stderr
    assert "Resuming after epoch " in r.stdout
    (w1, h1), (w2, h2) = outputs(tmp_path / "whole"), outputs(tmp_path / "part")
    assert same(w1, w2) and h1["test"] == h2["test"]
    assert [e["epoch"] for e in h2["epochs"]] == list(range(1, 21))
    assert comparable(h1) == comparable(h2)


@pytest.mark.slow
def test_a_checkpoint_resumes_exactly(tmp_path):
    """model_checkpoint writes the training state beside each weights file: resuming from
    epoch 2's checkpoint gives the uninterrupted run's weights."""
    with open(os.path.join(EXAMPLES, "spirals.loom")) as f:
        d = json.load(f)
    d["training"]["epochs"] = 4
    d["training"]["callbacks"] = [{"name": "model_checkpoint", "filepath": "ck/e{epoch}.npz",
                                   "monitor": "loss"}]
    path = tmp_path / "p.loom"
    path.write_text(json.dumps(d))
    assert layerloom("--run", str(path), "--out", str(tmp_path / "a")).returncode == 0
    assert sorted(os.listdir(tmp_path / "a" / "ck")) == sorted(
        [f"e{i}.npz" for i in range(1, 5)] + [f"e{i}.state.npz" for i in range(1, 5)])
    r = layerloom("--run", str(path), "--resume", str(tmp_path / "a" / "ck" / "e2.npz"),
                  "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    assert same(outputs(tmp_path / "a")[0], outputs(tmp_path / "b")[0])


@pytest.mark.slow
def test_resuming_another_project_or_mismatched_weights_is_refused(tmp_path):
    path = os.path.join(EXAMPLES, "sine.loom")
    assert layerloom("--run", path, "--out", str(tmp_path / "a"), "--epochs", "2").returncode == 0
    r = layerloom("--run", os.path.join(EXAMPLES, "spirals.loom"), "--resume",
                  str(tmp_path / "a"))
    assert r.returncode == 2 and "differ from the run that wrote this training state" in r.stderr
    r = layerloom("--run", path, "--resume", str(tmp_path / "a"), "--epochs", "2")
    assert r.returncode == 2 and "already trained 2 epoch(s)" in r.stderr
    with np.load(tmp_path / "a" / "weights.npz") as z:
        w = {k: z[k] + 1 for k in z.files}
    np.savez(tmp_path / "a" / "weights.npz", **w)
    r = layerloom("--run", path, "--resume", str(tmp_path / "a"))
    assert r.returncode == 2 and "are not the ones it was saved with" in r.stderr
    r = layerloom("--run", path, "--resume", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "no training state" in r.stderr
    assert "Traceback" not in r.stderr
