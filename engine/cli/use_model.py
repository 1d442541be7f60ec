"""`layerloom --predict`, `--evaluate`, `--export` and `--import`: a trained model used from the
command line (the Python API, layerloom.api, and layerloom.interop underneath). Same conventions
as --run: bad input is exit 2 with its place, outputs are written atomically, nothing is written
on an error. Nothing here imports Qt."""
import csv
import io
import json
import os
import sys

import numpy as np

from layerloom.core.errors import DataError, LayerloomError
from layerloom.core.fileio import atomic_write_bytes, npz_bytes
from layerloom.train.evaluation import CLASSIFICATION, class_names
from layerloom.train.progress import metrics_text

EXIT_OK = 0
OUTPUT_EXTENSIONS = (".csv", ".npy", ".npz")


def _load(path, device):
    from layerloom import api
    model = api.load(path, device)
    if not model.project.weights:
        raise DataError("the project names no trained weights (its \"weights\" key); use the "
                        "trained.loom that layerloom --run wrote", "weights")
    return model


def predict(args, out=None):
    out = sys.stdout if out is None else out  # sys.stdout at the call, not at import
    from layerloom.data import inputs
    if not args.input:
        raise LayerloomError("--predict needs --input FILE (.npy, .npz, .csv, an image or a "
                             "folder of images)")
    ext = os.path.splitext(args.output)[1].lower() if args.output else ".csv"
    if ext not in OUTPUT_EXTENSIONS:
        raise LayerloomError(f"--output: expected a .csv, .npy or .npz file, got {args.output}")
    model = _load(args.predict, args.device)
    f = inputs.read(model.project, args.input)
    result = model.predict(f.arrays)
    result = result if isinstance(result, dict) else {model.outputs[0]: result}
    if ext == ".npy":
        if len(result) != 1:
            raise LayerloomError(f"--output: the model has {len(result)} outputs; write an "
                                 ".npz (an array per output) or a .csv")
        data = _npy_bytes(next(iter(result.values())))
    elif ext == ".npz":
        data = npz_bytes(result)
    else:
        data = predictions_csv(model, result, f.names).encode("utf-8")
    if args.output:
        atomic_write_bytes(args.output, data)
        n = len(next(iter(result.values())))
        out.write(f"Predicted {n} sample(s) of {f.description}; wrote {args.output}\n")
    else:
        out.write(data.decode("utf-8"))
    return EXIT_OK


def _npy_bytes(a):
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def predictions_csv(model, result, names=None):
    """One row per sample: for a classifier output its class name and a probability per class,
    for another output its values; a column group per output when there are several."""
    losses = {o: e.get("name") if isinstance(e, dict) else e
              for o, e in (model.project.training.get("loss") or {}).items()}
    header, columns = (["file"], [names]) if names else ([], [])
    several = len(result) > 1
    for o, a in result.items():
        a = a.reshape(len(a), -1)
        prefix = f"{o}:" if several else ""
        if losses.get(o) in CLASSIFICATION and a.shape[1] > 1:
            classes = class_names(model.project, a.shape[1],
                                  (model.project.dataset.get("fitted") or {}).get(
                                      "categories", {}).get(_label_column(model)))
            header.append(o if several else "class")
            columns.append([classes[k] for k in a.argmax(1)])
            for k, c in enumerate(classes):
                header.append(f"{prefix}{c}")
                columns.append([f"{v:.6g}" for v in a[:, k]])
        else:
            for k in range(a.shape[1]):
                header.append(f"{o if several else 'value'}" + (f"[{k}]" if a.shape[1] > 1
                                                                 else ""))
                columns.append([f"{v:.6g}" for v in a[:, k]])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(zip(*columns))
    return buf.getvalue()


def _label_column(model):
    cols = (model.project.dataset.get("fitted") or {}).get("columns")
    labels = cols.get("labels") if isinstance(cols, dict) else None
    return labels[0] if isinstance(labels, list) and len(labels) == 1 else None


def evaluate(args, out=None):
    """Loss and metrics on the project's test split, or on a labelled --input file."""
    out = sys.stdout if out is None else out  # sys.stdout at the call, not at import
    from layerloom.data import inputs
    model = _load(args.evaluate, args.device)
    if args.input:
        f = inputs.read(model.project, args.input)
        x, y = _split_labelled(model, f)
        logs, on = model.evaluate(x, y), f.description
    else:
        logs, on = model.evaluate(), "the project's test split"
    out.write(f"Evaluated on {on}: {metrics_text(logs)}\n")
    if args.json:
        atomic_write_bytes(args.json, (json.dumps(logs, indent=2) + "\n").encode("utf-8"))
    return EXIT_OK


def _split_labelled(model, f):
    """(inputs, targets) of a file read for evaluation, by array name."""
    from layerloom.data.prepare import input_target
    targets = (model.project.dataset.get("targets") or {})
    if all(input_target(targets.get(o)) for o in model.outputs):  # trained towards its inputs
        return dict(f.arrays), None
    target_names = set(targets.values()) or {"y"}
    y = dict(f.labels) or {k: v for k, v in f.arrays.items() if k in target_names}
    x = {k: v for k, v in f.arrays.items() if k not in y}
    if not y:
        raise DataError(f"{f.description}: no labels to evaluate against (a label column, or "
                        f"arrays named {', '.join(sorted(target_names))})", "--input")
    return x, y


def export(args, out=None):
    out = sys.stdout if out is None else out  # sys.stdout at the call, not at import
    if not args.to:
        raise LayerloomError("--export needs --to FILE (.onnx, .keras, or a .py script with "
                             "--format keras-code or pytorch-code)")
    model = _load(args.export, args.device)
    fmt = model.export(args.to, format=args.format)
    out.write(f"Exported {args.export} to {args.to} ({fmt})\n")
    return EXIT_OK


def import_onnx(args, out=None):
    """--import MODEL (.onnx, .keras, .h5) --to PROJECT.loom."""
    out = sys.stdout if out is None else out  # sys.stdout at the call, not at import
    if not args.to or not args.to.endswith(".loom"):
        raise LayerloomError("--import needs --to PROJECT.loom")
    from layerloom import interop
    project = interop.importer(args.import_onnx).convert(args.import_onnx, args.to)
    out.write(f"Imported {args.import_onnx}: {len(project.graph.nodes)} layers; wrote {args.to} "
              f"and {os.path.basename(args.to)}.weights.npz\n")
    return EXIT_OK
