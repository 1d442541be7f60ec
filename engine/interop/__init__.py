"""Exchange with other tools, one module per direction and format, each needing only its own
optional packages (imported when used):

- onnx_export / onnx_import: ONNX models (docs/onnx.md; extra `onnx`);
- keras_export (a .keras model) and keras_code (a Keras training script) (docs/keras_export.md;
  keras 3 with a backend); keras_import (.keras and legacy .h5, read with h5py alone:
  docs/keras.md; extra `keras`);
- torch_code: a PyTorch training script that also runs under torchrun (docs/pytorch.md).

The tables below are what the command line (--export, --import), layerloom.Model.export and
the editor's File menu offer; each writer is writer(project, weights, path) and writes its
files atomically, each importer has read(path) -> (project, weights) and convert(path, to).
What an export needs installed (NEEDS) is checked before anything is built or asked for, and
named with the extra of pyproject.toml that installs it; a script is text and needs nothing."""
import importlib
import importlib.util
import os
import sys

from layerloom.core.errors import LayerloomError, ProjectError

# format: (module, writer, what it writes, file name filter)
EXPORTS = {
    "onnx": ("onnx_export", "export", "ONNX model", "*.onnx"),
    "keras": ("keras_export", "export", "Keras model", "*.keras"),
    "keras-code": ("keras_code", "write_code", "Keras training script", "*.py"),
    "pytorch-code": ("torch_code", "write", "PyTorch training script", "*.py"),
}
# format: (the extra that installs what it needs, [(what is needed, the import names of which
# one will do)])
NEEDS = {
    "onnx": ("onnx", [("the onnx package", ("onnx",))]),
    "keras": ("keras-export", [("the keras package (3.x)", ("keras",)),
                               ("a Keras backend (torch, tensorflow or jax)",
                                ("torch", "tensorflow", "jax"))]),
}
BY_EXTENSION = {".onnx": "onnx", ".keras": "keras"}
IMPORTERS = {".onnx": "onnx_import", ".keras": "keras_import", ".h5": "keras_import"}


def export_format(path, format=None):
    """The export format asked for, or the one `path`'s extension names."""
    format = format or BY_EXTENSION.get(os.path.splitext(path)[1].lower())
    if format not in EXPORTS:
        raise LayerloomError(f"{path}: say which export (format: {', '.join(EXPORTS)}); a .py "
                             "script is keras-code or pytorch-code", "--format")
    return format


class PackageMissing(LayerloomError):
    """An optional package an export needs is not installed; the message names the extra."""


class ExportFailed(LayerloomError):
    """A writer failed for a reason that is not the project's (a package's own error): said
    as the export it is. Exit code 1."""

    exit_code = 1


def missing(format):
    """What the export `format` needs and this Python lacks, as a message naming the extra to
    install; None when nothing is missing. Looked up without importing anything (the editor
    asks before its file dialog)."""
    extra, needs = NEEDS.get(format, (None, []))
    lacking = [what for what, names in needs if not any(map(_installed, names))]
    if not lacking:
        return None
    return (f"{EXPORTS[format][2]} export needs {' and '.join(lacking)}, not installed here: "
            f"pip install 'layerloom[{extra}]'")


def _installed(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a module imported without a spec: there
        return name in sys.modules


def export(project, weights, path, format=None):
    """Write the project with its trained weights for another tool. Returns the format.
    Raises PackageMissing before anything is done when what it needs is not installed."""
    format = export_format(path, format)
    why = missing(format)
    if why:
        raise PackageMissing(why)
    module, writer, what = EXPORTS[format][:3]
    write = getattr(_module(module), writer)
    try:
        write(project, weights, path)
    except LayerloomError:
        raise
    except Exception as e:  # a writer's optional package (onnx, ...) failing in its own way
        raise ExportFailed(f"writing the {what} failed: {type(e).__name__}: {e}") from e
    return format


def _module(name):
    try:
        return importlib.import_module(f"layerloom.interop.{name}")
    except ModuleNotFoundError as e:  # this installation lacks it (not an optional package)
        if e.name != f"layerloom.interop.{name}":
            raise
        raise LayerloomError(f"this Layerloom has no {name} module; reinstall it") from None


def importer(path):
    """The module that reads the model at `path` (by its extension)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in IMPORTERS:
        raise LayerloomError(f"--import: expected an .onnx, .keras or .h5 model, got {path}",
                             "--import")
    return _module(IMPORTERS[ext])


def write_imported(project, weights, to):
    """An importer's convert(): the project at `to`, laid out, with `to`.weights.npz beside
    it, each file atomically. Returns the project."""
    import json
    from layerloom.core.layout import auto_layout
    from layerloom.project import loom as projectfile
    from layerloom.core.fileio import atomic_write_bytes, atomic_write_text, npz_bytes
    from layerloom.core.graph import too_many_nodes
    too_many = too_many_nodes(len(project.graph.nodes))
    if too_many:  # its file would be refused when opened: refused here, nothing written
        raise ProjectError(f"the imported model has {too_many}", "graph.nodes")
    folder = os.path.dirname(os.path.abspath(to))
    wname = os.path.basename(to) + ".weights.npz"
    project.ui = {"positions": {k: list(p) for k, p in auto_layout(project.graph).items()}}
    d = projectfile.trained_dict(project, folder, None, weights=wname)
    atomic_write_bytes(os.path.join(folder, wname), npz_bytes(weights))
    atomic_write_text(to, json.dumps(d, indent=2) + "\n")
    return project
