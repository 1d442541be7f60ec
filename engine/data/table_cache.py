"""The CSV source's arrays, two ways (issue 32): a table that fits in memory is encoded into
float32 matrices in memory (tabular_columns.encode); one too large for the memory available
(tabular.streams) is read into a file, each column's values together (tabular.read's spill,
a block of lines at a time), then converted once, a block of rows at a time, into the data
cache (data/image_cache.py: kind "table", one float32 array holding the features' matrix of
the kept rows in file order, then the labels'), and trained from memory-mapped: the splits
are rows of it (preprocess.LazyRows, read a batch at a time, as a large .npy is). The next
run finds the entry and reads nothing of the file but its first and last blocks.

Both ways make the same rows in each split from the same Plan (roles, missing values, the
seeded split), and the same values: the categories and the fill values come from the training
rows, counted a block at a time here; the problems are the same placed errors, the first in
the same order. An entry is keyed by the file's path and the dataset's settings; it holds the
file's size, modification time and a hash of its first and last blocks: a touched file (the
same size and blocks) reuses it, a changed one is converted again."""
import hashlib
import json
import os

import numpy as np

from layerloom.core.errors import DataError, quote
from layerloom.data import image_cache, preprocess, tabular, tabular_columns
from layerloom.data.arrays import Arrays
from layerloom.data.preprocess import LazyRows, split_of

FORMAT = 1
BLOCK_ROWS = 1 << 16  # rows of a column read at a time for its statistics
BLOCK_BYTES = 1 << 20  # of the encoded matrix written at a time (and progress told after)
EDGE_BYTES = 1 << 20  # the first and last blocks of the file hashed for its identity


class Plan:
    """What the CSV source makes of a table: roles, the used columns, the rows kept (missing
    policy "drop"), the split (positions into the kept rows, and the table's rows of each),
    each column's encoding and the categories saved by a previous training."""

    def __init__(self, d, table, strings=False):
        """strings: the model reads a string Input, so a text feature column of encoding auto
        is delivered as its strings (encoding text); or {array name: "string" or "int"}
        (userdata.raw_arrays): a feature column an Input only host layers read is delivered as
        its text (numeric-looking or not) or as exact integers (raw_kind)."""
        spec = d.get("columns") or {}
        roles = tabular_columns.roles(table, spec)
        self.used = used = [n for n in table.names if roles[n] != "ignore"]
        raw = strings if isinstance(strings, dict) else {}
        strings = "string" in raw.values() if raw else bool(strings)
        kinds = raw_kinds(raw, [n for n in used if roles[n] == "feature"])
        policy = d.get("missing", "error")
        tabular_columns.check_missing(table, used, policy)
        self.rows = None  # all of them: the split's indices are the rows
        if policy == "drop":
            self.rows = np.flatnonzero(~tabular_columns.missing_mask(table, used))
            if not len(self.rows):
                raise DataError(f"{table.path}: every row has a missing value",
                                "dataset.missing")
        test, val, seed, shuffle = split_of(d)
        self.kept = len(table) if self.rows is None else len(self.rows)
        self.positions = preprocess.split_indices(self.kept, test, val, seed, shuffle)
        self.splits = tuple(i if self.rows is None else self.rows[i] for i in self.positions)
        saved = (d.get("fitted") or {}).get("categories") or {}
        self.encodings = {}
        for name in used:
            enc = (spec.get(name) or {}).get("encoding") or "auto"
            if enc == "auto" and kinds.get(name):
                enc = "text" if kinds[name] == "string" else INTEGER
            elif enc == "auto" and strings and roles[name] == "feature" and \
                    not table.column(name).numeric:
                enc = "text"
            self.encodings[name] = tabular_columns.default_encoding(
                table.column(name), roles[name]) if enc == "auto" else enc
            if self.encodings[name] == "text" and roles[name] != "feature":
                raise DataError(f"column {quote(name)}: encoding text is for a feature column "
                                "(its strings go to a string Input)",
                                f"dataset.columns.{name}.encoding")
        self.labels = [n for n in used if roles[n] == "label"]
        self.features = [n for n in used if roles[n] == "feature"]
        # text columns: their strings, each an array of its own (data/hostrun.py's layers)
        self.text = [n for n in self.features if self.encodings[n] == "text"]
        # integer columns an IntegerLookup reads: exact int64, each an array of its own
        self.ints = [n for n in self.features if self.encodings[n] == INTEGER]
        # (name, encoding, saved categories or None, group: 0 the features, 1 the labels)
        self.columns = [(n, self.encodings[n], saved.get(n), int(roles[n] == "label"))
                        for n in used if n not in self.text and n not in self.ints]

    def raw(self, table):
        """{column: [its rows per split]}: the text columns' strings, the integer columns'
        exact values."""
        out = {n: [tabular_columns.strings(table, n, rows) for rows in self.splits]
               for n in self.text}
        out.update({n: [integers(table, n, rows) for rows in self.splits] for n in self.ints})
        return out

    def facts(self, path, categories):
        """What Arrays tell besides the rows (JSON: an entry of the cache keeps it)."""
        feature_names = [f for n in self.features for f in (
            [f"{n}={c}" for c in categories[n]] if self.encodings[n] == "onehot" else [n])]
        label = self.labels[0]
        return {"description": f"{os.path.basename(path)}: {self.kept} rows, "
                               f"{len(feature_names)} features, label {', '.join(self.labels)}",
                "classes": len(categories[label]) if label in categories else None,
                "class_names": categories.get(label), "categories": categories,
                "feature_names": feature_names, "labels": len(self.labels),
                "columns": {"features": self.features, "labels": self.labels}}


INTEGER = "integer"  # the Plan's encoding of a column delivered as exact integers


def raw_kinds(raw, features):
    """{feature column: "string" or "int"} of the columns raw Inputs read (raw: {array name:
    kind}): a column by its name, or the lone feature column by "x"."""
    out = {n: raw[n] for n in features if n in raw}
    if len(features) == 1 and "x" in raw:
        out.setdefault(features[0], raw["x"])
    return out


def integers(table, name, rows):
    """A column an int32 Input that only host layers read (IntegerLookup) takes: its values as
    exact int64, read from its text, never through float32 (where distinct ids above 2^24
    merge); anything but a whole number is refused, naming the column."""
    out = []
    for v in tabular_columns.strings(table, name, rows).tolist():
        try:
            i = int(v)
        except ValueError:
            try:
                f = float(v)
            except ValueError:
                f = None
            if f is None or not f.is_integer() or abs(f) >= 2 ** 53:
                raise DataError(f"column {quote(name)} holds {v!r}, not a whole number: the "
                                "int32 Input that reads it (IntegerLookup) takes integers",
                                f"dataset.columns.{name}") from None
            i = int(f)
        if not -2 ** 63 <= i < 2 ** 63:
            raise DataError(f"column {quote(name)} holds {v}, beyond 64-bit integers",
                            f"dataset.columns.{name}")
        out.append(i)
    return np.array(out, np.int64)


def arrays(facts, x, y, texts=None):
    """Arrays of the splits' matrices: x and y [train, validation, test]; texts: {column:
    [strings per split]}, arrays named by their column (and "x", where a lone text column is
    the only feature)."""
    if facts["labels"] == 1:
        y = [m.reshape(-1) for m in y]
    texts = dict(texts or {})
    if len(texts) == 1 and x[0].shape[1] == 0:
        texts["x"] = next(iter(texts.values()))
    parts = [{"x": x[i], "y": y[i], **{k: v[i] for k, v in texts.items()}} for i in range(3)]
    out = Arrays(parts[0], parts[2] if len(x[2]) else None,
                 facts["description"], facts["classes"])
    out.validation = parts[1] if len(x[1]) else None
    out.class_names = facts["class_names"]
    out.categories = facts["categories"]
    out.feature_names = facts["feature_names"]
    out.columns = facts["columns"]
    return out


def in_memory(d, table, release=False, strings=False):
    """The splits encoded into float32 matrices in memory; text columns as their strings."""
    plan = Plan(d, table, strings)
    texts = plan.raw(table)
    (x, y), categories = tabular_columns.encode(table, plan.columns, plan.splits, release=release)
    return arrays(plan.facts(table.path, categories), x, y, texts)


# -- the cache -----------------------------------------------------------------------------
def _settings(d):
    return {"delimiter": d.get("delimiter", "auto"), "header": d.get("header", "auto"),
            "columns": d.get("columns") or {}, "missing": d.get("missing", "error"),
            "split": list(split_of(d)),
            "categories": (d.get("fitted") or {}).get("categories") or {}}


def key_of(path, d):
    text = f"table|{FORMAT}|{os.path.abspath(path)}|{json.dumps(_settings(d), sort_keys=True)}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def identity(path):
    """The file as the cache's index holds it: its size, modification time (ns) and the
    hash of its first and last EDGE_BYTES (and its size)."""
    st = os.stat(path)
    h = hashlib.blake2b(digest_size=16)
    h.update(str(st.st_size).encode())
    with open(path, "rb") as f:
        h.update(f.read(EDGE_BYTES))
        if st.st_size > EDGE_BYTES:
            f.seek(max(EDGE_BYTES, st.st_size - EDGE_BYTES))
            h.update(f.read(EDGE_BYTES))
    return image_cache.Files([os.path.basename(path)], [st.st_size], [st.st_mtime_ns],
                             [np.frombuffer(h.digest(), np.uint8)])


def cached(path, d, ident=None):
    """The cache's entry for the file with these settings, or None: a changed file (another
    size or first or last block) is a miss; a touched one (another time alone) a hit, its
    index rewritten with the new time."""
    ident = ident or identity(path)
    key = key_of(path, d)
    e = image_cache.read(key)
    if e is None or e.kind != "table":
        return None
    f = e.files
    if f.sizes[0] != ident.sizes[0] or not np.array_equal(f.hashes[0], ident.hashes[0]):
        return None
    if f.mtimes[0] != ident.mtimes[0]:
        e = image_cache.write_index(key, ident, e.meta["data"], e.meta["shape"], path,
                                    e.meta["settings"], "table", e.meta["extra"])
    image_cache.use(e)
    return e


def _from_entry(e):
    facts = e.meta["extra"]
    test, val, seed, shuffle = e.meta["settings"]["split"]
    positions = preprocess.split_indices(facts["rows"], test, val, seed, bool(shuffle))
    return _split_arrays(facts, e.open(), positions)


def _split_arrays(facts, data, positions):
    """Splits of the cache's array (the features' matrix, then the labels', one after the
    other): x memory-mapped rows (LazyRows), y read (a few columns: 4 bytes a row each)."""
    n, wx, wy = facts["rows"], facts["width"], facts["label_width"]
    features = data[:n * wx].reshape(n, wx)
    labels = np.array(data[n * wx:n * (wx + wy)]).reshape(n, wy)
    return arrays(facts, [LazyRows(features, p) for p in positions],
                  [labels[p] for p in positions])


def load(d, path, table=None, progress=None, strings=False):
    """The CSV source's arrays through the cache: its entry when the file has one with these
    settings, else the file read into files (or `table`, already read so) and converted.
    progress(path, done, total, unit): bytes while the file is read, "rows" while they are
    converted."""
    ident = identity(path)
    e = None if strings else cached(path, d, ident)  # text columns: never in the cache
    if e is not None:
        return _from_entry(e)
    own = table is None
    if own:
        table = tabular.read(path, d.get("delimiter", "auto"), d.get("header", "auto"),
                             progress=progress, spill=True)
    try:
        return _convert(d, path, table, ident, progress, strings)
    finally:
        if own:
            table.close()


def _convert(d, path, table, ident, progress, strings=False):
    """The table's kept rows encoded, a block at a time, into a new entry of the cache."""
    plan = Plan(d, table, strings)
    if plan.text or plan.ints:
        raise DataError(f"{path}: text and integer columns that text layers read "
                        f"({', '.join(map(quote, plan.text + plan.ints))}) are read in memory, "
                        "and this table is too large for the memory available",
                        "dataset.columns")

    def tick(done=0):  # also during the columns' statistics, before any row is written: 0
        if table.spill:  # rows so far (a call that a cancel or a signal stops at)
            os.utime(table.spill)  # in use: not another process's leftover (image_cache)
        if progress is not None:
            progress(path, done, plan.kept, "rows")
    coder = _Coder(table, plan, tick)
    n = plan.kept
    wx = sum(c.width for c in coder.columns if c.group == 0)
    wy = sum(c.width for c in coder.columns if c.group == 1)
    facts = plan.facts(path, coder.categories)
    facts.update(rows=n, width=wx, label_width=wy)

    def fill(out):
        step = max(1, BLOCK_BYTES // (4 * (wx + wy)))
        for s in range(0, n, step):
            e = min(n, s + step)
            bx, by = coder.block(s, e, wx, wy)
            out[s * wx:e * wx] = bx.reshape(-1)
            out[n * wx + s * wy:n * wx + e * wy] = by.reshape(-1)
            tick(e)

    data = image_cache.write(key_of(path, d), (n * (wx + wy),), fill, ident, path,
                             _settings(d), "table", facts)
    return _split_arrays(facts, data, plan.positions)


def _blocks(order, n, tick=None):
    """Blocks of table rows: of `order` (an index array) in its order, else 0..n-1; tick()
    before each (progress, where a cancel stops)."""
    for s in range(0, n if order is None else len(order), BLOCK_ROWS):
        if tick is not None:
            tick()
        yield np.arange(s, min(n, s + BLOCK_ROWS)) if order is None else \
            np.asarray(order[s:s + BLOCK_ROWS])


def _first(hit, order, n, tick=None):
    """The first table row, in `order` (None: the file's), for which hit(rows) is True."""
    for rows in _blocks(order, n, tick):
        h = hit(rows)
        if h.any():
            return int(rows[np.argmax(h)])
    return None


class _Column:
    """A used column: its encoding and what encodes it (the fill value of a numeric column,
    the categories of a categorical one), found from the training rows a block at a time."""

    def __init__(self, table, name, encoding, saved, group, splits, in_split, tick=None):
        self.name, self.encoding, self.group = name, encoding, group
        self.c = c = table.column(name)
        place = f"dataset.columns.{name}"
        n = len(table)
        self.cats, self.fill, self.width = None, None, 1
        if encoding == "number":
            if not c.numeric:  # as tabular_columns.column_values: the first text in the training
                codes, own = c.text()  # rows, else in the file
                text = tabular.not_numbers(own)
                i = _first(lambda r: text[codes[r]], splits[0], n, tick)
                i = _first(lambda r: text[codes[r]], None, n, tick) if i is None else i
                if i is None:
                    raise DataError(f"{table.path}, column {quote(name)}: no values (every "
                                    "row is missing)", place)
                raise DataError(f"{table.path}, line {table.lines[i]}, column {quote(name)}: "
                                f"{quote(own[codes[i]])} is not a number (set the column's "
                                "encoding to \"onehot\" or \"index\" for categories)", place)
            missing = np.asarray(table._missing_rows.get(c.j, []), np.int64)
            # filled in the splits with a missing value (as column_values: per split)
            self.filled = [bool(len(missing)) and bool((in_split[missing] == k).any())
                           for k in range(3)]
            if any(self.filled):
                mask = c.mask
                total, count = 0.0, 0
                for rows in _blocks(splits[0], n, tick):
                    v = c.data[np.sort(rows[~mask[rows]])]
                    total += float(v.sum(dtype=np.float64))
                    count += len(v)
                self.fill = total / count if count else 0.0
            return
        self.codes, own = codes, own = c.text()
        train = in_split == 0
        counts = np.zeros(len(own), np.int64)
        for rows in _blocks(None, n, tick):
            k = codes[rows]
            k = k[train[rows] & (k >= 0)]
            counts += np.bincount(k, minlength=len(own))
        cats = list(saved) if saved else sorted(
            (own[k] for k in np.flatnonzero(counts).tolist()), key=tabular_columns._cat_key)
        index = {v: k for k, v in enumerate(cats)}
        self.trans = np.array([index.get(v, -1) for v in own] + [-2], np.int64)
        kept = in_split >= 0
        if _first(lambda r: (self.trans[codes[r]] == -2) & kept[r], None, n, tick) is not None:
            by = {own[k]: int(counts[k]) for k in np.flatnonzero(counts).tolist()}
            self.fill = index[max(cats, key=lambda v: by.get(v, 0))]
        for rows in splits:  # as column_values: the first unknown value in split order
            i = _first(lambda r: self.trans[codes[r]] == -1, rows, n, tick)
            if i is not None:
                v = own[codes[i]]
                raise DataError(f"{table.path}, line {table.lines[i]}, column {quote(name)}: "
                                f"value {quote(v)} is not one of the {len(cats)} known "
                                f"categories ({', '.join(cats[:6])}"
                                f"{', ...' if len(cats) > 6 else ''})", place)
        self.cats = cats
        self.width = len(cats) if encoding == "onehot" else 1

    def write(self, out, rows, parts):
        """The column's values for table `rows` (kept, in file order: an index array or a
        slice; `parts` their splits) into `out` (len(parts) x width, zeros)."""
        if self.encoding == "number":
            x = np.array(self.c.data[rows])
            if self.fill is not None:
                fix = np.isnan(x) & np.asarray(self.filled)[parts]
                x[fix] = self.fill
            out[:, 0] = x
            return
        new = self.trans[self.codes[rows]]
        if self.fill is not None:
            new[new == -2] = self.fill
        if self.encoding == "index":
            out[:, 0] = new
        else:
            out[np.arange(len(parts)), new] = 1.0


class _Coder:
    """The used columns' encoders, in the order tabular_columns.encode reports their problems, and
    the matrix's rows a block at a time."""

    def __init__(self, table, plan, tick=None):
        self.plan, n = plan, len(table)
        in_split = np.full(n, -1, np.int8)  # the split of each table row (-1: dropped)
        for k, rows in enumerate(plan.splits):
            in_split[rows] = k
        self.in_split = in_split
        self.columns = [_Column(table, name, enc, saved, group, plan.splits, in_split, tick)
                        for name, enc, saved, group in plan.columns]
        self.categories = {c.name: c.cats for c in self.columns if c.cats is not None}

    def block(self, s, e, width, labels):
        """(features, labels) of the kept rows s..e-1."""
        rows = slice(s, e) if self.plan.rows is None else self.plan.rows[s:e]
        parts = self.in_split[rows]
        out = (np.zeros((e - s, width), np.float32), np.zeros((e - s, labels), np.float32))
        start = [0, 0]
        for c in self.columns:
            c.write(out[c.group][:, start[c.group]:start[c.group] + c.width], rows, parts)
            start[c.group] += c.width
        return out
