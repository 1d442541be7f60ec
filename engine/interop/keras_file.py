"""Reading a saved Keras model with h5py and zipfile alone (no Keras): Keras 3's `.keras`
zip (config.json, model.weights.h5) and the legacy HDF5 `.h5` (model_config and
training_config attributes, the model_weights group), as one File: the model config, the
compile config and the weights, found by each layer's place in the model (Scope, Where).
keras_import.read builds the graph from it."""
import io
import json
import os
import zipfile

import numpy as np

from layerloom.core.errors import DataError, LayerloomError
from layerloom.interop import keras_in_layers as kl

# where an error is: the command line names the file itself (`layerloom: error: FILE: --import:
# ...`), as it does for an ONNX file; a path here too printed it twice
PLACE = "--import"


def _h5py():
    try:
        import h5py
    except ImportError:
        raise LayerloomError("Keras import needs h5py: pip install 'layerloom[keras]'",
                             "--import") from None
    return h5py


def _text(v):
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


class _File:
    """What a Keras file holds: model config, compile config, weights, whether tf.keras 2."""

    def __init__(self, config, compile_config, weights, keras2, handle):
        self.config, self.compile_config, self.weights = config, compile_config, weights
        self.keras2, self.handle = keras2, handle


def open_model(path):
    h5py = _h5py()
    if not os.path.isfile(path):
        raise DataError("file not found", PLACE)
    if zipfile.is_zipfile(path):
        return _open_zip(path, h5py)
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as e:
        raise DataError(f"not a Keras model (neither a .keras zip nor HDF5): {e}", PLACE) from None
    try:
        if "model_config" not in f.attrs:
            raise DataError("the HDF5 file has no model_config (only weights, saved by "
                            "save_weights?): Layerloom needs the model itself", PLACE)
        config = json.loads(f.attrs["model_config"])
        training = f.attrs.get("training_config")
        training = json.loads(training) if training is not None else None
        if "model_weights" not in f:
            raise DataError("the HDF5 file has no model_weights group", PLACE)
        version = _text(f.attrs.get("keras_version", "2"))
        return _File(config, _legacy_compile(training), _LegacyWeights(f["model_weights"]),
                     version.split(".")[0] in ("1", "2"), f)
    except (ValueError, KeyError, TypeError) as e:
        f.close()
        raise DataError(f"not a readable Keras HDF5 model ({e})", PLACE) from None
    except DataError:
        f.close()
        raise


def _open_zip(path, h5py):
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            for want in ("config.json", "model.weights.h5"):
                if want not in names:
                    raise DataError(f"no {want} in the zip: not a Keras 3 .keras file", PLACE)
            config = json.loads(z.read("config.json"))
            data = z.read("model.weights.h5")
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"not a readable .keras file ({e})", PLACE) from None
    try:
        f = h5py.File(io.BytesIO(data), "r")
    except (OSError, ValueError) as e:
        raise DataError(f"model.weights.h5 is not readable HDF5 ({e})", PLACE) from None
    if not isinstance(config, dict):
        raise DataError("config.json is not a model config", PLACE)
    return _File(config, config.get("compile_config"), _V3Weights(f), False, f)


def _legacy_compile(training):
    """Keras 2's training_config in Keras 3's compile_config spelling."""
    if not training:
        return None
    t = dict(training)
    t["optimizer"] = t.pop("optimizer_config", None)
    return t


class _Where:
    """Where a layer's weights are: Keras 3's model.weights.h5 path (by the class-based key
    Keras saves under, or the layer's name), the legacy file's top layer and inner layer."""

    def __init__(self, v3, v3_by_name, legacy_top, legacy_inner):
        self.v3, self.v3_by_name = v3, v3_by_name
        self.legacy_top, self.legacy_inner = legacy_top, legacy_inner


class _V3Weights:
    def __init__(self, f):
        self.f = f

    def arrays(self, where):
        """[(None, array)] in the layer's order, or None if the layer has no group."""
        g = self.f.get(where.v3)
        g = g if g is not None else self.f.get(where.v3_by_name)
        if g is None:
            return None
        return _v3_vars(g)


def _v3_vars(g):
    """[(None, array)] of a layer's group in Keras 3's file: its vars, a recurrent layer's in
    its cell, a wrapper's in its wrapped layer(s) (Bidirectional: forward_layer's, then
    backward_layer's; TimeDistributed: layer's), MultiHeadAttention's in its projections."""
    for sub in ("vars", "cell/vars"):
        if sub in g and len(g[sub]):
            return [(None, np.asarray(g[sub][k])) for k in sorted(g[sub], key=int)]
    out = []
    for sub in ("forward_layer", "backward_layer", "layer", "query_dense", "key_dense",
                "value_dense", "output_dense",  # MultiHeadAttention's
                "token_embedding", "position_embedding"):  # TokenAndPositionEmbedding's
        if sub in g:
            out += _v3_vars(g[sub])
    return out


class _LegacyWeights:
    def __init__(self, group):
        self.g = group

    def arrays(self, where):
        """[(short name, array)] from the weight_names of the layer's group."""
        if where.legacy_top not in self.g:
            return None
        lg = self.g[where.legacy_top]
        names = [_text(n) for n in lg.attrs.get("weight_names", [])]
        if where.legacy_inner is not None:  # a layer of a nested model: its names
            names = [n for n in names if where.legacy_inner in n.split("/")[:-1]]
        return [(n.split("/")[-1].split(":")[0], np.asarray(lg[n])) for n in names]


class Scope:
    """A model being read: the top one or one nested in it."""

    def __init__(self, v3="", legacy_top=None):
        self.v3, self.legacy_top = v3, legacy_top

    def where(self, name, key):
        return _Where(f"{self.v3}layers/{key}", f"{self.v3}layers/{name}",
                      self.legacy_top or name, name if self.legacy_top else None)

    def child(self, name, key):
        return Scope(f"{self.v3}layers/{key}/", self.legacy_top or name)


def layer_keys(layers):
    """Layer name -> the key Keras 3 saves its weights under: the class in snake case, _1, _2
    ... for the second and third of a class, in the model's layer order."""
    used, keys = {}, {}
    for layer in layers:
        base = kl.snake(layer.get("class_name", ""))
        used[base] = used.get(base, -1) + 1
        keys[layer_name(layer)] = base if used[base] == 0 else f"{base}_{used[base]}"
    return keys


def layer_name(layer):
    return layer.get("name") or (layer.get("config") or {}).get("name")
