"""CSV and TSV files: delimiter sniffing, header detection, a role per column (feature, label,
ignore), numeric and categorical columns, missing values. Produces a `Table` of raw columns;
`encode` turns it into arrays with the category mappings kept for the project file.

Every problem is a DataError naming the file, the line and the column."""
import csv
import io
import os

import numpy as np

from layerloom.core.errors import DataError, quote

MISSING = {"", "na", "n/a", "nan", "null", "none", "?", "-"}
DELIMITERS = ",\t;|"
ROLES = ("feature", "label", "ignore")
ENCODINGS = ("auto", "onehot", "index", "number")
MISSING_POLICIES = ("error", "drop", "fill")


def _is_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def _missing(s):
    return s.strip().lower() in MISSING


def _read_text(path, place):
    if not os.path.isfile(path):
        raise DataError(f"data file not found: {path}", place)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror})", place) from None
    if b"\0" in raw[:4096]:
        raise DataError(f"{path}: not a text file (binary bytes at the start)", place)
    for enc in ("utf-8-sig", "latin-1"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue


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
    def __init__(self, name, values):
        self.name, self.values = name, values  # list of str, one per row
        self.missing = [i for i, v in enumerate(values) if _missing(v)]
        present = [v for v in values if not _missing(v)]
        self.numeric = bool(present) and all(_is_number(v) for v in present)
        self.categories = sorted(set(v.strip() for v in present)) if not self.numeric else None


class Table:
    """The parsed file: columns by name in file order, and the file line of each row."""

    def __init__(self, path, columns, lines, delimiter, header):
        self.path, self.columns, self.lines = path, columns, lines
        self.delimiter, self.header = delimiter, header

    @property
    def names(self):
        return [c.name for c in self.columns]

    def __len__(self):
        return len(self.lines)

    def column(self, name):
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def preview(self, rows=20):
        return [[c.values[i] for c in self.columns] for i in range(min(rows, len(self)))]


def read(path, delimiter="auto", header="auto", place="dataset.path"):
    text = _read_text(path, place)
    if not text.strip():
        raise DataError(f"{path}: the file is empty", place)
    delim = sniff_delimiter(text, path) if delimiter in (None, "auto") else delimiter
    rows, lines = [], []
    reader = csv.reader(io.StringIO(text), delimiter=delim)
    try:
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as e:
        raise DataError(f"{path}, line {reader.line_num}: {e}", place) from None
    has_header = detect_header(rows) if header in (None, "auto") else bool(header)
    if has_header:
        names = [c.strip() or f"column_{j + 1}" for j, c in enumerate(rows[0])]
        rows, lines = rows[1:], lines[1:]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise DataError(f"{path}, line 1: column name {quote(sorted(dup)[0])} appears twice",
                            place)
    else:
        names = [f"column_{j + 1}" for j in range(len(rows[0]))]
    if not rows:
        raise DataError(f"{path}: no data rows after the header", place)
    width = len(names)
    for row, line in zip(rows, lines):
        if len(row) != width:
            raise DataError(f"{path}, line {line}: {len(row)} fields, expected {width} "
                            f"(like the {'header' if has_header else 'first row'}); "
                            f"delimiter {quote(delim)}", place)
    columns = [Column(n, [r[j] for r in rows]) for j, n in enumerate(names)]
    return Table(path, columns, lines, delim, has_header)


def roles(table, spec):
    """{column: role}: the project's choices, else the last column is the label and the
    others are features."""
    spec = spec or {}
    for name in spec:
        if name not in table.names:
            raise DataError(f"{table.path}: no column named {quote(name)}; columns: "
                            f"{', '.join(table.names)}", f"dataset.columns.{name}")
    out = {}
    explicit_label = any((s or {}).get("role") == "label" for s in spec.values())
    for j, name in enumerate(table.names):
        s = spec.get(name) or {}
        role = s.get("role") or ("label" if j == len(table.names) - 1 and not explicit_label
                                 else "feature")
        out[name] = role
    if "label" not in out.values():
        raise DataError(f"{table.path}: no column has the role \"label\"", "dataset.columns")
    if "feature" not in out.values():
        raise DataError(f"{table.path}: no column has the role \"feature\"", "dataset.columns")
    return out


def rows_with_missing(table, used):
    return sorted({i for n in used for i in table.column(n).missing})


def check_missing(table, used, policy):
    if policy == "error":
        for n in used:
            c = table.column(n)
            if c.missing:
                i = c.missing[0]
                more = f" ({len(c.missing)} missing in this column)" if len(c.missing) > 1 else ""
                raise DataError(f"{table.path}, line {table.lines[i]}, column {quote(n)}: missing "
                                f"value{more}; set \"missing\" to \"drop\" (drop those rows) or "
                                "\"fill\" (mean or most frequent value of the training rows)",
                                "dataset.missing")


def column_values(table, name, encoding, categories, rows, fill_rows):
    """One column as a float matrix (rows x k) for the given rows, plus its categories.
    encoding: number (numeric columns), onehot or index (categorical). `categories`: the
    mapping from the project, if one was saved; unknown values are an error.
    Missing values are filled from `fill_rows` (mean, or most frequent category)."""
    c = table.column(name)
    place = f"dataset.columns.{name}"
    vals = [c.values[i].strip() for i in rows]
    miss = [_missing(v) for v in vals]
    if encoding == "number":
        if not c.numeric:
            bad = next(i for i in rows if not _missing(c.values[i]) and
                       not _is_number(c.values[i]))
            raise DataError(f"{table.path}, line {table.lines[bad]}, column {quote(name)}: "
                            f"{quote(c.values[bad].strip())} is not a number (set the column's "
                            "encoding to \"onehot\" or \"index\" for categories)", place)
        x = np.array([np.nan if m else float(v) for v, m in zip(vals, miss)], np.float64)
        if any(miss):
            ref = np.array([float(c.values[i]) for i in fill_rows if not _missing(c.values[i])])
            x[np.isnan(x)] = ref.mean() if ref.size else 0.0
        return x[:, None], None
    cats = list(categories) if categories else sorted(
        {c.values[i].strip() for i in fill_rows if not _missing(c.values[i])}, key=_cat_key)
    index = {v: k for k, v in enumerate(cats)}
    if any(miss):
        counts = {}
        for i in fill_rows:
            v = c.values[i].strip()
            if not _missing(v):
                counts[v] = counts.get(v, 0) + 1
        fill = max(cats, key=lambda v: counts.get(v, 0))
        vals = [fill if m else v for v, m in zip(vals, miss)]
    codes = np.empty(len(vals), np.int64)
    for k, (i, v) in enumerate(zip(rows, vals)):
        if v not in index:
            raise DataError(f"{table.path}, line {table.lines[i]}, column {quote(name)}: value "
                            f"{quote(v)} is not one of the {len(cats)} known categories "
                            f"({', '.join(cats[:6])}{', ...' if len(cats) > 6 else ''})", place)
        codes[k] = index[v]
    if encoding == "index":
        return codes[:, None].astype(np.float64), cats
    onehot = np.zeros((len(vals), len(cats)))
    onehot[np.arange(len(vals)), codes] = 1.0
    return onehot, cats


def _cat_key(v):
    """Numbers in numeric order, before text in alphabetical order."""
    return (0, float(v), v) if _is_number(v) else (1, 0.0, v)


def default_encoding(column, role):
    if role == "label":
        return "number" if column.numeric else "index"
    return "number" if column.numeric else "onehot"
