"""Blocks in the exported code (issue 30, item 1): the PyTorch script writes each block type
as an nn.Module class and the Keras script as a function, a repeat as nn.Sequential / a loop
and a nested block as a nested module / call; the weights file keeps the inlined graph's
names, and both scripts compute what the engine does. ONNX stays inlined."""
import copy
import importlib.util
import json
import os
import re
import sys

import numpy as np
import pytest

from layerloom.interop import keras_code, torch_code
from layerloom.project import loom
from layerloom.train.model import Model

sys.path.insert(0, os.path.dirname(__file__))
from test_blocks import project_dict, random_weights, reference  # noqa: E402

TOL = 1e-4


def load(d):
    return loom.from_dict(json.loads(json.dumps(d)))


def nested_project():
    """stem -> ResBlock x2 -> Stage (ResBlock x2, then ResBlock; `width` sets both) -> Dense."""
    d = project_dict(repeat=2)
    d["blocks"]["Stage"] = {
        "help": "Residual blocks in a row",
        "inputs": ["x"], "outputs": [["second", 0]],
        "params": {"width": {"default": 4, "sets": ["first.filters", "second.filters"]}},
        "graph": {"nodes": [{"id": "x", "type": "Input", "params": {"shape": [6, 6, 4]}},
                            {"id": "first", "type": "ResBlock",
                             "params": {"filters": 4, "repeat": 2}},
                            {"id": "second", "type": "ResBlock", "params": {"filters": 4}}],
                  "edges": [{"from": ["x", 0], "to": ["first", 0]},
                            {"from": ["first", 0], "to": ["second", 0]}]}}
    d["graph"]["nodes"].insert(3, {"id": "stage", "type": "Stage", "params": {"width": 4}})
    d["graph"]["edges"][2] = {"from": ["res", 0], "to": ["stage", 0]}
    d["graph"]["edges"].append({"from": ["stage", 0], "to": ["gap", 0]})
    return load(d)


def two_widths_project():
    """ResBlock used with filters 4 and (after a 1x1 convolution) 8."""
    d = project_dict(repeat=1)
    nodes = d["graph"]["nodes"]
    nodes.insert(3, {"id": "widen", "type": "Conv2D",
                     "params": {"filters": 8, "kernel_size": [1, 1]}})
    nodes.insert(4, {"id": "res8", "type": "ResBlock", "params": {"filters": 8}})
    d["graph"]["edges"][2] = {"from": ["res", 0], "to": ["widen", 0]}
    d["graph"]["edges"] += [{"from": ["widen", 0], "to": ["res8", 0]},
                            {"from": ["res8", 0], "to": ["gap", 0]}]
    return load(d)


def _load_script(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _engine(rt, p, ws, x):
    return Model(p.graph, rt, len(x), weights=ws).predict({"image": x})["out"]


# -- PyTorch ----------------------------------------------------------------------------------
def _torch_run(tmp_path, p, ws, x):
    torch = pytest.importorskip("torch")
    path = str(tmp_path / "train_torch.py")
    text = torch_code.write(p, ws, path)
    module = _load_script(path)
    with torch.no_grad():
        got = module.build_model()({"image": torch.from_numpy(x)})
    return text, module, (got["out"] if isinstance(got, dict) else got).numpy()


def test_pytorch_script_writes_blocks_as_module_classes(rt, rng, tmp_path):
    p = nested_project()
    ws = random_weights(p.graph, rng)
    x = rng.normal(size=(3, 6, 6, 1)).astype(np.float32)
    text, module, got = _torch_run(tmp_path, p, ws, x)
    assert "class ResBlock(nn.Module):" in text and "class Stage(nn.Module):" in text
    assert "self.res = nn.Sequential(*[ResBlock() for _ in range(2)])" in text
    assert "self.stage = Stage()" in text and "self.second = ResBlock()" in text
    assert text.index("class ResBlock(") < text.index("class Stage(") < \
        text.index("class LayerloomModel(")
    # the weights file keeps the inlined graph's names, mapped onto the nested modules
    assert module.TORCH_WEIGHTS["stage/first/#2/conv_1/kernel"] == \
        ("stage.first.1.conv_1.weight", "HWIO")
    assert set(np.load(str(tmp_path / "train_torch.weights.npz")).files) == set(ws)
    np.testing.assert_allclose(got, _engine(rt, p, ws, x), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(got, reference(p.graph, ws, {"image": x})[("out", 0)],
                               rtol=TOL, atol=1e-5)
    # --save-weights writes them back in Layerloom's names
    back = module.layerloom_arrays(module.build_model())
    assert set(back) == set(ws)
    np.testing.assert_array_equal(back["res/#2/conv_2/bias"], ws["res/#2/conv_2/bias"])


def test_pytorch_script_writes_a_class_per_parameter_values(rt, rng, tmp_path):
    p = two_widths_project()
    ws = random_weights(p.graph, rng)
    x = rng.normal(size=(2, 6, 6, 1)).astype(np.float32)
    text, _, got = _torch_run(tmp_path, p, ws, x)
    assert "class ResBlock(nn.Module):" in text and "class ResBlock2(nn.Module):" in text
    assert "(filters=8)" in text
    np.testing.assert_allclose(got, _engine(rt, p, ws, x), rtol=TOL, atol=TOL)


def test_pytorch_frozen_instance_stays_frozen(rng, tmp_path):
    torch = pytest.importorskip("torch")
    d = copy.deepcopy(project_dict(repeat=2))
    d["graph"]["nodes"][2]["trainable"] = False
    p = load(d)
    ws = random_weights(p.graph, rng)
    _, module, _ = _torch_run(tmp_path, p, ws, np.zeros((1, 6, 6, 1), np.float32))
    model = module.build_model()
    assert not model.res[1].conv_2.weight.requires_grad
    assert model.stem.weight.requires_grad
    assert isinstance(model.res, torch.nn.Sequential)


# -- Keras ------------------------------------------------------------------------------------
@pytest.fixture
def keras(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


def test_keras_script_writes_blocks_as_functions(keras, rt, rng, tmp_path):
    p = nested_project()
    ws = random_weights(p.graph, rng)
    path = str(tmp_path / "train_keras.py")
    text = keras_code.write_code(p, ws, path)
    assert "def res_block(x, filters=4, name='res_block'):" in text
    assert "def stage(x, width=4, name='stage'):" in text
    assert "name=f'{name}__conv_1'" in text
    assert "res_block(first, filters=width, name=f'{name}__first'" in text
    assert re.search(r"for copy in range\(1, 3\):.*\n\s+res = res_block\(res, filters=4", text)
    model = _load_script(path).build_model()
    names = {layer.name for layer in model.layers}
    assert {"res__conv_1", "res__#2__conv_2", "stage__first__#2__conv_1",
            "stage__second__relu"} <= names
    x = rng.normal(size=(3, 6, 6, 1)).astype(np.float32)
    got = np.asarray(keras.ops.convert_to_numpy(model(x)))
    np.testing.assert_allclose(got, _engine(rt, p, ws, x), rtol=TOL, atol=TOL)


def test_keras_function_takes_the_parameters_of_each_use(keras, rt, rng, tmp_path):
    from layerloom.interop.keras_export import export
    p = two_widths_project()
    ws = random_weights(p.graph, rng)
    text = keras_code.code(p, "w.npz")
    assert text.count("def res_block") == 1
    assert "res_block(stem, filters=4, name='res')" in text
    assert "res_block(widen, filters=8, name='res8')" in text
    export(p, ws, str(tmp_path / "m.keras"))  # the .keras file: the same script, saved
    model = keras.saving.load_model(str(tmp_path / "m.keras"))
    x = rng.normal(size=(2, 6, 6, 1)).astype(np.float32)
    got = np.asarray(keras.ops.convert_to_numpy(model(x)))
    np.testing.assert_allclose(got, _engine(rt, p, ws, x), rtol=TOL, atol=TOL)


def test_keras_function_per_values_where_a_parameter_is_inspected(keras, rng):
    """A layer whose Keras form looks at a block parameter's value (here a parameter that
    sets an activation) gets a function per values used, still named as inlined."""
    blocks = {"Act": {"inputs": ["x"], "outputs": [["a", 0]],
                      "params": {"fn": {"default": "relu", "sets": ["a.activation"]}},
                      "graph": {"nodes": [{"id": "x", "type": "Input",
                                           "params": {"shape": [3]}},
                                          {"id": "a", "type": "Dense",
                                           "params": {"units": 3}}],
                                "edges": [{"from": ["x", 0], "to": ["a", 0]}]}}}
    d = {"format": "layerloom-project", "version": 1, "blocks": blocks,
         "graph": {"nodes": [{"id": "x", "type": "Input", "params": {"shape": [3]}},
                             {"id": "b1", "type": "Act", "params": {"fn": "relu"}},
                             {"id": "b2", "type": "Act", "params": {"fn": "gelu_tanh"}}],
                   "edges": [{"from": ["x", 0], "to": ["b1", 0]},
                             {"from": ["b1", 0], "to": ["b2", 0]}]},
         "training": {"loss": {"b2": "mean_squared_error"}}}
    p = load(d)
    ws = random_weights(p.graph, rng)
    text = keras_code.code(p, "w.npz")
    assert "def act(" in text and "def act_2(" in text
    from layerloom.interop.keras_export import to_keras
    model = to_keras(p, ws, compile=False)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    got = np.asarray(keras.ops.convert_to_numpy(model(x)))
    want = reference(p.graph, ws, {"x": x})[("b2", 0)]
    np.testing.assert_allclose(got, want, rtol=TOL, atol=1e-5)


# -- a project without blocks: as before --------------------------------------------------------
def test_a_project_without_blocks_writes_no_block_code():
    from test_blocks import plain_project
    p = plain_project()
    t = torch_code.code(p, "w.npz")
    assert re.findall(r"^class (\w+)", t, re.M) == [
        "LayerloomModel", "KerasAdam", "KerasSGD", "KerasRMSprop", "KerasAdagrad"]
    k = keras_code.code(p, "w.npz")
    assert "LLBLOCKNAME" not in k and "__llsym" not in k
    from layerloom.interop.keras_script import HEAD, TAIL, WEIGHTS
    template_defs = re.findall(r"^def (\w+)", HEAD + WEIGHTS + TAIL, re.M)
    assert re.findall(r"^def (\w+)", k, re.M) == template_defs
