"""CSV files at scale (issue 32): the reader streams the file in chunks, so a quoted field, a
CRLF ending or a BOM across a chunk boundary reads as in one piece; wide files take linear work
(counted, not timed); the reader reports its progress in bytes."""
import io
import os

import numpy as np
import pytest

from layerloom.data import tabular, tabular_columns, userdata
from layerloom.core.errors import DataError


def write(path, text, encoding="utf-8"):
    with open(path, "w", encoding=encoding, newline="") as f:
        f.write(text)
    return str(path)


@pytest.fixture
def small_chunks(monkeypatch):
    """Blocks of a few bytes and chunks of a few rows: every boundary is crossed."""
    monkeypatch.setattr(tabular, "BLOCK_BYTES", 7)
    monkeypatch.setattr(tabular, "CHUNK_CELLS", 5)
    monkeypatch.setattr(tabular, "HEAD_ROWS", 3)


def test_quoted_newline_crlf_and_bom_across_chunk_boundaries(tmp_path, small_chunks):
    rows = [f'{i},"line one\r\nline two of row {i}",{i % 3}' for i in range(40)]
    path = write(tmp_path / "q.csv", "\ufeffa,note,y\r\n" + "\r\n".join(rows) + "\r\n")
    t = tabular.read(path)
    assert t.header and t.names == ["a", "note", "y"] and len(t) == 40
    note = t.column("note")
    assert not note.numeric and len(note.categories) == 40
    assert note.values[7] == "line one\r\nline two of row 7"
    assert list(t.lines[:3]) == [3, 5, 7]  # the line each row ends on, as csv counts
    a = userdata.load_csv({"columns": {"note": {"role": "ignore"}}, "split": {"test": 0}}, path)
    np.testing.assert_array_equal(a.train["x"][:, 0], np.arange(40))
    np.testing.assert_array_equal(a.train["y"], np.arange(40) % 3)


def test_small_chunks_read_as_one(tmp_path, small_chunks, monkeypatch):
    text = "size,colour,w,kind\n" + "".join(
        f"{i / 4},{['red', 'green', ''][i % 3]},{i},{['b', 'a'][i % 2]}\n" for i in range(30))
    path = write(tmp_path / "s.csv", text)
    small = userdata.load_csv({"missing": "fill"}, path)
    monkeypatch.setattr(tabular, "BLOCK_BYTES", 1 << 20)
    monkeypatch.setattr(tabular, "CHUNK_CELLS", 1 << 20)
    whole = userdata.load_csv({"missing": "fill"}, path)
    for k in ("x", "y"):
        np.testing.assert_array_equal(small.train[k], whole.train[k])
    assert small.feature_names == whole.feature_names == [
        "size", "colour=green", "colour=red", "w"]


def test_numbers_by_blocks_of_lines_and_by_the_csv_module_agree(tmp_path, small_chunks,
                                                                monkeypatch):
    """Blocks of plain numbers go to np.loadtxt; blank lines, quotes, missing values and
    a quoted newline send a block to the csv module; the rows and their lines are the same."""
    lines = [f"{i},{i * 0.25},{i % 2}" for i in range(60)]
    lines[20] = ""  # a blank line
    lines[31] = '31,"7.75",1'
    lines[40] = "40,NA,0"
    lines[50] = '50,"12.5\n",0'  # a quoted newline: 12.5 and a line more
    path = write(tmp_path / "n.csv", "a,b,y\r\n" + "\r\n".join(lines) + "\r\n")
    monkeypatch.setattr(tabular, "CHUNK_CELLS", 12)
    t = tabular.read(path)
    monkeypatch.setattr(tabular, "CHUNK_CELLS", 1 << 20)
    whole = tabular.read(path)
    assert len(t) == len(whole) == 59
    assert list(t.lines) == list(whole.lines) and t.lines[-1] == 62
    for name in ("a", "b", "y"):
        np.testing.assert_array_equal(t.column(name).data, whole.column(name).data)
        assert t.column(name).missing == whole.column(name).missing
    assert t.column("b").missing == [39]
    with pytest.raises(DataError, match=r"n.csv, line 42, column 'b': missing value"):
        userdata.load_csv({}, path)


def test_a_column_numeric_at_first_and_text_later_is_text(tmp_path, small_chunks):
    path = write(tmp_path / "m.csv", "a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20))
                 + "ten,1\n")
    t = tabular.read(path)
    assert not t.column("a").numeric and "ten" in t.column("a").categories
    assert t.column("a").values[:3] == ["0", "1", "2"]
    with pytest.raises(DataError, match=r"m.csv, line 22, column 'a': 'ten' is not a number"):
        userdata.load_csv({"columns": {"a": {"encoding": "number"}}}, path)


def test_a_numeric_column_encoded_as_categories_keeps_its_text(tmp_path, small_chunks):
    path = write(tmp_path / "c.csv", "a,y\n" + "".join(f"{i % 3}.0,{i % 2}\n" for i in range(20)))
    a = userdata.load_csv({"columns": {"a": {"encoding": "onehot"}}}, path)
    assert a.feature_names == ["a=0.0", "a=1.0", "a=2.0"]


def test_non_utf8_is_read_as_latin1_and_a_long_field_is_refused(tmp_path, small_chunks):
    p = tmp_path / "l.csv"
    p.write_bytes(b"name,y\n" + b"caf\xe9,1\n" * 3 + b"th\xe9,0\n")
    t = tabular.read(str(p))
    assert t.column("name").categories == ["café", "thé"]
    p.write_bytes(b"a,y\n1,2\n" + b"x" * 200_000 + b",1\n")
    with pytest.raises(DataError, match="line 3: field larger than field limit"):
        tabular.read(str(p))


def test_progress_is_called_with_increasing_bytes_up_to_the_size(tmp_path, monkeypatch):
    monkeypatch.setattr(tabular, "BLOCK_BYTES", 4096)
    path = write(tmp_path / "p.csv", "a,b,y\n" + "".join(
        f"{i},{i * 0.5},{i % 2}\n" for i in range(20000)))
    calls = []
    tabular.read(path, progress=lambda p, done, total: calls.append((p, done, total)))
    size = os.path.getsize(path)
    assert len(calls) > 10
    assert all(c[0] == path and c[2] == size for c in calls)
    done = [c[1] for c in calls]
    assert done == sorted(done) and len(set(done)) == len(done) and done[-1] == size


def test_the_csv_source_passes_progress_on(tmp_path):
    from layerloom.data import sources
    path = write(tmp_path / "p.csv", "a,y\n1,0\n2,1\n3,0\n")
    calls = []

    class P:
        dataset = {"source": "csv", "path": path}

        def resolve(self, p):
            return p
    sources.get("csv").load(P.dataset, P(), progress=lambda *a: calls.append(a))
    assert calls and calls[-1] == (path, os.path.getsize(path), os.path.getsize(path))


def test_cli_shows_reading_progress():
    from layerloom.cli import run
    out = io.StringIO()
    show = run.data_progress(out)
    show("/some/where/data.csv", 65 << 20, 152 << 20)
    show("/some/where/data.csv", 152 << 20, 152 << 20)
    text = out.getvalue()
    assert "Reading data.csv: 43% (65 of 152 MB)" in text
    assert "Reading data.csv: 100% (152 of 152 MB)" in text


class _Counted:
    """Counts every read of a Column's name: scanning the names per column is quadratic."""
    reads = 0

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        _Counted.reads += 1
        return obj.__dict__["_counted_name"]

    def __set__(self, obj, value):
        obj.__dict__["_counted_name"] = value


def _name_reads(tmp_path, monkeypatch, n):
    names = [f"c{j}" for j in range(n)]
    rows = [",".join(str((i * 7 + j) % 5) for j in range(n)) for i in range(3)]
    path = write(tmp_path / f"w{n}.csv", ",".join(names) + "\n" + "\n".join(rows) + "\n")
    monkeypatch.setattr(tabular.Column, "name", _Counted(), raising=False)
    _Counted.reads = 0
    t = tabular.read(path)
    tabular_columns.roles(t, {"c3": {"role": "label"}})
    a = userdata.load_csv({"columns": {"c3": {"role": "label"}}, "split": {"test": 0}}, path, t)
    assert a.train["x"].shape == (3, n - 1)
    return _Counted.reads


def test_a_wide_file_takes_linear_work(tmp_path, monkeypatch):
    small = _name_reads(tmp_path, monkeypatch, 2000)
    wide = _name_reads(tmp_path, monkeypatch, 20000)
    # linear: ten times the columns, about ten times the lookups (quadratic would be 100x)
    assert wide <= 12 * max(small, 1) and wide <= 20 * 20000


def test_a_table_of_100k_columns_reads_and_a_line_past_the_limit_is_refused(tmp_path,
                                                                            monkeypatch):
    """Issue 32, item 4: 100,000 columns go through the project's path (features, a label);
    a line of more than MAX_COLUMNS fields is refused by its count and the limit, placed, after
    its first line (before: 1.5M columns took 14 s to read, then the model's arrays)."""
    assert tabular.MAX_COLUMNS >= 100_000
    _name_reads(tmp_path, monkeypatch, 100_000)
    n = tabular.MAX_COLUMNS + 1
    path = write(tmp_path / "wide.csv", ",".join(["1"] * n) + "\n" + ",".join(["2"] * n) + "\n")
    with pytest.raises(DataError) as e:
        tabular.read(path)
    assert f"{n:,} columns" in e.value.message and f"{tabular.MAX_COLUMNS:,}" in \
        e.value.message and ".npy" in e.value.message


def _traced_peak(fn):
    """(result, peak bytes numpy and Python allocated while fn ran)."""
    import tracemalloc
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _numbers_file(tmp_path, n, width, seed):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(n, width)) * 1000
    ref[:, -1] = rng.integers(0, 2, n)
    path = tmp_path / f"f{n}.csv"
    np.savetxt(path, ref, delimiter=",", fmt="%.17g", header=",".join(
        f"c{j}" for j in range(width)), comments="")
    return str(path), ref


def test_numbers_are_held_as_float32_in_about_their_final_size(tmp_path):
    """Bug: the table held numbers as float64 (twice the float32 arrays the model takes), each
    column as its chunks and then their concatenation, and a byte per row per column for the
    missing mask: the read peaked at four times the float32 columns. The peak of a read grows
    with the rows by about the float32 columns alone (the parsing's own memory, a chunk at a
    time, is the same for both sizes)."""
    width, peaks = 16, []
    for n in (100_000, 200_000):
        path, ref = _numbers_file(tmp_path, n, width, n)
        t, peak = _traced_peak(lambda: tabular.read(path))
        peaks.append(peak)
        for j in range(width):
            c = t.column(f"c{j}")
            assert c.data.dtype == np.float32
            np.testing.assert_array_equal(c.data, ref[:, j].astype(np.float32))
            assert not c.mask.any() and c.missing == []
        assert t.lines.dtype == np.int32 and t.lines[-1] == n + 1
        del t
    more = 100_000 * width * 4  # the float32 columns of the 100k rows more
    assert peaks[1] - peaks[0] < 1.5 * more, (peaks, more)


def test_text_columns_are_encoded_without_a_matrix_per_column(tmp_path):
    """Bug: load_csv built each column's one-hot matrix, then concatenated them: twice the
    final arrays. Now each column is written into the final matrix; the values are those of a
    float64 one-hot reference built with numpy."""
    rng = np.random.default_rng(2)
    n = 20_000
    cats = np.array([f"k{j:02d}" for j in range(50)])
    t_idx = rng.integers(0, 50, size=(n, 3))
    nums = rng.normal(size=(n, 2))
    y = rng.integers(0, 3, n)
    lines = [f"{cats[a]},{cats[b]},{cats[c]},{u:.17g},{v:.17g},{yy}"
             for (a, b, c), (u, v), yy in zip(t_idx, nums, y)]
    path = write(tmp_path / "t.csv", "a,b,c,u,v,y\n" + "\n".join(lines) + "\n")
    table = tabular.read(path)
    d = {"split": {"test": 0}}
    a, peak = _traced_peak(lambda: userdata.load_csv(d, path, table))
    ref = np.concatenate([np.eye(50)[t_idx[:, 0]], np.eye(50)[t_idx[:, 1]],
                          np.eye(50)[t_idx[:, 2]], nums], 1)
    np.testing.assert_allclose(a.train["x"], ref, rtol=1e-7)
    np.testing.assert_array_equal(a.train["y"], y)
    assert a.train["x"].dtype == np.float32 and a.train["x"].shape == (n, 152)
    assert a.feature_names[:2] == ["a=k00", "a=k01"] and a.feature_names[-2:] == ["u", "v"]
    final = a.train["x"].nbytes + a.train["y"].nbytes
    assert peak < 1.3 * final, (peak, final)


def test_normalisation_is_applied_a_block_at_a_time():
    """Bug: standardising the training rows held (x - shift) and its scaling beside x: three
    times the array at the peak. Now a block of rows at a time into one new array; the values
    are those of a float64 reference."""
    import tracemalloc
    from layerloom.data import prepare
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(1_000_000, 10)) * 5 + 2).astype(np.float32)
    stats = {"kind": "standardize", "shift": x.astype(np.float64).mean(0).tolist(),
             "scale": (1 / x.astype(np.float64).std(0)).tolist()}
    ref = (x.astype(np.float64) - np.array(stats["shift"])) * np.array(stats["scale"])
    tracemalloc.start()
    try:
        out = prepare._applied(stats, x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out[:1000], preprocess_apply(stats, x[:1000]))
    assert peak < 1.25 * x.nbytes, (peak, x.nbytes)  # whole: 2x


def preprocess_apply(stats, x):
    from layerloom.data import preprocess
    return preprocess.apply(stats, x)


@pytest.mark.parametrize("texts", [0, 2])
def test_split_dropped_and_filled_rows_match_a_float64_reference(tmp_path, texts):
    """Each column written into each split's matrix: the rows of each split, the dropped rows
    and the filled values are those of a numpy reference, with and without one-hot
    columns."""
    rng = np.random.default_rng(4)
    n = 3000
    num = rng.normal(size=(n, 3))
    num[rng.random((n, 3)) < 0.02] = np.nan
    cats = rng.integers(0, 3, size=(n, texts))
    y = rng.integers(0, 2, n)
    head = [f"t{j}" for j in range(texts)] + ["a", "b", "c", "y"]
    lines = [",".join([f"v{k}" for k in cats[i]] + ["" if np.isnan(v) else f"{v:.17g}"
                                                    for v in num[i]] + [str(y[i])])
             for i in range(n)]
    path = write(tmp_path / "d.csv", ",".join(head) + "\n" + "\n".join(lines) + "\n")
    from layerloom.data import preprocess
    split = {"test": 0.2, "validation": 0.1, "seed": 5}
    for policy in ("drop", "fill"):
        a = userdata.load_csv({"missing": policy, "split": split}, path)
        keep = np.flatnonzero(~np.isnan(num).any(1)) if policy == "drop" else np.arange(n)
        tr, va, te = (keep[i] for i in preprocess.split_indices(len(keep), 0.2, 0.1, 5))
        filled = num.copy()
        if policy == "fill":
            mean = np.nanmean(num[tr].astype(np.float32).astype(np.float64), 0)
            filled = np.where(np.isnan(num), mean, num)
        ref = np.concatenate([np.eye(3)[cats[:, j]] for j in range(texts)] + [filled], 1)
        for got, idx in ((a.train, tr), (a.validation, va), (a.test, te)):
            np.testing.assert_allclose(got["x"], ref[idx], rtol=1e-6)
            np.testing.assert_array_equal(got["y"], y[idx])


def test_a_table_large_for_the_memory_available_is_read_into_files(tmp_path, monkeypatch):
    """Before issue 32's item 2 a table whose float32 columns and arrays (8 bytes a field)
    exceeded the memory available was refused; now one taking more than half of it is read
    into a file, each column's values together, memory-mapped (tests/test_csv_stream.py: the
    cache)."""
    monkeypatch.setenv("LAYERLOOM_CACHE_DIR", str(tmp_path / "cache"))
    path = write(tmp_path / "big.csv", "a,b,y\n" + "".join(f"{i},{i},{i % 2}\n"
                                                          for i in range(1000)))
    monkeypatch.setattr(tabular, "_available_bytes", lambda: 10_000)
    t = tabular.read(path)
    assert t.spill and isinstance(t.column("a").data, np.memmap)
    np.testing.assert_array_equal(t.column("b").data, np.arange(1000, dtype=np.float32))
    t.close()
    assert os.listdir(tmp_path / "cache" / "images") == []
    # 1,398 rows estimated from the first lines (shorter than the rest) x 3 fields x 8
    # bytes: 33,552, more than half of 48,000 (read into files), less than half of 80,000
    monkeypatch.setattr(tabular, "_available_bytes", lambda: 8 * 3 * 2000)
    assert tabular.read(path).spill
    monkeypatch.setattr(tabular, "_available_bytes", lambda: 80_000)
    assert not tabular.read(path).spill and len(tabular.read(path)) == 1000
    monkeypatch.setattr(tabular, "_available_bytes", lambda: None)  # unknown: in memory
    assert not tabular.read(path).spill
