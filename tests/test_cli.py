"""End to end through `layerloom --run`: the examples train, outputs are written, and
failures give exit codes 1/2 with one line and no traceback."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "assets", "examples")


def layerloom(*args):
    return subprocess.run([sys.executable, "-m", "layerloom.app", *args], capture_output=True, text=True,
                          timeout=600)


def run_example(name, out, *extra):
    r = layerloom("--run", os.path.join(EXAMPLES, name), "--out", str(out), *extra)
    assert r.returncode == 0, r.stderr
    with open(out / "history.json") as f:
        return r, json.load(f)


@pytest.mark.slow
def test_spirals_reaches_95_percent(tmp_path):
    r, h = run_example("spirals.loom", tmp_path)
    last = h["epochs"][-1]
    assert last["accuracy"] >= 0.95 and last["val_accuracy"] >= 0.95
    assert h["test"]["accuracy"] >= 0.95
    for rec in h["epochs"]:
        assert {"epoch", "seconds", "loss", "accuracy", "val_loss", "val_accuracy"} <= set(rec)
    lines = r.stdout.splitlines()
    assert sum(l.startswith("Epoch ") for l in lines) == len(h["epochs"]) == 40
    assert any(l.startswith("Test: loss") for l in lines)
    with np.load(tmp_path / "weights.npz", allow_pickle=False) as z:
        assert set(z.files) == {f"{n}/{w}" for n in ("hidden_1", "hidden_2", "hidden_3", "class")
                                for w in ("kernel", "bias")}
        assert z["hidden_1/kernel"].shape == (2, 64)


@pytest.mark.slow
def test_two_output_example_lowers_both_losses(tmp_path):
    _, h = run_example("multitask.loom", tmp_path)
    first, last = h["epochs"][0], h["epochs"][-1]
    for key in ("inside_loss", "value_loss", "val_inside_loss", "val_value_loss"):
        assert last[key] < 0.5 * first[key], key
    assert last["inside_accuracy"] > 0.9
    assert np.isclose(last["loss"], last["inside_loss"] + 0.5 * last["value_loss"], rtol=1e-6)


@pytest.mark.slow
def test_sine_regression_and_reproducible_runs(tmp_path):
    _, a = run_example("sine.loom", tmp_path / "a", "--epochs", "3", "--seed", "4")
    _, b = run_example("sine.loom", tmp_path / "b", "--epochs", "3", "--seed", "4")
    _, c = run_example("sine.loom", tmp_path / "c", "--epochs", "3", "--seed", "5")
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h["epochs"]]
    assert strip(a) == strip(b) and strip(a) != strip(c)
    assert len(a["epochs"]) == 3 and a["test"]["loss"] < 0.1
    wa, wb = (np.load(tmp_path / d / "weights.npz") for d in "ab")
    assert all(np.array_equal(wa[k], wb[k]) for k in wa.files)


@pytest.mark.slow
def test_weights_file_in_project_is_loaded(tmp_path):
    _, h = run_example("sine.loom", tmp_path / "first")
    with open(os.path.join(EXAMPLES, "sine.loom")) as f:
        d = json.load(f)
    d["weights"] = str(tmp_path / "first" / "weights.npz")
    (tmp_path / "again.loom").write_text(json.dumps(d))
    r = layerloom("--run", str(tmp_path / "again.loom"), "--out", str(tmp_path / "second"),
                  "--epochs", "1")
    assert r.returncode == 0, r.stderr
    h2 = json.load(open(tmp_path / "second" / "history.json"))
    # starting from trained weights, the first epoch is far better than a fresh start's
    assert h2["epochs"][0]["loss"] < h["epochs"][0]["loss"] / 3
    # and in process: the model starts exactly from the file's weights
    from layerloom.project import loom as projectfile
    from layerloom.train.session import Session, load_weights
    proj = projectfile.load(str(tmp_path / "again.loom"))
    saved = load_weights(proj.resolve(proj.weights))
    got = Session(proj, initial_weights=saved).model.get_weights()
    assert set(got) == set(saved) and all(np.array_equal(got[k], saved[k]) for k in got)


def test_divergence_is_exit_code_1(tmp_path):
    with open(os.path.join(EXAMPLES, "sine.loom")) as f:
        d = json.load(f)
    d["training"]["optimizer"]["params"]["learning_rate"] = 1e30
    (tmp_path / "hot.loom").write_text(json.dumps(d))
    r = layerloom("--run", str(tmp_path / "hot.loom"), "--out", str(tmp_path / "o"))
    assert r.returncode == 1
    assert "the loss became" in r.stderr and "Traceback" not in r.stderr


def test_list_devices_marks_the_default():
    r = layerloom("--list-devices")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    marked = [l for l in lines if l.startswith("* ")]
    assert len(marked) == 2 and marked[1].startswith("* = used by default")
    assert marked[0].startswith("* 0:") or marked[0][2].isdigit()
    # each device is followed by why it is, or is not, the default
    why = lines[lines.index(marked[0]) + 1]
    assert why.startswith("        the default: the ") and "that works (vector width" in why


def test_editor_refuses_bad_projects_before_opening(tmp_path):
    """`layerloom PROJECT` opens the editor; a missing or invalid file is refused first, with
    the same message and exit code as --run and no window."""
    r = layerloom(str(tmp_path / "missing.loom"))
    assert r.returncode == 2 and "missing.loom: no such file" in r.stderr
    (tmp_path / "bad.loom").write_text('{"format": "layerloom-project", "version": 99}')
    r = layerloom(str(tmp_path / "bad.loom"))
    assert r.returncode == 2 and "written by a newer Layerloom" in r.stderr


@pytest.mark.parametrize("command,word", [("predict", "prediction"), ("evaluate", "evaluation"),
                                          ("import_onnx", "import")])
def test_an_unexpected_failure_is_named_by_its_command_not_training(command, word, monkeypatch,
                                                                     capsys):
    """Issue 26: a failed --import said 'training failed: ValueError: ...'."""
    from layerloom.cli import main as cli, use_model as use

    def broken(args, out=None):
        raise ValueError("input operand has more dimensions")
    monkeypatch.setattr(use, command, broken)
    flag = "--import" if command == "import_onnx" else f"--{command}"
    assert cli.main([flag, "x.loom", "--input", "a.npy", "--to", "b.loom"]) == 1
    err = capsys.readouterr().err
    assert f"layerloom: error: {word} failed: ValueError: input operand" in err
    assert "training" not in err


def test_a_driver_that_drops_the_cpus_avx512_is_said_with_the_fix(monkeypatch, capsys,
                                                                   tmp_path):
    """On an AMD Zen 4 with only the bundled PoCL 3.0 (its compiler targets znver3, 8-wide),
    the example CNN trained at PyTorch CPU's speed, against 0.58x on Debian's PoCL 3.1: a run
    there says so and how to get the AVX-512 one, beside the device it names."""
    from layerloom.backend.capabilities import Capabilities
    from layerloom.cli import main as cli
    narrow = Capabilities(widths=(4, 8), refused={16: "changes the ABI"}, target="znver3",
                          native_width=16)
    monkeypatch.setattr("layerloom.backend.runtime._probe_capabilities", lambda dev: narrow)
    assert cli.main(["--run", os.path.join(EXAMPLES, "spirals.loom"), "--epochs", "1",
                     "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(out) if line.startswith("Layerloom: training"))
    assert out[at + 1].startswith("Note: this CPU has AVX-512, but this driver's compiler "
                                  "targets znver3 (8-wide kernels)")
    assert "apt-get install pocl-opencl-icd" in out[at + 1]
