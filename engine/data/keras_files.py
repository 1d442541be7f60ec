"""Readers for the files keras.datasets downloads: CIFAR python tarballs and .npz files whose
ragged arrays are pickle streams (imdb, reuters). Pickles are read by an unpickler that can
only rebuild numpy arrays, lists, numbers, strings and dicts: a crafted file cannot run code.
Results follow keras.datasets: same splits, same shuffles (seed 113), same word indices."""
import io
import os
import pickle
import tarfile
import zipfile

import numpy as np

from layerloom.core.errors import DataError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name} (only numpy arrays "
                                         "and plain values are accepted)")
        if module == "_codecs":
            import codecs
            return codecs.encode
        if name in ("ndarray", "dtype"):
            return getattr(np, name)
        try:
            from numpy._core import multiarray
        except ImportError:  # numpy < 2
            from numpy.core import multiarray
        return getattr(multiarray, name)


def safe_unpickle(stream, encoding="ASCII"):
    return _SafeUnpickler(stream, encoding=encoding).load()


def _checked(read):
    """A reader whose file held the expected arrays but not the expected contents (strings
    where word indices should be, a ragged table) says so as a DataError naming the file."""
    import functools

    @functools.wraps(read)
    def wrapper(path, *args, **kwargs):
        try:
            return read(path, *args, **kwargs)
        except (TypeError, ValueError, IndexError, AttributeError, KeyError) as e:
            raise DataError(f"{path}: not the Keras dataset file it should be "
                            f"({type(e).__name__}: {str(e)[:100]})") from None
    return wrapper


def load_npz(path, names):
    """Arrays of an .npz by name; object arrays are rebuilt with the safe unpickler."""
    out = {}
    try:
        with zipfile.ZipFile(path) as z:
            for name in names:
                with z.open(name + ".npy") as raw:
                    f = io.BytesIO(raw.read())
                version = np.lib.format.read_magic(f)
                shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                         else np.lib.format.read_array_header_2_0(f))
                if dtype.hasobject:
                    out[name] = safe_unpickle(f, encoding="latin1")
                else:
                    f.seek(0)
                    out[name] = np.load(f, allow_pickle=False)
    except KeyError as e:
        raise DataError(f"{path}: missing array {str(e).strip(chr(39))}") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, pickle.UnpicklingError) as e:
        raise DataError(f"{path}: not a readable Keras .npz file ({e})") from None
    return out


def _tar_member(tar, suffix):
    for m in tar.getmembers():
        if m.isfile() and m.name.endswith(suffix):
            return tar.extractfile(m)
    raise DataError(f"{tar.name}: no member ending in {suffix!r}")


def _cifar_batch(tar, suffix, label_key):
    d = safe_unpickle(_tar_member(tar, suffix), encoding="bytes")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
    x = np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    y = np.asarray(d[label_key], np.int64)
    if len(x) != len(y):
        raise DataError(f"{tar.name}:{suffix}: {len(x)} images but {len(y)} labels")
    return x, y


@_checked
def read_cifar(path, hundred=False, label_mode="fine"):
    """((x_train, y_train), (x_test, y_test)) as uint8 NHWC and int labels."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            if hundred:
                key = label_mode + "_labels"
                return _cifar_batch(tar, "/train", key), _cifar_batch(tar, "/test", key)
            parts = [_cifar_batch(tar, f"/data_batch_{i}", "labels") for i in range(1, 6)]
            train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
            return train, _cifar_batch(tar, "/test_batch", "labels")
    except DataError:
        raise
    except (tarfile.TarError, OSError, EOFError, KeyError, ValueError,
            pickle.UnpicklingError) as e:
        raise DataError(f"{path}: not a readable CIFAR archive ({e})") from None


def pad_sequences(seqs, maxlen):
    """keras.utils.pad_sequences defaults: pad and truncate at the front, pad value 0."""
    out = np.zeros((len(seqs), maxlen), np.float32)
    for i, s in enumerate(seqs):
        s = s[-maxlen:]
        if len(s):
            out[i, maxlen - len(s):] = s
    return out


def _words(xs, num_words, skip_top=0, start_char=1, oov_char=2, index_from=3):
    xs = [[start_char] + [int(w) + index_from for w in x] for x in xs]
    if not num_words:
        num_words = max(max(x) for x in xs) if xs else 1
    return [[w if skip_top <= w < num_words else oov_char for w in x] for x in xs]


@_checked
def read_imdb(path, num_words=10000, maxlen=200, seed=113):
    f = load_npz(path, ("x_train", "y_train", "x_test", "y_test"))
    rng = np.random.RandomState(seed)
    parts = []
    for xk, yk in (("x_train", "y_train"), ("x_test", "y_test")):
        order = np.arange(len(f[xk]))
        rng.shuffle(order)
        parts.append((f[xk][order], np.asarray(f[yk])[order]))
    xs = _words(list(parts[0][0]) + list(parts[1][0]), num_words)
    n = len(parts[0][0])
    return ((pad_sequences(xs[:n], maxlen), parts[0][1].astype(np.float32)),
            (pad_sequences(xs[n:], maxlen), parts[1][1].astype(np.float32)))


@_checked
def read_reuters(path, num_words=10000, maxlen=200, seed=113, test_split=0.2):
    f = load_npz(path, ("x", "y"))
    rng = np.random.RandomState(seed)
    order = np.arange(len(f["x"]))
    rng.shuffle(order)
    xs, labels = _words(list(f["x"][order]), num_words), np.asarray(f["y"])[order]
    k = int(len(xs) * (1 - test_split))
    return ((pad_sequences(xs[:k], maxlen), labels[:k].astype(np.float32)),
            (pad_sequences(xs[k:], maxlen), labels[k:].astype(np.float32)))


@_checked
def read_boston(path, seed=113, test_split=0.2):
    f = load_npz(path, ("x", "y"))
    x, y = np.asarray(f["x"], np.float32), np.asarray(f["y"], np.float32)
    if x.ndim != 2 or len(x) != len(y):
        raise DataError(f"{path}: expected x (N, 13) and y (N,), got {x.shape} and {y.shape}")
    rng = np.random.RandomState(seed)
    order = np.arange(len(x))
    rng.shuffle(order)
    x, y = x[order], y[order]
    k = int(len(x) * (1 - test_split))
    return (x[:k], y[:k]), (x[k:], y[k:])


def exists(folder, name):
    return os.path.isfile(os.path.join(folder, name))
