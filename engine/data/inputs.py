"""A file a user wants predictions for, or wants a model evaluated on, read as the project's
training read its data: `.npy` (the one input's samples), `.npz` (arrays named after the Input
nodes or the arrays the project maps to them), a CSV/TSV file with the training columns (the
label may be absent; the categories fitted at training are used), one image or a folder of images
(decoded, coloured, resized and scaled as in training, for a model trained on any image
source). Returns named arrays, before normalisation:
prepare.prepare_inputs applies the fitted statistics as for training."""
import os

import numpy as np

from layerloom.core.errors import DataError, quote
from layerloom.data import forms, imagefolder, table_cache, tabular, tabular_columns, userdata
from layerloom.data.arrays import load_npz

PLACE = "--input"
TABLE_EXTENSIONS = (".csv", ".tsv", ".txt")


class InputFile:
    """Named arrays read from a file: `arrays` {name: array}, `labels` {name: array} when the
    file has them (a labelled CSV, image class folders), `names` (a row label per sample: the
    image files) and a description for messages."""

    def __init__(self, arrays, labels=None, names=None, description=""):
        self.arrays, self.labels, self.names = arrays, labels or {}, names
        self.description = description


def read(project, path):
    """The file at `path` as the project's inputs (and labels where it has them)."""
    text = (project.dataset or {}).get("source") == "text_folder"
    if os.path.isdir(path):
        return _texts(project, path) if text else _images(project, path)
    if not os.path.isfile(path):
        raise DataError(f"file not found: {path}", PLACE)
    ext = os.path.splitext(path)[1].lower()
    if text and ext == ".txt":
        return _texts(project, path)
    if ext == ".npy":
        return _npy(project, path)
    if ext == ".npz":
        arrays = load_npz(path, PLACE)
        return InputFile(dict(arrays.train), description=os.path.basename(path))
    if ext in TABLE_EXTENSIONS:
        return _table(project, path)
    if ext in imagefolder.EXTENSIONS:
        return _images(project, path)
    raise DataError(f"{path}: expected .npy, .npz, .csv/.tsv, an image "
                    f"({', '.join(imagefolder.EXTENSIONS)}) or a folder of images", PLACE)


def _single_input(project):
    ins = project.graph.inputs()
    if len(ins) != 1:
        raise DataError(f"the model has {len(ins)} inputs ({', '.join(map(repr, ins))}); give "
                        "an .npz file with an array named after each", PLACE)
    return ins[0]


def _npy(project, path):
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        raise DataError(f"{path}: not a readable .npy file of numbers ({e})", PLACE) from None
    if a.dtype.kind not in "biuf":
        raise DataError(f"{path}: dtype {a.dtype}; expected numbers", PLACE)
    name = (project.dataset.get("inputs") or {}).get(_single_input(project), "x")
    return InputFile({name: a}, description=os.path.basename(path))


def _fitted_columns(d):
    """(feature columns, label columns) recorded by training, if a checked list of names."""
    cols = (d.get("fitted") or {}).get("columns")
    if not isinstance(cols, dict):
        return None, None
    lists = [cols.get(k) for k in ("features", "labels")]
    if not all(isinstance(v, list) and all(isinstance(n, str) for n in v) for v in lists):
        raise DataError("expected lists of column names", "dataset.fitted.columns")
    return lists


def _dataset_of(project, source, path, what):
    """The project's dataset section, refusing a file of another kind than it trained on."""
    d = project.dataset
    if d.get("source") != source:
        raise DataError(f"{path}: {what}, but the model was trained on "
                        f"{quote(d.get('source'))} data", PLACE)
    return d


def _table(project, path):
    d = _dataset_of(project, "csv", path, "a CSV file")
    table = tabular.read(path, d.get("delimiter", "auto"), d.get("header", "auto"), PLACE)
    spec = d.get("columns") or {}
    features, labels = _fitted_columns(d)
    if features is None:  # a project not trained yet: its choices, or the last column
        roles = tabular_columns.roles(table, spec)
        features = [n for n in table.names if roles[n] == "feature"]
        labels = [n for n in table.names if roles[n] == "label"]
    missing = [n for n in features if n not in table]
    if missing:
        raise DataError(f"{path}: no column {', '.join(map(repr, missing))} (the model was "
                        f"trained on {', '.join(features)})", PLACE)
    labelled = [n for n in labels if n in table]
    if labelled and len(labelled) != len(labels):
        raise DataError(f"{path}: has label column {quote(labelled[0])} but not "
                        f"{', '.join(repr(n) for n in labels if n not in labelled)}", PLACE)
    used = features + labelled
    policy = d.get("missing", "error")
    tabular_columns.check_missing(table, used, "error" if policy == "drop" else policy)
    saved = (d.get("fitted") or {}).get("categories") or {}
    rows = np.arange(len(table))

    raw = userdata.raw_arrays(project)
    strings = "string" in raw.values() if raw else userdata.reads_strings(project)
    kinds = table_cache.raw_kinds(raw, features)

    def encoding(name, role):  # as training delivered it (table_cache.Plan)
        enc = (spec.get(name) or {}).get("encoding") or "auto"
        if enc == "auto" and role == "feature" and kinds.get(name):
            return "text" if kinds[name] == "string" else table_cache.INTEGER
        if enc == "auto" and strings and role == "feature" and not table.column(name).numeric:
            return "text"
        return tabular_columns.default_encoding(table.column(name), role) if enc == "auto" else enc

    def column(name, role):
        return tabular_columns.column_values(table, name, encoding(name, role),
                                             saved.get(name), rows, rows)[0]
    texts = {n: tabular_columns.strings(table, n, rows) if encoding(n, "feature") == "text" else
             table_cache.integers(table, n, rows) for n in features
             if encoding(n, "feature") in ("text", table_cache.INTEGER)}
    others = [n for n in features if n not in texts]
    x = np.concatenate([column(n, "feature") for n in others], 1).astype(np.float32) if \
        others else np.zeros((len(table), 0), np.float32)
    arrays = {"x": x, **texts}
    if len(texts) == 1 and not others:
        arrays["x"] = next(iter(texts.values()))
    out = InputFile(arrays, description=f"{os.path.basename(path)}: {len(table)} rows")
    if labelled:
        ys = [column(n, "label") for n in labelled]
        out.labels = {"y": ys[0].reshape(-1).astype(np.float32) if len(ys) == 1 else
                      np.concatenate(ys, 1).astype(np.float32)}
    return out


def _texts(project, path):
    """A .txt file (one text), or a folder of them, for a model trained on a text folder:
    "x" the texts, read as UTF-8, one per file (sorted by name)."""
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(path, n) for n in os.listdir(path) if n.lower().endswith(".txt"))
    if not files:
        raise DataError(f"{path}: no .txt files", PLACE)
    texts = []
    for f in files:
        with open(f, "rb") as fh:
            texts.append(fh.read().decode("utf-8", errors="replace"))
    return InputFile({"x": np.array(texts, object)}, names=[os.path.basename(f) for f in files],
                     description=f"{len(files)} text file(s)")


def _images(project, path):
    """Image files decoded as the model's source decodes its own (size and colour; its pixel
    scaling is applied by prepare_inputs, as to any raw array): any image source, Keras' image
    sets or an image folder."""
    nid = _single_input(project)
    form = forms.input_form(project, nid)
    if form is None:
        raise DataError(f"{path}: images, but the model was trained on "
                        f"{forms.source_words(project)}; give its samples as the training "
                        "data had them (.npy, .npz or a CSV file)", PLACE)
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path)
                       if f.lower().endswith(imagefolder.EXTENSIONS) and not f.startswith("."))
        if not files:
            raise DataError(f"{path}: no images ({', '.join(imagefolder.EXTENSIONS)})", PLACE)
    else:
        files = [path]
    imagefolder.check_sizes(files, PLACE)  # every header before any image is decoded
    x = np.stack([imagefolder.decode(f, form.size, form.color, PLACE) for f in files])
    return InputFile({forms.array_of(project, nid): x}, names=[os.path.basename(f) for f in files],
                     description=f"{len(files)} image(s) from {path}")
