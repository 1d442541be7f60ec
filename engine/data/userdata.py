"""The user's own data as named arrays: CSV/TSV tables, image folders and .npy files (memory
mapped). Each loader returns arrays.Arrays with the training rows, and the validation and
test rows when the project's "split" asks for them."""
import os
import tokenize

import numpy as np

from layerloom.data import idx, imagefolder, preprocess, table_cache, tabular
from layerloom.data.preprocess import apply_split
from layerloom.data.arrays import Arrays
from layerloom.core.errors import DataError
from layerloom.core.sections import Group, MapOf, Option, Path, Size, Str
from layerloom.data.arrays import load_npz
from layerloom.data.forms import ImageForm
from layerloom.data.sources import Source, register

MMAP_BYTES = 64 << 20  # larger .npy arrays stay on disk and are read a batch at a time


def reads_strings(project):
    """The model has a string Input (text layers): a CSV's text feature columns of encoding
    auto are delivered as strings."""
    g = getattr(project, "graph", None)
    return g is not None and any(g.nodes[n].params.get("dtype") == "string"
                                 for n in g.inputs())


def raw_arrays(project):
    """{array name: "string" or "int"}: the arrays that Inputs only host layers read take
    raw (data/hostrun.py), by the Input's dtype: a CSV delivers such a column as its text, or
    as exact integers, never through float32 (which turns a zip code 02134 into "2134.0" and
    merges ids above 2^24). "x" names the lone feature column (an Input mapped to "x")."""
    from layerloom.data import hostrun
    g = getattr(project, "graph", None)
    if g is None:
        return {}
    ins = g.inputs()
    names = dict((getattr(project, "dataset", None) or {}).get("inputs") or {}) or (
        {ins[0]: "x"} if len(ins) == 1 else {n: n for n in ins})
    return {names.get(nid, nid): "string" if g.nodes[nid].params.get("dtype") == "string"
            else "int" for nid in hostrun.host_inputs(g)}


def load_csv(d, path, table=None, progress=None, strings=False):
    """table: the file already read by tabular.read with d's settings (the Data tab reads it
    for its column view first), else it is read here (progress(path, bytes_read, file_bytes)
    while it is). A table too large for the memory available (tabular.streams) goes through
    the data cache (data/table_cache.py: read into files, converted once, trained from
    memory-mapped); any other is encoded in memory."""
    if table is None:
        guess = tabular.estimate(path, d.get("delimiter", "auto"))
        if guess is not None and tabular.streams(*guess):
            return table_cache.load(d, path, None, progress, strings)
        table = tabular.read(path, d.get("delimiter", "auto"), d.get("header", "auto"),
                             progress=progress)
        if table.spill:  # read into files after all (the guess was short): the cache
            try:
                return table_cache.load(d, path, table, progress, strings)
            finally:
                table.close()
        return table_cache.in_memory(d, table, release=True, strings=strings)  # the columns
        # let go once
        # encoded
    if table.spill:
        return table_cache.load(d, path, table, progress, strings)
    return table_cache.in_memory(d, table, strings=strings)


def load_images(d, path, progress=None):
    """progress(folder, done, total, unit): while headers ("files") and images ("images")
    are read, imagefolder.decoded's calls."""
    size = d.get("size") or [32, 32]
    splits, classes = imagefolder.load(path, size, d.get("color", "grayscale"),
                                       progress=progress)
    x, y = splits["train"]
    test = {"x": splits["test"][0], "y": splits["test"][1]} if "test" in splits else None
    out = Arrays({"x": x, "y": y}, test,
                 f"{os.path.basename(os.path.normpath(path))}: {len(y)} images, "
                 f"{len(classes)} classes", len(classes))
    out.class_names = classes
    return apply_split(out, d)


def _is_idx(path):
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] == b"\x1f\x8b":  # gzip: IDX files are often shipped compressed
        return not path.endswith(".npy")
    return len(head) == 4 and head[0] == 0 and head[1] == 0 and head[2] in idx.DTYPES


def load_npy(d, resolve):
    """{"arrays": {name: file}}: .npy files memory-mapped (never unpickled), IDX files (the
    MNIST family, gzipped or not) read whole; an array named `<name>_test` forms the test
    split."""
    files = d.get("arrays") or {}
    if not isinstance(files, dict) or not files:
        raise DataError("expected {array name: path of an .npy file}", "dataset.arrays")
    arrays = {}
    for name, rel in files.items():
        path = resolve(rel)
        place = f"dataset.arrays.{name}"
        if not os.path.isfile(path):
            raise DataError(f"data file not found: {path}", place)
        if _is_idx(path):
            try:
                arrays[name] = idx.load(path)
            except DataError as e:
                raise DataError(str(e), place) from None
            continue
        try:
            a = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            msg = ("holds Python objects (pickled data); only plain numeric arrays are loaded"
                   if "pickle" in str(e).lower() or "object" in str(e).lower() else f"not a readable .npy file ({e})")
            raise DataError(f"{path}: {msg}", place) from None
        except (OSError, EOFError, SyntaxError, tokenize.TokenError) as e:  # a damaged header
            raise DataError(f"{path}: not a readable .npy file ({e})", place) from None
        if a.dtype.kind not in "biuf":
            raise DataError(f"{path}: dtype {a.dtype}; expected numbers", place)
        arrays[name] = preprocess.LazyRows(a) if a.ndim > 1 and a.nbytes > MMAP_BYTES else \
            np.asarray(a)
    train = {k: v for k, v in arrays.items() if not k.endswith("_test")}
    test = {k[:-5]: v for k, v in arrays.items() if k.endswith("_test")}
    return apply_split(Arrays(train, test, f"arrays from {len(files)} files"), d)


def _npz_names(d, project):
    try:
        with np.load(project.resolve(d["path"]), allow_pickle=False) as z:
            return sorted(k for k in z.files if not k.endswith("_test"))
    except Exception:  # unreadable: the names are only a hint for the editor's mapping rows
        return []


register(Source(
    "npz", "Named arrays in an .npz file; arrays named `<name>_test` form the test split.",
    keys=(Path("path", "an .npz file", help="Relative to the project file."),),
    load=lambda d, project, progress=None, table=None: apply_split(
        load_npz(project.resolve(d["path"])), d),
    array_names=_npz_names, editor="file", label=".npz file...",
    file_filter="NumPy arrays (*.npz)"))

COLUMN = Group("", (Option("role", "feature", tabular.ROLES, help="What the column is."),
                    Option("encoding", "auto", tabular.ENCODINGS, help="How it becomes numbers.")),
               expected='an object {"role", "encoding"}')
register(Source(
    "csv", "A CSV or TSV table: a role per column (feature, label, ignore), numeric and "
    "categorical columns, missing values.",
    keys=(Path("path", "a CSV or TSV file", help="Relative to the project file."),
          Option("delimiter", "auto", ("auto",) + tuple(tabular.DELIMITERS),
                 help="The field separator; auto: sniffed."),
          Option("header", "auto", ("auto", True, False), help="Whether row 1 names the columns."),
          Option("missing", "error", tabular.MISSING_POLICIES, help="Empty or NA fields."),
          MapOf("columns", COLUMN, 'an object {column: {"role", "encoding"}}',
                help="Roles and encodings that differ from the guess.")),
    load=lambda d, project, progress=None, table=None: load_csv(
        d, project.resolve(d["path"]), table, progress,
        raw_arrays(project) or reads_strings(project)),
    array_names=lambda d, project: ["x", "y"], editor="data_tab", label="CSV/TSV file..."))

register(Source(
    "images", "A folder of class folders (optionally train/ and test/ folders holding them), "
    "decoded and resized.",
    keys=(Path("path", "a folder of class folders", help="Relative to the project file."),
          Size("size", [32, 32], help="Every image is resized to it."),
          Option("color", "grayscale", imagefolder.COLORS, help="Channels: 1 or 3.")),
    load=lambda d, project, progress=None, table=None: load_images(
        d, project.resolve(d["path"]), progress),
    array_names=lambda d, project: ["x", "y"], normalization="scale", form=lambda d: {
        "x": ImageForm(tuple(d.get("size") or (32, 32)),
                       1 if d.get("color", "grayscale") == "grayscale" else 3)},
    editor="data_tab",
    label="image folder..."))

register(Source(
    "npy", "One .npy (memory-mapped) or IDX file per array; `<name>_test` arrays form the "
    "test split.",
    keys=(MapOf("arrays", Str(nonempty=True), "{array name: path of an .npy file}",
                nonempty=True, help="Relative to the project file."),),
    load=lambda d, project, progress=None, table=None: load_npy(d, project.resolve),
    array_names=lambda d, project: sorted(k for k in (d.get("arrays") or {})
                                          if not k.endswith("_test"))))

