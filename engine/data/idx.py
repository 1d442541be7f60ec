"""The IDX format of the MNIST family: a magic number (0, 0, dtype code, rank), big-endian
int32 dimensions, then the data. Gzipped files are read transparently."""
import gzip
import os

import numpy as np

from layerloom.core.errors import DataError

DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
          0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    return raw


def parse(raw, name="IDX data"):
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in DTYPES:
        raise DataError(f"{name}: not an IDX file (bad magic number)")
    dtype, rank = np.dtype(DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * rank
    if len(raw) < header:
        raise DataError(f"{name}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">i4", rank, 4))
    need = int(np.prod(dims)) * dtype.itemsize
    have = len(raw) - header
    if have != need:
        raise DataError(f"{name}: {'truncated' if have < need else 'has trailing bytes'}: "
                        f"dimensions {dims} need {need} bytes of data, the file has {have}")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def load(path):
    return parse(read_bytes(path), os.path.basename(path))


def dumps(array):
    """IDX bytes for an array (tests and tools write small IDX files with it)."""
    a = np.asarray(array)
    code = {np.dtype(v).newbyteorder("="): k for k, v in DTYPES.items()}[a.dtype.newbyteorder("=")]
    head = bytes([0, 0, code, a.ndim]) + np.asarray(a.shape, ">i4").tobytes()
    return head + a.astype(np.dtype(DTYPES[code])).tobytes()
