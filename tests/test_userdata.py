"""The user's own data (CSV/TSV, image folders, .npy), preparation (splits, normalisation),
and the Keras sets read from small fixtures the tests write. Every bad input gives one
DataError naming the file and the place; through `--run`, exit code 2, no traceback, and
the project file is left unchanged."""
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from layerloom.data import keras_sets, imagefolder, keras_files, preprocess, tabular, userdata
from layerloom.project import loom as projectfile
from layerloom.core.errors import DataError
from layerloom.data.prepare import load_arrays, prepare_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "assets", "examples")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("LAYERLOOM_DATA_DIR", str(tmp_path / "data"))


def write(path, text):
    path.write_text(text)
    return str(path)


def project_for(dataset, tmp_path, inputs=(("x", [3]),), units=3, loss=None):
    nodes = [{"id": nid, "type": "Input", "params": {"shape": shape}} for nid, shape in inputs]
    nodes.append({"id": "out", "type": "Dense", "params": {"units": units,
                                                           "activation": "softmax"}})
    d = {"format": "layerloom-project", "version": 1,
         "graph": {"nodes": nodes, "edges": [{"from": [inputs[0][0], 0], "to": ["out", 0]}]},
         "dataset": dataset,
         "training": {"loss": {"out": loss or "sparse_categorical_crossentropy"},
                      "epochs": 2, "batch_size": 4}}
    p = tmp_path / "p.loom"
    p.write_text(json.dumps(d))
    return str(p)


# -- CSV ----------------------------------------------------------------------------------------
CSV = """size,colour,weight,kind
1.5,red,10,apple
2.0,green,12,pear
1.7,red,11,apple
2.2,yellow,13,pear
1.1,green,9,plum
"""


@pytest.mark.parametrize("delim", [",", ";", "\t", "|"])
def test_csv_delimiter_and_header_are_detected(tmp_path, delim):
    path = write(tmp_path / "t.txt", CSV.replace(",", delim))
    t = tabular.read(path)
    assert t.delimiter == delim and t.header
    assert t.names == ["size", "colour", "weight", "kind"] and len(t) == 5
    assert t.column("size").numeric and not t.column("colour").numeric
    assert t.column("colour").categories == ["green", "red", "yellow"]


def test_csv_without_header_and_tsv_by_extension(tmp_path):
    t = tabular.read(write(tmp_path / "t.csv", "1,2,0\n3,4,1\n5,6,0\n"))
    assert not t.header and t.names == ["column_1", "column_2", "column_3"] and len(t) == 3
    t = tabular.read(write(tmp_path / "t.tsv", "a\tb\n1,5\t2\n3\t4\n"))
    assert t.delimiter == "\t" and t.column("a").values == ["1,5", "3"]


def test_csv_roles_onehot_features_and_label_mapping(tmp_path):
    a = userdata.load_csv({"path": "t.csv"}, write(tmp_path / "t.csv", CSV))
    # features: size, colour one-hot (green, red, yellow), weight; label: kind as indices
    np.testing.assert_array_equal(a.train["x"][0], [1.5, 0, 1, 0, 10])
    np.testing.assert_array_equal(a.train["y"], [0, 1, 0, 1, 2])
    assert a.class_names == ["apple", "pear", "plum"] and a.classes == 3
    assert a.feature_names == ["size", "colour=green", "colour=red", "colour=yellow", "weight"]
    a = userdata.load_csv({"columns": {"colour": {"role": "ignore"},
                                       "size": {"role": "label"},
                                       "kind": {"role": "feature", "encoding": "index"}}},
                          str(tmp_path / "t.csv"))
    np.testing.assert_array_equal(a.train["x"][:, 0], [10, 12, 11, 13, 9])
    np.testing.assert_array_equal(a.train["x"][:, 1], [0, 1, 0, 1, 2])
    np.testing.assert_allclose(a.train["y"], [1.5, 2.0, 1.7, 2.2, 1.1])


def test_csv_saved_categories_are_reused_and_unknown_values_named(tmp_path):
    path = write(tmp_path / "t.csv", CSV)
    d = {"fitted": {"categories": {"kind": ["plum", "pear", "apple"]}}}
    a = userdata.load_csv(d, path)
    np.testing.assert_array_equal(a.train["y"], [2, 1, 2, 1, 0])
    d = {"fitted": {"categories": {"kind": ["apple", "pear"]}}}
    with pytest.raises(DataError, match=r"t.csv, line 6, column 'kind': value 'plum' is not "
                                        r"one of the 2 known categories"):
        userdata.load_csv(d, path)


MISSING = "a,b,y\n1,2,0\n3,,1\n5,6,0\n,8,1\n9,10,1\n"


def test_missing_values_error_drop_and_fill(tmp_path):
    path = write(tmp_path / "m.csv", MISSING)
    with pytest.raises(DataError, match=r"m.csv, line 5, column 'a': missing value; set "
                                        r"\"missing\""):
        userdata.load_csv({}, path)
    a = userdata.load_csv({"missing": "drop"}, path)
    np.testing.assert_array_equal(a.train["x"], [[1, 2], [5, 6], [9, 10]])
    a = userdata.load_csv({"missing": "fill"}, path)
    np.testing.assert_allclose(a.train["x"][3], [(1 + 3 + 5 + 9) / 4, 8])
    np.testing.assert_allclose(a.train["x"][1], [3, (2 + 6 + 8 + 10) / 4])


def test_fill_uses_training_rows_only(tmp_path):
    rows = "\n".join(f"{i},{i % 2}" for i in range(20))
    path = write(tmp_path / "f.csv", "a,y\n" + rows + "\n,0\n")
    d = {"missing": "fill", "split": {"test": 0.5, "seed": 3}}
    a = userdata.load_csv(d, path)
    filled = np.concatenate([a.train["x"][:, 0], a.test["x"][:, 0]])
    assert len(filled) == 21
    # the filled value is the mean of the training rows that were present, not of all rows
    present = [v for v in a.train["x"][:, 0] if v == int(v)]
    fill = [v for v in filled if v != int(v)]
    assert len(fill) == 1 and abs(fill[0] - np.mean(present)) < 1e-5
    assert abs(fill[0] - 9.5) > 1e-3  # the mean of all 20 values


@pytest.mark.parametrize("text, message", [
    ("a,b,y\n1,2,0\n3,4\n", r"r.csv, line 3: 2 fields, expected 3 \(like the header\)"),
    ("", r"r.csv: the file is empty"),
    ("a,b,y\n", r"r.csv: no data rows after the header"),
    ("a,a,y\n1,2,0\n", r"r.csv, line 1: column name 'a' appears twice"),
])
def test_malformed_csv(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        userdata.load_csv({}, write(tmp_path / "r.csv", text))


def test_text_in_a_numeric_column_names_line_and_column(tmp_path):
    path = write(tmp_path / "n.csv", "a,b,y\n1,2,0\n3,x7,1\n5,6,0\n")
    with pytest.raises(DataError, match=r"n.csv, line 3, column 'b': 'x7' is not a number"):
        userdata.load_csv({"columns": {"b": {"encoding": "number"}}}, path)


def test_csv_binary_file_and_unknown_column(tmp_path):
    p = tmp_path / "b.csv"
    p.write_bytes(b"\x00\x01\x02garbage")
    with pytest.raises(DataError, match="not a text file"):
        userdata.load_csv({}, str(p))
    with pytest.raises(DataError, match=r"no column named 'wieght'; columns: size, colour"):
        userdata.load_csv({"columns": {"wieght": {"role": "ignore"}}},
                          write(tmp_path / "t.csv", CSV))


# -- splits and normalisation ---------------------------------------------------------------
def test_split_is_seeded_disjoint_and_complete():
    tr, va, te = preprocess.split_indices(100, test=0.2, validation=0.1, seed=5)
    assert (len(tr), len(va), len(te)) == (70, 10, 20)
    assert sorted(np.concatenate([tr, va, te])) == list(range(100))
    again = preprocess.split_indices(100, test=0.2, validation=0.1, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again))
    other = preprocess.split_indices(100, test=0.2, validation=0.1, seed=6)
    assert not np.array_equal(te, other[2])
    with pytest.raises(DataError, match="leave training rows"):
        preprocess.split_indices(10, test=0.6, validation=0.5)


@pytest.mark.parametrize("kind", ["standardize", "minmax", "scale"])
def test_normalisation_is_fitted_on_training_rows_only(tmp_path, kind):
    rng = np.random.default_rng(0)
    x = rng.normal(5, 3, (40, 3)) * [1, 10, 100]
    y = rng.integers(0, 3, 40)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    p = projectfile.load(project_for({"source": "npz", "path": "d.npz", "normalize": kind,
                                      "split": {"test": 0.25, "seed": 1}}, tmp_path))
    data = prepare_data(p)
    st = data.fitted["normalization"]["x"]
    tr, _, te = preprocess.split_indices(40, 0.25, 0.0, 1)
    ref = {"standardize": (x[tr].mean(0), 1 / x[tr].std(0)),
           "minmax": (x[tr].min(0), 1 / (x[tr].max(0) - x[tr].min(0))),
           "scale": (np.zeros(1), np.full(1, 1 / 255))}[kind]
    np.testing.assert_allclose(st["shift"], ref[0], rtol=1e-6)  # fitted on float32 rows
    np.testing.assert_allclose(st["scale"], ref[1], rtol=1e-6)
    np.testing.assert_allclose(data.x["x"], (x[tr] - ref[0]) * ref[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data.x_test["x"], (x[te] - ref[0]) * ref[1], rtol=1e-5,
                               atol=1e-6)
    # saved statistics are reused, not refitted
    p.dataset["fitted"] = {"normalization": {"x": {"kind": kind, "shift": [1.0, 2.0, 3.0],
                                                    "scale": [1.0, 1.0, 1.0]}}}
    again = prepare_data(p)
    np.testing.assert_allclose(again.x["x"], x[tr] - [1, 2, 3], rtol=1e-5, atol=1e-4)


def test_images_keep_per_channel_statistics():
    x = np.random.default_rng(1).normal(0, 1, (6, 4, 4, 3)) + [0, 10, 20]
    st = preprocess.fit("standardize", x)
    np.testing.assert_allclose(st["shift"], x.mean((0, 1, 2)))
    assert len(st["scale"]) == 3


# -- .npy, memory-mapped ----------------------------------------------------------------------
def test_npy_arrays_are_memory_mapped_and_train(tmp_path, monkeypatch):
    monkeypatch.setattr(userdata, "MMAP_BYTES", 0)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(0, 1, (64, 3)).astype(np.float32))
    np.save(tmp_path / "y.npy", rng.integers(0, 3, 64))
    p = projectfile.load(project_for({"source": "npy", "arrays": {"x": "x.npy", "y": "y.npy"},
                                      "split": {"validation": 0.25, "seed": 0},
                                      "normalize": "standardize"}, tmp_path))
    arrays = load_arrays(p)
    assert isinstance(arrays.train["x"], preprocess.LazyRows)
    assert isinstance(arrays.train["x"].base, np.memmap)
    data = prepare_data(p)
    assert isinstance(data.x["x"], preprocess.LazyRows) and len(data.x["x"]) == 48
    batch = data.x["x"][np.array([3, 0, 7])]
    assert batch.dtype == np.float32 and batch.shape == (3, 3)
    from layerloom.train.session import Session
    h = Session(p, device=None).fit(data, epochs=1)
    assert np.isfinite(h["epochs"][0]["loss"]) and "val_loss" in h["epochs"][0]


def test_npy_pickled_and_truncated_are_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"o.npy: holds Python objects"):
        userdata.load_npy({"arrays": {"x": "o.npy"}}, lambda r: str(tmp_path / r))
    np.save(tmp_path / "t.npy", np.zeros((100, 10)))
    raw = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(raw[:500])
    with pytest.raises(DataError, match=r"t.npy: not a readable .npy file"):
        userdata.load_npy({"arrays": {"x": "t.npy"}}, lambda r: str(tmp_path / r))


# -- image folders ----------------------------------------------------------------------------
def make_folder(root, classes=("cat", "dog"), n=4, size=(10, 12), mode="RGB"):
    rng = np.random.default_rng(0)
    for k, c in enumerate(classes):
        os.makedirs(root / c, exist_ok=True)
        for i in range(n):
            a = np.full(size + (3,), 40 + 100 * k, np.uint8)
            a[0, 0] = rng.integers(0, 255, 3)
            Image.fromarray(a).convert(mode).save(root / c / f"{i}.png")
    return root


def test_image_folder_classes_sizes_and_cache(tmp_path):
    make_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "dog" / "notes.txt").write_text("not an image, skipped")
    splits, classes = imagefolder.load(str(tmp_path / "imgs"), [8, 8], "rgb")
    x, y = splits["train"]
    assert classes == ["cat", "dog"] and x.shape == (8, 8, 8, 3)
    np.testing.assert_array_equal(y, [0, 0, 0, 0, 1, 1, 1, 1])
    assert abs(float(x[5][0, 4, 4, 0]) - 140) <= 1  # dog pixels, resized, as 0..255 floats
    def cached():  # an entry per folder and settings: its index and its array
        return [f for f in os.listdir(imagefolder.cache_dir()) if f.endswith(".npy")]
    assert len(cached()) == 1
    g, _ = imagefolder.load(str(tmp_path / "imgs"), [8, 8], "grayscale")
    assert g["train"][0].shape == (8, 8, 8, 1) and len(cached()) == 2


def test_image_folder_with_train_and_test_folders(tmp_path):
    make_folder(tmp_path / "f" / "train", n=3)
    make_folder(tmp_path / "f" / "test", n=2)
    splits, classes = imagefolder.load(str(tmp_path / "f"), [6, 6])
    assert len(splits["train"][1]) == 6 and len(splits["test"][1]) == 4


@pytest.mark.parametrize("case, message", [
    ("missing", r"image folder not found"),
    ("no_classes", r"no class folders"),
    ("empty_class", r"dog: the class folder holds no images"),
    ("corrupt", r"cat.1\.png: not a readable image"),
])
def test_bad_image_folders(tmp_path, case, message):
    root = tmp_path / "imgs"
    if case != "missing":
        root.mkdir()
    if case in ("empty_class", "corrupt"):
        make_folder(root, classes=("cat",), n=2)
        (root / "dog").mkdir()
    if case == "corrupt":
        make_folder(root, classes=("dog",), n=1)
        (root / "cat" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match=message):
        imagefolder.load(str(root), [8, 8])
    if case == "corrupt":  # refused from its header, before any decoding: nothing cached
        cache = tmp_path / "cache" / "layerloom" / "images"
        assert not cache.exists() or not [f for f in os.listdir(cache) if f.endswith(".npy")]


# -- Keras sets from fixtures -----------------------------------------------------------------
def _tar_add(tar, name, obj):
    data = pickle.dumps(obj, protocol=2)
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_cifar10_and_cifar100_fixtures(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "cifar10"
    folder.mkdir(parents=True)
    batches = [(rng.integers(0, 256, (4, 3072), dtype=np.uint8), list(rng.integers(0, 10, 4)))
               for _ in range(6)]
    with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz") as tar:
        for i, (d, l) in enumerate(batches[:5], 1):
            _tar_add(tar, f"cifar-10-batches-py/data_batch_{i}", {b"data": d, b"labels": l})
        _tar_add(tar, "cifar-10-batches-py/test_batch",
                 {b"data": batches[5][0], b"labels": batches[5][1]})
    (x, y), (xt, yt) = keras_sets.load("cifar10", allow_download=False)
    assert x.shape == (20, 32, 32, 3) and xt.shape == (4, 32, 32, 3) and x.dtype == np.float32
    # channels-last from the CHW rows, scaled to 0..1, labels kept in order
    np.testing.assert_allclose(x[5, 1, 2], batches[1][0][1, [32 + 2, 1024 + 32 + 2,
                                                             2048 + 32 + 2]] / 255.0)
    np.testing.assert_array_equal(y[:4], batches[0][1])
    folder = tmp_path / "data" / "cifar100"
    folder.mkdir(parents=True)
    with tarfile.open(folder / "cifar-100-python.tar.gz", "w:gz") as tar:
        for part in ("train", "test"):
            _tar_add(tar, f"cifar-100-python/{part}", {
                b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8),
                b"fine_labels": [5, 99, 0], b"coarse_labels": [1, 19, 0]})
    (_, y), _ = keras_sets.load("cifar100", allow_download=False)
    np.testing.assert_array_equal(y, [5, 99, 0])
    (_, y), _ = keras_sets.load("cifar100", allow_download=False, label_mode="coarse")
    np.testing.assert_array_equal(y, [1, 19, 0])


def _ragged(seqs):
    a = np.empty(len(seqs), dtype=object)
    a[:] = seqs
    return a


def test_imdb_and_reuters_follow_keras(tmp_path):
    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(1, 30, rng.integers(2, 9))) for _ in range(10)]
    folder = tmp_path / "data" / "imdb"
    folder.mkdir(parents=True)
    np.savez(folder / "imdb.npz", x_train=_ragged(seqs[:6]), y_train=np.arange(6) % 2,
             x_test=_ragged(seqs[6:]), y_test=np.arange(4) % 2)
    (x, y), (xt, yt) = keras_sets.load("imdb", allow_download=False, num_words=20, maxlen=5)
    # the same steps as keras.datasets.imdb.load_data, then pad_sequences(maxlen=5)
    r = np.random.RandomState(113)
    o1 = np.arange(6)
    r.shuffle(o1)
    o2 = np.arange(4)
    r.shuffle(o2)
    first = [1] + [w + 3 for w in seqs[o1[0]]]
    first = [w if w < 20 else 2 for w in first][-5:]
    np.testing.assert_array_equal(x[0], [0] * (5 - len(first)) + first)
    np.testing.assert_array_equal(y, (np.arange(6) % 2)[o1])
    np.testing.assert_array_equal(yt, (np.arange(4) % 2)[o2])
    assert x.shape == (6, 5) and xt.shape == (4, 5)
    folder = tmp_path / "data" / "reuters"
    folder.mkdir(parents=True)
    np.savez(folder / "reuters.npz", x=_ragged(seqs), y=np.arange(10) % 46)
    (x, y), (xt, yt) = keras_sets.load("reuters", allow_download=False, maxlen=12)
    o = np.arange(10)
    np.random.RandomState(113).shuffle(o)
    assert len(x) == 8 and len(xt) == 2
    np.testing.assert_array_equal(np.concatenate([y, yt]), (np.arange(10) % 46)[o])


def test_boston_housing_split(tmp_path):
    folder = tmp_path / "data" / "boston_housing"
    folder.mkdir(parents=True)
    x = np.arange(50 * 13, dtype=np.float64).reshape(50, 13)
    np.savez(folder / "boston_housing.npz", x=x, y=np.arange(50.0))
    (xtr, ytr), (xte, yte) = keras_sets.load("boston_housing", allow_download=False)
    o = np.arange(50)
    np.random.RandomState(113).shuffle(o)
    assert len(xtr) == 40 and len(xte) == 10
    np.testing.assert_array_equal(ytr, o[:40])
    np.testing.assert_array_equal(xte[0], x[o[40]])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickles_can_only_rebuild_arrays(tmp_path):
    folder = tmp_path / "data" / "reuters"
    folder.mkdir(parents=True)
    np.savez(folder / "reuters.npz", x=_ragged([_Evil(), [1, 2]]), y=np.arange(2))
    with pytest.raises(DataError, match=r"reuters.npz: not a readable Keras .npz file \(refused "
                                        r"to load posix.system"):
        keras_sets.load("reuters", allow_download=False)
    with pytest.raises(pickle.UnpicklingError):
        keras_files.safe_unpickle(io.BytesIO(pickle.dumps(_Evil())))


# -- projects and the command line ----------------------------------------------------------
@pytest.mark.parametrize("dataset, place", [
    ({"source": "csv"}, "dataset.path"),
    ({"source": "csv", "path": "a.csv", "missing": "guess"}, "dataset.missing"),
    ({"source": "csv", "path": "a.csv", "columns": {"a": {"role": "target"}}},
     "dataset.columns.a.role"),
    ({"source": "images", "path": "f", "size": [0, 8]}, "dataset.size"),
    ({"source": "images", "path": "f", "color": "cmyk"}, "dataset.color"),
    ({"source": "npy", "arrays": []}, "dataset.arrays"),
    ({"source": "npz", "path": "a.npz", "split": {"test": 1.5}}, "dataset.split.test"),
    ({"source": "npz", "path": "a.npz", "normalize": "zscore"}, "dataset.normalize"),
])
def test_bad_dataset_settings_are_named(tmp_path, dataset, place):
    with pytest.raises(projectfile.ProjectError) as e:
        projectfile.load(project_for(dataset, tmp_path))
    assert any(place in line for line in e.value.lines()), e.value.lines()


def test_bad_data_through_run_exits_2_and_changes_nothing(tmp_path):
    write(tmp_path / "r.csv", "a,b,c,y\n1,2,3,0\n3,4\n")
    path = project_for({"source": "csv", "path": "r.csv"}, tmp_path)
    before = open(path).read()
    r = subprocess.run([sys.executable, "-m", "layerloom.app", "--run", path, "--out",
                        str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "r.csv, line 3: 2 fields, expected 4" in r.stderr
    assert open(path).read() == before and not os.path.exists(tmp_path / "out")


def test_feature_count_mismatch_names_both_sides(tmp_path):
    write(tmp_path / "t.csv", CSV)
    p = projectfile.load(project_for({"source": "csv", "path": "t.csv"}, tmp_path))
    with pytest.raises(DataError, match=r"array 'x' has samples shaped \(None, 5\), Input 'x' "
                                        r"expects \(None, 3\); set the Input's shape to \[5\]"):
        prepare_data(p)


@pytest.mark.slow
@pytest.mark.parametrize("example, floor", [("wine_csv.loom", 0.9), ("shapes_folder.loom", 0.85)])
def test_own_data_examples_train_from_the_cli(tmp_path, example, floor):
    r = subprocess.run([sys.executable, "-m", "layerloom.app", "--run", os.path.join(EXAMPLES, example),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True,
                       timeout=600, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "c")})
    assert r.returncode == 0, r.stderr
    h = json.load(open(tmp_path / "o" / "history.json"))
    assert h["test"]["accuracy"] >= floor, h["test"]
    trained = json.load(open(tmp_path / "o" / "trained.loom"))
    assert trained["weights"] == "weights.npz" and trained["dataset"]["fitted"]["normalization"]
    # the trained copy runs from its own folder with the same data
    r = subprocess.run([sys.executable, "-m", "layerloom.app", "--run", str(tmp_path / "o" / "trained.loom"),
                        "--epochs", "1", "--out", str(tmp_path / "o2")], capture_output=True,
                       text=True, timeout=600,
                       env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "c")})
    assert r.returncode == 0, r.stderr


def test_idx_files_as_arrays_and_truncated_ones(tmp_path):
    import gzip
    from layerloom.data import idx
    imgs = np.arange(6 * 4 * 4, dtype=np.uint8).reshape(6, 4, 4)
    (tmp_path / "images-idx3-ubyte.gz").write_bytes(gzip.compress(idx.dumps(imgs)))
    (tmp_path / "labels-idx1-ubyte").write_bytes(idx.dumps(np.arange(6, dtype=np.uint8) % 3))
    a = userdata.load_npy({"arrays": {"x": "images-idx3-ubyte.gz", "y": "labels-idx1-ubyte"}},
                          lambda r: str(tmp_path / r))
    np.testing.assert_array_equal(a.train["x"], imgs)
    np.testing.assert_array_equal(a.train["y"], [0, 1, 2, 0, 1, 2])
    (tmp_path / "cut-idx1-ubyte").write_bytes(idx.dumps(np.arange(6, dtype=np.uint8))[:-2])
    with pytest.raises(DataError, match=r"dataset.arrays.y: cut-idx1-ubyte: truncated"):
        userdata.load_npy({"arrays": {"y": "cut-idx1-ubyte"}}, lambda r: str(tmp_path / r))


def test_truncated_npz_is_named(tmp_path):
    from layerloom.data.arrays import load_npz
    np.savez(tmp_path / "d.npz", x=np.zeros((100, 10)), y=np.zeros(100))
    raw = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "d.npz").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(DataError, match=r"d.npz: not a readable .npz file"):
        load_npz(str(tmp_path / "d.npz"))
