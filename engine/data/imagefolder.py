"""Image folders: one subfolder per class (sorted names give the class indices, as Keras'
image_dataset_from_directory does); optional `train/` and `test/` folders that each hold the
class folders. Images are decoded with Pillow, converted to grayscale or RGB, resized, and
written once, in chunks, to a uint8 cache file in the user's cache folder; training then reads
that file memory-mapped, a batch at a time, so a folder larger than memory still trains.
The cache is keyed by every file's path, size and modification time, and the settings."""
import hashlib
import os
import tempfile
import warnings

import numpy as np

from layerloom.core.errors import DataError, quote
from layerloom.data.preprocess import LazyRows

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
COLORS = ("grayscale", "rgb")
CHUNK = 512
MAX_PIXELS = 40_000_000  # an image larger is refused before decoding (a "decompression bomb")


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "layerloom", "images")


def _class_dirs(folder):
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def scan(folder, place="dataset.path"):
    """{split: (class names, [(path, class index)])}; split is "train" (and "test" when the
    folder holds train/ and test/)."""
    if not os.path.isdir(folder):
        raise DataError(f"image folder not found: {folder}", place)
    subs = _class_dirs(folder)
    if "train" in subs and "test" in subs:
        out = {s: _scan_classes(os.path.join(folder, s), place) for s in ("train", "test")}
        if out["train"][0] != out["test"][0]:
            raise DataError(f"{folder}: train/ and test/ hold different class folders "
                            f"({', '.join(out['train'][0])} vs {', '.join(out['test'][0])})",
                            place)
        return out
    return {"train": _scan_classes(folder, place)}


def _scan_classes(folder, place):
    classes = _class_dirs(folder)
    if not classes:
        raise DataError(f"{folder}: no class folders (expected one subfolder per class, each "
                        "holding that class's images)", place)
    items = []
    for k, c in enumerate(classes):
        files = sorted(f for f in os.listdir(os.path.join(folder, c))
                       if f.lower().endswith(EXTENSIONS) and not f.startswith("."))
        if not files:
            raise DataError(f"{os.path.join(folder, c)}: the class folder holds no images "
                            f"({', '.join(EXTENSIONS)})", place)
        for f in files:
            path = os.path.join(folder, c, f)
            if not os.path.isfile(path):  # followed: a link must lead to an image file
                target = os.path.realpath(path)
                what = "a symbolic link to a missing file" if not os.path.exists(target) \
                    else "not a file"
                raise DataError(f"{path}: {what} ({target})" if target != path else
                                f"{path}: {what}", place)
            items.append((path, k))
    return classes, items


def decode(path, size, color, place):
    from PIL import Image, UnidentifiedImageError
    try:
        with warnings.catch_warnings():  # Pillow warns from 89 megapixels: refused below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            if im.width * im.height > MAX_PIXELS:
                raise DataError(f"{path}: refused: {im.width}x{im.height} pixels, more than "
                                f"the {MAX_PIXELS // 10**6} megapixels an image may have here",
                                place)
            im = im.convert("L" if color == "grayscale" else "RGB")
            if im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            a = np.asarray(im, np.uint8)
    except Image.DecompressionBombError as e:  # a header claiming billions of pixels
        raise DataError(f"{path}: refused: {e}", place) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: not a readable image ({e})", place) from None
    return a[..., None] if a.ndim == 2 else a


def _key(items, size, color):
    h = hashlib.sha256(f"{size}|{color}".encode())
    for path, k in items:
        st = os.stat(path)
        h.update(f"{os.path.abspath(path)}|{k}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def decoded(items, size, color, place="dataset.path", progress=None):
    """The images as a read-only memory-mapped uint8 array (N, H, W, C), decoding them into
    the cache first if needed. Written to a temporary file and renamed when complete."""
    ch = 1 if color == "grayscale" else 3
    folder = cache_dir()
    path = os.path.join(folder, _key(items, size, color) + ".npy")
    if not os.path.isfile(path):
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
        os.close(fd)
        try:
            out = np.lib.format.open_memmap(tmp, "w+", np.uint8, (len(items), size[0], size[1], ch))
            for s in range(0, len(items), CHUNK):
                for i, (p, _) in enumerate(items[s:s + CHUNK], s):
                    out[i] = decode(p, size, color, place)
                out.flush()
                if progress:
                    progress(min(s + CHUNK, len(items)), len(items))
            del out
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return np.load(path, mmap_mode="r")


def load(folder, size=(32, 32), color="grayscale", place="dataset.path", progress=None):
    """{split: (LazyRows of float32 pixels 0..255, float32 labels)} and the class names."""
    if color not in COLORS:
        raise DataError(f"expected one of {', '.join(COLORS)}, got {quote(color)}", "dataset.color")
    splits = scan(folder, place)
    classes = splits["train"][0]
    out = {}
    for name, (_, items) in splits.items():
        x = decoded(items, tuple(size), color, place, progress)
        y = np.array([k for _, k in items], np.float32)
        out[name] = (LazyRows(x), y)
    return out, classes
