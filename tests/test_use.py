"""A trained model used anywhere: `layerloom --predict/--evaluate` and the Python API
(layerloom.load, Model.predict/evaluate/fit/summary/save) on trained examples. A prediction on
the test rows scores what --evaluate reports; inputs are raw, prepared with the statistics
training fitted; bad input is exit 2 with its place and nothing written."""
import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import layerloom
from layerloom.data.prepare import load_arrays

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "assets", "examples")
WINE_CSV = os.path.join(EXAMPLES, "data", "wine.csv")

pytestmark = pytest.mark.slow  # each module fixture trains an example through --run


def layerloom_cmd(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "layerloom.app", *args], capture_output=True,
                          text=True, timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """{example: trained.loom path}, each trained briefly once for the module."""
    root = tmp_path_factory.mktemp("trained")
    out = {}
    for name, epochs in (("wine_csv", 20), ("multitask", 2), ("shapes_folder", 1)):
        r = layerloom_cmd("--run", os.path.join(EXAMPLES, f"{name}.loom"), "--out",
                          str(root / name), "--epochs", str(epochs))
        assert r.returncode == 0, r.stderr
        out[name] = str(root / name / "trained.loom")
    return out


def test_predict_on_the_test_rows_scores_what_evaluate_reports(trained):
    model = layerloom.load(trained["wine_csv"])
    arrays = load_arrays(model.project)  # raw rows, as the file has them
    probs = model.predict(arrays.test["x"])
    acc = float(np.mean(probs.argmax(1) == arrays.test["y"]))
    logs = model.evaluate()
    assert abs(acc - logs["accuracy"]) < 1e-9 and probs.shape == (len(arrays.test["y"]), 3)
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert model.evaluate(arrays.test["x"], arrays.test["y"]) == pytest.approx(logs)
    r = layerloom_cmd("--evaluate", trained["wine_csv"])
    assert r.returncode == 0 and f"accuracy {logs['accuracy']:.4f}" in r.stdout


def test_cli_predicts_a_csv_with_or_without_its_label_column(trained, tmp_path):
    r = layerloom_cmd("--predict", trained["wine_csv"], "--input", WINE_CSV)
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0] == ["class", "cultivar_1", "cultivar_2", "cultivar_3"] and len(rows) == 179
    with open(WINE_CSV) as f:
        table = list(csv.reader(f))
    label = table[0].index("cultivar")
    unlabelled = tmp_path / "new.csv"
    with open(unlabelled, "w", newline="") as f:
        csv.writer(f).writerows([row[:label] + row[label + 1:] for row in table])
    r2 = layerloom_cmd("--predict", trained["wine_csv"], "--input", str(unlabelled),
                       "--output", str(tmp_path / "p.csv"))
    assert r2.returncode == 0, r2.stderr
    with open(tmp_path / "p.csv") as f:
        assert list(csv.reader(f)) == rows  # the label column changes nothing
    model = layerloom.load(trained["wine_csv"])
    truth = [r[label] for r in table[1:]]
    acc = np.mean([p[0] == t for p, t in zip(rows[1:], truth)])
    r3 = layerloom_cmd("--evaluate", trained["wine_csv"], "--input", WINE_CSV, "--json",
                       str(tmp_path / "e.json"))
    with open(tmp_path / "e.json") as f:
        assert json.load(f)["accuracy"] == pytest.approx(acc) and r3.returncode == 0
    assert model.summary(print_fn=None).count("Dense") == 2


def test_npz_in_and_out_for_two_inputs_and_two_outputs(trained, tmp_path):
    model = layerloom.load(trained["multitask"])
    arrays = load_arrays(model.project)
    np.savez(tmp_path / "in.npz", **{k: v[:50] for k, v in arrays.test.items()})
    r = layerloom_cmd("--predict", trained["multitask"], "--input", str(tmp_path / "in.npz"),
                      "--output", str(tmp_path / "out.npz"))
    assert r.returncode == 0, r.stderr
    want = model.predict({k: v[:50] for k, v in arrays.test.items()})
    with np.load(tmp_path / "out.npz") as z:
        assert set(z.files) == set(model.outputs) == set(want)
        for o in want:
            np.testing.assert_allclose(z[o], want[o], rtol=0, atol=1e-6)
    r2 = layerloom_cmd("--predict", trained["multitask"], "--input", str(tmp_path / "in.npz"))
    header = r2.stdout.splitlines()[0].split(",")
    assert "inside" in header and any(h.startswith("value") for h in header)


def test_images_a_folder_and_one_file(trained, tmp_path):
    folder = os.path.join(EXAMPLES, "data", "shapes")
    some = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(folder) for f in fs
                  if f.endswith(".png"))[:3]
    one = layerloom_cmd("--predict", trained["shapes_folder"], "--input", some[0])
    assert one.returncode == 0, one.stderr
    rows = list(csv.reader(io.StringIO(one.stdout)))
    assert rows[0][:2] == ["file", "class"] and rows[1][0] == os.path.basename(some[0])
    os.makedirs(tmp_path / "imgs")
    for p in some:
        os.link(p, tmp_path / "imgs" / os.path.basename(p))
    many = layerloom_cmd("--predict", trained["shapes_folder"], "--input", str(tmp_path / "imgs"))
    assert many.returncode == 0 and len(many.stdout.splitlines()) == 4


def test_fit_continues_and_save_round_trips(trained, tmp_path):
    model = layerloom.load(trained["wine_csv"])
    arrays = load_arrays(model.project)
    before = model.predict(arrays.test["x"])
    history = model.fit(arrays.train["x"], arrays.train["y"], epochs=2, validation_split=0.2,
                        verbose=False)
    assert len(history["epochs"]) == 2 and "val_loss" in history["epochs"][0]
    after = model.predict(arrays.test["x"])
    assert not np.array_equal(before, after)
    model.save(str(tmp_path / "mine.loom"))
    assert os.path.exists(tmp_path / "mine.loom.weights.npz")
    again = layerloom.load(str(tmp_path / "mine.loom"))
    np.testing.assert_array_equal(again.predict(arrays.test["x"]), after)


@pytest.mark.parametrize("args,message", [
    (["--input", "missing.csv"], "file not found"),
    (["--input", WINE_CSV, "--output", "p.txt"], "expected a .csv, .npy or .npz"),
    ([], "needs --input"),
], ids=["missing-input", "bad-output-kind", "no-input"])
def test_bad_predict_arguments_are_exit_2_and_write_nothing(trained, tmp_path, args, message):
    r = layerloom_cmd("--predict", trained["wine_csv"], *args, cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert os.listdir(tmp_path) == []


def test_a_csv_without_a_training_column_names_it(trained, tmp_path):
    with open(WINE_CSV) as f:
        table = list(csv.reader(f))
    with open(tmp_path / "short.csv", "w", newline="") as f:
        csv.writer(f).writerows([row[1:] for row in table])
    r = layerloom_cmd("--predict", trained["wine_csv"], "--input", str(tmp_path / "short.csv"))
    assert r.returncode == 2 and repr(table[0][0]) in r.stderr


def test_a_project_without_weights_is_refused():
    r = layerloom_cmd("--predict", os.path.join(EXAMPLES, "wine_csv.loom"), "--input", WINE_CSV)
    assert r.returncode == 2 and "no trained weights" in r.stderr
