"""Issue 32 item 2: a CSV/TSV table too large for the memory available is read into a file
(each column's values together), converted once to the data cache (a float32 array,
memory-mapped) and trained from it a batch at a time; the arrays the model trains from are
those of the in-memory path; the cache is reused, after a touch too, and rebuilt for a
changed file; a bad line is the same placed error with nothing left in the cache; a cancel
leaves nothing. The memory available is set by $LAYERLOOM_MEMORY_AVAILABLE (bytes), as a
user can."""
import gc
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from layerloom.core.errors import DataError
from layerloom.data import image_cache, prepare, preprocess, table_cache, tabular, userdata
from layerloom.data.cancel import Cancelled, cancellable
from layerloom.data.preprocess import LazyRows

SMALL = "1000"  # bytes: any table streams


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERLOOM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LAYERLOOM_CACHE_LIMIT", raising=False)
    monkeypatch.delenv("LAYERLOOM_MEMORY_AVAILABLE", raising=False)
    return tmp_path / "cache" / "images"


def table_file(path, n=3000, seed=0, bad=None):
    """Numbers (some missing), a text column (some missing) and a text label; `bad`: {line:
    text} replacing lines (1 is the header)."""
    rng = np.random.default_rng(seed)
    lines = ["size,weight,colour,kind"]
    for i in range(n):
        size = "" if i % 97 == 5 else f"{rng.normal() * 3 + 1:.6g}"
        weight = "NA" if i % 131 == 7 else f"{rng.normal() * 1000:.9g}"
        colour = "" if i % 89 == 3 else ["red", "green", "blue", "teal"][rng.integers(0, 4)]
        lines.append(f"{size},{weight},{colour},{['no', 'yes', 'maybe'][i % 3]}")
    for k, text in (bad or {}).items():
        lines[k - 1] = text
    with open(path, "w", newline="") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


def project(tmp_path, csv_path, **dataset):
    from layerloom.project import loom
    d = {"format": "layerloom-project", "version": 1, "name": "stream",
         "graph": {"nodes": [{"id": "in", "type": "Input", "params": {"shape": [6]}},
                             {"id": "h", "type": "Dense", "params": {"units": 8,
                                                                    "activation": "relu"}},
                             {"id": "out", "type": "Dense", "params": {
                                 "units": 3, "activation": "softmax"}}],
                   "edges": [{"from": ["in", 0], "to": ["h", 0]},
                             {"from": ["h", 0], "to": ["out", 0]}]},
         "dataset": {"source": "csv", "path": csv_path, "missing": "fill",
                     "split": {"test": 0.2, "validation": 0.1, "seed": 4},
                     "normalize": "standardize", **dataset},
         "training": {"optimizer": {"name": "adam", "params": {"learning_rate": 0.01}},
                      "loss": {"out": "sparse_categorical_crossentropy"},
                      "metrics": ["accuracy"], "epochs": 1, "batch_size": 64, "seed": 0,
                      "shuffle": True}}
    path = tmp_path / "p.loom"
    path.write_text(json.dumps(d))
    return loom.from_dict(d, str(path), strict=False), d, str(path)


def listing(cache):
    return sorted(os.listdir(cache)) if cache.exists() else []


def dense(a):
    return np.asarray(a[:]) if isinstance(a, LazyRows) else np.asarray(a)


def test_the_limit_is_a_fraction_of_the_memory_available(monkeypatch):
    monkeypatch.setenv("LAYERLOOM_MEMORY_AVAILABLE", str(8 * 1000 * 10 * 2))
    assert not tabular.streams(1000, 10)  # 8 bytes a field: half of what is available
    assert tabular.streams(1001, 10)
    monkeypatch.setenv("LAYERLOOM_MEMORY_AVAILABLE", "lots")
    with pytest.raises(DataError, match="LAYERLOOM_MEMORY_AVAILABLE: expected a number"):
        tabular.streams(1, 1)


def test_the_arrays_trained_from_are_those_of_the_in_memory_path(tmp_path, monkeypatch,
                                                                 private_cache):
    """After standardisation (fitted on the training rows), for every split: equal to the
    last bit; the features memory-mapped from the cache, not loaded."""
    csv_path = table_file(tmp_path / "t.csv")
    proj, _, _ = project(tmp_path, csv_path)
    ref = prepare.prepare_data(proj)
    assert listing(private_cache) == []  # fits: in memory, nothing cached
    monkeypatch.setenv("LAYERLOOM_MEMORY_AVAILABLE", SMALL)
    got = prepare.prepare_data(proj)
    x = got.x["in"]
    assert isinstance(x, LazyRows) and isinstance(x.base, np.memmap)
    assert got.fitted == ref.fitted  # statistics, categories, columns
    assert ref.fitted["categories"]["colour"] == ["blue", "green", "red", "teal"]
    for (rx, ry), (gx, gy) in (((ref.x, ref.y), (got.x, got.y)),
                               ((ref.x_test, ref.y_test), (got.x_test, got.y_test)),
                               (ref.validation, got.validation)):
        assert dense(gx["in"]).dtype == np.float32
        np.testing.assert_array_equal(dense(gx["in"]), dense(rx["in"]))
        np.testing.assert_array_equal(gy["out"], ry["out"])
    assert (len(got.y["out"]), len(got.validation[1]["out"]), len(got.y_test["out"])) == \
        (2100, 300, 600)
    entries = image_cache.entries()
    assert [e.kind for e in entries] == ["table"] and len(listing(private_cache)) == 2


@pytest.mark.parametrize("policy", ["drop", "fill"])
def test_dropped_rows_and_a_table_given_read_into_files(tmp_path, monkeypatch, policy):
    """The Data tab's table (tabular.read spills it itself when too large) goes through the
    cache too; rows dropped for a missing value are the in-memory path's."""
    csv_path = table_file(tmp_path / "t.csv", n=1500, seed=2)
    d = {"missing": policy, "split": {"test": 0.1, "validation": 0.3, "seed": 1}}
    ref = userdata.load_csv(d, csv_path)
    monkeypatch.setenv("LAYERLOOM_MEMORY_AVAILABLE", SMALL)
    table = tabular.read(csv_path)
    assert table.spill and isinstance(table.column("weight").data, np.memmap)
    got = userdata.load_csv(d, csv_path, table)
    for part in ("train", "validation", "test"):
        np.testing.assert_array_equal(dense(getattr(got, part)["x"]),
                                      getattr(ref, part)["x"])
        np.testing.assert_array_equal(getattr(got, part)["y"], getattr(ref, part)["y"])
    assert got.feature_names == ref.feature_names and got.description == ref.description
    folder = table.spill
    del table
    gc.collect()  # (a table and its columns refer to each other)
    assert not os.path.exists(folder)  # the columns' files go with the table


def _traced_peak(fn):
    import tracemalloc
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _numbers(tmp_path, n, width=61):
    rng = np.random.default_rng(n)
    ref = rng.normal(size=(n, width))
    ref[:, -1] = rng.integers(0, 2, n)
    path = str(tmp_path / f"w{n}.csv")
    np.savetxt(path, ref, delimiter=",", fmt="%.7g",
               header=",".join(f"c{j}" for j in range(width)), comments="")
    return path


def test_the_conversion_and_the_cached_read_take_far_less_than_the_arrays(tmp_path,
                                                                          monkeypatch):
    """Converting holds a block of lines being parsed (the same for any size of file), a
    block of the matrix and a few bytes a row: 40,000 rows more of 60 numbers (9.6 MB of
    features more) take far less memory more; reading the entry holds the labels and the
    split's indices, not the features."""
    monkeypatch.setenv("LAYERLOOM_MEMORY_AVAILABLE", SMALL)
    d = {"split": {"validation": 0.2}}
    peaks, again_peaks = [], []
    for n in (20_000, 60_000):
        path = _numbers(tmp_path, n)
        first, peak_first = _traced_peak(lambda: userdata.load_csv(d, path))
        again, peak_again = _traced_peak(lambda: userdata.load_csv(d, path))
        peaks.append(peak_first)
        again_peaks.append(peak_again)
        x = again.train["x"]
        assert isinstance(x.base, np.memmap) and x.shape == (n * 4 // 5, 60)
        written = np.loadtxt(path, delimiter=",", skiprows=1)
        train = preprocess.split_indices(n, 0.0, 0.2, 0)[0]
        np.testing.assert_array_equal(dense(x), written[train, :60].astype(np.float32))
        np.testing.assert_array_equal(dense(x), dense(first.train["x"]))
    more = 40_000 * 60 * 4
    assert peaks[1] - peaks[0] < 0.25 * more, (peaks, more)
    assert again_peaks[1] - again_peaks[0] < 0.15 * more, (again_peaks, more)


def test_a_second_run_reuses_the_cache_a_touch_too_a_change_rebuilds(tmp_path, monkeypatch,
                                                                     private_cache):
    csv_path = table_file(tmp_path / "t.csv", n=800)
    monkeypatch.setenv("LAYERLOOM_MEMORY_AVAILABLE", SMALL)
    d = {"missing": "fill", "split": {"test": 0.25, "seed": 2}}
    first = userdata.load_csv(d, csv_path)
    files = listing(private_cache)
    reads = []
    real = tabular.read
    monkeypatch.setattr(tabular, "read", lambda *a, **k: reads.append(a) or real(*a, **k))
    again = userdata.load_csv(d, csv_path)
    assert reads == [] and listing(private_cache) == files
    np.testing.assert_array_equal(dense(again.train["x"]), dense(first.train["x"]))
    st = os.stat(csv_path)
    os.utime(csv_path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched
    touched = userdata.load_csv(d, csv_path)
    assert reads == [] and listing(private_cache) == files
    np.testing.assert_array_equal(dense(touched.test["x"]), dense(first.test["x"]))
    # changed: one value in the middle (every digit a 7), the same size
    lines = open(csv_path).read().split("\n")
    k = next(k for k in range(400, 500) if lines[k].split(",")[0])
    first_field, rest = lines[k].split(",", 1)
    lines[k] = "".join("7" if ch.isdigit() else ch for ch in first_field) + "," + rest
    with open(csv_path, "w", newline="") as f:
        f.write("\n".join(lines))
    assert os.path.getsize(csv_path) == st.st_size
    changed = userdata.load_csv(d, csv_path)
    assert len(reads) == 1
    assert len(listing(private_cache)) == 2  # the old entry's data replaced, not kept
    monkeypatch.delenv("LAYERLOOM_MEMORY_AVAILABLE")
    ref = userdata.load_csv(d, csv_path)
    for part in ("train", "test"):
        np.testing.assert_array_equal(dense(getattr(changed, part)["x"]),
                                      getattr(ref, part)["x"])
    assert not np.array_equal(dense(changed.train["x"]), dense(first.train["x"])) or \
        not np.array_equal(dense(changed.test["x"]), dense(first.test["x"]))


def _message(fn):
    with pytest.raises(DataError) as e:
        fn()
    return str(e.value), e.value.place


@pytest.mark.parametrize("case, d, bad, says", [
    ("ragged", {"missing": "fill"}, {2900: "1.5,2.5,red,no,extra"},
     r"t.csv, line 2900: 5 fields, expected 4 \(like the header\)"),
    ("missing", {}, {}, r"t.csv, line 7, column 'size': missing value \(\d+ missing"),
    ("not a number", {"missing": "fill", "columns": {"colour": {"encoding": "number"}}}, {},
     r"t.csv, line \d+, column 'colour': '\w+' is not a number"),
    ("unknown category", {"missing": "fill", "fitted": {"categories": {
        "colour": ["blue", "green", "red"]}}}, {},
     r"t.csv, line \d+, column 'colour': value 'teal' is not one of the 3 known"),
])
def test_a_bad_line_is_the_same_placed_error_with_nothing_left(tmp_path, monkeypatch,
                                                               private_cache, case, d, bad,
                                                               says):
    csv_path = table_file(tmp_path / "t.csv", bad=bad)
    d = dict(d, split={"test": 0.2, "validation": 0.1, "seed": 4})
    ref = _message(lambda: userdata.load_csv(d, csv_path))
    monkeypatch.setenv("LAYERLOOM_MEMORY_AVAILABLE", SMALL)
    got = _message(lambda: userdata.load_csv(d, csv_path))
    assert got == ref
    assert re.search(says, got[0]), got
    assert listing(private_cache) == []  # no spilled column, no .part, no entry


@pytest.mark.parametrize("at", ["bytes", "rows"])
def test_a_cancel_leaves_nothing(tmp_path, monkeypatch, private_cache, at):
    monkeypatch.setattr(tabular, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(table_cache, "BLOCK_BYTES", 4096)
    csv_path = table_file(tmp_path / "t.csv", n=3000)
    monkeypatch.setenv("LAYERLOOM_MEMORY_AVAILABLE", SMALL)
    seen, cancel = [], []

    def progress(p, done, total, unit="bytes"):
        seen.append(unit)
        if unit == at and done > 0:
            cancel.append(1)
    with pytest.raises(Cancelled):
        userdata.load_csv({"missing": "fill"}, csv_path,
                          progress=cancellable(progress, lambda: bool(cancel)))
    assert at in seen and listing(private_cache) == []
    a = userdata.load_csv({"missing": "fill"}, csv_path)  # whole the next time
    assert len(a.train["y"]) == 3000


def test_cache_info_lists_and_clear_removes_a_table(tmp_path, monkeypatch, private_cache,
                                                    capsys):
    from layerloom.cli.main import main
    csv_path = table_file(tmp_path / "t.csv", n=500)
    monkeypatch.setenv("LAYERLOOM_MEMORY_AVAILABLE", SMALL)
    userdata.load_csv({"missing": "fill"}, csv_path)
    os.makedirs(private_cache / ".spill-left")  # a killed process's, an hour ago
    old = os.path.getmtime(private_cache) - 2 * image_cache.GRACE
    os.utime(private_cache / ".spill-left", (old, old))
    assert main(["--cache", "info"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("0 folder(s), 1 table(s), ")
    assert sum("table of 500 rows x 6 features" in line and csv_path in line
               for line in out) == 1
    assert main(["--cache", "clear"]) == 0
    assert capsys.readouterr().out.startswith("Removed 0 folder(s), 1 table(s), 3 file(s)")
    assert listing(private_cache) == []


@pytest.mark.slow
def test_layerloom_run_trains_from_the_cache(tmp_path, private_cache):
    csv_path = table_file(tmp_path / "t.csv", n=2000)
    _, _, path = project(tmp_path, csv_path)
    env = dict(os.environ, LAYERLOOM_MEMORY_AVAILABLE=SMALL,
               LAYERLOOM_CACHE_DIR=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-m", "layerloom.app", "--run", path, "--out",
                        str(tmp_path / "out")], capture_output=True, text=True, env=env,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Layerloom: training" in r.stdout
    history = json.loads((tmp_path / "out" / "history.json").read_text())
    assert len(history["epochs"]) == 1 and np.isfinite(history["epochs"][0]["loss"])
    assert [e.kind for e in image_cache.entries()] == ["table"]


def test_a_wide_table_is_read_into_one_file_not_one_per_column(tmp_path, monkeypatch):
    """600 columns with 256 files allowed open (a file per column failed: too many open
    files), a column with no value at all, and more rows than guessed from the first lines
    (long ones there, short ones after: the file is made again half as long again)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
    try:
        n, width = 400, 600
        head = ",".join(f"c{j}" for j in range(width))
        long = ",".join(["12345.5"] * (width - 2)) + ",,0"
        rows = [",".join(str((i * 7 + j) % 5) for j in range(width - 2)) + f",,{i % 2}"
                for i in range(n)]
        path = tmp_path / "wide.csv"
        path.write_text(head + "\n" + "\n".join([long] * 50 + rows) + "\n")
        guess = tabular.estimate(str(path))
        assert guess[1] == width and guess[0] * 5 // 4 + 64 < 450  # too few: grown
        monkeypatch.setenv("LAYERLOOM_MEMORY_AVAILABLE", SMALL)
        t = tabular.read(str(path))
        assert t.spill and len(t) == 450 and len(os.listdir(t.spill)) == 2
        assert not t.column(f"c{width - 2}").numeric
        assert t.column(f"c{width - 2}").mask.all()
        np.testing.assert_array_equal(t.column("c5").data[:50], 12345.5)
        np.testing.assert_array_equal(t.column("c5").data[50:],
                                      [(i * 7 + 5) % 5 for i in range(n)])
        assert list(t.lines[-2:]) == [450, 451]
        a = userdata.load_csv({"columns": {f"c{width - 2}": {"role": "ignore"}}}, str(path),
                              t)
        assert a.train["x"].shape == (450, width - 2)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_full_disk_is_said_before_the_table_is_read(tmp_path, monkeypatch, private_cache):
    """The spill file's blocks are reserved when it is made: a full disk is a DataError
    saying what to do, not a crash (SIGBUS) when a page of the map is written."""
    csv_path = table_file(tmp_path / "t.csv", n=500)
    monkeypatch.setenv("LAYERLOOM_MEMORY_AVAILABLE", SMALL)
    calls = []

    def full(fd, offset, length):
        calls.append(length)
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    with pytest.raises(DataError, match=r"LAYERLOOM_CACHE_DIR: cannot write the data cache \(a "
                                        r"table too large for memory\) in .*No space left"):
        userdata.load_csv({"missing": "fill"}, csv_path)
    assert calls and listing(private_cache) == []
