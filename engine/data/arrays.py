"""Named arrays, the form every data source gives: a dict of arrays for training and optionally
for testing; the project maps names to the graph's Input nodes and outputs. Also the .npz reader."""
import os
import tokenize
import zipfile

import numpy as np

from layerloom.core.errors import DataError, quote


class Arrays:
    """Named arrays: `train` and optional `test`, plus facts for messages and the editor."""

    def __init__(self, train, test=None, description="", classes=None):
        self.train, self.test = train, test or {}
        self.description, self.classes = description, classes
        self.validation = None  # rows held out by the project's split
        self.class_names = None  # label names (CSV categories, image folders, Keras sets)
        self.categories = {}  # CSV column -> categories, kept in the project when trained
        self.feature_names = None
        self.columns = None  # a CSV's {"features": [...], "labels": [...]}, kept when trained


def load_npz(path, place="dataset.path"):
    """Arrays from an .npz file; arrays named `<name>_test` form the test split.
    Loaded with allow_pickle=False: object arrays are refused, never unpickled."""
    if not os.path.exists(path):
        raise DataError(f"data file not found: {path}", place)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {}
            for k in z.files:
                try:
                    a = z[k]
                except ValueError:
                    raise DataError(f"{path}: array {quote(k)} holds Python objects (pickled data); "
                                    "only plain numeric arrays are loaded", place) from None
                except (SyntaxError, tokenize.TokenError) as e:  # a damaged .npy header
                    raise DataError(f"{path}: member {quote(k)} is not a readable array "
                                    f"({e})", place) from None
                if not isinstance(a, np.ndarray):  # a member that is not an .npy file
                    raise DataError(f"{path}: member {quote(k)} is not an .npy array", place)
                if a.dtype.kind not in "biuf":
                    raise DataError(f"{path}: array {quote(k)} has dtype {a.dtype}; expected numbers",
                                    place)
                arrays[k] = a
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})", place) from None
    train = {k: v for k, v in arrays.items() if not k.endswith("_test")}
    test = {k[:-5]: v for k, v in arrays.items() if k.endswith("_test")}
    return Arrays(train, test, f"arrays from {os.path.basename(path)}")
