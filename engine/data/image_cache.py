"""The data cache: decoded image folders and, beside them, tables too large for memory
(data/table_cache.py: kind "table", a float32 array of a CSV's encoded rows, its index one
row for the file). For image folders: one entry per folder and settings (size, colour), an
index `<key>.index.npz` holding each image's path (relative to the folder), size,
modification time and a hash of its bytes as arrays (Files), beside the uint8 array
`<key>.<token>.npy` whose rows follow the index. imagefolder.decoded compares a folder with
its entry file by file: rows of unchanged files are reused (a touched file is only hashed
again), and only changed or new files are decoded.

Writes never leave a half-written file: a data file is written as `.part`, fsynced and
renamed, then the index naming it is replaced atomically; the entry's previous data file is
deleted only after that. The cache is bounded: entries are evicted least recently used (the
index's modification time, set at each use) once the folder holds more than the limit.

A table being read is spilled to a folder `.spill-*` there, removed when the read ends (and,
left by a process killed, once older than GRACE).

Place: $LAYERLOOM_CACHE_DIR/images, else $XDG_CACHE_HOME/layerloom/images, else
~/.cache/layerloom/images. Limit: $LAYERLOOM_CACHE_LIMIT (2G, 500M, 1.5G, or bytes), default
2 GiB. Only files named as this module names them are ever deleted there."""
import contextlib
import errno
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import time
import zipfile

import numpy as np

from layerloom.core.errors import DataError, quote
from layerloom.core.fileio import atomic_write_bytes

FORMAT = 2  # format 1: one <key>.npy per folder keyed by every file's mtime (no index)
INDEX = ".index.npz"
DEFAULT_LIMIT = 2 << 30
GRACE = 3600  # seconds a data file no index names yet, or a .part being written, is left
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
SPILL_PREFIX = ".spill-"
_SPILL = re.compile(r"^\.spill-[\w-]+$")
_INDEX = re.compile(r"^[0-9a-f]{32}\.index\.npz$")
_DATA = re.compile(r"^[0-9a-f]{32}\.[0-9a-f]{8}\.npy$")
_OURS = re.compile(r"^([0-9a-f]{32}(\.[0-9a-f]{8})?\.npy|[0-9a-f]{32}\.(json|index\.npz)|"
                   r"\.?[0-9a-f]{32}[.\w-]*\.(part|tmp)|tmp\w+\.part)$")  # format 1's too


def folder():
    root = os.environ.get("LAYERLOOM_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "layerloom")
    return os.path.join(root, "images")


def limit():
    """The size limit in bytes, from $LAYERLOOM_CACHE_LIMIT (binary units: 2G is 2 GiB)."""
    text = os.environ.get("LAYERLOOM_CACHE_LIMIT", "").strip()
    if not text:
        return DEFAULT_LIMIT
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", text.upper())
    if not m:
        raise DataError(f"expected a size such as 2G, 500M or a number of bytes, got "
                        f"{quote(text)}", "LAYERLOOM_CACHE_LIMIT")
    return int(float(m.group(1)) * UNITS[m.group(2)])


def key_of(root, size, color):
    text = f"{FORMAT}|{os.path.abspath(root)}|{tuple(size)}|{color}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def file_hash(data):
    return np.frombuffer(hashlib.blake2b(data, digest_size=16).digest(), np.uint8)


class Files:
    """Per image, as arrays (a list of names): its path relative to the folder, size,
    modification time (ns) and the blake2b-128 hash of its bytes (zeros: not known yet)."""

    def __init__(self, names, sizes, mtimes, hashes=None):
        self.names = list(names)
        self.sizes = np.asarray(sizes, np.int64)
        self.mtimes = np.asarray(mtimes, np.int64)
        self.hashes = np.zeros((len(self.names), 16), np.uint8) if hashes is None else \
            np.asarray(hashes, np.uint8)
        if not len(self.sizes) == len(self.mtimes) == len(self.hashes) == len(self.names) \
                or self.hashes.shape[1:] != (16,):
            raise ValueError("the index's arrays differ in length")

    def __len__(self):
        return len(self.names)

    def same(self, other):
        return self.names == other.names and all(np.array_equal(getattr(self, a),
                                                                 getattr(other, a))
                                                 for a in ("sizes", "mtimes", "hashes"))

    def arrays(self):
        joined = "\0".join(self.names).encode("utf-8", "surrogateescape")
        return {"names": np.frombuffer(joined, np.uint8), "sizes": self.sizes,
                "mtimes": self.mtimes, "hashes": self.hashes}

    @classmethod
    def from_arrays(cls, z):
        text = z["names"].tobytes().decode("utf-8", "surrogateescape")
        return cls(text.split("\0") if text or len(z["sizes"]) else [], z["sizes"],
                   z["mtimes"], z["hashes"])


class Entry:
    """A folder's cached images: meta (its folder, settings, shape, data file), its Files
    (read when first asked for) and, once opened, the rows as a read-only memory map."""

    def __init__(self, key, meta, index_path, files=None):
        self.key, self.meta, self.index_path = key, meta, index_path
        self._files = files
        self.data_path = os.path.join(os.path.dirname(index_path), meta["data"])

    @property
    def kind(self):
        return self.meta.get("kind", "images")

    @property
    def files(self):
        if self._files is None:
            with np.load(self.index_path, allow_pickle=False) as z:
                self._files = Files.from_arrays(z)
            if len(self._files) != (self.meta["shape"][0] if self.kind == "images" else 1):
                raise ValueError("the index's length is not the array's")
        return self._files

    def open(self):
        return np.load(self.data_path, mmap_mode="r")

    def nbytes(self):
        try:
            return os.path.getsize(self.index_path) + os.path.getsize(self.data_path)
        except OSError:
            return 0


def _read_entry(index_path):
    """The entry of an index file, or None when it is unreadable, of another format or its
    data file is missing or of another length (a damaged entry is a miss, never an error)."""
    try:
        with np.load(index_path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode("utf-8", "surrogateescape"))
        if meta.get("format") != FORMAT or not _DATA.match(meta.get("data", "")):
            return None
        e = Entry(os.path.basename(index_path)[:32], meta, index_path)
        shape, dtype = tuple(meta["shape"]), np.dtype(meta.get("dtype", "uint8"))
        with open(e.data_path, "rb") as f:
            fmt = np.lib.format
            read_header = fmt.read_array_header_1_0 if fmt.read_magic(f) == (1, 0) else \
                fmt.read_array_header_2_0
            header = read_header(f)
            if header[0] != shape or header[2] != dtype or header[1] or \
                    os.fstat(f.fileno()).st_size != f.tell() + int(np.prod(shape)) * \
                    dtype.itemsize:
                return None
        return e
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError,
            zipfile.BadZipFile):
        return None


def read(key):
    """The key's entry with its Files read, or None (missing or damaged)."""
    e = _read_entry(os.path.join(folder(), key + INDEX))
    try:
        return e if e is not None and e.files is not None else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def use(entry):
    """Mark the entry as just used (its place in the least-recently-used order)."""
    try:
        os.utime(entry.index_path)
    except OSError:
        pass


def write_index(key, files, data_name, shape, root, settings, kind="images", extra=None):
    """extra: what a kind of entry keeps besides (a table's columns and categories)."""
    path = os.path.join(folder(), key + INDEX)
    meta = {"format": FORMAT, "folder": os.path.abspath(root), "settings": settings,
            "shape": list(shape), "data": data_name}
    if kind != "images":
        meta.update(kind=kind, dtype="float32", extra=extra or {})
    buf = io.BytesIO()
    np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode("utf-8", "surrogateescape"),
                                     np.uint8), **files.arrays())
    atomic_write_bytes(path, buf.getvalue())
    return Entry(key, meta, path, files)


def write(key, shape, fill, files, root, settings, kind="images", extra=None):
    """A new entry: fill(out) writes every row of the array `out` of `shape` (uint8 for
    images, float32 for kind "table"; a memory map of the .part file) and completes `files`
    (and `extra`, what write_index keeps beside them); then the data file is fsynced and
    renamed, the index replaced, the key's previous data files deleted and the cache evicted
    down to its limit. Returns the rows, read-only and memory-mapped (opened before the index names
    them: a process writing the same folder at the same time may delete the file, not the
    mapping). A failure or Ctrl-C leaves the cache as it was."""
    cache = folder()
    name = f"{key}.{secrets.token_hex(4)}.npy"
    part = os.path.join(cache, name + ".part")
    try:
        dtype = np.uint8 if kind == "images" else np.float32
        with said(cache, int(np.prod(shape)) * np.dtype(dtype).itemsize, kind):
            os.makedirs(cache, exist_ok=True)
            out = np.lib.format.open_memmap(part, "w+", dtype, shape)
            allocate(part)
        fill(out)
        out.flush()
        del out
        with open(part, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(part, os.path.join(cache, name))
    finally:
        if os.path.exists(part):
            os.unlink(part)
    try:
        array = np.load(os.path.join(cache, name), mmap_mode="r")
        write_index(key, files, name, shape, root, settings, kind, extra)
    except BaseException:
        _unlink(os.path.join(cache, name))
        raise
    for n in os.listdir(cache):  # those of a replaced or damaged index; a process still
        if n != name and n.startswith(key) and _DATA.match(n):  # reading one keeps its
            _unlink(os.path.join(cache, n))  # mapping (POSIX)
    evict(keep=(key,))
    return array


@contextlib.contextmanager
def said(cache, nbytes, kind="images"):
    """An OSError making the cache's folder or file (no permission, a full disk) as a
    DataError saying what to do."""
    try:
        yield
    except OSError as e:
        what = "image cache" if kind == "images" else \
            "data cache (a table too large for memory)"
        raise DataError(f"cannot write the {what} in {cache} ({e.strerror or e}; "
                        f"{_mb(nbytes)} needed): free space there or set LAYERLOOM_CACHE_DIR "
                        "to another folder", "LAYERLOOM_CACHE_DIR") from None


def allocate(path):
    """Reserve the file's blocks now: a memory map of a sparse file on a full disk gets
    SIGBUS when a page is written back (a crash, not an error)."""
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "rb+") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
                raise  # ENOSPC; a file system without fallocate is left as it is


def _unlink(path):
    try:
        os.unlink(path)
        return True
    except OSError:  # gone already, or held open where that forbids it (Windows)
        return False


def entries():
    """Every readable entry, least recently used first."""
    cache = folder()
    try:
        names = [n for n in os.listdir(cache) if _INDEX.match(n)]
    except OSError:
        return []
    out = [e for e in (_read_entry(os.path.join(cache, n)) for n in names) if e is not None]
    return sorted(out, key=_last_used)


def _last_used(entry):
    try:
        return os.stat(entry.index_path).st_mtime
    except OSError:
        return 0.0


def _leftovers(live, grace=GRACE):
    """Files of ours that no readable entry holds: format 1's arrays, data files of damaged
    or replaced indexes, and .part/.tmp files older than `grace` seconds (younger ones may
    be another process's writing)."""
    cache = folder()
    try:
        names = os.listdir(cache)
    except OSError:
        return []
    now = time.time()
    out = []
    for n in names:
        p = os.path.join(cache, n)
        if not _OURS.match(n) or p in live or not os.path.isfile(p):
            continue
        try:
            age = now - os.path.getmtime(p)
        except OSError:
            continue
        if age >= grace or not (n.endswith((".part", ".tmp")) or _DATA.match(n)):
            out.append(p)
    return out


def _spills(grace=GRACE):
    """Spill folders of tables being read (data/tabular.py) older than `grace` seconds: left
    by a process that was killed (a read in progress removes its own)."""
    cache = folder()
    try:
        names = [n for n in os.listdir(cache) if _SPILL.match(n)]
    except OSError:
        return []
    now, out = time.time(), []
    for n in names:
        p = os.path.join(cache, n)
        try:  # the folder's time is set while its table is converted; its files' while read
            last = max([os.path.getmtime(p)] + [e.stat().st_mtime for e in os.scandir(p)])
        except OSError:
            continue
        if now - last >= grace:
            out.append(p)
    return out


def _sizes(paths):
    total = 0
    for p in paths:
        try:
            if os.path.isdir(p):
                total += sum(e.stat().st_size for e in os.scandir(p) if e.is_file())
            else:
                total += os.path.getsize(p)
        except OSError:
            pass
    return total


def _remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path, True)
        return not os.path.exists(path)
    return _unlink(path)


def evict(keep=(), limit_bytes=None):
    """Delete leftovers, then the least recently used entries (never those in `keep`) until
    the cache holds at most the limit. Returns the number of entries deleted."""
    limit_bytes = limit() if limit_bytes is None else limit_bytes
    es = entries()
    live = {p for e in es for p in (e.index_path, e.data_path)}
    for p in _leftovers(live) + _spills():
        _remove(p)
    total = sum(e.nbytes() for e in es)
    removed = 0
    for e in es:
        if total <= limit_bytes:
            break
        if e.key in keep:
            continue
        size = e.nbytes()
        if _unlink(e.index_path):  # the entry is gone with its index; then its data
            _unlink(e.data_path)
            total -= size
            removed += 1
    return removed


def _mb(n):
    for unit, shift in (("GB", 30), ("MB", 20), ("KB", 10)):
        if n >= 1 << shift:
            return f"{n / 2 ** shift:.1f} {unit}"
    return f"{n} bytes"


def _counted(es):
    """"2 folder(s)", with ", 1 table(s)" where tables are cached."""
    tables = sum(e.kind == "table" for e in es)
    return f"{len(es) - tables} folder(s)" + (f", {tables} table(s)" if tables else "")


def info():
    """Lines saying where the cache is, its size against its limit, and each entry."""
    es = entries()
    total = sum(e.nbytes() for e in es)
    lines = [f"Data cache: {folder()}",
             f"{_counted(es)}, {_mb(total)} of a {_mb(limit())} limit "
             "($LAYERLOOM_CACHE_LIMIT; least recently used evicted first)"]
    for e in reversed(es):
        shape = e.meta["shape"]
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(_last_used(e)))
        t = e.meta.get("extra") or {}
        what = (f"{shape[0]:,} images {shape[1]}x{shape[2]}x{shape[3]}" if e.kind == "images"
                else f"table of {t.get('rows', 0):,} rows x {t.get('width', 0):,} features")
        lines.append(f"  {_mb(e.nbytes()):>10}  {what}  last used {used}  "
                     f"{e.meta.get('folder', '?')}")
    left = _leftovers({p for e in es for p in (e.index_path, e.data_path)}, grace=0) + \
        _spills(grace=0)
    if left:
        lines.append(f"{len(left)} other file(s), {_mb(_sizes(left))} (older cache files or "
                     "writes in progress; `--cache clear` removes those not in progress)")
    return lines


def clear():
    """Delete every entry and leftover (not a .part younger than GRACE: another process may
    be writing it). Returns a line saying what was removed."""
    es = entries()
    paths = [p for e in es for p in (e.index_path, e.data_path)]
    paths += _leftovers(set(paths)) + _spills()
    size = _sizes(paths)
    gone = sum(_remove(p) for p in paths)
    return f"Removed {_counted(es)}, {gone} file(s), {_mb(size)} from {folder()}"
