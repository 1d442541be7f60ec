"""The layer harness, public: what tests/test_layers.py runs on every built-in layer, for the
author of a plugin layer (the `layerloom.layers` entry-point group) to run on theirs, in the
spirit of Keras' `run_layer_test`:

    from layerloom.testing import check_layer
    check_layer(MyLayer)            # every (params, input shapes) of MyLayer.examples
    check_layer("MyLayer", cases=[({"units": 3}, [(5,)])])

For each case and batch size (1 and 3): shape inference, the configuration's round trip
through the project file, the forward pass on the device against the layer's float64 numpy
`reference`, and the gradients of the inputs and of every trainable weight against central
differences of that reference (float64, eps 1e-6). A difference raises AssertionError naming
the case.

Tolerances: forward rtol 1e-5 / atol 1e-5 (float32 with sums of up to ~65 terms); gradients
rtol 1e-3 / atol 1e-4, the float32 figures mature projects use. Layers that draw random numbers
(`stochastic`) are checked forward only; their training-mode derivative needs a test of its
own (tests/test_layers.py's Dropout test is one)."""
import numpy as np

FORWARD_TOL = {"rtol": 1e-5, "atol": 1e-5}
GRADIENT_TOL = {"rtol": 1e-3, "atol": 1e-4}


def numeric_grad(f, arr, eps=1e-6):
    """d f() / d arr by central differences; f reads arr (float64), which is perturbed in
    place and restored."""
    g = np.zeros_like(arr)
    for i in np.ndindex(arr.shape):
        old = arr[i]
        arr[i] = old + eps
        hi = f()
        arr[i] = old - eps
        lo = f()
        arr[i] = old
        g[i] = (hi - lo) / (2 * eps)
    return g


def _to_dev(rt, a):
    return rt.to_device(np.asarray(a, np.float32))


def _from_dev(rt, buf, shape):
    return rt.read(buf, int(np.prod(shape)), shape)


def graph_for(type_id, params, shapes):
    """A graph of one node 'node' of `type_id` fed by one Input per shape ('in0', 'in1'...)."""
    from layerloom.core.graph import Graph
    g = Graph()
    for i, sh in enumerate(shapes):
        g.add_node("Input", {"shape": list(sh)}, id=f"in{i}")
    g.add_node(type_id, params, id="node")
    for i in range(len(shapes)):
        g.connect(f"in{i}", 0, "node", i)
    return g


def case_id(type_id, params, shapes):
    """Dense(units=5,activation=relu)<-3: the case's parameters (those it sets) and input
    shapes."""
    ps = ",".join(f"{k}={v}" for k, v in params.items())
    ins = "+".join("x".join(map(str, sh)) for sh in shapes)
    return f"{type_id}({ps})<-{ins}".replace(" ", "")


def run_layer(rt, ops, layer, params, xs, ws, dy, training=False, step=0, backward=True):
    """Run one layer's forward and backward directly through its NodeStep contract.
    dy is an array, or a list with one array per output; the outputs come back the same way.
    backward=False: the forward alone (inference, where the engine never runs a backward: a
    BatchNormalization backward would read batch statistics no forward computed)."""
    from layerloom.backend.ops import Tensor
    from layerloom.train.model import NodeStep, upload_const
    n = xs[0].shape[0]
    in_shapes = [x.shape[1:] for x in xs]
    out_shapes = [tuple(sh) for sh in layer.output_shapes(params, in_shapes)]
    dys = dy if isinstance(dy, list) else [dy]
    x_dev = [Tensor(_to_dev(rt, x), x.shape[1:]) for x in xs]
    trainable = {spec.name for spec in layer.weights(params, in_shapes) if spec.trainable}
    s = NodeStep(
        "node", params, n=n, training=training, seed=11, step=step, x=x_dev,
        y=[Tensor(x_dev[0].buf if layer.alias_output else rt.empty(4 * n * int(np.prod(sh))), sh)
           for sh in out_shapes],
        w={k: Tensor(_to_dev(rt, v), v.shape) for k, v in ws.items()},
        dw={k: Tensor(rt.empty(4 * v.size), v.shape) for k, v in ws.items() if k in trainable},
        scratch={k: Tensor(rt.empty(4 * n * int(np.prod(sh))), sh)
                 for k, sh in layer.scratch(params, in_shapes).items()},
        const={k: upload_const(rt, v) for k, v in layer.constants(params, in_shapes).items()})
    layer.forward(ops, s)
    ys = [_from_dev(rt, t.buf, (n,) + sh).copy() for t, sh in zip(s.y, out_shapes)]
    if not backward:
        return (ys if isinstance(dy, list) else ys[0]), None, None
    s.dy = [Tensor(_to_dev(rt, d), sh) for d, sh in zip(dys, out_shapes)]
    s.dx = [Tensor(rt.empty(4 * x.size), x.shape[1:]) if layer.differentiable else None
            for x in xs]
    s.acc = [False] * len(xs)
    layer.backward(ops, s)
    dxs = [_from_dev(rt, t.buf, x.shape) if t is not None else None for t, x in zip(s.dx, xs)]
    dws = {k: _from_dev(rt, t.buf, ws[k].shape) for k, t in s.dw.items()}
    return (ys if isinstance(dy, list) else ys[0]), dxs, dws


def check_case(rt, ops, rng, type_id, params, shapes, batch):
    """One case of the harness (see the module's text); raises AssertionError."""
    from layerloom.project import loom as projectfile
    g = graph_for(type_id, params, shapes)
    problems = g.validate()
    assert not problems, f"{case_id(type_id, params, shapes)}: {problems}"
    layer = g.nodes["node"].layer
    p = g.nodes["node"].params
    # config round-trip through the project file
    proj = projectfile.Project(g, training={**projectfile.default_training(),
                                            "loss": {"node": "mean_squared_error"}})
    again = projectfile.loads(projectfile.dumps(proj)).graph
    assert again.nodes["node"].params == p and again.nodes["node"].type == type_id, \
        f"{type_id}: the parameters do not survive the project file: {p} -> " \
        f"{again.nodes['node'].params}"
    # shape inference agrees with the reference output
    out_shapes = g.infer_shapes()[0]["node"]
    if layer.integer_inputs:  # indices, some out of range on purpose
        top = p.get("input_dim", p.get("vocabulary_size"))  # Embedding's, keras-hub's name
        xs = [rng.integers(-1, top + 1, (batch,) + tuple(sh)).astype(np.float64)
              for sh in shapes]
    else:
        xs = [rng.normal(size=(batch,) + tuple(sh)) for sh in shapes]
    in_shapes = [tuple(sh) for sh in shapes]
    ws = {}
    for spec in layer.weights(p, in_shapes):
        ws[spec.name] = np.asarray(rng.normal(size=spec.shape)  # 0-d for a scalar weight
                                   * (0.5 if spec.init != "zeros" else 0.1))
        if spec.name in ("moving_variance", "variance"):
            ws[spec.name] = np.abs(ws[spec.name]) + 0.5
    training = layer.test_in_training
    refs = layer.reference(p, xs, ws, training)
    assert [r.shape for r in refs] == [(batch,) + sh for sh in out_shapes], \
        f"{type_id}: the reference's output shapes {[r.shape[1:] for r in refs]} differ from " \
        f"output_shapes' {out_shapes}"
    dys = [rng.normal(size=r.shape) for r in refs]
    ys, dxs, dws = run_layer(rt, ops, layer, p, xs, ws, dys, training=training)
    for k, (y, ref) in enumerate(zip(ys, refs)):
        np.testing.assert_allclose(y, ref, **FORWARD_TOL, err_msg=f"{type_id}: output {k}, "
                                   "the device's forward against the float64 reference")
    if layer.stochastic:
        return  # its backward is the training-mode derivative: a test of its own

    # gradients: central differences of sum(dy * reference) in float64
    def f():
        return float(sum((r * d).sum() for r, d in zip(layer.reference(p, xs, ws, training),
                                                          dys)))
    pairs = [(f"the weight {k!r}", dws[k], ws[k]) for k in dws]
    if layer.differentiable:
        pairs += [(f"input {i}", got, x) for i, (got, x) in enumerate(zip(dxs, xs))]
    for what, got, arr in pairs:
        np.testing.assert_allclose(got, numeric_grad(f, arr), **GRADIENT_TOL,
                                   err_msg=f"{type_id}: the gradient of {what}, the device's "
                                           "backward against central differences")


def check_layer(layer, cases=None, batches=(1, 3), device=None, seed=1234):
    """Run the harness on a layer type (its class, an instance or its type id; registered, as
    an installed plugin's layers are with the built-ins) for each case: `cases` [(params, [input shape, ...]), ...], else the layer's own
    `examples`. device: as --device (None: the default). Returns the number of checks run;
    raises AssertionError at the first that fails, naming the case."""
    from layerloom.backend.ops import Ops
    from layerloom.backend.runtime import Runtime
    from layerloom.core.registry import layer_types
    type_id = layer if isinstance(layer, str) else layer.type_id
    known = {l.type_id: l for l in layer_types()}
    assert type_id in known, f"no layer type {type_id!r} is registered (is its plugin " \
        "installed, and were the plugins loaded?)"
    cases = list(known[type_id].examples if cases is None else cases)
    assert cases, f"{type_id} has no examples to check: give cases=[(params, shapes)]"
    rt = Runtime(device) if device is not None else Runtime()
    ops = Ops(rt)
    done = 0
    for params, shapes in cases:
        for batch in batches:
            check_case(rt, ops, np.random.default_rng(seed), type_id, dict(params),
                       [tuple(s) for s in shapes], batch)
            done += 1
    return done
