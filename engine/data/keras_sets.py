"""Keras' built-in datasets, found locally or downloaded with their content verified.

Search order for each dataset: $LAYERLOOM_DATA_DIR/<name>/, the user cache folder
(~/.cache/layerloom/datasets/<name>/, honouring $XDG_CACHE_HOME), then known system folders
(Debian's dataset-fashion-mnist installs /usr/share/datasets/fashion-mnist). Files found
locally are checked for structure; downloaded files must match the canonical sha256 before they
are kept. Arrays follow keras.datasets: same splits and label meanings; images come as NHWC
float32 scaled to [0, 1] (`scale: false` keeps 0..255)."""
import hashlib
import os
import sys
import tempfile
import urllib.request

import numpy as np

from layerloom.data import idx, keras_files
from layerloom.core.errors import DataError, quote
from layerloom.core.params import Bool, Choice, Int
from layerloom.core.sections import Group, Option
from layerloom.data.arrays import Arrays
from layerloom.data.preprocess import apply_split
from layerloom.data.sources import Source, register

KERAS_BASE = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
TORONTO = "https://www.cs.toronto.edu/~kriz/"
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")

DATASETS = {
    "fashion_mnist": {
        "folder_names": ("fashion_mnist", "fashion-mnist"),
        "system": ("/usr/share/datasets/fashion-mnist",),
        # sha256 of the decompressed IDX files (the gz bytes differ between mirrors)
        "idx_sha256": {
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        "download": [(KERAS_BASE + f + ".gz", f) for f in IDX_FILES],
        "classes": FASHION_CLASSES,
        "shape": (28, 28, 1),
        "hint": "apt-get install dataset-fashion-mnist (Debian/Ubuntu)",
        "download_mb": 30,  # what a download fetches, about
        "description": "Fashion-MNIST, 28x28 grayscale, 10 classes",
    },
    "mnist": {
        "folder_names": ("mnist",),
        "system": ("/usr/share/datasets/mnist",),
        "sha256": {"mnist.npz": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"},
        "download": [(KERAS_BASE + "mnist.npz", "mnist.npz")],
        "classes": tuple(str(i) for i in range(10)),
        "shape": (28, 28, 1),
        "hint": "download mnist.npz (as keras.datasets.mnist uses) into one of those folders",
        "download_mb": 11,
        "description": "MNIST handwritten digits, 28x28 grayscale, 10 classes",
    },
    # The sets below: one canonical file each (the URL and sha256 keras.datasets uses).
    "cifar10": {
        "file": "cifar-10-python.tar.gz",
        "sha256": {"cifar-10-python.tar.gz":
                   "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"},
        "download": [(TORONTO + "cifar-10-python.tar.gz", "cifar-10-python.tar.gz")],
        "read": lambda path, p: keras_files.read_cifar(path),
        "shape": (32, 32, 3),
        "classes": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                    "ship", "truck"),
        "download_mb": 163,
        "description": "CIFAR-10, 32x32 colour images, 10 classes",
    },
    "cifar100": {
        "file": "cifar-100-python.tar.gz",
        "sha256": {"cifar-100-python.tar.gz":
                   "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"},
        "download": [(TORONTO + "cifar-100-python.tar.gz", "cifar-100-python.tar.gz")],
        "read": lambda path, p: keras_files.read_cifar(path, True, p.get("label_mode", "fine")),
        "shape": (32, 32, 3),
        "classes": tuple(str(i) for i in range(100)),
        "download_mb": 161,
        "description": "CIFAR-100, 32x32 colour images, 100 fine classes (label_mode "
                       "\"coarse\": 20)",
    },
    "imdb": {
        "file": "imdb.npz",
        "sha256": {"imdb.npz": "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"},
        "download": [(KERAS_BASE + "imdb.npz", "imdb.npz")],
        "read": lambda path, p: keras_files.read_imdb(path, p.get("num_words", 10000),
                                                      p.get("maxlen", 200)),
        "classes": ("negative", "positive"),
        "download_mb": 17,
        "description": "IMDB reviews as word indices (num_words most frequent, padded to "
                       "maxlen), 2 classes",
    },
    "reuters": {
        "file": "reuters.npz",
        "sha256": {"reuters.npz":
                   "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916"},
        "download": [(KERAS_BASE + "reuters.npz", "reuters.npz")],
        "read": lambda path, p: keras_files.read_reuters(path, p.get("num_words", 10000),
                                                         p.get("maxlen", 200)),
        "classes": ("cocoa", "grain", "veg-oil", "earn", "acq", "wheat", "copper", "housing",
                    "money-supply", "coffee", "sugar", "trade", "reserves", "ship", "cotton",
                    "carcass", "crude", "nat-gas", "cpi", "money-fx", "interest", "gnp",
                    "meal-feed", "alum", "oilseed", "gold", "tin", "strategic-metal",
                    "livestock", "retail", "ipi", "iron-steel", "rubber", "heat", "jobs", "lei",
                    "bop", "zinc", "orange", "pet-chem", "dlr", "gas", "silver", "wpi", "hog",
                    "lead"),
        "download_mb": 2,
        "description": "Reuters newswires as word indices, 46 topics",
    },
    "boston_housing": {
        "file": "boston_housing.npz",
        "sha256": {"boston_housing.npz":
                   "f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5"},
        "download": [(KERAS_BASE + "boston_housing.npz", "boston_housing.npz")],
        "read": lambda path, p: keras_files.read_boston(path),
        "classes": None,
        "download_mb": 1,
        "description": "Boston housing prices (13 features; target in k$), regression",
    },
}
for _name, _spec in DATASETS.items():
    _spec.setdefault("folder_names", (_name,))
    _spec.setdefault("system", ())
    _spec.setdefault("hint", f"download {_spec.get('file', _name)} as keras.datasets does "
                             "into one of those folders")
NAMES = tuple(DATASETS)


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "layerloom", "datasets")


def search_dirs(name):
    spec = DATASETS[name]
    dirs = []
    env = os.environ.get("LAYERLOOM_DATA_DIR")
    if env:
        dirs += [os.path.join(env, n) for n in spec["folder_names"]]
    dirs.append(os.path.join(cache_dir(), name))
    dirs += list(spec["system"])
    return dirs


def local_folder(name):
    """The folder that holds the dataset's files on this machine, or None (a download is
    needed). Only looks for the files; reading them checks their content."""
    spec = DATASETS[name]
    for folder in search_dirs(name):
        if not os.path.isdir(folder):
            continue
        if "read" in spec:
            found = os.path.isfile(os.path.join(folder, spec["file"]))
        else:
            found = all(_find(folder, f) for f in IDX_FILES) or \
                os.path.isfile(os.path.join(folder, "mnist.npz"))
        if found:
            return folder
    return None


def _find(folder, stem):
    for cand in (stem, stem + ".gz"):
        p = os.path.join(folder, cand)
        if os.path.isfile(p):
            return p
    return None


def _load_idx_set(folder):
    paths = [_find(folder, f) for f in IDX_FILES]
    if not all(paths):
        return None
    xtr, ytr, xte, yte = (idx.load(p) for p in paths)
    for x, y, split in ((xtr, ytr, "train"), (xte, yte, "t10k")):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{folder}: {split} images {x.shape} and labels {y.shape} do not "
                            "match (expected N x rows x cols images and N labels)")
    return xtr, ytr, xte, yte


def _load_npz_set(folder):
    p = os.path.join(folder, "mnist.npz")
    if not os.path.isfile(p):
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            return z["x_train"], z["y_train"], z["x_test"], z["y_test"]
    except Exception as e:  # whatever numpy or zip say of a damaged file (as core/fileio.py)
        raise DataError(f"{p}: not a readable Keras mnist.npz ({e})") from None


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _download(url, progress):
    with urllib.request.urlopen(url, timeout=30) as r:
        total = int(r.headers.get("Content-Length") or 0)
        chunks, got = [], 0
        while True:
            c = r.read(1 << 20)
            if not c:
                break
            chunks.append(c)
            got += len(c)
            if progress:
                progress(url, got, total)
    return b"".join(chunks)


def _console_progress(url, got, total):
    if sys.stderr.isatty():
        pct = f"{100 * got / total:5.1f}%" if total else f"{got >> 20} MiB"
        sys.stderr.write(f"\rdownloading {os.path.basename(url)}  {pct}\x1b[K")
        if total and got >= total:
            sys.stderr.write("\n")


def download(name, progress=_console_progress):
    """Fetch into the cache, verifying each file's sha256 before it is kept."""
    spec = DATASETS[name]
    folder = os.path.join(cache_dir(), name)
    os.makedirs(folder, exist_ok=True)
    for url, stem in spec["download"]:
        data = _download(url, progress)
        check = data
        if url.endswith(".gz"):
            import gzip
            check = gzip.decompress(data)
        want = (spec.get("idx_sha256") or spec.get("sha256"))[stem]
        if _sha256(check) != want:
            raise DataError(f"{url}: downloaded content does not match the expected sha256; "
                            "not kept")
        target = os.path.join(folder, os.path.basename(url))
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    return folder


def _read_folder(name, folder, params):
    spec = DATASETS[name]
    if "read" not in spec:
        return _load_idx_set(folder) or _load_npz_set(folder)
    path = os.path.join(folder, spec["file"])
    return spec["read"](path, params) if os.path.isfile(path) else None


def load(name, scale=True, allow_download=True, progress=_console_progress, raw=False, **params):
    """Return ((x_train, y_train), (x_test, y_test)) as keras.datasets does, images NHWC
    float32 (scaled to 0..1 unless scale is false), labels as float class indices. raw: images
    as the files hold them, uint8 0..255 with the channel axis (the dataset source's rows: its
    form, data/forms.py, scales them for the model)."""
    if name not in DATASETS:
        raise DataError(f"unknown built-in dataset {quote(name)}; expected one of {', '.join(NAMES)}")
    spec = DATASETS[name]
    found = None
    for folder in search_dirs(name):
        if os.path.isdir(folder):
            found = _read_folder(name, folder, params)
            if found:
                break
    if found is None and allow_download:
        try:
            found = _read_folder(name, download(name, progress), params)
        except (OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            looked = ", ".join(search_dirs(name))
            raise DataError(
                f"{name} is not on this machine (looked in {looked}) and downloading it failed "
                f"({reason}). Get it with: {spec['hint']}, or put the files in "
                f"$LAYERLOOM_DATA_DIR/{name}/", "dataset.name") from None
    if found is None:
        raise DataError(f"{name} is not on this machine (looked in "
                        f"{', '.join(search_dirs(name))}); get it with: {spec['hint']}",
                        "dataset.name")
    (xtr, ytr), (xte, yte) = found if "read" in spec else (found[:2], found[2:])

    images = "shape" in spec

    def features(x):  # images: NHWC, scaled unless asked not to; text and tables: as read
        if images and raw:
            x = np.asarray(x, np.uint8)
            return x[..., None] if x.ndim == 3 else x
        x = np.asarray(x, np.float32)
        if not images:
            return x
        x = x[..., None] if x.ndim == 3 else x
        return x / np.float32(255.0) if scale else x
    return ((features(xtr), np.asarray(ytr, np.float32).reshape(len(ytr))),
            (features(xte), np.asarray(yte, np.float32).reshape(len(yte))))


def verify(name):
    """sha256 of the local files against the canonical content: {file: True/False}."""
    spec = DATASETS[name]
    out = {}
    for folder in search_dirs(name):
        for stem, want in (spec.get("idx_sha256") or {}).items():
            p = _find(folder, stem)
            if p and stem not in out:
                out[stem] = _sha256(idx.read_bytes(p)) == want
        for stem, want in (spec.get("sha256") or {}).items():
            p = os.path.join(folder, stem)
            if os.path.isfile(p) and stem not in out:
                out[stem] = _sha256(open(p, "rb").read()) == want
    return out


PARAMS = (
    Bool("scale", True, help="Scale pixel values from 0..255 to 0..1 (image sets)."),
    Int("num_words", 10000, min=4, max=1_000_000,
        help="imdb, reuters: keep the most frequent words."),
    Int("maxlen", 200, min=1, max=100_000, help="imdb, reuters: pad or cut sequences to this length "
        "(at the front, as keras.utils.pad_sequences)."),
    Choice("label_mode", "fine", ("fine", "coarse"), help="cifar100: 100 fine or 20 coarse "
           "classes."),
)


def _load(d, project, progress=None, table=None):
    extra = {"progress": progress} if progress else {}
    params = {k: v for k, v in d.get("params", {}).items() if k != "scale"}
    (x, y), (xt, yt) = load(d["name"], raw=True, **params, **extra)
    spec = DATASETS[d["name"]]
    classes = int(max(y.max(initial=0), yt.max(initial=0))) + 1 if spec["classes"] else None
    arrays = Arrays({"x": x, "y": y}, {"x": xt, "y": yt}, spec["description"], classes)
    if spec["classes"] and len(spec["classes"]) == classes:
        arrays.class_names = list(spec["classes"])
    return apply_split(arrays, d)


def _form(d):
    """Keras' image sets: 0..255 pixels with a channel axis, divided by 255 unless `scale` is
    off; the other sets: none."""
    spec = DATASETS.get(d.get("name")) if isinstance(d.get("name"), str) else None
    if not spec or "shape" not in spec:
        return {}
    from layerloom.data.forms import ImageForm
    h, w, c = spec["shape"]
    scale = (d.get("params") or {}).get("scale", True)
    return {"x": ImageForm((h, w), c, 255.0 if scale else 1.0)}


def _class_names(d):
    spec = DATASETS.get(d.get("name")) if isinstance(d.get("name"), str) else None
    return list(spec["classes"]) if spec and spec["classes"] else None


register(Source(
    "keras", "One of Keras' built-in sets (keras.datasets), found locally or downloaded once "
    "with its content verified.",
    keys=(Option("name", None, NAMES, unknown="built-in dataset", help="Which set."),
          Group("params", PARAMS, nearest=False, help="Scaling, vocabulary and length.")),
    load=_load, array_names=lambda d, project: ["x", "y"], brings_test_split=True,
    class_names=_class_names, form=_form, editor="named", choices=NAMES))

