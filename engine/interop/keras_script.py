"""The text of the Keras training script that keras_code writes, in three parts filled with
str.format: HEAD (docstring, imports, settings, the normalisation), WEIGHTS (the weight
mapping and load_layerloom_weights, compile_model, build_model) and TAIL (the data, in
Layerloom's split, and main). build_layers() goes between HEAD and WEIGHTS. torch_code
reuses TAIL's data section, so both scripts split the data with the same code."""

HEAD = '''"""Keras model and training script exported by Layerloom from {project}.

    KERAS_BACKEND=torch python {script} [--epochs N] [--no-weights] [--save model.keras]
    import {module}; model = {module}.build_model()   # compiled, exported weights loaded

The model takes raw inputs: a Normalization layer per Input holds the statistics Layerloom
fitted ((x - shift) * scale). Weights: {weights} beside this file, in Layerloom's names
("node/weight"); load_layerloom_weights converts them to the Keras layers' order.
"""
import argparse
import os

import numpy as np
import keras
from keras import layers, ops

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = {project_path!r}  # the data comes from here (through layerloom, or numpy)
WEIGHTS = os.path.join(HERE, {weights!r})
EPOCHS, BATCH_SIZE, SEED = {epochs!r}, {batch_size!r}, {seed!r}
VALIDATION_SPLIT, SHUFFLE = {validation_split!r}, {shuffle!r}

# the fitted input normalisation, by Input: y = (x - shift) * scale
NORMALIZATION = {normalization}


def normalization(input_id):
    """A Normalization layer with fixed statistics: (x - mean) / sqrt(variance) with
    mean = shift and variance = 1 / scale**2."""
    stats = NORMALIZATION[input_id]
    shift = np.asarray(stats["shift"], np.float64)
    scale = np.asarray(stats["scale"], np.float64)
    if shift.size == 1:  # one statistic for every feature (scale: x / 255)
        shift, scale = shift.reshape(()), scale.reshape(())
    return layers.Normalization(axis=-1 if shift.size > 1 else None, mean=shift,
                                variance=1.0 / scale ** 2, name=input_id + "_normalization")


def build_layers():
    """The graph, layer by layer, each named by its Layerloom node id."""
'''

WEIGHTS = '''

# each layer's weights in Keras' order, by their Layerloom names ("node/name"); a tuple is
# stacked into one Keras weight (GRU's bias: [bias, recurrent_bias], shape (2, 3 * units))
KERAS_WEIGHTS = {keras_weights}


def load_layerloom_weights(model, weights=WEIGHTS):
    """Set the weights from Layerloom's arrays: a path of its .npz, or a dict."""
    arrays = np.load(weights) if isinstance(weights, str) else weights
    for layer_name, names in KERAS_WEIGHTS.items():
        values = [np.stack([arrays[f"{{layer_name}}/{{n}}"] for n in name])
                  if isinstance(name, tuple) else arrays[f"{{layer_name}}/{{name}}"]
                  for name in names]
        model.get_layer(layer_name).set_weights([np.asarray(v, np.float32) for v in values])
    return model


def compile_model(model):
    """The project's optimizer, losses (with their weights) and metrics."""
'''

TAIL = '''

def make_callbacks():
    return [{callbacks}]


def build_model(weights=WEIGHTS):
    """The compiled model with the exported weights (when the file is there)."""
    model = build_layers()
    if weights is not None and (not isinstance(weights, str) or os.path.exists(weights)):
        load_layerloom_weights(model, weights)
    return compile_model(model)


INPUTS = {inputs!r}    # Input node -> array name
TARGETS = {targets!r}  # output node -> array name
SPARSE = {sparse!r}    # outputs whose targets are class indices


def _by_node(arrays, mapping, fitted=None):
    """{{node: array}}; a target "=input:<Input>" is that Input's rows, normalised with the
    statistics training fitted (`fitted`: the dataset's), as Layerloom trains towards them."""
    out = {{}}
    for nid, name in mapping.items():
        if name.startswith("=input:"):
            source = INPUTS[name[len("=input:"):]]
            a = np.asarray(arrays[source], np.float32)
            stats = ((fitted or {{}}).get("normalization") or {{}}).get(source)
            out[nid] = a if stats is None else (
                (a - np.asarray(stats["shift"], np.float32)) *
                np.asarray(stats["scale"], np.float32))
        else:
            out[nid] = np.asarray(arrays[name], np.float32)
    for nid in SPARSE:
        if nid in out and out[nid].ndim > 1 and out[nid].shape[-1] == 1:
            out[nid] = out[nid].reshape(out[nid].shape[:-1])
    return out


def _single(d):
    return next(iter(d.values())) if len(d) == 1 else d


def _split_indices(n, test, validation, seed, shuffle):
    """Layerloom's split (engine/data/preprocess.py split_indices): the same rows."""
    order = (np.random.default_rng([int(seed) & 0xFFFFFFFF, 7]).permutation(n)
             if shuffle and (test or validation) else np.arange(n))
    n_test, n_val = int(round(n * test)), int(round(n * validation))
    return order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]


def _numpy_arrays(dataset):
    """{{split: {{array name: array}}}} of an .npz or .npy dataset, read with numpy alone."""
    folder = os.path.dirname(PROJECT)
    if dataset.get("source") == "npz":
        with np.load(os.path.join(folder, dataset["path"])) as z:
            arrays = {{k: z[k] for k in z.files}}
    elif dataset.get("source") == "npy":
        arrays = {{k: np.load(os.path.join(folder, p)) for k, p in dataset["arrays"].items()}}
    else:
        raise SystemExit(f"dataset source {{dataset.get('source')!r}} needs layerloom "
                         "(pip install layerloom) to be read")
    train = {{k: v for k, v in arrays.items() if not k.endswith("_test")}}
    test = {{k[:-5]: v for k, v in arrays.items() if k.endswith("_test")}} or None
    split = dataset.get("split") or {{}}
    t, v = float(split.get("test", 0.0)), float(split.get("validation", 0.0))
    if test:
        t = 0.0
    validation = None
    if t or v:
        tr, va, te = _split_indices(len(next(iter(train.values()))), t, v,
                                    split.get("seed", 0), split.get("shuffle", True))
        part = lambda idx: {{k: a[idx] for k, a in train.items()}}  # noqa: E731
        test = test or (part(te) if len(te) else None)
        validation = part(va) if len(va) else None
        train = part(tr)
    return train, validation, test


def load_data():
    """(x, y, validation, test) of the project's data as Layerloom splits it, inputs raw (the
    model normalises them). Through layerloom when it is installed (every source), else
    numpy (.npz and .npy datasets)."""
    try:
        import layerloom
    except ImportError:
        layerloom = None
    if layerloom is not None:
        project = layerloom.load_project(PROJECT)
        data = layerloom.prepare_data(project, raw_inputs=True)  # the model scales, normalises
        val = data.validation
        return (_single(data.x), _single(data.y),
                (_single(val[0]), _single(val[1])) if val else None,
                (_single(data.x_test), _single(data.y_test)) if data.x_test is not None else None)
    import json
    with open(PROJECT) as f:
        dataset = json.load(f)["dataset"]
    if any(t.startswith("=input:") for t in TARGETS.values()) and \
            dataset.get("normalize", "none") != "none" and not dataset.get("fitted"):
        raise SystemExit("the targets are the inputs normalised by statistics that training "
                         "fits: train the project in Layerloom first, or install layerloom")
    train, validation, test = _numpy_arrays(dataset)
    pair = lambda a: (_single(_by_node(a, INPUTS)),  # noqa: E731
                      _single(_by_node(a, TARGETS, dataset.get("fitted"))))
    return (*pair(train), pair(validation) if validation else None,
            pair(test) if test else None)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    ap.add_argument("--no-weights", action="store_true",
                    help="start from Keras' initialisation, not the exported weights")
    ap.add_argument("--save", help="write the trained model here (.keras)")
    args = ap.parse_args(argv)
    keras.utils.set_random_seed(SEED)
    model = build_model(None if args.no_weights else WEIGHTS)
    x, y, validation, test = load_data()
    model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, shuffle=SHUFFLE,
              validation_split=0.0 if validation else VALIDATION_SPLIT,
              validation_data=validation, callbacks=make_callbacks(), verbose=2)
    if test is not None:
        print("test:", model.evaluate(*test, batch_size=args.batch_size, verbose=0,
                                      return_dict=True))
    if args.save:
        model.save(args.save)


if __name__ == "__main__":
    main()
'''
