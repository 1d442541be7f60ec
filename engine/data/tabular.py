"""CSV and TSV files: delimiter sniffing, header detection, a role per column (feature, label,
ignore), numeric and categorical columns, missing values. `read` streams the file into a
`Table` of column arrays (numbers as float32, text as codes into sorted categories); what the
model takes of its columns (roles, missing values, encodings) is tabular_columns.py.

Every problem is a DataError naming the file, the line and the column."""
import collections
import csv
import io
import itertools
import os
import shutil
import tempfile
import warnings
import weakref

import numpy as np

from layerloom.core.errors import DataError, quote
from layerloom.data import image_cache

MISSING = {"", "na", "n/a", "nan", "null", "none", "?", "-"}
DELIMITERS = ",\t;|"
ROLES = ("feature", "label", "ignore")
ENCODINGS = ("auto", "onehot", "index", "number", "text")
MISSING_POLICIES = ("error", "drop", "fill")


def _is_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def _missing(s):
    return s.strip().lower() in MISSING


def sniff_delimiter(text, path=""):
    """The delimiter among , TAB ; | that splits the first lines into the same number (>1)
    of fields most consistently; TAB for .tsv files."""
    if path.lower().endswith(".tsv"):
        return "\t"
    lines = [ln for ln in text.splitlines()[:50] if ln.strip()]
    best, best_score = ",", -1
    for d in DELIMITERS:
        try:
            counts = [len(r) for r in csv.reader(io.StringIO("\n".join(lines)), delimiter=d)]
        except csv.Error:  # a field over the csv module's limit: read() reports its line
            continue
        if not counts or max(counts) < 2:
            continue
        common = max(set(counts), key=counts.count)
        score = counts.count(common) * 1000 + common
        if score > best_score:
            best, best_score = d, score
    return best


def detect_header(rows):
    """True when the first row looks like names: no missing cells, and some column is numeric
    below it but not in it (or every cell is text while the rows below hold numbers)."""
    if len(rows) < 2:
        return bool(rows) and not any(_is_number(c) for c in rows[0])
    first, body = rows[0], rows[1:21]
    if any(_missing(c) for c in first):
        return False
    for j, name in enumerate(first):
        below = [r[j] for r in body if j < len(r) and not _missing(r[j])]
        if below and all(_is_number(v) for v in below) and not _is_number(name):
            return True
    return all(not _is_number(c) for c in first) and len(set(first)) == len(first) and any(
        _is_number(c) for r in body for c in r)


class Column:
    """One column: `numeric` ones hold `data` (float32, the value float() reads rounded to
    float32 as the model takes it, NaN where missing), text ones `codes` (int32 into the sorted
    `categories`, -1 where missing); `mask` marks the missing rows."""

    def __init__(self, table, j, name, numeric, data=None, codes=None, categories=None):
        self.table, self.j, self.name, self.numeric = table, j, name, numeric
        self.data, self.codes, self.categories = data, codes, categories
        self._missing = self._text = None

    @property
    def mask(self):
        """True for the rows with a missing value: made when asked (a byte per row, not kept
        for every column of a large table)."""
        if not self.numeric:
            return self.codes < 0
        mask = np.zeros(len(self.table), bool)  # the missing fields as read (a "+nan" in the
        mask[self.table._missing_rows.get(self.j, [])] = True  # file is a number)
        return mask

    @property
    def missing(self):
        """The rows (0-based) with a missing value."""
        if self._missing is None:
            self._missing = np.flatnonzero(self.mask).tolist()
        return self._missing

    def text(self):
        """(codes, sorted categories) of the column's stripped text, for any column: a numeric
        column's text is read again from the file (kept only for its first rows)."""
        if not self.numeric:
            return self.codes, self.categories
        if self._text is None:  # kept: a large file is read again only once
            t = self.table
            if len(t.head) >= len(t):
                self._text = _codes([r[self.j] for r in t.head])
            else:
                other = t.reread({self.j}).columns[self.j]
                self._text = other.codes, other.categories
        return self._text

    def release(self):
        """Let go of the column's arrays (once encoded, when nothing reads it again)."""
        self.data = self.codes = self._text = None

    @property
    def values(self):
        """The column's fields as text: as in the file for the rows kept for the preview (all of
        a small file), else stripped, missing ones empty."""
        t = self.table
        if len(t.head) >= len(t):
            return [r[self.j] for r in t.head]
        codes, cats = self.text()
        return [cats[k] if k >= 0 else "" for k in codes.tolist()]


def _codes(values):
    """(int32 codes into the sorted categories, -1 for missing, categories) of text fields."""
    index, local = {}, {}
    for v in set(values):
        s = v.strip()
        local[v] = -1 if s.lower() in MISSING else index.setdefault(s, len(index))
    codes = np.fromiter(map(local.__getitem__, values), np.int32, len(values))
    return _sorted_codes(codes, list(index))


def _sorted_codes(codes, seen):
    """Codes into `seen` (the order first met) as codes into sorted(seen); a memory-mapped
    array (a spilled column) is rewritten in place, a block at a time."""
    order = sorted(range(len(seen)), key=seen.__getitem__)
    rank = np.empty(len(seen) + 1, np.int32)
    rank[order] = np.arange(len(seen), dtype=np.int32)
    rank[-1] = -1
    if isinstance(codes, np.memmap):
        step = 1 << 20
        for s in range(0, len(codes), step):
            codes[s:s + step] = rank[codes[s:s + step]]
        codes.flush()
        return codes, [seen[k] for k in order]
    return rank[codes], [seen[k] for k in order]


def not_numbers(own):
    """True per category (and False for the missing code -1, last) that is not a number."""
    return np.array([not _is_number(v) for v in own] + [False], bool)


class Table:
    """The parsed file: columns by name in file order, the file line of each row (where the
    row ends), and its first rows as text (`head`, for the preview)."""

    def __init__(self, path, names, lines, delimiter, header, head, encoding, place,
                 spill=None):
        self.path, self.names, self.lines = path, names, lines
        self.delimiter, self.header, self.head = delimiter, header, head
        self.encoding, self.place = encoding, place
        self.columns, self._index, self._missing_rows = [], {}, {}
        # spill: the folder whose files hold the columns (memory-mapped, a table too large
        # to hold in memory), removed with the table or by close()
        self.spill = spill
        self._remove = weakref.finalize(self, shutil.rmtree, spill, True) if spill else None

    def close(self):
        """Remove the files of a spilled table's columns (their maps stay readable)."""
        if self._remove is not None:
            self._remove()

    def _set_columns(self, columns):
        self.columns = columns
        self._index = {c.name: c for c in columns}

    def __len__(self):
        return len(self.lines)

    def __contains__(self, name):
        return name in self._index

    def column(self, name):
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(name) from None

    def preview(self, rows=20):
        return [list(r) for r in self.head[:rows]]

    def reread(self, text_columns):
        """The file read again with these columns (indices) as text."""
        return _read(self.path, self.encoding, self.delimiter, self.header, self.place, None,
                     frozenset(text_columns), bool(self.spill))


BLOCK_BYTES = 1 << 20  # read from the file at a time (and progress reported after each)
CHUNK_CELLS = 1 << 18  # fields parsed before they are converted to arrays
HEAD_ROWS = 200  # rows kept as text for the Data tab's preview
# the widest table read: 100,000 columns read in about a second; past this a line is refused
# after it is parsed (1.5M fields took 14 s to read, and the model's arrays more)
MAX_COLUMNS = 500_000


class _Counting(io.RawIOBase):
    """A file that reports the bytes read so far: progress(path, done, total)."""

    def __init__(self, f, path, progress):
        self.f, self.path, self.progress = f, path, progress
        self.total, self.done = os.fstat(f.fileno()).st_size, 0

    def readable(self):
        return True

    def readinto(self, b):
        n = self.f.readinto(b)
        if n:
            self.done += n
            self.progress(self.path, self.done, max(self.total, self.done))
        return n

    def close(self):
        self.f.close()
        super().close()


def _open_text(path, encoding, progress):
    f = open(path, "rb", buffering=0)
    raw = _Counting(f, path, progress) if progress else f
    text = io.TextIOWrapper(io.BufferedReader(raw, max(BLOCK_BYTES, 1)), encoding=encoding,
                            newline="")
    text._CHUNK_SIZE = max(BLOCK_BYTES, 1)
    return text


class _Restart(Exception):
    """Columns that looked numeric in the first rows hold text further on."""

    def __init__(self, columns):
        super().__init__()
        self.columns = columns


def read(path, delimiter="auto", header="auto", place="dataset.path", progress=None,
         spill=None):
    """The file as a Table, read in blocks of BLOCK_BYTES and converted to arrays every
    CHUNK_CELLS fields (never the whole file as text). progress(path, bytes_read, file_bytes)
    after each block. UTF-8 (with or without BOM), else Latin-1. spill: True writes the
    columns to files (in the cache's folder) as they are read, the table's arrays memory-maps
    of them (Table.spill; removed with the table); None: so for a table too large for the
    memory available (`streams`); False: never."""
    if not os.path.isfile(path):
        raise DataError(f"data file not found: {path}", place)
    try:
        with open(path, "rb") as f:
            start = f.read(4096)
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror})", place) from None
    if b"\0" in start:
        raise DataError(f"{path}: not a text file (binary bytes at the start)", place)
    for enc in ("utf-8-sig", "latin-1"):
        text_columns = frozenset()
        while True:
            try:
                return _read(path, enc, delimiter, header, place, progress, text_columns,
                             spill)
            except UnicodeDecodeError:
                break
            except _Restart as r:
                text_columns = text_columns | r.columns
            except OSError as e:
                raise DataError(f"{path}: cannot be read ({e.strerror})", place) from None


def _blank(row):
    return not row or (not row[0].strip() and not any(c.strip() for c in row))


def _read(path, enc, delimiter, header, place, progress, text_columns, spill=False):
    folder = [None]  # the spill folder, once made: removed when the read fails
    try:
        return _read_into(path, enc, delimiter, header, place, progress, text_columns, spill,
                          folder)
    except BaseException:
        if folder[0]:
            shutil.rmtree(folder[0], True)
        raise


def _spill_folder(nbytes):
    """A new folder for a table's columns, in the cache's folder (the disk the cache is
    on); a cache that cannot be written is said as image_cache says it."""
    root = image_cache.folder()
    with image_cache.said(root, nbytes, "table"):
        os.makedirs(root, exist_ok=True)
        return tempfile.mkdtemp(prefix=image_cache.SPILL_PREFIX, dir=root)


def _read_into(path, enc, delimiter, header, place, progress, text_columns, spill, folder):
    with _open_text(path, enc, progress) as text:
        sniffed = []
        for _ in range(50):
            line = text.readline()
            if not line:
                break
            sniffed.append(line)
        delim = sniff_delimiter("".join(sniffed), path) if delimiter in (None, "auto") \
            else delimiter
        source = itertools.chain(sniffed, text)
        reader, offset = csv.reader(source, delimiter=delim), 0
        try:
            first, first_lines = [], []
            for row in reader:
                if _blank(row):
                    continue
                if len(row) > MAX_COLUMNS:  # at its first line, not after 20 of them
                    raise DataError(f"{path}, line {reader.line_num}: {len(row):,} columns; "
                                    f"at most {MAX_COLUMNS:,} are read (a table this wide: "
                                    "as an .npy array)", place)
                first.append(row)
                first_lines.append(reader.line_num)
                if len(first) > 20:
                    break
            if not first:
                raise DataError(f"{path}: the file is empty", place)
            has_header = detect_header(first) if header in (None, "auto") else bool(header)
            if has_header:
                names = [c.strip() or f"column_{j + 1}" for j, c in enumerate(first[0])]
                first, first_lines = first[1:], first_lines[1:]
            else:
                names = [f"column_{j + 1}" for j in range(len(first[0]))]
            # rows expected, from the file's size and its first lines' length: each column's
            # array is made that long once (pages never written take no memory)
            line = max(1, sum(map(len, sniffed)) // max(1, len(sniffed)))
            rows = os.path.getsize(path) // line
            if spill or spill is None and streams(rows, len(names)):
                folder[0] = _spill_folder(4 * rows * len(names))
            expect = os.path.getsize(path) // line * 5 // 4 + 64
            reading = _Columns(path, names, has_header, delim, place, text_columns, expect,
                               folder[0])
            reading.add(first, first_lines)
            offset = reader.line_num  # lines read so far
            chunk = max(1, CHUNK_CELLS // max(1, len(names)))
            while True:
                lines = list(itertools.islice(source, chunk))
                if not lines:
                    break
                if reading.add_numbers(lines, offset, delim):
                    offset += len(lines)
                    continue
                # the csv module: quoted fields, blank lines, missing values, text; a row may
                # go on past the block's lines (a quoted newline): read on to its end
                reader = csv.reader(itertools.chain(lines, source), delimiter=delim)
                rows, row_lines = [], []
                for row in reader:
                    if not _blank(row):
                        rows.append(row)
                        row_lines.append(offset + reader.line_num)
                    if reader.line_num >= len(lines):
                        break
                reading.add(rows, row_lines)
                offset += reader.line_num
        except csv.Error as e:
            raise DataError(f"{path}, line {offset + reader.line_num}: {e}", place) from None
    return reading.table(enc)


class _Growing:
    """An array appended to chunk by chunk, in one buffer made `expect` long at first (the
    pages never written take no memory) and enlarged by half when that falls short: a column
    is never held twice, as its chunks and their concatenation. spill: (a _Spill, the
    column's row in it): the chunks are written there instead, as `dtype`."""

    def __init__(self, expect, spill=None, dtype=None):
        self.expect, self.buf, self.n = expect, None, 0
        self.spill, self.dtype = spill, dtype

    def append(self, a):
        if self.spill is not None:
            matrix, j = self.spill
            matrix.put(j, self.n, np.asarray(a), self.dtype)
            self.n += len(a)
            return
        end = self.n + len(a)
        if self.buf is None:
            self.buf = np.empty(max(self.expect, end), a.dtype)
        elif end > len(self.buf) or a.dtype != self.buf.dtype:  # int32 lines, then int64
            grown = np.empty(max(end, len(self.buf) * 3 // 2), np.result_type(self.buf, a))
            grown[:self.n] = self.buf[:self.n]
            self.buf = grown
        self.buf[self.n:end] = a
        self.n = end

    def array(self):
        if self.spill is None:
            return self.buf[:self.n]
        matrix, j = self.spill
        return matrix.column(j, self.dtype)[:self.n]


class _Spill:
    """The columns of a table too large for memory as the rows of one memory-mapped file (a
    column's values one after the other: float32 numbers and int32 codes, or int64 line
    numbers), `capacity` values a column (its blocks reserved at once), made again half as
    long again when that falls short. One file, not one per column: a file open per column
    would exceed the open files allowed for wide tables."""

    def __init__(self, folder, name, columns, capacity, dtype):
        self.folder, self.name, self.columns, self.dtype = folder, name, columns, dtype
        self.capacity, self.filled, self.made, self.m = max(1, capacity), 0, 0, None
        self.m = self._new(self.capacity)

    def _new(self, capacity):
        self.made += 1
        path = os.path.join(self.folder, f"{self.name}.{self.made}.bin")
        with image_cache.said(os.path.dirname(self.folder),
                              self.columns * capacity * np.dtype(self.dtype).itemsize,
                              "table"):
            m = np.memmap(path, self.dtype, "w+", shape=(self.columns, capacity))
            image_cache.allocate(path)  # a full disk said now, not a crash when written
        if self.m is not None:
            m[:, :self.filled] = self.m[:, :self.filled]
            old, self.m = self.m.filename, None
            os.unlink(old)
        return m

    def put(self, j, at, a, dtype):
        end = at + len(a)
        if end > self.capacity:
            self.capacity = max(end, self.capacity * 3 // 2)
            self.m = self._new(self.capacity)
        self.column(j, dtype)[at:end] = a
        self.filled = max(self.filled, end)

    def column(self, j, dtype):
        row = self.m[j]
        return row if dtype is None or np.dtype(dtype) == row.dtype else row.view(dtype)


class _Columns:
    """Columns growing chunk by chunk: numbers as float32 arrays, text as int32 codes, each
    in a buffer sized for `expect` rows."""

    def __init__(self, path, names, has_header, delim, place, text_columns, expect=1024,
                 spill=None):
        self.path, self.names, self.header, self.delim = path, names, has_header, delim
        self.place, self.text_columns, self.spill = place, text_columns, spill
        self.kinds = None  # per column: True numeric, False text
        if spill is None:
            self.parts = [_Growing(expect) for _ in names]
            self.lines = _Growing(expect)
        else:  # 4 bytes a field, in one file; the line numbers as int64 in another
            columns = _Spill(spill, "columns", len(names), expect, np.float32)
            self.parts = [_Growing(expect, (columns, j)) for j in range(len(names))]
            self.lines = _Growing(expect, (_Spill(spill, "lines", 1, expect, np.int64), 0))
        self.missing = [[] for _ in names]  # numeric columns: missing rows
        self.seen = [{} for _ in names]  # text columns: value -> code, in the order first met
        self.head, self.n, self.error = [], 0, None
        self.switched, self.rows_seen = set(), 0

    def add(self, rows, lines):
        self.rows_seen += len(rows)
        if not rows or self.error:
            return
        width = len(self.names)
        if len(set(map(len, rows))) != 1 or len(rows[0]) != width:
            k = next(k for k, r in enumerate(rows) if len(r) != width)
            self.error = (f"{self.path}, line {lines[k]}: {len(rows[k])} fields, expected "
                          f"{width} (like the {'header' if self.header else 'first row'}); "
                          f"delimiter {quote(self.delim)}")
            return
        if len(self.head) < HEAD_ROWS:
            self.head += rows[:HEAD_ROWS - len(self.head)]
        columns = list(zip(*rows))
        if self.kinds is None:
            self.kinds = [j not in self.text_columns and _all_numbers(col)
                          for j, col in enumerate(columns)]
            for part, kind in zip(self.parts, self.kinds):
                part.dtype = np.float32 if kind else np.int32
        n = len(rows)
        for j, col in enumerate(columns):
            if self.kinds[j]:
                a = self._numbers(j, col, n)
                if a is None:
                    self.switched.add(j)
                    self.kinds[j] = None  # read again as text
                else:
                    self.parts[j].append(_float32(a))
            elif self.kinds[j] is False:
                seen, local = self.seen[j], {}
                for v in set(col):
                    s = v.strip()
                    local[v] = -1 if s.lower() in MISSING else seen.setdefault(s, len(seen))
                self.parts[j].append(np.fromiter(map(local.__getitem__, col), np.int32, n))
        self.lines.append(_line_numbers(np.asarray(lines, np.int64)))
        self.n += n

    def add_numbers(self, lines, offset, delim):
        """Lines of numbers only, parsed by np.loadtxt's C parser; False where the csv module
        must read them (text, missing values, blank lines, a quoted newline, ragged rows), or
        while rows are still kept for the preview."""
        width = len(self.names)
        if self.error or not self.kinds or not all(self.kinds) or len(self.head) < HEAD_ROWS:
            return False
        try:
            with warnings.catch_warnings():  # blank lines only: "input contained no data"
                warnings.simplefilter("ignore")
                a = np.loadtxt(lines, delimiter=delim, dtype=np.float64, comments=None,
                               quotechar='"', ndmin=2)
        except ValueError:
            return False
        if a.shape != (len(lines), width) or np.isnan(a).any():
            return False
        for j in range(width):
            self.parts[j].append(_float32(a[:, j]))
        self.lines.append(_line_numbers(np.arange(offset + 1, offset + len(lines) + 1)))
        self.n += len(lines)
        self.rows_seen += len(lines)
        return True

    def _numbers(self, j, col, n):
        try:
            a = np.fromiter(map(float, col), np.float64, n)
            if not np.isnan(a).any():
                return a
        except ValueError:
            pass
        a = np.empty(n)
        for k, v in enumerate(col):
            if _missing(v):
                a[k] = np.nan
                self.missing[j].append(self.n + k)
                continue
            try:
                a[k] = float(v)
            except ValueError:
                return None
        return a

    def table(self, enc):
        if self.switched:
            raise _Restart(frozenset(self.switched))
        counts = collections.Counter(self.names)
        if len(counts) < len(self.names):
            dup = sorted(n for n, c in counts.items() if c > 1)[0]
            raise DataError(f"{self.path}, line 1: column name {quote(dup)} appears twice",
                            self.place)
        if not self.rows_seen:
            raise DataError(f"{self.path}: no data rows after the header", self.place)
        if self.error:
            raise DataError(self.error, self.place)
        t = Table(self.path, self.names, self.lines.array(), self.delim, self.header,
                  self.head, enc, self.place, self.spill)
        columns = []
        for j, name in enumerate(self.names):
            parts, self.parts[j] = self.parts[j], None
            if self.kinds[j]:
                data = parts.array()
                t._missing_rows[j] = self.missing[j]
                if len(self.missing[j]) < len(data):
                    columns.append(Column(t, j, name, True, data=data))
                    continue
                codes = self._none_present(parts, j, len(data))  # nothing present: no numbers
                del data
            else:
                codes = parts.array()
            del parts
            codes, cats = _sorted_codes(codes, list(self.seen[j]))
            columns.append(Column(t, j, name, False, codes=codes, categories=cats))
        t._set_columns(columns)
        return t

    def _none_present(self, parts, j, n):
        """The codes (-1) of a column with no value present (spilled: in its own place)."""
        if self.spill is None:
            return np.full(n, -1, np.int32)
        matrix, _ = parts.spill
        codes = matrix.column(j, np.int32)[:n]
        codes[:] = -1
        return codes


# a table is read into files (spilled) and converted to the cache when its columns and arrays
# would take more than this fraction of the memory available (docs/performance.md says why)
STREAM_FRACTION = 0.5


def _available_bytes():
    """The memory available to a new allocation: $LAYERLOOM_MEMORY_AVAILABLE (bytes) where
    set, else Linux's MemAvailable; None where unknown."""
    given = os.environ.get("LAYERLOOM_MEMORY_AVAILABLE", "").strip()
    if given:
        try:
            return int(given)
        except ValueError:
            raise DataError(f"expected a number of bytes, got {quote(given)}",
                            "LAYERLOOM_MEMORY_AVAILABLE") from None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def streams(rows, columns):
    """True when a table's columns and the model's arrays made of them (4 bytes a field
    each, at least) would take more than STREAM_FRACTION of the memory available: it is then
    read into files and converted once to the memory-mapped cache (data/table_cache.py)."""
    free = _available_bytes()
    return free is not None and 2 * 4 * rows * columns > free * STREAM_FRACTION


def estimate(path, delimiter="auto"):
    """(rows, columns) of a file guessed from its size and first lines, as `read` guesses
    them (None where the file cannot be read: `read` says why)."""
    try:
        with open(path, "rb") as f:
            start = f.read(1 << 16)
        size = os.path.getsize(path)
    except OSError:
        return None
    text = start.decode("utf-8-sig", "replace")
    lines = text.splitlines(True)[:50]
    if len(lines) > 1 and len(start) == 1 << 16:
        lines = lines[:-1]  # the last one may be cut
    if not lines:
        return None
    delim = sniff_delimiter("".join(lines), path) if delimiter in (None, "auto") else delimiter
    try:
        first = next((r for r in csv.reader(lines, delimiter=delim) if not _blank(r)), None)
    except csv.Error:
        return None
    line = max(1, sum(map(len, lines)) // len(lines))
    return (size // line, len(first)) if first else None


def _float32(a):
    """float64 values as the float32 the model takes (beyond its range: infinite, as a cast
    gives, refused later as not finite)."""
    with np.errstate(over="ignore"):
        return a.astype(np.float32)


def _line_numbers(a):
    """File lines of rows as int32 (half the memory) while they fit, else int64."""
    return a.astype(np.int32) if not len(a) or a[-1] < 2 ** 31 else a


def _all_numbers(col):
    return all(_missing(v) or _is_number(v) for v in col)
