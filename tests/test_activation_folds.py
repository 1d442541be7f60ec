"""A max pooling over tiled windows applies the derivative of the activation before it
(Model._activation_folds): the producer then skips its own pass over its output's gradient.
The weight and input gradients must equal the unfolded model's, and the fold must be refused
wherever it would change them."""
import numpy as np
import pytest

from layerloom.core.graph import Graph
from layerloom.train.model import Model

B = 5


def chain(producer, params, pool=None, in_shape=(8, 8, 3), extra=None,
          pool_type="MaxPooling2D"):
    """Input -> producer -> pooling -> Flatten -> Dense, plus extra(g, producer_id)."""
    g = Graph()
    g.add_node("Input", {"shape": list(in_shape)}, id="x")
    g.add_node("Conv2D" if len(in_shape) == 3 else "Conv1D",
               {"filters": 4, "kernel_size": [1, 1] if len(in_shape) == 3 else 1}, id="pre")
    g.add_node(producer, params, id="p")
    g.add_node(pool_type, pool or {"pool_size": [2, 2]}, id="pool")
    g.add_node("Flatten", {}, id="flat")
    g.add_node("Dense", {"units": 3}, id="out")
    for s, t in (("x", "pre"), ("pre", "p"), ("p", "pool"), ("pool", "flat"), ("flat", "out")):
        g.connect(s, 0, t, 0)
    if extra:
        extra(g, "p")
    return g


def gradients(rt, g, fold):
    """The model's folds and every weight gradient after one backward pass (folds off: the
    producer's own activation backward)."""
    if not fold:
        orig = Model._activation_folds
        Model._activation_folds = lambda self: {}
    try:
        m = Model(g, rt, batch_size=B, seed=3)
    finally:
        if not fold:
            Model._activation_folds = orig
    rng = np.random.default_rng(1)
    shape = g.nodes["x"].params["shape"]
    m.load_inputs({"x": rng.standard_normal((B,) + tuple(shape)).astype(np.float32)})
    m.forward(B, training=True)
    for o in m.outputs:
        t = m.output(o)
        rt.write(m.grad[(o, 0)].buf, rng.standard_normal((B,) + t.shape).astype(np.float32))
    m.backward(B)
    rt.finish()
    return m.folds, {p.key: rt.read(p.dw.buf, int(np.prod(p.spec.shape)), p.spec.shape)
                     for p in m.params if p.dw is not None}


def same_gradients(rt, g):
    folds, mine = gradients(rt, g, fold=True)
    none, theirs = gradients(rt, g, fold=False)
    assert none == {}
    assert sorted(mine) == sorted(theirs)
    for k in mine:
        # the same products of the same floats: dy * act'(y) at the window's maximum
        np.testing.assert_array_equal(mine[k], theirs[k], err_msg=k)
        assert np.abs(mine[k]).max() > 0, k
    return folds


@pytest.mark.parametrize("act", ["relu", "relu6", "elu", "leaky_relu", "sigmoid", "tanh",
                                 "hard_sigmoid", "softplus"])
@pytest.mark.parametrize("filters", [8, 6])  # the 8-channel kernel and the scalar one
def test_conv_activation_folds_into_max_pooling(rt, act, filters):
    g = chain("Conv2D", {"filters": filters, "kernel_size": [3, 3], "padding": "same",
                         "activation": act})
    assert same_gradients(rt, g) == {"pool": "p"}


@pytest.mark.parametrize("producer,params", [
    ("Dense", {"units": 8, "activation": "relu"}),  # on the channels of a 4-D input
    ("Activation", {"activation": "relu"}),
    ("DepthwiseConv2D", {"kernel_size": [3, 3], "padding": "same", "activation": "elu"}),
])
def test_other_producers_fold(rt, producer, params):
    assert same_gradients(rt, chain(producer, params)) == {"pool": "p"}


def test_an_uncovered_border_still_gets_zeros(rt):
    # 9x9 under 2x2 windows: the last row and column are in no window (filled with zeros)
    g = chain("Conv2D", {"filters": 8, "kernel_size": [3, 3], "padding": "same",
                         "activation": "relu"}, in_shape=(9, 9, 3))
    assert same_gradients(rt, g) == {"pool": "p"}


def second_consumer(g, p):
    g.add_node("GlobalAveragePooling2D", {}, id="gap")
    g.add_node("Dense", {"units": 2}, id="aux")
    g.connect(p, 0, "gap", 0)
    g.connect("gap", 0, "aux", 0)


@pytest.mark.parametrize("why,g", [
    ("a second consumer reads the activation's output",
     chain("Conv2D", {"filters": 8, "kernel_size": [3, 3], "activation": "relu"},
           extra=second_consumer)),
    ("the derivative needs the pre-activation (GELU)",
     chain("Conv2D", {"filters": 8, "kernel_size": [3, 3], "activation": "gelu"})),
    ("overlapping windows: an element gets gradient from several",
     chain("Conv2D", {"filters": 8, "kernel_size": [3, 3], "activation": "relu"},
           pool={"pool_size": [3, 3], "strides": [2, 2], "padding": "same"})),
    ("no activation", chain("Conv2D", {"filters": 8, "kernel_size": [3, 3]})),
    ("average pooling",
     chain("Conv2D", {"filters": 8, "kernel_size": [3, 3], "activation": "relu"},
           pool_type="AveragePooling2D")),
    ("a 1-D pooling", chain("Conv1D", {"filters": 8, "kernel_size": 3, "activation": "relu"},
                            in_shape=(8, 3), pool={"pool_size": 2}, pool_type="MaxPooling1D")),
])
def test_refused_where_it_would_change_the_gradient(rt, why, g):
    assert same_gradients(rt, g) == {}, why


def test_the_environment_switch_turns_folds_off(rt, monkeypatch):
    g = chain("Conv2D", {"filters": 8, "kernel_size": [3, 3], "activation": "relu"})
    assert Model(g, rt, batch_size=B, seed=3).folds == {"pool": "p"}
    monkeypatch.setenv("LAYERLOOM_FOLD_ACTIVATIONS", "0")
    assert Model(g, rt, batch_size=B, seed=3).folds == {}
