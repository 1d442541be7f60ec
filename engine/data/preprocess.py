"""Preparation shared by every data source: seeded train/validation/test splits, rows of a
memory-mapped array read per batch, and normalisation fitted on the training split only.

Fitted statistics are plain JSON ({"kind", "shift", "scale"}, x' = (x - shift) * scale), kept
in the project under dataset.fitted.normalization so prediction uses the same numbers."""
import numpy as np

from layerloom.core.errors import DataError, quote
from layerloom.data.arrays import Arrays

NORMALIZATIONS = ("none", "standardize", "minmax", "scale")
CHUNK = 4096


class LazyRows:
    """Rows of a (possibly memory-mapped) array, optionally a subset by index, converted to
    float32 and transformed only when a batch is taken: a set larger than memory trains
    without being loaded. Indexing with a slice or index array returns a numpy array."""

    def __init__(self, base, rows=None, transform=None):
        self.base, self.rows, self.transform = base, rows, transform

    def __len__(self):
        return len(self.rows) if self.rows is not None else len(self.base)

    @property
    def shape(self):
        return (len(self),) + tuple(self.base.shape[1:])

    @property
    def ndim(self):
        return self.base.ndim

    dtype = np.dtype(np.float32)

    def subset(self, idx):
        rows = np.arange(len(self.base))[idx] if self.rows is None else self.rows[idx]
        return LazyRows(self.base, np.asarray(rows), self.transform)

    def with_transform(self, transform):
        return LazyRows(self.base, self.rows, transform)

    def __getitem__(self, idx):
        if self.rows is not None:
            rows = self.rows[idx]
            if np.ndim(rows) == 0:
                a = self.base[int(rows)][None]
            else:  # read in file order (faster on disk), hand back in the asked order
                rows = np.asarray(rows)
                order = np.argsort(rows, kind="stable")
                a = np.empty((len(rows),) + self.base.shape[1:], self.base.dtype)
                a[order] = self.base[rows[order]]
        else:
            a = self.base[idx]
            if np.ndim(idx) == 0 and not isinstance(idx, slice):
                a = a[None]
        a = np.asarray(a, np.float32)
        return self.transform(a) if self.transform is not None else a

    def chunks(self):
        for s in range(0, len(self), CHUNK):
            yield self[s:s + CHUNK]


def as_rows(a, dtype=None):
    """Lazy rows as they are; anything else as a numpy array (contiguous, of `dtype`, when
    given)."""
    if isinstance(a, LazyRows):
        return a
    return np.asarray(a) if dtype is None else np.ascontiguousarray(a, dtype)


def take(a, idx):
    """Rows of a plain or lazy array; lazy arrays stay lazy."""
    return a.subset(idx) if isinstance(a, LazyRows) else a[idx]


def split_indices(n, test=0.0, validation=0.0, seed=0, shuffle=True):
    """(train, validation, test) index arrays: a seeded permutation cut into parts; the
    fractions are of all n rows. Empty parts are empty arrays."""
    if not 0 <= test < 1 or not 0 <= validation < 1 or test + validation >= 1:
        raise DataError(f"split fractions must be in [0, 1) and leave training rows; got test "
                        f"{test}, validation {validation}", "dataset.split")
    order = (np.random.default_rng([int(seed) & 0xFFFFFFFF, 7]).permutation(n)
             if shuffle and (test or validation) else np.arange(n))  # no split: file order
    n_test, n_val = int(round(n * test)), int(round(n * validation))
    return order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]


def _axes(shape):
    """Statistics per feature for (N, F) data, per channel for images (N, H, W, C) and
    sequences (N, T, F): every axis but the last is reduced."""
    return tuple(range(len(shape) - 1)) if len(shape) > 1 else (0,)


def fit(kind, x):
    """Fit normalisation statistics on the training rows x (array or LazyRows), in chunks."""
    if kind not in NORMALIZATIONS:
        raise DataError(f"unknown normalisation {quote(kind)}; expected one of "
                        f"{', '.join(NORMALIZATIONS)}", "dataset.normalize")
    if kind == "none":
        return None
    if kind == "scale":
        return {"kind": "scale", "shift": [0.0], "scale": [1.0 / 255.0]}
    if len(x) == 0:
        raise DataError("cannot fit the normalisation: the training split is empty",
                        "dataset.normalize")
    parts = x.chunks() if isinstance(x, LazyRows) else (
        np.asarray(x[s:s + CHUNK], np.float64) for s in range(0, len(x), CHUNK))
    count, total, sq, lo, hi = 0, 0.0, 0.0, None, None
    for c in parts:
        c = np.asarray(c, np.float64)
        ax = _axes(c.shape)
        count += int(np.prod([c.shape[a] for a in ax]))
        total = total + c.sum(ax)
        sq = sq + (c * c).sum(ax)
        lo = c.min(ax) if lo is None else np.minimum(lo, c.min(ax))
        hi = c.max(ax) if hi is None else np.maximum(hi, c.max(ax))
    if kind == "standardize":
        mean = total / count
        std = np.sqrt(np.maximum(sq / count - mean * mean, 0.0))
        scale = np.where(std > 1e-12, 1.0 / np.where(std > 1e-12, std, 1.0), 1.0)
        return {"kind": kind, "shift": np.atleast_1d(mean).tolist(),
                "scale": np.atleast_1d(scale).tolist()}
    rng = hi - lo
    scale = np.where(rng > 1e-12, 1.0 / np.where(rng > 1e-12, rng, 1.0), 1.0)
    return {"kind": kind, "shift": np.atleast_1d(lo).tolist(),
            "scale": np.atleast_1d(scale).tolist()}


def matches(stats, kind, shape):
    """Saved statistics can be reused for this kind of normalisation and sample shape."""
    if not isinstance(stats, dict) or stats.get("kind") != kind:
        return False
    n = len(stats.get("shift", []))
    return n in (1, shape[-1] if shape else 1) and len(stats.get("scale", [])) == n


def transform(stats):
    shift = np.asarray(stats["shift"], np.float32)
    scale = np.asarray(stats["scale"], np.float32)

    def apply(a):
        return ((np.asarray(a, np.float32) - shift) * scale).astype(np.float32, copy=False)
    return apply


def apply(stats, x):
    if stats is None:
        return x
    f = transform(stats)
    return x.with_transform(chain(x.transform, f)) if isinstance(x, LazyRows) else f(x)


def chain(first, second):
    """first, then second (either may be None)."""
    if first is None:
        return second
    return lambda a: second(first(a))


def split_of(d):
    s = d.get("split") or {}
    return (float(s.get("test", 0.0)), float(s.get("validation", 0.0)), int(s.get("seed", 0)),
            bool(s.get("shuffle", True)))


def apply_split(arrays, d):
    """Cut validation (and test, when the source has none) rows from the training arrays."""
    test, val, seed, shuffle = split_of(d)
    if arrays.test:
        test = 0.0  # the source's own test split wins
    if not test and not val:
        return arrays
    n = len(next(iter(arrays.train.values())))
    tr, va, te = split_indices(n, test, val, seed, shuffle)
    part = lambda idx: {k: take(v, idx) for k, v in arrays.train.items()}  # noqa
    out = Arrays(part(tr), arrays.test or (part(te) if len(te) else None), arrays.description,
                 arrays.classes)
    out.validation = part(va) if len(va) else None
    out.class_names, out.categories = arrays.class_names, arrays.categories
    out.columns = arrays.columns
    return out
