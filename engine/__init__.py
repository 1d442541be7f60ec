"""Layerloom: neural networks as graphs of layers, trained by OpenCL kernels on any device.

The installed package `layerloom` is this folder (engine/): the graph model, layers, project
file, data, OpenCL backend and training, none of which imports Qt. The editor is
`layerloom.app` (app/), the OpenCL sources `layerloom.clkernels` (clkernels/).

    import layerloom
    project = layerloom.load("examples/spirals.loom")
    data = layerloom.prepare_data(project)
    session = layerloom.Session(project)
    history = session.fit(data, epochs=5)

Subpackages, by concern:
    core     graph model, typed parameters, the layer registry, events, errors, expressions
    layers   the layer declarations, one module per Keras category
    project  the .loom file format, its validation, atomic file writes
    data     data sources (synthetic, Keras sets, .npz, CSV, images, .npy), splits, normalisation
    backend  OpenCL runtime, device probe, ops, GEMM and convolution dispatch
    train    model, fit loop, losses, metrics, optimizers, schedules, callbacks, training state

The names below are loaded on first use, so `import layerloom` stays cheap (the command line
sets its signal handlers before numpy and pyopencl load).
"""
import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Project": "layerloom.project.loom", "load": "layerloom.project.loom",
    "loads": "layerloom.project.loom", "save": "layerloom.project.loom",
    "prepare_data": "layerloom.data.prepare",
    "Session": "layerloom.train.session", "load_weights": "layerloom.train.session",
    "Runtime": "layerloom.backend.runtime", "layer_types": "layerloom.core.registry",
    "get_layer": "layerloom.core.registry", "LayerloomError": "layerloom.core.errors",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'layerloom' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
