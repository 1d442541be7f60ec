"""A table's columns for the model (data/tabular.py reads the table): a role per column
(feature, label, ignore), missing values and their policy, and the encodings: `column_values`
encodes a column (number, one-hot, index), with the category mappings kept for the project
file, and `encode` writes a set of columns straight into the model's float32 matrices.

Every problem is a DataError naming the file, the line and the column."""
import numpy as np

from layerloom.core.errors import DataError, quote
from layerloom.data.tabular import _is_number, not_numbers


def roles(table, spec):
    """{column: role}: the project's choices, else the last column is the label and the
    others are features."""
    spec = spec or {}
    for name in spec:
        if name not in table:
            raise DataError(f"{table.path}: no column named {quote(name)}; columns: "
                            f"{', '.join(table.names)}", f"dataset.columns.{name}")
    out = {}
    explicit_label = any((s or {}).get("role") == "label" for s in spec.values())
    last = len(table.names) - 1
    for j, name in enumerate(table.names):
        s = spec.get(name) or {}
        out[name] = s.get("role") or ("label" if j == last and not explicit_label
                                      else "feature")
    if "label" not in out.values():
        raise DataError(f"{table.path}: no column has the role \"label\"", "dataset.columns")
    if "feature" not in out.values():
        raise DataError(f"{table.path}: no column has the role \"feature\"", "dataset.columns")
    return out


def missing_mask(table, used):
    """True for the rows with a missing value in any of the `used` columns."""
    mask = np.zeros(len(table), bool)
    for n in used:
        mask |= table.column(n).mask
    return mask


def rows_with_missing(table, used):
    return np.flatnonzero(missing_mask(table, used)).tolist()


def check_missing(table, used, policy):
    if policy == "error":
        for n in used:
            c = table.column(n)
            if c.mask.any():
                missing = c.missing
                i = missing[0]
                more = f" ({len(missing)} missing in this column)" if len(missing) > 1 else ""
                raise DataError(f"{table.path}, line {table.lines[i]}, column {quote(n)}: missing "
                                f"value{more}; set \"missing\" to \"drop\" (drop those rows) or "
                                "\"fill\" (mean or most frequent value of the training rows)",
                                "dataset.missing")


def column_categories(table, name, encoding, categories, fill_rows):
    """The categories a column is encoded with: the saved mapping `categories` when given, else
    those present in the `fill_rows` (the training rows) in _cat_key order; None for
    "number"."""
    if encoding == "number":
        return None
    if categories:
        return list(categories)
    codes, own = table.column(name).text()
    present = np.unique(codes[np.asarray(fill_rows, np.int64)])
    return sorted((own[k] for k in present.tolist() if k >= 0), key=_cat_key)


def column_values(table, name, encoding, categories, rows, fill_rows, out=None):
    """One column as a float matrix (rows x k) for the given rows, plus its categories.
    encoding: number (numeric columns), onehot or index (categorical). `categories`: the
    mapping from the project, if one was saved; unknown values are an error.
    Missing values are filled from `fill_rows` (mean, or most frequent category).
    out: a float32 (rows x k) view, of zeros, the values are written into (and returned)."""
    c = table.column(name)
    place = f"dataset.columns.{name}"
    rows = np.asarray(rows, np.int64)
    fill_rows = np.asarray(fill_rows, np.int64)
    if encoding == "number":
        if not c.numeric:
            codes, own = c.text()
            text = not_numbers(own)
            bad = text[codes[rows]]
            where = rows if bad.any() else np.arange(len(table))
            bad = text[codes[where]]
            if not bad.any():
                raise DataError(f"{table.path}, column {quote(name)}: no values (every row is "
                                "missing)", place)
            i = where[np.argmax(bad)]
            raise DataError(f"{table.path}, line {table.lines[i]}, column {quote(name)}: "
                            f"{quote(own[codes[i]])} is not a number (set the column's "
                            "encoding to \"onehot\" or \"index\" for categories)", place)
        x = c.data[rows]
        mask = c.mask if table._missing_rows.get(c.j) else None  # made only where one is
        if mask is not None and mask[rows].any():
            ref = c.data[fill_rows[~mask[fill_rows]]]
            x[np.isnan(x)] = ref.mean(dtype=np.float64) if ref.size else 0.0
        if out is None:
            return x[:, None], None
        out[:, 0] = x
        return out, None
    codes, own = c.text()
    fill_codes = codes[fill_rows]
    cats = column_categories(table, name, encoding, categories, fill_rows)
    index = {v: k for k, v in enumerate(cats)}
    trans = np.array([index.get(v, -1) for v in own] + [-2], np.int64)
    new = trans[codes[rows]]
    miss = new == -2
    if miss.any():
        present = fill_codes[fill_codes >= 0]
        count = np.bincount(present, minlength=len(own)) if present.size else \
            np.zeros(len(own), np.int64)
        counts = {own[k]: int(count[k]) for k in np.flatnonzero(count).tolist()}
        fill = max(cats, key=lambda v: counts.get(v, 0))
        new[miss] = index[fill]
    unknown = new == -1
    if unknown.any():
        i = rows[np.argmax(unknown)]
        v = own[codes[i]]
        raise DataError(f"{table.path}, line {table.lines[i]}, column {quote(name)}: value "
                        f"{quote(v)} is not one of the {len(cats)} known categories "
                        f"({', '.join(cats[:6])}{', ...' if len(cats) > 6 else ''})", place)
    if encoding == "index":
        if out is None:
            return new[:, None].astype(np.float64), cats
        out[:, 0] = new
        return out, cats
    if out is None:
        out = np.zeros((len(rows), len(cats)), np.float32)  # 0 and 1: float32 holds them
    out[np.arange(len(rows)), new] = 1.0
    return out, cats


def strings(table, name, rows):
    """A text column's stripped strings for the given rows (a missing value: ""), as an
    object array: what a string Input reads (encoding "text")."""
    codes, own = table.column(name).text()
    values = np.array(list(own) + [""], object)
    return values[codes[np.asarray(rows, np.int64)]]


def encode(table, columns, splits, release=False):
    """Columns encoded for the model, each written straight into its group's float32 matrices
    (never a matrix per column beside them: the peak is the table's columns and the
    matrices). columns: [(name, encoding, saved categories or None, group)], encoded (and
    their problems reported) in this order; splits: row index arrays, the first the training
    rows (missing values are filled and categories found from them). Returns ([[matrix
    (len(rows), the group's width) per split] per group], {name: categories} of the
    categorical columns). release: each column's arrays are let go once written (a table read
    for this alone)."""
    fill = np.asarray(splits[0], np.int64)
    plan, widths = [], {}
    for name, encoding, saved, group in columns:
        cats = column_categories(table, name, encoding, saved, fill)
        width = len(cats) if encoding == "onehot" else 1
        plan.append((name, encoding, cats, group, widths.get(group, 0), width))
        widths[group] = widths.get(group, 0) + width
    out = [[np.zeros((len(rows), widths.get(g, 0)), np.float32) for rows in splits]
           for g in range(max(widths, default=-1) + 1)]
    categories = {}
    for name, encoding, cats, group, start, width in plan:
        for rows, m in zip(splits, out[group]):
            column_values(table, name, encoding, cats, rows, fill, m[:, start:start + width])
        if cats is not None:
            categories[name] = cats
        if release:
            table.column(name).release()
    return out, categories


def _cat_key(v):
    """Numbers in numeric order, before text in alphabetical order."""
    return (0, float(v), v) if _is_number(v) else (1, 0.0, v)


def default_encoding(column, role):
    if role == "label":
        return "number" if column.numeric else "index"
    return "number" if column.numeric else "onehot"
