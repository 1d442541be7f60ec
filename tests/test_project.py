"""Project file: round trip, atomic saves, and every kind of bad file giving one clear message
with its place and exit code 2 through the CLI, with nothing written or changed."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from layerloom.project import loom as projectfile
from layerloom.core.errors import ProjectError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "assets", "examples")


def spirals():
    with open(os.path.join(EXAMPLES, "spirals.loom"), encoding="utf-8") as f:
        return json.load(f)


def layerloom(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "layerloom.app", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.mark.parametrize("name", sorted(os.listdir(EXAMPLES)))
def test_examples_round_trip(name, tmp_path):
    if not name.endswith(".loom"):
        return
    p = projectfile.load(os.path.join(EXAMPLES, name))
    out = tmp_path / name
    projectfile.save(p, str(out))
    again = projectfile.load(str(out))
    assert projectfile.to_dict(again) == projectfile.to_dict(p)
    with open(os.path.join(EXAMPLES, name), encoding="utf-8") as f:
        original = json.load(f)
    saved = projectfile.to_dict(again)
    assert saved["graph"]["edges"] == original["graph"]["edges"]
    assert [n["id"] for n in saved["graph"]["nodes"]] == \
        [n["id"] for n in original["graph"]["nodes"]]
    assert saved["ui"] == original["ui"]


def test_save_is_atomic_and_keeps_a_backup(tmp_path, monkeypatch):
    path = str(tmp_path / "p.loom")
    p = projectfile.loads(json.dumps(spirals()))
    projectfile.save(p, path)
    first = open(path, "rb").read()
    p.graph.set_params("hidden_1", units=7)
    projectfile.save(p, path)
    assert open(path + ".bak", "rb").read() == first
    second = open(path, "rb").read()
    assert b'"units": 7' in second

    def boom(*a):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    p.graph.set_params("hidden_1", units=9)
    with pytest.raises(OSError):
        projectfile.save(p, path)
    assert open(path, "rb").read() == second  # the file on disk is untouched
    assert sorted(os.listdir(tmp_path)) == ["p.loom", "p.loom.bak"]  # no temp file left


def _mutate(fn):
    d = spirals()
    fn(d)
    return json.dumps(d)


def _nodes(d):
    return d["graph"]["nodes"]


BAD = {
    "truncated": (lambda: json.dumps(spirals())[:300], "not valid JSON (truncated or damaged?)"),
    "not-utf8": (lambda: b"\xff\xfe{}", "not UTF-8 text"),
    "not-a-project": (lambda: _mutate(lambda d: d.update(format="something-else")),
                      "not a Layerloom project"),
    "newer-version": (lambda: _mutate(lambda d: d.update(version=99)),
                      "version: written by a newer Layerloom (format version 99"),
    "unknown-layer": (lambda: _mutate(lambda d: _nodes(d)[1].update(type="Dens")),
                      "graph.nodes[1].type: unknown layer type 'Dens'; did you mean 'Dense'?"),
    "negative-units": (lambda: _mutate(lambda d: _nodes(d)[3]["params"].update(units=-5)),
                       "graph.nodes[3].params.units: expected a positive integer, got -5"),
    "unknown-param": (lambda: _mutate(lambda d: _nodes(d)[1]["params"].update(unitz=3)),
                      "graph.nodes[1].params.unitz: unknown parameter"),
    "cycle": (lambda: _mutate(lambda d: d["graph"]["edges"].__setitem__(
        0, {"from": ["hidden_3", 0], "to": ["hidden_1", 0]})), "cycle"),
    "dangling-edge": (lambda: _mutate(lambda d: d["graph"]["edges"][0].update(
        to=["ghost", 0])), "graph.edges[0].to: no node 'ghost' (dangling edge)"),
    "duplicate-id": (lambda: _mutate(lambda d: _nodes(d)[2].update(id="hidden_1")),
                     "graph.nodes[2].id: duplicate node id 'hidden_1'"),
    "bad-port": (lambda: _mutate(lambda d: d["graph"]["edges"][0].update(to=["hidden_1", 1])),
                 "graph.edges[0].to: 'hidden_1' (Dense) has no input port 1"),
    "unconnected": (lambda: _mutate(lambda d: d["graph"]["edges"].pop(1)),
                    "'hidden_2' (Dense): input 0 (x) is not connected"),
    "unknown-loss": (lambda: _mutate(lambda d: d["training"].update(loss={"class": "hinge"})),
                     "training.loss.class.name: unknown loss 'hinge'"),
    "no-loss": (lambda: _mutate(lambda d: d["training"].update(loss={})),
                "training.loss: output 'class' has no loss"),
    "bad-lr": (lambda: _mutate(lambda d: d["training"]["optimizer"]["params"].update(
        learning_rate=-1)),
        "training.optimizer.params.learning_rate: expected a number > 0, got -1"),
    # losses and metrics take the parameters they declare, no others
    "huber-delta": (lambda: _mutate(lambda d: d["training"].update(
        loss={"class": {"name": "huber", "delta": 0}})),
        "training.loss.class.delta: expected a number > 0, got 0"),
    "mse-delta": (lambda: _mutate(lambda d: d["training"].update(
        loss={"class": {"name": "mse", "delta": 2}})),
        "training.loss.class.delta: unknown parameter"),
    "metric-k": (lambda: _mutate(lambda d: d["training"].update(
        metrics=[{"name": "top_k_categorical_accuracy", "k": 0}])),
        "training.metrics[0].k: expected an integer from 1 to 1000000, got 0"),
    "metric-unknown-param": (lambda: _mutate(lambda d: d["training"].update(
        metrics=["accuracy", {"name": "accuracy", "k": 3}])),
        "training.metrics[1].k: unknown parameter"),
    "precision-on-class-indices": (lambda: _mutate(lambda d: d["training"].update(
        metrics=["accuracy", "precision"])),
        "training.metrics[1]: output 'class': precision compares each output column with its "
        "target, and the targets are class indices"),
    "sparse-top-k-on-one-hot": (lambda: _mutate(lambda d: d["training"].update(
        loss={"class": "categorical_crossentropy"},
        metrics=["sparse_top_k_categorical_accuracy"])),
        "training.metrics[0]: output 'class': sparse_top_k_categorical_accuracy reads class "
        "indices, and the targets of categorical_crossentropy are not class indices"),
    "sparse-top-k-on-regression": (lambda: _mutate(lambda d: d["training"].update(
        loss={"class": "mean_squared_error"},
        metrics=["sparse_top_k_categorical_accuracy"])),
        "sparse_top_k_categorical_accuracy reads class indices, and the targets of "
        "mean_squared_error are not"),
    "metric-twice": (lambda: _mutate(lambda d: d["training"].update(
        metrics=["mae", "mean_absolute_error"])),
        "training.metrics[1]: mean_absolute_error is listed twice"),
    "metric-unknown": (lambda: _mutate(lambda d: d["training"].update(
        metrics=[{"name": "f1"}])), "training.metrics[0].name: unknown metric 'f1'"),
    "zero-epochs": (lambda: _mutate(lambda d: d["training"].update(epochs=0)),
                    "training.epochs: expected an integer from 1"),
    "unknown-dataset": (lambda: _mutate(lambda d: d["dataset"].update(name="moonz")),
                        "dataset.name: unknown synthetic dataset 'moonz'"),
    # paths a project names for writing stay inside the run's output folder
    "checkpoint-absolute": (lambda: _checkpoint(os.path.join(ESCAPE_DIR, "ESCAPE.npz")),
                            "training.callbacks[0].filepath: expected a path inside the run's "
                            "output folder, got '/"),
    "checkpoint-parent": (lambda: _checkpoint("../../../../ESCAPE_{epoch}.npz"),
                          "training.callbacks[0].filepath: expected a path inside the run's "
                          "output folder, got '../../../../ESCAPE_{epoch}.npz'"),
    "checkpoint-inner-parent": (lambda: _checkpoint("ck/../../ESCAPE.npz"),
                                "expected a path inside the run's output folder"),
    # one number must not exhaust memory: a variadic layer's input ports are bounded
    "huge-port": (lambda: _multitask(lambda d: d["graph"]["edges"][2].update(
        to=["joined", 10 ** 18])), "graph.edges[2].to: 'joined' (Concatenate) has no input "
                                   "port 1000000000000000000 (at most 64 inputs)"),
}
ESCAPE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "runs")


def _checkpoint(filepath):
    return _mutate(lambda d: d["training"].update(callbacks=[
        {"name": "model_checkpoint", "filepath": filepath, "monitor": "loss"}]))


def _multitask(fn):
    with open(os.path.join(EXAMPLES, "multitask.loom"), encoding="utf-8") as f:
        d = json.load(f)
    fn(d)
    return json.dumps(d)


def test_a_metric_its_targets_cannot_give_leaves_the_file_openable(tmp_path):
    """The editor opens a file with precision on class indices, the problem listed, so that it
    can be fixed there; --run refuses it (the case above)."""
    path = tmp_path / "p.loom"
    path.write_text(BAD["precision-on-class-indices"][0]())
    proj = projectfile.load(str(path), strict=False)
    assert [p.place for p in proj.problems] == ["training.metrics[1]"]
    with pytest.raises(ProjectError):
        projectfile.load(str(path))


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_project_file(case, tmp_path):
    content, expected = BAD[case]
    data = content()
    path = tmp_path / "bad.loom"
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
    before = path.read_bytes()
    r = layerloom("--run", str(path), "--out", str(tmp_path / "out"))
    assert r.returncode == 2, r.stderr
    assert expected in r.stderr
    assert "Traceback" not in r.stderr and r.stderr.startswith("layerloom: error: ")
    assert str(path) in r.stderr.splitlines()[0]
    assert path.read_bytes() == before and not (tmp_path / "out").exists()
    assert not any("ESCAPE" in f for _, _, fs in os.walk(tmp_path) for f in fs)
    with pytest.raises(ProjectError):
        projectfile.load(str(path))


@pytest.mark.slow
def test_checkpoints_write_inside_the_output_folder_only(tmp_path):
    """A checkpoint path inside the output folder is written there (subfolders made as
    needed); one that leaves it through a symlink in that folder is refused before training,
    exit 2, and nothing is written outside."""
    d = spirals()
    d["training"]["epochs"] = 2
    d["training"]["callbacks"] = [{"name": "model_checkpoint", "filepath": "ck/e{epoch}.npz",
                                   "monitor": "loss"}]
    path = _write(tmp_path, d)
    r = layerloom("--run", path, "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "out" / "ck")) == ["e1.npz", "e1.state.npz", "e2.npz",
                                                          "e2.state.npz"]
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out2").mkdir()
    os.symlink(outside, tmp_path / "out2" / "ck")
    r = layerloom("--run", path, "--out", str(tmp_path / "out2"))
    assert r.returncode == 2, r.stderr
    assert "training.callbacks[0].filepath: 'ck/e{epoch}.npz' leads out of the output folder" \
        in r.stderr and "Traceback" not in r.stderr
    assert os.listdir(outside) == [] and sorted(os.listdir(tmp_path / "out2")) == ["ck"]


def _write(tmp_path, d, name="p.loom"):
    p = tmp_path / name
    p.write_text(json.dumps(d))
    return str(p)


def test_data_that_does_not_fit_the_graph(tmp_path):
    d = spirals()
    _nodes(d)[0]["params"]["shape"] = [3]
    r = layerloom("--run", _write(tmp_path, d), "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert ("dataset.inputs.point: array 'x' has samples shaped (None, 2), Input 'point' "
            "expects (None, 3)") in r.stderr
    d = spirals()
    _nodes(d)[4]["params"]["units"] = 1
    r = layerloom("--run", _write(tmp_path, d), "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert "labels in 'y' must be class indices 0..0" in r.stderr


@pytest.mark.slow
def test_missing_and_pickled_data_files(tmp_path):
    d = spirals()
    d["dataset"] = {"source": "npz", "path": "nowhere.npz"}
    r = layerloom("--run", _write(tmp_path, d), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "dataset.path: data file not found" in r.stderr
    np.savez(tmp_path / "evil.npz", x=np.array([{"a": 1}, None], dtype=object),
             y=np.zeros(2))
    d["dataset"]["path"] = "evil.npz"
    r = layerloom("--run", _write(tmp_path, d), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "holds Python objects" in r.stderr
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    d["dataset"]["path"] = "broken.npz"
    r = layerloom("--run", _write(tmp_path, d), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "not a readable .npz file" in r.stderr
    d.pop("dataset")
    path = _write(tmp_path, d)
    r = layerloom("--run", path, "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and f"{path}: dataset: the project has no dataset" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_missing_project_and_unknown_device(tmp_path):
    r = layerloom("--run", str(tmp_path / "nope.loom"))
    assert r.returncode == 2 and "nope.loom: no such file" in r.stderr
    r = layerloom("--run", os.path.join(EXAMPLES, "sine.loom"), "--device", "no-such-gpu",
                  "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "no OpenCL device matches 'no-such-gpu'" in r.stderr
    assert not (tmp_path / "o").exists()
    r = layerloom("--run", os.path.join(EXAMPLES, "sine.loom"), "--epochs", "-3")
    assert r.returncode == 2 and "expected an integer from 1 to 1,000,000" in r.stderr
    # the command line has the file's bounds
    r = layerloom("--run", os.path.join(EXAMPLES, "sine.loom"), "--epochs", "1000000000000")
    assert r.returncode == 2 and "got '1000000000000'" in r.stderr


def test_unfinished_projects_open_for_editing_but_do_not_run(tmp_path):
    """A saved work in progress (unconnected input, no loss yet) opens in the editor with its
    problems listed; --run still refuses it. A damaged file is refused either way."""
    d = spirals()
    d["graph"]["edges"].pop(1)                   # hidden_2 unconnected
    d["training"]["loss"] = {}                   # no loss yet
    p = tmp_path / "wip.loom"
    p.write_text(json.dumps(d))
    proj = projectfile.load(str(p), strict=False)
    msgs = [str(x) for x in proj.problems]
    assert any("'hidden_2' (Dense): input 0 (x) is not connected" in m for m in msgs)
    assert any("has no loss" in m for m in msgs)
    with pytest.raises(ProjectError):
        projectfile.load(str(p))
    r = layerloom("--run", str(p), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "is not connected" in r.stderr
    (tmp_path / "bad.loom").write_text(json.dumps(spirals())[:200])
    with pytest.raises(ProjectError, match="not valid JSON"):
        projectfile.load(str(tmp_path / "bad.loom"), strict=False)
    d = spirals()
    d["graph"]["nodes"][1]["type"] = "Dens"
    (tmp_path / "bad2.loom").write_text(json.dumps(d))
    with pytest.raises(ProjectError, match="unknown layer type"):
        projectfile.load(str(tmp_path / "bad2.loom"), strict=False)


def test_every_output_without_a_loss_is_named():
    d = json.loads(open(os.path.join(EXAMPLES, "multitask.loom")).read())
    d["training"]["loss"] = {}
    proj = projectfile.loads(json.dumps(d), strict=False)
    msgs = [str(p) for p in proj.problems]
    assert "training.loss: output 'inside' has no loss" in msgs
    assert "training.loss: output 'value' has no loss" in msgs


def test_an_atomic_write_gives_a_file_the_mode_an_ordinary_write_would(tmp_path):
    """mkstemp makes 0600 files: a saved project was unreadable to the user's group, which an
    ordinary save (and the file before it) allowed. A new file gets 0666 less the umask, a
    replaced one keeps its mode."""
    from layerloom.core.fileio import atomic_write_text
    old = os.umask(0o022)
    try:
        new = tmp_path / "new.loom"
        atomic_write_text(str(new), "{}")
        assert (new.stat().st_mode & 0o777) == 0o644
        kept = tmp_path / "kept.loom"
        kept.write_text("{}")
        os.chmod(kept, 0o640)
        atomic_write_text(str(kept), "{ }", backup=True)
        assert (kept.stat().st_mode & 0o777) == 0o640
    finally:
        os.umask(old)


def test_an_atomic_write_never_sets_the_umask(tmp_path, monkeypatch):
    """Review of issue 26: os.umask(0) and back around each write left a window in which files
    other threads created (an export in the editor's task thread beside an autosave) got mode
    0666, and two interleaved writes could leave the umask at 0."""
    from layerloom.core import fileio

    def no(mask):
        raise AssertionError("os.umask called while writing")
    monkeypatch.setattr(os, "umask", no)
    fileio.atomic_write_text(str(tmp_path / "a.loom"), "{}")
    assert (tmp_path / "a.loom").read_text() == "{}"
