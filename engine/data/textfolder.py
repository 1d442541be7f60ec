"""A folder of .txt files, one subfolder per class (Keras' text_dataset_from_directory layout;
optionally train/ and test/ folders holding the class folders): "x" the files' text, read as
UTF-8, one string per file, for a string Input (data/hostrun.py's TextVectorization), "y" the
class index, classes in sorted order as Keras orders them, files sorted within a class."""
import os

import numpy as np

from layerloom.core.errors import DataError, quote
from layerloom.core.sections import Path
from layerloom.data.arrays import Arrays
from layerloom.data.preprocess import apply_split
from layerloom.data.sources import Source, register


def _classes(folder, place):
    if not os.path.isdir(folder):
        raise DataError(f"not a folder: {folder}", place)
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    if not classes:
        raise DataError(f"{folder} holds no class folders (one subfolder of .txt files per "
                        "class)", place)
    return classes


def _read(folder, classes, place):
    texts, labels = [], []
    for k, c in enumerate(classes):
        root = os.path.join(folder, c)
        names = sorted(e.name for e in os.scandir(root)
                       if e.is_file() and e.name.lower().endswith(".txt"))
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                texts.append(f.read().decode("utf-8", errors="replace"))
            labels.append(k)
    if not texts:
        raise DataError(f"{folder}: no .txt files in its class folders "
                        f"({', '.join(map(quote, classes[:6]))})", place)
    return np.array(texts, object), np.array(labels, np.float32)


def load(d, folder, place="dataset.path"):
    split = _classes(folder, place)
    if split == ["test", "train"]:  # train/ and test/, each holding the class folders
        classes = _classes(os.path.join(folder, "train"), place)
        x, y = _read(os.path.join(folder, "train"), classes, place)
        xt, yt = _read(os.path.join(folder, "test"), classes, place)
        test = {"x": xt, "y": yt}
    else:
        classes = split
        x, y = _read(folder, classes, place)
        test = None
    out = Arrays({"x": x, "y": y}, test,
                 f"{os.path.basename(os.path.normpath(folder))}: {len(y)} texts, "
                 f"{len(classes)} classes", len(classes))
    out.class_names = classes
    return apply_split(out, d)


register(Source(
    "text_folder", "A folder of .txt files, one subfolder per class (Keras' "
    "text_dataset_from_directory; optionally train/ and test/ folders holding them): x the "
    "texts (for a string Input), y the class index.",
    keys=(Path("path", "a folder of class folders", help="Relative to the project file."),),
    load=lambda d, project, progress=None, table=None: load(d, project.resolve(d["path"])),
    array_names=lambda d, project: ["x", "y"]))
