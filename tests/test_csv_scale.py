"""CSV files at scale (issue 32): the reader streams the file in chunks, so a quoted field, a
CRLF ending or a BOM across a chunk boundary reads as in one piece; wide files take linear work
(counted, not timed); the reader reports its progress in bytes."""
import io
import os

import numpy as np
import pytest

from layerloom.data import tabular, userdata
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
    tabular.roles(t, {"c3": {"role": "label"}})
    a = userdata.load_csv({"columns": {"c3": {"role": "label"}}, "split": {"test": 0}}, path, t)
    assert a.train["x"].shape == (3, n - 1)
    return _Counted.reads


def test_a_wide_file_takes_linear_work(tmp_path, monkeypatch):
    small = _name_reads(tmp_path, monkeypatch, 2000)
    wide = _name_reads(tmp_path, monkeypatch, 20000)
    # linear: ten times the columns, about ten times the lookups (quadratic would be 100x)
    assert wide <= 12 * max(small, 1) and wide <= 20 * 20000
