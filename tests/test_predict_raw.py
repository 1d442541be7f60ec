"""A trained model takes its data raw, as the dataset holds it: a data source's own preparation
(an image set's channel axis and 0..255 -> 0..1 scaling, an image folder's size and colour)
belongs to the model, so the same images as PNG files, as the raw `.npy` the dataset holds,
through the Python API, the editor's Predict and the ONNX export give the probabilities the test
split gets inside training (issue 26, item 1). Fashion-MNIST, MNIST and CIFAR-10 are small
files these tests write; the image folder is the bundled shapes example."""
import gzip
import io
import json
import os
import pickle
import shutil
import tarfile

import numpy as np
import pytest

from layerloom import api
from layerloom.core.errors import DataError
from layerloom.data import idx, inputs
from layerloom.data.prepare import load_arrays, prepare_data
from layerloom.project import loom as projectfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "assets", "examples")
TOL = 1e-6


def _fashion(folder, rng, n_train=40, n_test=12):
    os.makedirs(folder)
    test = rng.integers(0, 256, (n_test, 28, 28)).astype(np.uint8)
    for name, a in (("train-images-idx3-ubyte", rng.integers(0, 256, (n_train, 28, 28))),
                    ("train-labels-idx1-ubyte", rng.integers(0, 10, n_train)),
                    ("t10k-images-idx3-ubyte", test),
                    ("t10k-labels-idx1-ubyte", rng.integers(0, 10, n_test))):
        with open(os.path.join(folder, name + ".gz"), "wb") as f:
            f.write(gzip.compress(idx.dumps(np.asarray(a, np.uint8))))
    return test


def _mnist(folder, rng):
    os.makedirs(folder)
    test = rng.integers(0, 256, (12, 28, 28)).astype(np.uint8)
    np.savez(os.path.join(folder, "mnist.npz"), x_train=rng.integers(0, 256, (40, 28, 28)).astype(
        np.uint8), y_train=rng.integers(0, 10, 40).astype(np.uint8), x_test=test,
        y_test=rng.integers(0, 10, 12).astype(np.uint8))
    return test


def _cifar10(folder, rng):
    os.makedirs(folder)
    batches = [(rng.integers(0, 256, (4, 3072), dtype=np.uint8), list(rng.integers(0, 10, 4)))
               for _ in range(6)]

    def add(tar, name, obj):
        data = pickle.dumps(obj, protocol=2)
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with tarfile.open(os.path.join(folder, "cifar-10-python.tar.gz"), "w:gz") as tar:
        for i, (d, lab) in enumerate(batches[:5], 1):
            add(tar, f"cifar-10-batches-py/data_batch_{i}", {b"data": d, b"labels": lab})
        add(tar, "cifar-10-batches-py/test_batch", {b"data": batches[5][0],
                                                    b"labels": batches[5][1]})
    return batches[5][0].reshape(4, 3, 32, 32).transpose(0, 2, 3, 1)


def _keras_project(tmp_path, name, shape):
    """The Fashion-MNIST MLP example on Keras' set `name`, its Input shaped for it."""
    d = json.load(open(os.path.join(EXAMPLES, "fashion_mnist_mlp.loom")))
    d["dataset"] = {"source": "keras", "name": name, "params": {"scale": True}}
    d["graph"]["nodes"][0]["params"]["shape"] = list(shape)
    path = tmp_path / f"{name}.loom"
    path.write_text(json.dumps(d))
    return projectfile.load(str(path))


SETS = {"fashion_mnist": ("fashion-mnist", _fashion, (28, 28, 1)),
        "mnist": ("mnist", _mnist, (28, 28, 1)),
        "cifar10": ("cifar10", _cifar10, (32, 32, 3))}


def _reference(model, project):
    """Probabilities of the test split as training prepares it; the project keeps what the
    preparation fitted, as trained.loom does."""
    data = prepare_data(project)
    project.dataset["fitted"] = data.fitted
    nid = project.graph.inputs()[0]
    out = model.session.model.predict({nid: data.x_test[nid]}, 8)
    return out[project.graph.outputs()[0]]


def _pngs(folder, images):
    from PIL import Image
    os.makedirs(folder)
    for i, a in enumerate(images):
        Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(
            os.path.join(folder, f"{i:03d}.png"))
    return sorted(os.path.join(folder, f) for f in os.listdir(folder))


@pytest.mark.parametrize("name", list(SETS))
def test_keras_image_sets_predict_from_raw_arrays_pngs_and_the_api(data_env, name):
    folder, write, shape = SETS[name]
    raw = write(str(data_env / "data" / folder), np.random.default_rng(1))
    project = _keras_project(data_env, name, shape)
    model = api.Model(project)
    ref = _reference(model, project)
    # the dataset's own rows as load_arrays gives them: raw, as the README's API example uses
    assert load_arrays(project).test["x"].dtype == np.uint8
    cases = {"api, as the dataset holds them": raw,
             "api, load_arrays' test rows": load_arrays(project).test["x"],
             "api, with a channel axis": raw.reshape(len(raw), *shape),
             "api, float pixels 0..255": raw.astype(np.float64)}
    npy = data_env / "raw.npy"
    np.save(npy, raw)
    cases[".npy file"] = inputs.read(project, str(npy)).arrays
    files = _pngs(str(data_env / "pngs"), raw.reshape(len(raw), *shape))
    cases["folder of PNG files"] = inputs.read(project, str(data_env / "pngs")).arrays
    for what, x in cases.items():
        got = model.predict(x)
        assert np.abs(got - ref).max() <= TOL, what
    one = model.predict(inputs.read(project, files[3]).arrays)
    assert one.shape == (1, ref.shape[1]) and np.abs(one - ref[3:4]).max() <= TOL
    # not the identity: a model that took 0..1 pixels gives other probabilities
    assert np.abs(ref - model.session.model.predict(
        {project.graph.inputs()[0]: raw.reshape(len(raw), *shape).astype(np.float32)}, 8)[
        project.graph.outputs()[0]]).max() > 1e-3


def test_the_editor_predicts_pngs_for_a_keras_set_model(data_env):
    pytest.importorskip("PySide6")
    from layerloom.app.window.model_tasks import predict_file
    raw = _fashion(str(data_env / "data" / "fashion-mnist"), np.random.default_rng(2))
    project = _keras_project(data_env, "fashion_mnist", (28, 28, 1))
    model = api.Model(project)
    ref = _reference(model, project)
    _pngs(str(data_env / "pngs"), raw[..., None])
    p = predict_file(project, model.get_weights() or model.session.model.get_weights(),
                     str(data_env / "pngs"))
    assert p.header[:2] == ["file", "class"] and len(p.rows) == len(raw)
    probs = np.array([[float(v) for v in r[2:]] for r in p.rows])
    assert np.abs(probs - ref).max() <= 1e-5  # the CSV's 6 significant digits


def test_already_scaled_pixels_are_refused_not_scaled_twice(data_env):
    raw = _fashion(str(data_env / "data" / "fashion-mnist"), np.random.default_rng(3))
    project = _keras_project(data_env, "fashion_mnist", (28, 28, 1))
    model = api.Model(project)
    with pytest.raises(DataError, match=r"^the input holds pixel values in 0\.\.1.*0\.\.255"):
        model.predict(raw / np.float32(255))
    with pytest.raises(DataError) as e:
        model.predict(np.zeros((3, 27, 28), np.uint8))
    assert "28x28" in e.value.message and "set the Input's shape" not in e.value.message
    # the trial: "dataset.inputs.image: array 'x' holds ..." for the user's own file; what a
    # user gives is "the input" (an array name only where there are several), not placed in
    # the project's dataset section
    assert e.value.message.startswith("the input has samples shaped (None, 27, 28)")
    assert e.value.place is None


def test_image_folder_model_predicts_raw_arrays_as_its_test_split(data_env):
    shutil.copytree(EXAMPLES, data_env / "ex")
    project = projectfile.load(str(data_env / "ex" / "shapes_folder.loom"))
    model = api.Model(project)
    ref = _reference(model, project)
    raw = np.asarray(load_arrays(project).test["x"][:], np.uint8)
    assert raw.shape[1:] == (28, 28, 1)
    for x in (raw, raw[..., 0], raw.astype(np.float32)):
        assert np.abs(model.predict(x) - ref).max() <= TOL
    _pngs(str(data_env / "pngs"), raw)
    got = model.predict(inputs.read(project, str(data_env / "pngs")).arrays)
    assert np.abs(got - ref).max() <= TOL


def test_images_for_a_model_trained_on_arrays_are_refused_with_a_reason(data_env, tmp_path):
    shutil.copytree(EXAMPLES, data_env / "ex")
    project = projectfile.load(str(data_env / "ex" / "wine_csv.loom"))
    _pngs(str(data_env / "pngs"), np.zeros((2, 8, 8, 1), np.uint8))
    with pytest.raises(DataError, match="trained on a CSV table"):
        inputs.read(project, str(data_env / "pngs"))


def test_onnx_export_takes_the_raw_pixels_the_model_takes(data_env):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from layerloom.interop import onnx_export
    raw = _fashion(str(data_env / "data" / "fashion-mnist"), np.random.default_rng(4))
    project = _keras_project(data_env, "fashion_mnist", (28, 28, 1))
    model = api.Model(project)
    ref = model.predict(raw)
    path = str(data_env / "m.onnx")
    onnx_export.export(project, model.session.model.get_weights(), path)
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = s.run(None, {s.get_inputs()[0].name: raw[..., None].astype(np.float32)})[0]
    assert np.abs(got - ref).max() <= 1e-5


@pytest.mark.slow
def test_keras_and_pytorch_exports_take_the_raw_pixels_the_model_takes(data_env):
    os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 on torch, as the export is
    keras = pytest.importorskip("keras")
    torch = pytest.importorskip("torch")
    import importlib.util
    raw = _fashion(str(data_env / "data" / "fashion-mnist"), np.random.default_rng(5))
    project = _keras_project(data_env, "fashion_mnist", (28, 28, 1))
    model = api.Model(project)
    ref = model.predict(raw)
    pixels = raw[..., None].astype(np.float32)  # 0..255, shaped as the Input
    model.export(str(data_env / "m.keras"))
    got = keras.saving.load_model(str(data_env / "m.keras")).predict(pixels, verbose=0)
    assert np.abs(np.asarray(got) - ref).max() <= 1e-5
    script = data_env / "m_torch.py"
    model.export(str(script), format="pytorch-code")
    spec = importlib.util.spec_from_file_location("m_torch", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with torch.no_grad():
        out = mod.build_model()(torch.as_tensor(pixels))
    out = out if isinstance(out, torch.Tensor) else next(iter(out.values()))
    assert np.abs(out.numpy() - ref).max() <= 1e-5
