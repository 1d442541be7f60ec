"""Keras' VarianceScaling initializer (engine/train/initializers.py, the Initializer parameter
of core/params.py) and the Keras-import features the Keras applications need (issue 28's zoo
gaps: EfficientNetB0, MobileNetV3Small): keras.ops arithmetic with a number (x + 3.0) read as
a Lambda formula, merges of inputs with size-1 axes (Keras' broadcast, a squeeze-and-excite
scale) and Dropout(noise_shape=(None, 1, ..., 1)) read as Dropout(per_sample).

Statistics: a (3, 3, 16, 32) convolution kernel has 4608 values; its sample standard deviation
is within 5% of the formula's (the standard error of a standard deviation from n values is about
1/sqrt(2n) = 1%), and a kernel drawn with the wrong fan (no window: fan_in 16 rather than 144,
or fan_in where fan_out was asked: 144 rather than 288) is 41% to 200% off."""
import os

import numpy as np
import pytest

from layerloom.core.errors import DataError, ParamError
from layerloom.core.params import Initializer
from layerloom.core.registry import WeightSpec, get_layer
from layerloom.train.initializers import initialize, node_rng

SHAPE = (3, 3, 16, 32)  # Keras' conv kernel (kh, kw, in, out): fans 144 and 288
FANS = {"fan_in": 144, "fan_out": 288, "fan_avg": 216}
TRUNC = 0.87962566103423978  # Keras' stddev correction of its normal truncated at 2 stddev


def _vs(scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
    return Initializer("kernel_initializer", "glorot_uniform").validate(
        {"name": "variance_scaling", "scale": scale, "mode": mode,
         "distribution": distribution, "seed": seed}, "here")


def _conv_kernel(init, seed=0, node="conv"):
    """The kernel of a real Conv2D declaration (3x3, 16 -> 32 channels), its fans the layer's."""
    layer = get_layer("Conv2D")
    p = {prm.name: prm.validate(prm.default, "p") for prm in layer.params}
    p.update(filters=32, kernel_size=(3, 3), kernel_initializer=init)
    spec = next(w for w in layer.weights(p, [(9, 9, 16)]) if w.name == "kernel")
    assert spec.shape == SHAPE
    return initialize(spec, node_rng(seed, node, "kernel")).astype(np.float64)


@pytest.mark.parametrize("mode", list(FANS))
@pytest.mark.parametrize("distribution", ["truncated_normal", "untruncated_normal", "uniform"])
@pytest.mark.parametrize("scale", [2.0, 1.0 / 3])
def test_variance_scaling_draws_have_the_formula_s_spread_and_bounds(mode, distribution, scale):
    w = _conv_kernel(_vs(scale, mode, distribution))
    std = np.sqrt(scale / FANS[mode])  # the variance scale / fan, whatever the distribution
    assert w.shape == SHAPE and w.dtype == np.float64
    assert abs(w.mean()) < 4 * std / np.sqrt(w.size)
    assert w.std() == pytest.approx(std, rel=0.05)
    if distribution == "uniform":
        limit = np.sqrt(3 * scale / FANS[mode])
        assert np.abs(w).max() <= limit * (1 + 1e-6)
        assert np.abs(w).max() > 0.99 * limit  # reaches the bound
    elif distribution == "truncated_normal":  # cut at two of the uncorrected stddevs
        bound = 2 * std / TRUNC
        assert np.abs(w).max() <= bound * (1 + 1e-6)
        assert np.abs(w).max() > 0.95 * bound
    else:  # untruncated: about 4.6% of the values lie beyond two standard deviations
        assert 0.03 < np.mean(np.abs(w) > 2 * std) < 0.065


def test_a_wrong_fan_would_be_seen():
    """The statistics above tell the fans apart: fan_in without the window, or fan_in for
    fan_out, is far outside their 5%."""
    w = _conv_kernel(_vs(2.0, "fan_out", "truncated_normal"))
    assert w.std() == pytest.approx(np.sqrt(2.0 / 288), rel=0.05)
    for wrong in (16, 32, 144):
        assert abs(w.std() / np.sqrt(2.0 / wrong) - 1) > 0.2


def test_variance_scaling_matches_keras_own_draws():
    """The real tool: Keras' VarianceScaling on the same kernel shape gives the same spread
    (each within 5% of the formula) and the same bounds."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    for mode in FANS:
        for dist in ("truncated_normal", "untruncated_normal", "uniform"):
            theirs = np.asarray(keras.initializers.VarianceScaling(
                scale=2.0, mode=mode, distribution=dist, seed=1)(SHAPE), np.float64)
            ours = _conv_kernel(_vs(2.0, mode, dist))
            assert ours.std() == pytest.approx(theirs.std(), rel=0.08), (mode, dist)
            if dist != "untruncated_normal":
                assert np.abs(ours).max() == pytest.approx(np.abs(theirs).max(), rel=0.02)


def test_the_named_initializers_are_their_variance_scaling():
    """glorot/he/lecun are VarianceScaling of fixed scale, mode and distribution: the same
    generator gives the same numbers."""
    for name, (scale, mode, dist) in {
            "glorot_uniform": (1.0, "fan_avg", "uniform"),
            "he_normal": (2.0, "fan_in", "truncated_normal"),
            "lecun_uniform": (1.0, "fan_in", "uniform")}.items():
        np.testing.assert_array_equal(_conv_kernel(name), _conv_kernel(_vs(scale, mode, dist)))


def test_a_seed_fixes_the_draw_whatever_the_project_seed():
    seeded = _vs(2.0, "fan_out", "uniform", seed=7)
    a = _conv_kernel(seeded, seed=0, node="a")
    np.testing.assert_array_equal(a, _conv_kernel(seeded, seed=99, node="b"))
    assert not np.array_equal(a, _conv_kernel(_vs(2.0, "fan_out", "uniform", seed=8)))
    unseeded = _vs(2.0, "fan_out", "uniform")
    assert not np.array_equal(_conv_kernel(unseeded, seed=0), _conv_kernel(unseeded, seed=1))


def test_a_scalar_and_a_vector_weight_take_keras_fans():
    """Keras' compute_fans: a 0-d weight has fans 1, a vector its length on both sides."""
    vec = initialize(WeightSpec("b", (400,), _vs(1.0, "fan_avg", "uniform")), node_rng(0, "n",
                                                                                          "b"))
    assert np.abs(vec).max() <= np.sqrt(3.0 / 400) * (1 + 1e-6)
    one = initialize(WeightSpec("s", (), _vs(3.0, "fan_in", "uniform")), node_rng(0, "n", "s"))
    assert one.shape == () and abs(float(one)) <= 3.0


def test_the_parameter_normalises_and_refuses_by_name():
    p = Initializer("kernel_initializer", "glorot_uniform")
    assert p.validate("variance_scaling", "x") == {
        "name": "variance_scaling", "scale": 1.0, "mode": "fan_in",
        "distribution": "truncated_normal", "seed": None}  # Keras' defaults
    assert p.validate({"name": "variance_scaling", "distribution": "normal"}, "x")[
        "distribution"] == "truncated_normal"  # Keras' alias
    for bad, word in [({"scale": 0}, "scale"), ({"scale": True}, "scale"),
                      ({"mode": "fan_sum"}, "mode"), ({"distribution": "cauchy"}, "distribution"),
                      ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"), ({"gain": 2}, "gain")]:
        with pytest.raises(ParamError) as e:
            p.validate({"name": "variance_scaling", **bad}, "graph.nodes.c.params.k")
        assert word in str(e.value) and "graph.nodes.c.params.k" in str(e.value)


# -- Keras: import, export, the script, PyTorch code ------------------------------------------
def _keras():
    pytest.importorskip("torch")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


EFFICIENTNET_CONV = {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"}
EFFICIENTNET_DENSE = {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"}


def _keras_model(keras):
    vs = keras.initializers.VarianceScaling
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3, kernel_initializer=vs(**EFFICIENTNET_CONV), name="conv")(x)
    y = keras.layers.DepthwiseConv2D(3, depthwise_initializer=vs(
        scale=0.5, mode="fan_avg", distribution="untruncated_normal", seed=3), name="dw")(y)
    y = keras.layers.Flatten(name="flat")(y)
    y = keras.layers.Dense(5, kernel_initializer=vs(**EFFICIENTNET_DENSE),
                           bias_initializer=vs(scale=2.0, mode="fan_in",
                                               distribution="uniform"), name="dense")(y)
    y = keras.layers.Dense(2, kernel_initializer=vs(scale=1.0, mode="fan_avg",
                                                    distribution="uniform"), name="glorot")(y)
    return keras.Model(x, y)


def _initializer_configs(model):
    out = {}
    for layer in model.layers:
        cfg = layer.get_config()
        for k, v in cfg.items():
            if k.endswith("_initializer") and isinstance(v, dict) and \
                    v["class_name"] == "VarianceScaling":
                c = v["config"]
                out[(layer.name, k)] = (round(c["scale"], 6), c["mode"], c["distribution"],
                                        c.get("seed"))
    return out


def test_keras_variance_scaling_round_trips(tmp_path):
    """Keras -> Layerloom -> Keras: every VarianceScaling comes back with its scale, mode,
    distribution and seed; one that is glorot_uniform is read as that name."""
    keras = _keras()
    from layerloom.interop import keras_export, keras_import
    model = _keras_model(keras)
    path = str(tmp_path / "vs.keras")
    model.save(path)
    project, weights = keras_import.read(path)
    p = {nid: n.params for nid, n in project.graph.nodes.items()}
    assert p["conv"]["kernel_initializer"] == {"name": "variance_scaling", **EFFICIENTNET_CONV,
                                               "seed": None}
    assert p["dw"]["depthwise_initializer"] == {
        "name": "variance_scaling", "scale": 0.5, "mode": "fan_avg",
        "distribution": "untruncated_normal", "seed": 3}
    assert p["dense"]["kernel_initializer"]["scale"] == pytest.approx(1.0 / 3.0, rel=1e-7)
    assert p["glorot"]["kernel_initializer"] == "glorot_uniform"
    assert p["dense"]["bias_initializer"] == "he_uniform"
    want = _initializer_configs(model)
    for named in (("glorot", "kernel_initializer"), ("dense", "bias_initializer")):
        del want[named]  # written back as GlorotUniform, HeUniform
    again = keras_export.to_keras(project, weights, compile=False)
    assert _initializer_configs(again) == want
    assert again.get_layer("glorot").get_config()["kernel_initializer"]["class_name"] == \
        "GlorotUniform"


def test_keras_variance_scaling_over_chosen_axes_is_refused_by_name(tmp_path):
    keras = _keras()
    from layerloom.interop import keras_import
    x = keras.Input((4,))
    y = keras.layers.Dense(3, name="d", kernel_initializer=keras.initializers.VarianceScaling(
        input_axes=[0], output_axes=[1]))(x)
    path = str(tmp_path / "axes.keras")
    keras.Model(x, y).save(path)
    with pytest.raises(DataError) as e:
        keras_import.read(path)
    assert "'d' (Dense)" in str(e.value) and "input_axes" in str(e.value)


def test_the_scripts_initialise_from_scratch_with_variance_scaling(tmp_path):
    """The Keras script's build_model() and the PyTorch script's model, built from scratch,
    draw the kernel with the formula's spread (their own random numbers)."""
    _keras()
    from layerloom.core.graph import Graph
    from layerloom.interop import keras_export, torch_code
    from layerloom.project import loom
    g = Graph()
    g.add_node("Input", {"shape": [12, 12, 16]}, id="x")
    g.add_node("Conv2D", {"filters": 32, "kernel_size": [3, 3],
                          "kernel_initializer": {"name": "variance_scaling",
                                                 **EFFICIENTNET_CONV}}, id="conv")
    g.add_node("Flatten", {}, id="flat")
    g.add_node("Dense", {"units": 400, "kernel_initializer": {"name": "variance_scaling",
                                                              **EFFICIENTNET_DENSE}}, id="dense")
    for a, b in (("x", "conv"), ("conv", "flat"), ("flat", "dense")):
        g.connect(a, 0, b, 0)
    project = loom.Project(g)
    ns = keras_export._namespace(project)
    km = ns["build_model"]()
    kernel = np.asarray(km.get_layer("conv").kernel.numpy(), np.float64)
    assert kernel.std() == pytest.approx(np.sqrt(2.0 / 288), rel=0.05)
    assert np.abs(kernel).max() <= 2 * np.sqrt(2.0 / 288) / TRUNC * (1 + 1e-6)
    fan_out = 400
    dense = np.asarray(km.get_layer("dense").kernel.numpy(), np.float64)
    assert np.abs(dense).max() <= np.sqrt(1.0 / fan_out) * (1 + 1e-6)  # sqrt(3 * (1/3) / 400)
    assert np.abs(dense).max() > 0.99 * np.sqrt(1.0 / fan_out)

    script = tmp_path / "train_torch.py"
    script.write_text(torch_code.code(project, "absent.weights.npz"))  # from scratch
    import importlib.util
    spec = importlib.util.spec_from_file_location("train_torch_vs", str(script))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tm = module.build_model(None)
    params = dict(tm.named_parameters())
    conv = next(v for k, v in params.items() if "conv" in k and v.dim() == 4)
    conv = conv.detach().numpy().astype(np.float64)
    assert conv.std() == pytest.approx(np.sqrt(2.0 / 288), rel=0.05)
    assert np.abs(conv).max() <= 2 * np.sqrt(2.0 / 288) / TRUNC * (1 + 1e-6)
    lin = next(v for k, v in params.items() if "dense" in k and v.dim() == 2)
    lin = np.abs(lin.detach().numpy())
    assert np.sqrt(1.0 / fan_out) * 0.99 < lin.max() <= np.sqrt(1.0 / fan_out) * (1 + 1e-6)


# -- keras.ops arithmetic with a number, broadcast merges, per-sample Dropout --------------------
def test_keras_ops_arithmetic_with_numbers_imports_as_formulas(tmp_path):
    keras = _keras()
    from keras import ops
    from layerloom.api import Model
    from layerloom.interop import keras_import
    x = keras.Input((6,))
    a = keras.layers.Dense(6, name="d")(x)
    y = keras.layers.ReLU(6.0)(a + 3.0) * (1.0 / 6.0)  # MobileNetV3's hard_sigmoid
    y = 2.0 - y
    y = ops.maximum(y / 4.0, 0.3) + ops.minimum(-1.5, a) * (-2.0) + a ** 2.0
    y = keras.layers.Dense(3, name="out")(y)
    model = keras.Model(x, y)
    path = str(tmp_path / "ops.keras")
    model.save(path)
    project, weights = keras_import.read(path)
    formulas = sorted(n.params["expression"] for n in project.graph.nodes.values()
                      if n.type == "Lambda")
    assert "x + 3.0" in formulas and "2.0 - x" in formulas and "x * (-2.0)" in formulas
    assert "maximum(x, 0.3)" in formulas and "minimum((-1.5), x)" in formulas
    xs = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32) * 3
    want = np.asarray(model.predict(xs, verbose=0))
    np.testing.assert_allclose(Model(project, weights).predict(xs), want, rtol=1e-5, atol=1e-5)


def test_keras_ops_with_a_constant_that_has_no_formula_is_refused_by_name(tmp_path):
    keras = _keras()
    from keras import ops
    from layerloom.interop import keras_import
    x = keras.Input((4,))
    cases = {"mod": ops.mod(x, 2.0),
             "array": ops.add(x, np.arange(4, dtype=np.float32))}
    for name, y in cases.items():
        path = str(tmp_path / f"{name}.keras")
        keras.Model(x, y).save(path)
        with pytest.raises(DataError) as e:
            keras_import.read(path)
        assert "keras.ops." in str(e.value), str(e.value)


def test_a_squeeze_excite_multiply_imports_trains_and_goes_back_to_keras(tmp_path):
    """Multiply of (H, W, C) and (1, 1, C) (Keras' broadcast) imports, predicts as Keras
    does, and the exported .keras computes the same."""
    keras = _keras()
    from layerloom.api import Model
    from layerloom.interop import keras_export, keras_import
    x = keras.Input((5, 4, 3))
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)
    s = keras.layers.Conv2D(3, 1, activation="sigmoid", name="excite")(s)
    y = keras.layers.Multiply(name="scale")([x, s])
    y = keras.layers.Dropout(0.2, noise_shape=(None, 1, 1, 1), name="drop")(y)
    y = keras.layers.Flatten(name="flat")(y)
    model = keras.Model(x, keras.layers.Dense(2, name="out")(y))
    path = str(tmp_path / "se.keras")
    model.save(path)
    project, weights = keras_import.read(path)
    assert project.graph.nodes["drop"].params["per_sample"] is True
    xs = np.random.default_rng(1).normal(size=(3, 5, 4, 3)).astype(np.float32)
    want = np.asarray(model.predict(xs, verbose=0))
    ours = Model(project, weights)
    np.testing.assert_allclose(ours.predict(xs), want, rtol=1e-5, atol=1e-5)
    again = keras_export.to_keras(project, weights, compile=False)
    assert again.get_layer("drop").get_config()["noise_shape"] in ((None, 1, 1, 1),
                                                                   [None, 1, 1, 1])
    np.testing.assert_allclose(np.asarray(again.predict(xs, verbose=0)), want, rtol=1e-5,
                               atol=1e-5)
    history = ours.fit(xs, np.zeros((3, 2), np.float32), epochs=1, batch_size=3,
                       verbose=False)
    assert np.isfinite(history["epochs"][0]["loss"])


def test_per_sample_dropout_drops_whole_samples(rt, ops):
    """Training: each sample is either all zeros or all x / (1 - rate), and the gradient
    takes the same mask."""
    from test_layers import run_layer
    layer = get_layer("Dropout")
    params = {"rate": 0.5, "seed": 0, "per_sample": True}
    x = np.random.default_rng(2).normal(size=(64, 3, 5)) + 5.0  # no zeros of its own
    dy = np.ones_like(x)
    y, dxs, _ = run_layer(rt, ops, layer, params, [x], {}, dy, training=True)
    kept = [bool(np.all(s != 0)) for s in y]
    for s, k, xi in zip(y, kept, x):
        assert np.all(s == 0) or k
        if k:
            np.testing.assert_allclose(s, xi / 0.5, rtol=1e-5)
    assert 16 < sum(kept) < 48  # about half of 64 samples
    np.testing.assert_array_equal(dxs[0] != 0, y != 0)


def test_the_editor_s_initializer_widget_edits_a_variance_scaling(qtbot):
    from layerloom.app.forms.param_widgets import InitializerWidget
    got = []
    w = InitializerWidget(None, {"name": "variance_scaling", "scale": 2.0, "mode": "fan_out",
                                 "distribution": "truncated_normal", "seed": 5}, got.append)
    qtbot.addWidget(w)
    assert w.name.currentText() == "variance_scaling" and w.constant.isHidden()
    assert not w.scale.isHidden() and w.scale.text() == "2" and w.mode.currentText() == "fan_out"
    w.dist.setCurrentText("uniform")
    w.dist.activated.emit(0)
    assert got[-1] == {"name": "variance_scaling", "scale": 2.0, "mode": "fan_out",
                       "distribution": "uniform", "seed": 5}  # the seed kept
    w.name.setCurrentText("he_normal")
    w.name.activated.emit(0)
    assert got[-1] == "he_normal" and w.scale.isHidden() and w.mode.isHidden()
    w.name.setCurrentText("variance_scaling")
    w.name.activated.emit(0)
    assert Initializer("k", "zeros").validate(got[-1], "k")["name"] == "variance_scaling"


def test_a_keras_normalization_never_adapted_keeps_its_statistics_and_trains(tmp_path):
    """EfficientNet built without weights: Rescaling, then a Normalization never adapted
    (mean 0, variance 1, count 0). Keras predicts and trains with those statistics; the import
    keeps them as given rather than refusing to train for want of an adapt."""
    keras = _keras()
    from layerloom.api import Model
    from layerloom.interop import keras_import
    x = keras.Input((4, 4, 3))
    y = keras.layers.Rescaling(1.0 / 255, name="rescale")(x)
    y = keras.layers.Normalization(axis=-1, name="norm")(y)
    y = keras.layers.Flatten(name="flat")(y)
    model = keras.Model(x, keras.layers.Dense(2, name="out")(y))
    path = str(tmp_path / "norm.keras")
    model.save(path)
    project, weights = keras_import.read(path)
    assert project.graph.nodes["norm"].type == "Normalization"
    np.testing.assert_array_equal(weights["norm/mean"], 0)
    xs = np.random.default_rng(3).uniform(0, 255, (4, 4, 4, 3)).astype(np.float32)
    ours = Model(project, weights)
    np.testing.assert_allclose(ours.predict(xs), np.asarray(model.predict(xs, verbose=0)),
                               rtol=1e-5, atol=1e-5)
    history = ours.fit(xs, np.zeros((4, 2), np.float32), epochs=1, batch_size=2, verbose=False)
    assert np.isfinite(history["epochs"][0]["loss"])
    np.testing.assert_array_equal(ours.get_weights()["norm/mean"], 0)  # not adapted by fit
