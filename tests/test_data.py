"""IDX reading and the built-in datasets, on small files the tests write themselves."""
import gzip
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from layerloom.data import keras_sets, idx
from layerloom.core.errors import DataError


def write_idx_set(folder, n_train=30, n_test=10, gz=True, rng=None):
    rng = rng or np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)).astype(np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)).astype(np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for name, a in arrays.items():
        data = idx.dumps(a)
        if gz:
            with open(os.path.join(folder, name + ".gz"), "wb") as f:
                f.write(gzip.compress(data))
        else:
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
    return arrays


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32,
                                   np.float64])
def test_idx_round_trip(dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == np.uint8:
        a = np.abs(a).astype(dtype)
    b = idx.parse(idx.dumps(a))
    assert b.dtype == a.dtype and np.array_equal(a, b)


def test_idx_errors_name_the_file(tmp_path):
    good = idx.dumps(np.zeros((3, 4), np.uint8))
    (tmp_path / "short").write_bytes(good[:-2])
    with pytest.raises(DataError, match=r"short: truncated: dimensions \(3, 4\) need 12 bytes"):
        idx.load(str(tmp_path / "short"))
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04garbage")
    with pytest.raises(DataError, match="junk: not an IDX file"):
        idx.load(str(tmp_path / "junk"))
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    with pytest.raises(DataError, match="bad.gz: cannot read"):
        idx.load(str(tmp_path / "bad.gz"))


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_data_dir(data_env, gz):
    arrays = write_idx_set(str(data_env / "data" / "fashion-mnist"), gz=gz)
    (x, y), (xt, yt) = keras_sets.load("fashion_mnist")
    assert x.shape == (30, 28, 28, 1) and xt.shape == (10, 28, 28, 1)
    np.testing.assert_allclose(x[..., 0] * 255, arrays["train-images-idx3-ubyte"], atol=1e-4)
    assert np.array_equal(y, arrays["train-labels-idx1-ubyte"])
    (x2, _), _ = keras_sets.load("fashion_mnist", scale=False)
    assert x2.max() > 1
    # small fixture files are found but are not the canonical content
    assert keras_sets.verify("fashion_mnist") == {k: False for k in keras_sets.IDX_FILES}


def test_mnist_npz_from_data_dir(data_env):
    folder = data_env / "data" / "mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    np.savez(folder / "mnist.npz", x_train=rng.integers(0, 256, (5, 28, 28)).astype(np.uint8),
             y_train=np.arange(5, dtype=np.uint8), x_test=np.zeros((2, 28, 28), np.uint8),
             y_test=np.ones(2, np.uint8))
    (x, y), (xt, yt) = keras_sets.load("mnist")
    assert x.shape == (5, 28, 28, 1) and list(y) == [0, 1, 2, 3, 4] and list(yt) == [1, 1]


def test_offline_and_missing_gives_how_to_get_it(data_env):
    with pytest.raises(DataError) as e:
        keras_sets.load("mnist")
    msg = str(e.value)
    assert msg.startswith("dataset.name: mnist is not on this machine (looked in ")
    assert "downloading it failed (network unreachable (test))" in msg
    assert "LAYERLOOM_DATA_DIR/mnist/" in msg


def test_download_is_verified_before_it_is_kept(data_env, monkeypatch):
    rng = np.random.default_rng(2)
    payload = {}
    for name in keras_sets.IDX_FILES:
        shape = (4, 28, 28) if "images" in name else (4,)
        raw = idx.dumps(rng.integers(0, 10, shape).astype(np.uint8))
        payload[name] = raw
    served = {keras_sets.KERAS_BASE + n + ".gz": gzip.compress(payload[n]) for n in payload}
    monkeypatch.setattr(keras_sets, "_download", lambda url, progress: served[url])
    # the canonical hashes do not match these bytes: nothing is kept
    with pytest.raises(DataError, match="does not match the expected sha256; not kept"):
        keras_sets.download("fashion_mnist")
    cache = data_env / "cache" / "layerloom" / "datasets" / "fashion_mnist"
    assert not any(cache.glob("*.gz"))
    # with matching hashes the files are kept and load
    spec = dict(keras_sets.DATASETS["fashion_mnist"])
    spec["idx_sha256"] = {n: hashlib.sha256(payload[n]).hexdigest() for n in payload}
    monkeypatch.setitem(keras_sets.DATASETS, "fashion_mnist", spec)
    monkeypatch.setattr(keras_sets, "search_dirs", lambda name: [str(data_env / "nowhere")])
    (x, y), _ = keras_sets.load("fashion_mnist")
    assert x.shape == (4, 28, 28, 1) and sorted(p.name for p in cache.glob("*.gz")) == \
        sorted(n + ".gz" for n in payload)


@pytest.mark.slow
def test_keras_dataset_project_trains_from_fixture(tmp_path):
    write_idx_set(str(tmp_path / "data" / "fashion_mnist"), n_train=64, n_test=16)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "assets", "examples", "fashion_mnist_mlp.loom")) as f:
        d = json.load(f)
    (tmp_path / "p.loom").write_text(json.dumps(d))
    env = dict(os.environ, LAYERLOOM_DATA_DIR=str(tmp_path / "data"),
               XDG_CACHE_HOME=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-m", "layerloom.app", "--run", str(tmp_path / "p.loom"),
                        "--epochs", "1", "--out", str(tmp_path / "o")], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0, r.stderr
    h = json.load(open(tmp_path / "o" / "history.json"))
    assert "test" in h and 0 <= h["test"]["accuracy"] <= 1


def test_datasets_do_not_share_a_folder(data_env):
    """IDX files loose in LAYERLOOM_DATA_DIR belong to no dataset: MNIST and Fashion-MNIST use
    the same file names, so only per-dataset subfolders are searched."""
    write_idx_set(str(data_env / "data"))
    with pytest.raises(DataError, match="mnist is not on this machine"):
        keras_sets.load("mnist")


def test_download_reports_progress_and_verifies_new_sets(data_env, monkeypatch):
    """boston_housing through the same path: fetched by chunks with progress reported, the
    sha256 checked, then kept in the cache and loaded with Keras' split."""
    import io as _io
    buf = _io.BytesIO()
    np.savez(buf, x=np.arange(20 * 13, dtype=np.float64).reshape(20, 13), y=np.arange(20.0))
    body = buf.getvalue()

    class Response(_io.BytesIO):
        headers = {"Content-Length": str(len(body))}

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False
    monkeypatch.setattr(keras_sets.urllib.request, "urlopen",
                        lambda url, timeout=None: Response(body))
    spec = dict(keras_sets.DATASETS["boston_housing"])
    spec["sha256"] = {"boston_housing.npz": hashlib.sha256(body).hexdigest()}
    monkeypatch.setitem(keras_sets.DATASETS, "boston_housing", spec)
    seen = []
    (x, y), (xt, yt) = keras_sets.load("boston_housing",
                                         progress=lambda u, d, t: seen.append((d, t)))
    assert seen and seen[-1] == (len(body), len(body))
    assert x.shape == (16, 13) and len(yt) == 4
    cache = data_env / "cache" / "layerloom" / "datasets" / "boston_housing"
    assert (cache / "boston_housing.npz").read_bytes() == body


def test_the_data_check_of_an_output_without_a_loss_is_not_a_keyerror():
    """The trial's Problems list said "Data: KeyError: 'dense_2'" while an output had no loss
    yet (that output's missing loss is a problem of its own)."""
    from layerloom.data.overview import overview as of_project
    from layerloom.project import loom

    def overview(d, path):  # read as the Data tab's thread reads it
        return of_project(loom.from_dict(d, path, strict=False))
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets",
                        "examples", "multitask.loom")
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    del d["training"]["loss"]["value"]
    info = overview(d, path)
    assert info["check"] is None, info["check"]
    d["training"]["loss"] = {}
    assert overview(d, path)["check"] is None
