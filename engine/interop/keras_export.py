"""A project with its trained weights as a Keras 3 model file (`layerloom --export P --to
model.keras`):

    from layerloom.interop import keras_export
    keras_export.export(project, weights, "model.keras")   # or to_keras(...) -> keras.Model

keras.saving.load_model("model.keras") gives a compiled Functional model: layers named by node
id, the fitted input normalisation as a Normalization layer at each Input (it takes what
`layerloom --predict` takes), the project's optimizer (and schedule), losses, loss weights and
metrics. The model is built by running the build_layers/compile_model code of the script that
keras_code writes (one translation, so the two cannot disagree), then saved with keras' own
model.save: keras is an optional dependency (pip install 'layerloom[keras-export]'), needed
only here. Anything without a Keras form raises DataError naming the node, type and option.
docs/keras_export.md has the mapping and the measured agreement with the engine."""
import os
import tempfile

from layerloom.interop import PackageMissing, keras_code, missing

__all__ = ["to_keras", "export", "KerasMissing", "require_keras"]
INSTALL = "pip install 'layerloom[keras-export]'"


class KerasMissing(PackageMissing):
    """The optional keras package (or a backend for it) is not installed."""


def require_keras():
    """keras, imported; with no KERAS_BACKEND set and no TensorFlow (Keras' default backend)
    installed, the torch or jax backend where one is."""
    import importlib.util
    why = missing("keras")
    if why:
        raise KerasMissing(why)
    if "KERAS_BACKEND" not in os.environ and importlib.util.find_spec("tensorflow") is None:
        for backend in ("torch", "jax"):
            if importlib.util.find_spec(backend) is not None:
                os.environ["KERAS_BACKEND"] = backend
                break
    try:
        import keras
    except ImportError as e:  # keras without any backend
        raise KerasMissing(f"keras could not be imported ({e}): {INSTALL} installs it with "
                           "the torch backend (KERAS_BACKEND=torch)") from None
    if int(keras.__version__.split(".")[0]) < 3:
        raise KerasMissing(f"Keras export needs Keras 3 (found {keras.__version__}): {INSTALL}")
    return keras


def _require_tensorflow(project):
    """Keras' text layers (StringLookup, IntegerLookup, TextVectorization) run on TensorFlow's
    string ops whatever the backend: refused by name without it."""
    import importlib.util
    hosts = [n for n in project.graph.nodes.values() if getattr(n.layer, "host", False)]
    if hosts and importlib.util.find_spec("tensorflow") is None:
        raise KerasMissing(f"{hosts[0].type} layer {hosts[0].id!r}: Keras' {hosts[0].type} "
                           "needs TensorFlow (its string ops) with any backend: pip install "
                           "tensorflow-cpu")


def _namespace(project, weights_file="weights.npz"):
    """The script's definitions (build_layers, load_layerloom_weights, compile_model...) run
    here, without its main."""
    require_keras()
    _require_tensorflow(project)
    text = keras_code.code(project, weights_file)
    ns = {"__name__": "layerloom_keras_export", "__file__": os.path.join(
        tempfile.gettempdir(), "train_keras.py")}
    exec(compile(text, "<layerloom keras_code>", "exec"), ns)  # noqa: S102 (our own text)
    return ns


def to_keras(project, weights, compile=True):
    """The project's graph with `weights` ({"node_id/weight_name": array}) as a keras.Model,
    compiled as the project trains unless compile=False."""
    arrays = keras_code.weight_arrays(project, weights)
    ns = _namespace(project)
    model = ns["build_layers"]()
    ns["load_layerloom_weights"](model, arrays)
    if compile:
        ns["compile_model"](model)
    return model


def export(project, weights, path):
    """Write to_keras(...) to `path` (a .keras zip: config.json, metadata.json,
    model.weights.h5) atomically: the old file or the new one, never half."""
    from layerloom.core.fileio import atomic_write_bytes
    model = to_keras(project, weights)
    # the optimizer's slots built (zeros), so load_model restores it without a warning
    model.optimizer.build(model.trainable_variables)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = os.path.join(tmp, "model.keras")
        model.save(tmp_path)
        with open(tmp_path, "rb") as f:
            atomic_write_bytes(path, f.read())
    return model
