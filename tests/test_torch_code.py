"""PyTorch code (engine/interop/torch_code.py: a training script with an nn.Module) against
the engine itself: every supported layer type's declaration examples (test_onnx_export's
CASES) as a one-layer graph with random weights, run by Layerloom and by the script's
build_model() on the same float32 inputs; the bundled examples through their fitted
normalisation on raw inputs; one training step from the same weights; torchrun with two
processes on the CPU (slow).

Tolerance: max |torch - Layerloom| <= 1e-5 (both float32); the largest measured is 4.8e-7
(exponential, gelu, log_softmax activations), the bundled examples <= 1.2e-7 (wine_csv);
$LAYERLOOM_TORCH_REPORT=FILE.json keeps every figure (docs/pytorch.md). The loss after one or
two optimizer steps agrees within 1e-4 (measured: equal to 6 decimals)."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from layerloom.core.errors import LayerloomError  # noqa: E402
from layerloom.interop import export as interop_export  # noqa: E402
from layerloom.interop import torch_code, torch_layers  # noqa: E402
from layerloom.project import loom  # noqa: E402
from layerloom.train.model import Model  # noqa: E402
from test_onnx_export import (CASES, EXAMPLE_PROJECTS, EXAMPLES, _case_id,  # noqa: E402
                              _graph_for, _inputs, _random_weights, example_case)

TOL = 1e-5
STEP_TOL = 1e-4
MEASURED = {}
# options the export refuses (test_an_option_without_torch_form_is_refused...): weight
# regularizers and initialisers other than glorot_uniform/zeros/ones


def _refused_option(params):
    return bool(params.get("kernel_regularizer") or params.get("bias_regularizer")
                or params.get("kernel_initializer", "glorot_uniform") != "glorot_uniform"
                or params.get("bias_initializer", "zeros") not in ("zeros", "ones"))


SUPPORTED = [c for c in CASES if c[0] in torch_layers.CONVERTERS and not _refused_option(c[1])]
REFUSED_OPTIONS = [c for c in CASES if c[0] in torch_layers.CONVERTERS and _refused_option(c[1])]
REFUSED = sorted({c[0] for c in CASES} - set(torch_layers.CONVERTERS))


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    path = os.environ.get("LAYERLOOM_TORCH_REPORT")
    if path and MEASURED:
        with open(path, "w") as f:
            json.dump(MEASURED, f, indent=1, sort_keys=True)


def _load_script(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _torch_out(module, model, xs):
    with torch.no_grad():
        got = model({k: torch.from_numpy(v) for k, v in xs.items()})
    if not isinstance(got, dict):
        got = {module.OUTPUT_IDS[0]: got}
    return {k: v.numpy() for k, v in got.items()}


def _max_error(got, want):
    assert set(got) == set(want)
    for k in want:
        assert got[k].shape == want[k].shape, k
    return max(float(np.abs(got[k] - want[k]).max()) if want[k].size else 0.0 for k in want)


def _script(tmp_path, project, weights, name="train_torch.py"):
    path = str(tmp_path / name)
    assert interop_export(project, weights, path, "pytorch-code") == "pytorch-code"
    return _load_script(path)


@pytest.mark.parametrize("type_id,params,shapes", SUPPORTED,
                         ids=[_case_id(*c) for c in SUPPORTED])
def test_layer_matches_engine(rt, rng, tmp_path, type_id, params, shapes):
    g = _graph_for(type_id, params, shapes)
    ws = _random_weights(g, rng)
    xs = _inputs(g, rng, batch=3)
    want = Model(g, rt, 3, weights=ws).predict(xs)
    module = _script(tmp_path, loom.Project(g), ws)
    model = module.build_model()
    assert not model.training
    err = _max_error(_torch_out(module, model, xs), want)
    MEASURED[_case_id(type_id, params, shapes)] = err
    assert err <= TOL


def test_every_layer_type_has_a_converter():
    assert REFUSED == []


def test_a_layer_type_without_torch_form_is_refused_naming_node_and_type(tmp_path,
                                                                          monkeypatch):
    type_id = "LSTM"  # as if it had no converter
    monkeypatch.delitem(torch_layers.CONVERTERS, type_id)
    case = next(c for c in CASES if c[0] == type_id)
    g = _graph_for(*case)
    with pytest.raises(LayerloomError) as e:
        interop_export(loom.Project(g), None, str(tmp_path / "t.py"), "pytorch-code")
    assert type_id in str(e.value) and "'node'" in str(e.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("type_id,params,shapes", REFUSED_OPTIONS,
                         ids=[_case_id(*c) for c in REFUSED_OPTIONS])
def test_refused_options_name_node_and_option(tmp_path, type_id, params, shapes):
    g = _graph_for(type_id, params, shapes)
    with pytest.raises(LayerloomError) as e:
        interop_export(loom.Project(g), None, str(tmp_path / "t.py"), "pytorch-code")
    assert "'node'" in str(e.value) and ("regularizer" in str(e.value)
                                         or "initializer" in str(e.value))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", EXAMPLE_PROJECTS)
def test_bundled_example_matches_engine_on_raw_inputs(rt, tmp_path, name):
    project, weights, by_node, want = example_case(rt, name)
    module = _script(tmp_path, project, weights)
    assert (tmp_path / "train_torch.weights.npz").exists()
    err = _max_error(_torch_out(module, module.build_model(), by_node), want)
    MEASURED[f"example {name}"] = err
    print(f"example {name}: max abs diff {err:.3g}")
    assert err <= TOL


def _spirals(optimizer):
    project = loom.load(os.path.join(EXAMPLES, "spirals.loom"))
    project.training = {**project.training, "optimizer": optimizer, "metrics": []}
    return project


@pytest.mark.parametrize("optimizer", [
    {"name": "sgd", "params": {"learning_rate": 0.1, "momentum": 0.9}},
    {"name": "sgd", "params": {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}},
    {"name": "adam", "params": {"learning_rate": 0.01}},
    {"name": "sgd", "params": {"momentum": 0.9, "learning_rate": {
        "schedule": "exponential_decay", "initial_learning_rate": 0.2, "decay_steps": 1,
        "decay_rate": 0.3, "staircase": False}}},
    {"name": "adam", "params": {"learning_rate": {
        "schedule": "cosine_decay", "initial_learning_rate": 0.001, "decay_steps": 3,
        "alpha": 0.0, "warmup_target": 0.02, "warmup_steps": 1}}},
    {"name": "rmsprop", "params": {"learning_rate": 0.01}},
    {"name": "rmsprop", "params": {"learning_rate": 0.01, "momentum": 0.5, "centered": True}},
    {"name": "adagrad", "params": {"learning_rate": 0.1}},
], ids=["sgd", "sgd_nesterov", "adam", "sgd_exponential_decay", "adam_cosine_warmup",
        "rmsprop", "rmsprop_centered_momentum", "adagrad"])
def test_one_training_step_gives_the_same_loss(rt, tmp_path, optimizer):
    """The same 64 rows, one full batch, the same starting weights: the loss before and after
    one step agrees within 1e-4 (two steps for momentum to count)."""
    import layerloom
    from layerloom.data.prepare import prepare_data
    project = _spirals(optimizer)
    data = prepare_data(project)
    x, y = data.x["point"][:64], data.y["class"][:64]
    model = layerloom.Model(project)
    start = model.session.model.get_weights()
    module = _script(tmp_path, project, start)
    net = module.build_model()
    opt = module.make_optimizer(net.parameters())
    # Layerloom's x here is already normalised: give the torch model raw rows
    raw = x / np.asarray(module.NORMALIZATION["point"]["scale"], np.float32) + np.asarray(
        module.NORMALIZATION["point"]["shift"], np.float32) if module.NORMALIZATION else x
    xt, yt = {"point": torch.from_numpy(raw.astype(np.float32))}, {
        "class": torch.from_numpy(np.asarray(y, np.float32))}
    losses = []
    before = model.evaluate(x, y, batch_size=64)["loss"]
    for _ in range(2):
        net.train()
        opt.zero_grad()
        loss = module.compute_loss(net(xt), yt)
        loss.backward()
        opt.step()
        net.eval()
        with torch.no_grad():
            losses.append(float(module.compute_loss(net(xt), yt)))
    net2 = module.build_model()
    with torch.no_grad():
        t_before = float(module.compute_loss(net2(xt), yt))
    model.fit(x, y, epochs=2, batch_size=64, validation_split=0.0, verbose=False)
    after = model.evaluate(x, y, batch_size=64)["loss"]
    print(f"{optimizer}: Layerloom {before:.6f} -> {after:.6f}; torch {t_before:.6f} -> "
          f"{losses[-1]:.6f}")
    assert abs(before - t_before) <= STEP_TOL
    assert abs(after - before) > 10 * STEP_TOL
    assert abs(after - losses[-1]) <= STEP_TOL, (before, after, losses)


def test_one_training_step_of_two_weighted_losses(rt, tmp_path):
    """multitask: sparse categorical cross-entropy + 0.5 * mean squared error, two inputs, one
    Adam step on one batch: the same loss within 1e-4 (its Dropout off: the engines' random
    masks differ)."""
    import layerloom
    from layerloom.data.prepare import load_arrays, prepare_data
    project = loom.load(os.path.join(EXAMPLES, "multitask.loom"))
    project.training = {**project.training, "metrics": []}
    for node in project.graph.nodes.values():  # the two engines draw different masks
        if node.type == "Dropout":
            node.params["rate"] = 0.0
    data = prepare_data(project)
    x = {k: v[:64] for k, v in data.x.items()}
    y = {k: v[:64] for k, v in data.y.items()}
    raw = load_arrays(project).train
    names = project.dataset["inputs"]
    tnames = project.dataset["targets"]
    model = layerloom.Model(project)
    module = _script(tmp_path, project, model.session.model.get_weights())
    net = module.build_model()
    xt = {k: torch.from_numpy(np.asarray(raw[names[k]][:64], np.float32)) for k in names}
    yt = {k: torch.from_numpy(np.asarray(raw[tnames[k]][:64], np.float32)) for k in tnames}
    with torch.no_grad():
        t_before = float(module.compute_loss(net(xt), yt))
    before = model.evaluate(x, y, batch_size=64)["loss"]
    opt = module.make_optimizer(net.parameters())
    net.train()
    loss = module.compute_loss(net(xt), yt)
    loss.backward()
    opt.step()
    net.eval()
    with torch.no_grad():
        t_after = float(module.compute_loss(net(xt), yt))
    model.fit(x, y, epochs=1, batch_size=64, validation_split=0.0, verbose=False)
    after = model.evaluate(x, y, batch_size=64)["loss"]
    print(f"multitask: Layerloom {before:.6f} -> {after:.6f}; torch {t_before:.6f} -> "
          f"{t_after:.6f}")
    assert abs(before - t_before) <= STEP_TOL
    assert abs(after - before) > 10 * STEP_TOL
    assert abs(after - t_after) <= STEP_TOL


def test_an_option_without_torch_form_is_refused_naming_node_and_option(tmp_path):
    project = _spirals({"name": "adam", "params": {}})
    project.graph.nodes["hidden_2"].params["bias_initializer"] = "lstm_bias"
    with pytest.raises(LayerloomError) as e:
        interop_export(project, None, str(tmp_path / "t.py"), "pytorch-code")
    assert "hidden_2" in str(e.value) and "bias_initializer" in str(e.value)
    assert os.listdir(tmp_path) == []


def test_an_optimizer_without_torch_form_is_refused(tmp_path):
    project = _spirals({"name": "nadam", "params": {}})
    with pytest.raises(LayerloomError, match="nadam"):
        interop_export(project, None, str(tmp_path / "t.py"), "pytorch-code")
    assert os.listdir(tmp_path) == []


def test_saved_weights_round_trip_in_layerloom_layout(rt, rng, tmp_path):
    """layerloom_arrays(load(w)) == w: Conv2D, Dense and BatchNormalization in Layerloom's
    names and layout, so the .npz the script writes is what a project's weights key reads."""
    from test_onnx_export import _conv_graph
    g = _conv_graph()
    ws = Model(g, rt, 2).get_weights()
    module = _script(tmp_path, loom.Project(g), ws)
    back = module.layerloom_arrays(module.build_model())
    assert set(back) == set(ws)
    for k in ws:
        np.testing.assert_array_equal(back[k], ws[k])


@pytest.mark.slow
def test_torchrun_two_processes_trains_and_the_weights_come_back(rt, tmp_path):
    """torchrun --nproc_per_node=2 on the CPU (gloo): spirals for 3 epochs, the loss falls;
    the weights it wrote, set as the project's weights, give Layerloom the script's
    predictions."""
    import layerloom
    src = os.path.join(EXAMPLES, "spirals.loom")
    project = loom.load(src)
    project.path = src
    script = tmp_path / "train_torch.py"
    torch_code.write(project, layerloom.Model(project).session.model.get_weights(),
                     str(script))
    out = tmp_path / "trained.npz"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                        "--standalone", str(script),
                        "--epochs", "3", "--save-weights", str(out)], capture_output=True,
                       text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    losses = [float(line.split(" loss ")[1].split()[0]) for line in r.stdout.splitlines()
              if line.startswith("epoch ")]
    print(r.stdout)
    assert len(losses) == 3 and losses[-1] < losses[0], r.stdout
    with np.load(out) as z:
        trained = {k: z[k] for k in z.files}
    module = _load_script(str(script))
    from test_onnx_export import _raw_inputs
    raw = _raw_inputs(project)
    by_node = {"point": raw[next(iter(raw))]}
    want = _torch_out(module, module.build_model(str(out)), by_node)
    # back into Layerloom: a project whose "weights" key names the .npz
    d = loom.to_dict(project)
    d["weights"] = "trained.npz"
    (tmp_path / "back.loom").write_text(json.dumps(d))
    back = layerloom.load(str(tmp_path / "back.loom"))
    got = back.predict(by_node)
    got = got if isinstance(got, dict) else {"class": got}
    assert _max_error({k: np.asarray(v) for k, v in got.items()}, want) <= TOL
    assert not all(np.array_equal(trained[k], v) for k, v in
                   module.layerloom_arrays(module.build_model()).items())


@pytest.mark.parametrize("spec", [
    {"schedule": "exponential_decay", "initial_learning_rate": 0.1, "decay_steps": 7,
     "decay_rate": 0.5, "staircase": True},
    {"schedule": "exponential_decay", "initial_learning_rate": 0.1, "decay_steps": 7,
     "decay_rate": 0.5, "staircase": False},
    {"schedule": "piecewise_constant_decay", "boundaries": [3, 10], "values": [0.1, 0.05, 0.01]},
    {"schedule": "cosine_decay", "initial_learning_rate": 0.01, "decay_steps": 20,
     "alpha": 0.1, "warmup_target": 0.0, "warmup_steps": 0},
    {"schedule": "cosine_decay", "initial_learning_rate": 0.0, "decay_steps": 20,
     "alpha": 0.0, "warmup_target": 0.05, "warmup_steps": 5},
], ids=lambda s: s["schedule"])
def test_the_scripts_schedule_is_layerloom_s(tmp_path, spec):
    """learning_rate(step) in the script against engine/train/schedules.py, steps 0..40."""
    from layerloom.train import schedules
    from layerloom.interop import torch_code
    project = _spirals({"name": "adam", "params": {"learning_rate": spec}})
    path = tmp_path / "sched.py"
    path.write_text(torch_code.code(project, "sched.weights.npz", "sched.py"))
    module = _load_script(str(path))
    want = schedules.build(spec)
    for step in range(41):
        assert module.learning_rate(step) == pytest.approx(want(step), rel=1e-12, abs=1e-15)


def _spirals_named(hidden_id):
    """spirals.loom with its first hidden Dense called `hidden_id`."""
    with open(os.path.join(EXAMPLES, "spirals.loom")) as f:
        text = f.read().replace('"hidden_1"', json.dumps(hidden_id))
    return loom.from_dict(json.loads(text), os.path.join(EXAMPLES, "x.loom"))


def test_the_script_is_written_without_torch_installed(tmp_path, monkeypatch):
    """Issue 26, item 7: writing the script, a text file, imported torch (for the attribute
    names of an nn.Module) and failed without it."""
    from layerloom import api, interop
    project = loom.load(os.path.join(EXAMPLES, "spirals.loom"))
    weights = api.Model(project).session.model.get_weights()
    want = torch_code.code(project, "t.weights.npz")
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "torch.nn", None)
    assert interop.missing("pytorch-code") is None
    assert torch_code.code(project, "t.weights.npz") == want
    interop_export(project, weights, str(tmp_path / "t.py"), "pytorch-code")
    assert "class LayerloomModel" in (tmp_path / "t.py").read_text()
    assert (tmp_path / "t.weights.npz").exists()


def test_no_layer_takes_a_name_an_nn_module_has():
    """The names written down for torch_code (it does not import torch) cover this torch's
    nn.Module: its methods and what its __init__ sets (a layer called `training` was
    self.training, which nn.Module.train() overwrites with a bool)."""
    module = torch.nn.Module()
    assert set(dir(torch.nn.Module)) | set(vars(module)) <= torch_code.MODULE_NAMES
    text = torch_code.code(_spirals_named("training"), "t.weights.npz")
    assert "self.training =" not in text and "self.training_ = " in text
