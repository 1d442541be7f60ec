"""Layerloom: neural networks as graphs of layers, trained by OpenCL kernels on any device.

The installed package `layerloom` is this folder (engine/): the graph model, layers, project
file, data, OpenCL backend and training, none of which imports Qt. The editor is
`layerloom.app` (app/), the OpenCL sources `layerloom.clkernels` (clkernels/).

    import layerloom
    model = layerloom.load("runs/spirals/trained.loom")  # graph, weights, fitted preprocessing
    probs = model.predict(x)             # numpy in, numpy out
    model.evaluate(x, y)                 # {"loss": ..., "accuracy": ...}
    model.fit(x, y, epochs=5)            # continues from the current weights

`layerloom.Model` and `load`/`devices` are the API (api.py); `load_project` gives the
Project behind it, `Session` and `prepare_data` the training path they are built on.

Subpackages, by concern:
    core     graph model, typed parameters, the layer registry, events, errors, expressions
    layers   the layer declarations, one module per Keras category
    project  the .loom file format, its validation, atomic file writes
    data     data sources (synthetic, Keras sets, .npz, CSV, images, .npy), splits, normalisation
    backend  OpenCL runtime, device probe, ops, GEMM and convolution dispatch
    train    model, fit loop, losses, metrics, optimizers, schedules, callbacks, training state
    cli      the `layerloom` command (--run, --predict, ...) and the editor's training process

The names below are loaded on first use, so `import layerloom` stays cheap (the command line
sets its signal handlers before numpy and pyopencl load).
"""
import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Model": "layerloom.api", "load": "layerloom.api", "devices": "layerloom.api",
    "Project": "layerloom.project.loom", "load_project": "layerloom.project.loom",
    "loads": "layerloom.project.loom", "save": "layerloom.project.loom",
    "prepare_data": "layerloom.data.prepare",
    "Session": "layerloom.train.session", "load_weights": "layerloom.train.session",
    "Runtime": "layerloom.backend.runtime", "layer_types": "layerloom.core.registry",
    "get_layer": "layerloom.core.registry", "LayerloomError": "layerloom.core.errors",
}
_NAMES = {"load_project": "load"}  # exported under another name than the module's
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'layerloom' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), _NAMES.get(name, name))
    globals()[name] = value
    return value


def __dir__():
    return __all__
