"""FourierMixing (engine/layers/fourier.py), keras_hub FNetEncoder's token mixing: the real part
of the 2-D DFT over the last two axes, as two batched matrix products with constant cos/sin
matrices. Checked against the real tools: numpy's and torch's FFT forward (the FNet widths
too), torch's autograd of torch.fft.fft2(x).real backward (also adding into a gradient already
there, which the float64 harness does not reach), the GPU form of the products (local-memory
tiles) on this device; its forms: the ONNX export run by onnxruntime and read back as one
FourierMixing (a product with another constant still a Dense), the PyTorch script, and the
Keras export against keras.ops.fft2 read back as the same layer.

Tolerances: the products sum S + H float32 terms of size |x|, so the error grows with the
output's size (~sqrt(S H) |x|): 1e-5 relative to the output's largest value (measured on PoCL,
normal inputs: max abs error against float64 6e-6 for (16, 8), where |y| reaches 28, and 1.6e-4
for (128, 64), where it reaches 283: ~6e-7 of the largest value)."""
import math
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from layerloom.backend.ops import Tensor  # noqa: E402
from layerloom.core.graph import Graph  # noqa: E402
from layerloom.core.registry import ShapeError, get_layer  # noqa: E402
from layerloom.layers.fourier import dft_matrices  # noqa: E402
from layerloom.project import loom  # noqa: E402
from layerloom.testing import run_layer  # noqa: E402
from layerloom.train.model import Model, NodeStep, upload_const  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # keras' numpy 2 notes
LAYER = get_layer("FourierMixing")
SHAPES = [(4, 6), (1, 1), (7, 1), (1, 9), (16, 8), (33, 17), (2, 5, 3), (64, 128)]
IDS = ["x".join(map(str, s)) for s in SHAPES]
REL = 1e-5


def close(got, want, rel=REL):
    """Within rel of want's largest magnitude (float32 sums of S + H terms)."""
    err = float(np.abs(np.asarray(got, np.float64) - want).max())
    assert err <= rel * max(1.0, float(np.abs(want).max())), err
    return err


def predict(rt, g, x, weights=None):
    """The graph's single output for input x (Model.predict's dict by output id or array)."""
    out = Model(g, rt, len(x), weights=weights or {}).predict({"x": x})
    return next(iter(out.values())) if isinstance(out, dict) else out


def graph(shape, then_dense=False):
    g = Graph()
    g.add_node("Input", {"shape": list(shape)}, id="x")
    g.add_node("FourierMixing", {}, id="mix")
    g.connect("x", 0, "mix", 0)
    if then_dense:  # a weight after it, so an import's weights and layout are checked too
        g.add_node("Dense", {"units": 3}, id="out")
        g.connect("mix", 0, "out", 0)
    assert not g.validate()
    return g


# -- the definition --------------------------------------------------------------------------
def test_the_dft_matrices_are_the_real_and_imaginary_parts_of_numpys_dft():
    for n in (1, 2, 5, 8, 33):
        c, s = dft_matrices(n)
        f = np.fft.fft(np.eye(n))  # F[j, k] = exp(-2 pi i j k / n)
        np.testing.assert_allclose(c, f.real, atol=1e-12)
        np.testing.assert_allclose(s, -f.imag, atol=1e-12)
        np.testing.assert_array_equal(c, c.T)
        np.testing.assert_array_equal(s, s.T)


def test_the_reference_is_the_real_part_of_the_2d_fft_over_the_last_two_axes(rng):
    x = rng.normal(size=(2, 3, 4, 5))
    ref = LAYER.reference({}, [x], {})[0]
    want = np.array([[np.fft.fft2(m).real for m in sample] for sample in x])
    np.testing.assert_allclose(ref, want, atol=1e-12)
    # written out from the definition, one element: sum_jk x[j, k] cos(2 pi (a j / S + b k / H))
    S, H = 4, 5
    j, k = np.meshgrid(np.arange(S), np.arange(H), indexing="ij")
    a, b = 3, 2
    direct = np.sum(x[1, 2] * np.cos(2 * np.pi * (a * j / S + b * k / H)))
    assert abs(ref[1, 2, a, b] - direct) < 1e-12


def test_the_shape_is_kept_and_a_single_axis_is_refused():
    assert LAYER.output_shapes({}, [(7, 3)]) == [(7, 3)]
    assert LAYER.output_shapes({}, [(2, 7, 3)]) == [(2, 7, 3)]
    with pytest.raises(ShapeError, match="last two axes"):
        LAYER.output_shapes({}, [(5,)])
    assert LAYER.param_count({}, [(7, 3)]) == 0 and LAYER.params == ()
    assert "\n" not in LAYER.help and LAYER.help


# -- the engine against torch ----------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_forward_and_backward_match_torch_fft(rt, ops, rng, shape):
    torch = pytest.importorskip("torch")
    x = rng.normal(size=(3,) + shape).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    y, (dx,), _ = run_layer(rt, ops, LAYER, {}, [x], {}, dy)
    xt = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    yt = torch.fft.fft2(xt).real
    yt.backward(torch.from_numpy(dy.astype(np.float64)))
    close(y, yt.detach().numpy())
    close(dx, xt.grad.numpy())
    close(y, np.fft.fft2(x.astype(np.float64)).real)


def _mix_into(rt, ops, x, dy, prior):
    """dx after a backward that adds into `prior` (s.acc True: the input fans out)."""
    shape = x.shape[1:]
    n = len(x)
    s = NodeStep("node", {}, n=n, x=[Tensor(rt.to_device(x), shape)],
                 y=[Tensor(rt.empty(4 * x.size), shape)],
                 scratch={k: Tensor(rt.empty(4 * n * math.prod(sh)), sh)
                          for k, sh in LAYER.scratch({}, [shape]).items()},
                 const={k: upload_const(rt, v) for k, v in LAYER.constants({}, [shape]).items()})
    LAYER.forward(ops, s)
    s.dy = [Tensor(rt.to_device(dy), shape)]
    s.dx = [Tensor(rt.to_device(prior), shape)]
    s.acc = [True]
    LAYER.backward(ops, s)
    return rt.read(s.dx[0].buf, x.size, x.shape)


def test_backward_adds_into_a_gradient_already_there(rt, ops, rng):
    x = rng.normal(size=(2, 5, 6)).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    prior = rng.normal(size=x.shape).astype(np.float32)
    got = _mix_into(rt, ops, x, dy, prior)
    close(got, prior + np.fft.fft2(dy.astype(np.float64)).real)  # its own transpose


@pytest.mark.parametrize("tile", [(32, 8), (16, 4), (8, 2), (4, 4)])
def test_the_gpu_form_of_the_products_gives_the_same(rt, ops, rng, tile, monkeypatch):
    """The local-memory tiles a GPU gets (bgemm_local), run on this device."""
    if tile[0] * tile[0] // tile[1] > rt.device.max_work_group_size:
        pytest.skip(f"{rt.describe()} takes work-groups of {rt.device.max_work_group_size}")
    monkeypatch.setattr(ops, "gemm_path", "local")
    monkeypatch.setattr(ops, "local_tile", tile)
    x = rng.normal(size=(3, 9, 33)).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    y, (dx,), _ = run_layer(rt, ops, LAYER, {}, [x], {}, dy)
    close(y, np.fft.fft2(x.astype(np.float64)).real)
    close(dx, np.fft.fft2(dy.astype(np.float64)).real)


# -- ONNX -------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,dense", [((4, 6), True), ((16, 8), True), ((2, 5, 3), False)],
                         ids=["4x6-dense", "16x8-dense", "2x5x3"])
def test_onnx_export_runs_in_onnxruntime_and_imports_back_as_one_layer(rt, rng, shape, dense):
    """(The importer reads a Dense of features (N, F) only: no Dense after the 4-axis case.)"""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from layerloom.interop import onnx_export, onnx_import
    g = graph(shape, then_dense=dense)
    ws = {"out/kernel": rng.normal(size=(shape[-1], 3)).astype(np.float32),
          "out/bias": rng.normal(size=3).astype(np.float32)} if dense else {}
    x = rng.normal(size=(3,) + shape).astype(np.float32)
    want = predict(rt, g, x, ws)
    model = onnx_export.to_onnx(loom.Project(g), ws)
    onnx.checker.check_model(model, full_check=True)
    ops_used = [n.op_type for n in model.graph.node]
    assert ops_used.count("MatMul") == 4 + dense and ops_used.count("Sub") == 1
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = s.run(None, {"x": x})[0]
    close(got, want)
    if not dense:
        close(got, np.fft.fft2(x.astype(np.float64)).real)
    # read back: one FourierMixing (and the Dense with its weights), the same outputs
    back = onnx_import.from_model(onnx.load_from_string(model.SerializeToString()))
    types = sorted(n.type for n in back.project.graph.nodes.values())
    assert types == ["Dense"] * dense + ["FourierMixing", "Input"]
    again = predict(rt, back.project.graph, x, back.weights)
    assert float(np.abs(again - want).max()) <= 1e-6


def test_onnx_import_takes_a_product_by_other_constants_as_a_dense():
    """The reader declines what is not its pattern: a MatMul by the cosine matrix alone (no
    sine half, no Sub) is a Dense, as any product with a constant."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from layerloom.interop import onnx_import
    c = dft_matrices(6)[0].astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "c"], ["y"], name="mm")]
    model = helper.make_model(
        helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 6])],
                          [numpy_helper.from_array(c, "c")]),
        opset_imports=[helper.make_opsetid("", 17)])
    back = onnx_import.from_model(model)
    assert sorted(n.type for n in back.project.graph.nodes.values()) == ["Dense", "Input"]


# -- PyTorch and Keras --------------------------------------------------------------------------
def test_the_pytorch_script_uses_torch_fft(rt, rng, tmp_path):
    torch = pytest.importorskip("torch")
    import importlib.util
    from layerloom.interop import export as interop_export
    g = graph((6, 10))
    path = str(tmp_path / "train_torch.py")
    interop_export(loom.Project(g), {}, path, "pytorch-code")
    text = open(path, encoding="utf-8").read()
    assert "torch.fft.fft2(" in text and ".real" in text
    spec = importlib.util.spec_from_file_location("train_torch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x = rng.normal(size=(3, 6, 10)).astype(np.float32)
    with torch.no_grad():
        got = module.build_model()({"x": torch.from_numpy(x)})
    got = (got["mix"] if isinstance(got, dict) else got).numpy()
    close(got, np.fft.fft2(x.astype(np.float64)).real)
    want = predict(rt, g, x)
    assert float(np.abs(got - want).max()) <= 1e-5


def test_keras_export_is_keras_ops_fft2_and_imports_back_as_the_layer(rt, rng, tmp_path):
    keras = pytest.importorskip("keras")
    from layerloom.interop import export as interop_export
    from layerloom.interop import keras_export, keras_import
    g = graph((8, 12), then_dense=True)
    ws = {"out/kernel": rng.normal(size=(12, 3)).astype(np.float32),
          "out/bias": rng.normal(size=3).astype(np.float32)}
    x = rng.normal(size=(3, 8, 12)).astype(np.float32)
    want = predict(rt, g, x, ws)
    model = keras_export.to_keras(loom.Project(g), ws, compile=False)
    assert type(model.get_layer("mix")).__name__ == "FourierMixing"
    # the mixing alone is keras.ops.fft2's real part, as keras_hub's FNetEncoder computes it
    mixed = keras.Model(model.inputs, model.get_layer("mix").output)
    real, _ = keras.ops.fft2((keras.ops.convert_to_tensor(x), keras.ops.zeros_like(x)))
    close(np.asarray(mixed.predict(x, verbose=0)), keras.ops.convert_to_numpy(real))
    got = np.asarray(model.predict(x, verbose=0))
    # against Keras: 1e-6 of the outputs' scale (they reach ~74, where a float32 step is 7.6e-6:
    # an absolute 1e-5 was under two steps, and failed at 1.5e-5 on an AMD Zen 4's PyTorch)
    tol = 1e-6 * max(1.0, float(np.abs(want).max()))
    assert float(np.abs(got - want).max()) <= tol
    path = str(tmp_path / "m.keras")
    interop_export(loom.Project(g), ws, path)
    back, back_ws = keras_import.read(path)
    assert {k: n.type for k, n in back.graph.nodes.items()} == {
        "x": "Input", "mix": "FourierMixing", "out": "Dense"}
    again = predict(rt, back.graph, x, back_ws)
    assert float(np.abs(again - want).max()) <= 1e-6
    loaded = keras.saving.load_model(path, compile=False)
    assert float(np.abs(np.asarray(loaded.predict(x, verbose=0)) - want).max()) <= tol
