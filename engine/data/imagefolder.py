"""Image folders: one subfolder per class (sorted names give the class indices, as Keras'
image_dataset_from_directory does); optional `train/` and `test/` folders that each hold the
class folders. Images are decoded with Pillow, converted to grayscale or RGB, resized, and
written once to a uint8 array in the cache (engine/data/image_cache.py: an entry per folder
and settings, compared file by file, so that a changed file is the only one decoded again);
training then reads that array memory-mapped, a batch at a time, so a folder larger than
memory still trains. Every image's size is read from its header before any is decoded."""
import io
import os
import re
import struct
import time
import warnings

import numpy as np

from layerloom.core.errors import DataError, quote
from layerloom.data import image_cache
from layerloom.data.preprocess import LazyRows

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
COLORS = ("grayscale", "rgb")
CHUNK = 4096  # rows copied from a folder's previous entry at a time
MAX_PIXELS = 40_000_000  # an image larger is refused before decoding (a "decompression bomb")
PNG = b"\x89PNG\r\n\x1a\n"  # a PNG's size is in its first 24 bytes
PROGRESS_EVERY = 0.1  # seconds between progress calls
cache_dir = image_cache.folder


def _class_dirs(folder):
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def scan(folder, place="dataset.path", stats=None, tick=None):
    """{split: (class names, [(path, class index)])}; split is "train" (and "test" when the
    folder holds train/ and test/). stats: a dict that takes {path: os.stat_result} of every
    image; tick(files found so far)."""
    if not os.path.isdir(folder):
        raise DataError(f"image folder not found: {folder}", place)
    subs = _class_dirs(folder)
    found = [0]

    def classes(f):
        return _scan_classes(f, place, stats, tick, found)
    if "train" in subs and "test" in subs:
        out = {s: classes(os.path.join(folder, s)) for s in ("train", "test")}
        if out["train"][0] != out["test"][0]:
            raise DataError(f"{folder}: train/ and test/ hold different class folders "
                            f"({', '.join(out['train'][0])} vs {', '.join(out['test'][0])})",
                            place)
        return out
    return {"train": classes(folder)}


def _scan_classes(folder, place, stats, tick, found):
    classes = _class_dirs(folder)
    if not classes:
        raise DataError(f"{folder}: no class folders (expected one subfolder per class, each "
                        "holding that class's images)", place)
    items = []
    for k, c in enumerate(classes):
        files = sorted((e.name, e) for e in os.scandir(os.path.join(folder, c))
                       if e.name.lower().endswith(EXTENSIONS) and not e.name.startswith("."))
        if not files:
            raise DataError(f"{os.path.join(folder, c)}: the class folder holds no images "
                            f"({', '.join(EXTENSIONS)})", place)
        for f, e in files:
            path = os.path.join(folder, c, f)
            if e.is_file():  # followed: a link must lead to an image file
                if stats is not None:
                    try:
                        stats[path] = e.stat()
                    except OSError as err:
                        raise _read_error(path, err, place) from None
            else:
                target = os.path.realpath(path)
                what = "a symbolic link to a missing file" if not os.path.exists(target) \
                    else "not a file"
                raise DataError(f"{path}: {what} ({target})" if target != path else
                                f"{path}: {what}", place)
            items.append((path, k))
            found[0] += 1
            if tick:
                tick(found[0])
    return classes, items


def _refused(path, what, place):
    return DataError(f"{path}: refused: {what}, more than the {MAX_PIXELS // 10**6} megapixels "
                     "an image may have here", place)


def _opened(path, source, place):
    """Pillow's image of `source` (a path or a file object), its header read (Image.open
    reads no pixels); a size over MAX_PIXELS is refused here, before any decoding, in the
    project's words rather than Pillow's decompression-bomb error."""
    from PIL import Image
    try:
        with warnings.catch_warnings():  # Pillow warns from 89 megapixels: refused below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(source)
    except Image.DecompressionBombError as e:  # Pillow's own limit: 179 megapixels
        n = re.search(r"\((\d+) pixels\)", str(e))
        raise _refused(path, f"{int(n.group(1)):,} pixels" if n else
                       "more pixels than Pillow opens", place) from None
    if im.width * im.height > MAX_PIXELS:
        im.close()
        raise _refused(path, f"{im.width}x{im.height} pixels", place)
    return im


def _unreadable(path, e, place):
    return DataError(f"{path}: not a readable image ({e})", place)


def _read_error(path, e, place):
    return DataError(f"{path}: cannot be read ({e.strerror or e})", place)


def check_sizes(paths, place="dataset.path", tick=None):
    """Every image's size from its header, before any is decoded: the first file that is not
    a readable image or is larger than MAX_PIXELS is refused at once."""
    from PIL import UnidentifiedImageError
    for n, path in enumerate(paths, 1):
        try:
            with open(path, "rb") as f:
                head = f.read(24)
            if head[:8] == PNG and head[12:16] == b"IHDR":  # 4x faster than Pillow's open
                w, h = struct.unpack(">II", head[16:24])
                if w * h > MAX_PIXELS:
                    raise _refused(path, f"{w}x{h} pixels", place)
            else:
                _opened(path, path, place).close()
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise _unreadable(path, e, place) from None
        if tick:
            tick(n)


def _decode_bytes(path, data, size, color, place):
    from PIL import Image, UnidentifiedImageError
    try:
        with _opened(path, io.BytesIO(data), place) as im:
            im = im.convert("L" if color == "grayscale" else "RGB")
            if im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            a = np.asarray(im, np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise _unreadable(path, e, place) from None
    return a[..., None] if a.ndim == 2 else a


def _read(path, place):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise _read_error(path, e, place) from None


def decode(path, size, color, place):
    """One image as uint8 (H, W, C), C 1 for grayscale or 3 for rgb."""
    check_sizes([path], place)
    return _decode_bytes(path, _read(path, place), size, color, place)


def ticker(progress, path, total, unit):
    """tick(done) calling progress(path, done, total, unit) at once (done 0), then at most
    every PROGRESS_EVERY seconds, and when done reaches total; nothing when total is 0.
    total None: not known yet (passed on as 0)."""
    if progress is None or total == 0:
        return lambda done: None
    last = [time.perf_counter()]
    progress(path, 0, total or 0, unit)

    def tick(done):
        now = time.perf_counter()
        if total is not None and done >= total or now - last[0] >= PROGRESS_EVERY:
            last[0] = now
            progress(path, done, total or 0, unit)
    return tick


def _stats(root, items, place, stats=None):
    """image_cache.Files of the images: paths relative to root, sizes, times (from `stats`,
    scan's, where it has them); no hashes."""
    names, sizes, mtimes = [], np.empty(len(items), np.int64), np.empty(len(items), np.int64)
    prefix = os.path.join(root, "")
    for i, (path, _) in enumerate(items):
        try:
            st = stats[path] if stats and path in stats else os.stat(path)
        except OSError as e:
            raise _read_error(path, e, place) from None
        names.append(path[len(prefix):] if path.startswith(prefix) else
                     os.path.relpath(path, root))
        sizes[i], mtimes[i] = st.st_size, st.st_mtime_ns
    return image_cache.Files(names, sizes, mtimes)


def _match(old, items, files, place):
    """The row of the old entry each image can be taken from (-1: decode it): the same path,
    size and modification time, else (a touched, renamed or copied file) the same bytes;
    `files` takes the hashes of those found."""
    was = old.files
    if was.names == files.names:
        rows = np.arange(len(files))
    else:
        at = {name: j for j, name in enumerate(was.names)}
        rows = np.array([at.get(name, -1) for name in files.names], np.int64)
    found = rows >= 0
    found[found] = (was.sizes[rows[found]] == files.sizes[found]) & \
        (was.mtimes[rows[found]] == files.mtimes[found])
    rows[~found] = -1
    files.hashes[found] = was.hashes[rows[found]]
    rest = np.flatnonzero(~found)
    if len(rest):
        by_hash = {h.tobytes(): j for j, h in enumerate(was.hashes)}
        for i in rest:
            files.hashes[i] = image_cache.file_hash(_read(items[i][0], place))
            rows[i] = by_hash.get(files.hashes[i].tobytes(), -1)
    return rows


def decoded(root, items, size, color, place="dataset.path", progress=None, label=None,
            stats=None):
    """The images of `items` (under the folder `root`) as a read-only memory-mapped uint8
    array (N, H, W, C) from the cache (engine/data/image_cache.py), decoding only the images
    its entry for the folder does not hold: all on a first run, a changed file alone later.
    Sizes are checked from the headers of all images to decode before any is decoded.
    progress(label, done, total, unit): unit "files" while headers are read, "images" while
    images are decoded. stats: {path: os.stat_result} as scan() gave them."""
    size = tuple(size)
    label = label or root
    shape = (len(items), size[0], size[1], 1 if color == "grayscale" else 3)
    key = image_cache.key_of(root, size, color)
    files = _stats(root, items, place, stats)
    old = image_cache.read(key)
    try:
        previous = old.open() if old is not None else None
    except OSError:  # deleted by another process just now
        old = previous = None
    rows = np.full(len(items), -1, np.int64) if old is None else _match(old, items, files, place)
    todo = np.flatnonzero(rows < 0)
    if not len(todo) and len(rows) == len(old.files) and \
            np.array_equal(rows, np.arange(len(rows))):  # every row where it was
        if not files.same(old.files):  # touched files: their new times, the rows as they are
            old = image_cache.write_index(key, files, old.meta["data"], shape, root,
                                          old.meta["settings"])
        image_cache.use(old)
        return previous
    check_sizes([items[i][0] for i in todo], place, ticker(progress, label, len(todo), "files"))

    def fill(out):
        reuse = np.flatnonzero(rows >= 0)
        for s in range(0, len(reuse), CHUNK):
            out[reuse[s:s + CHUNK]] = previous[rows[reuse[s:s + CHUNK]]]
        tick = ticker(progress, label, len(todo), "images")
        for n, i in enumerate(todo, 1):
            path = items[i][0]
            data = _read(path, place)
            out[i] = _decode_bytes(path, data, size, color, place)
            files.hashes[i] = image_cache.file_hash(data)
            tick(n)
    return image_cache.write(key, shape, fill, files, root, {"size": list(size), "color": color})


def load(folder, size=(32, 32), color="grayscale", place="dataset.path", progress=None):
    """{split: (LazyRows of float32 pixels 0..255, float32 labels)} and the class names.
    progress(label, done, total, unit): "listed" while the folder is listed (total 0 until
    the end), then as decoded() calls it; label: the folder, and the split's name in
    brackets where the folder holds train/ and test/."""
    if color not in COLORS:
        raise DataError(f"expected one of {', '.join(COLORS)}, got {quote(color)}", "dataset.color")
    stats = {}
    tick = ticker(progress, folder, None, "listed")
    splits = scan(folder, place, stats, tick)
    n = sum(len(items) for _, items in splits.values())
    if progress is not None:
        progress(folder, n, n, "listed")
    classes = splits["train"][0]
    out = {}
    for name, (_, items) in splits.items():
        whole = len(splits) == 1
        root = folder if whole else os.path.join(folder, name)
        label = folder if whole else f"{os.path.normpath(folder)} ({name})"
        x = decoded(root, items, tuple(size), color, place, progress, label, stats)
        y = np.array([k for _, k in items], np.float32)
        out[name] = (LazyRows(x), y)
    return out, classes
