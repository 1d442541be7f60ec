"""Compile a graph into a plan and execute it on an OpenCL device.

compile: topological order, per-sample shapes, weights, buffers sized for the largest batch, and
for every tensor the order its gradient contributions arrive in (the first consumer in reverse
topological order writes, later ones accumulate). Execute: forward and backward enqueue kernels
only; nothing waits for the device.
"""
import os
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from layerloom.core import memory
from layerloom.core.activations import NEEDS_INPUT, ROW_WISE
from layerloom.core.errors import DeviceError, GraphError, ProjectError, quote
from layerloom.train.initializers import initialize, node_rng
from layerloom.backend.ops import Ops, Tensor
from layerloom.core.registry import WeightSpec


class ModelWeight(NamedTuple):
    """One weight of a compiled model (an entry of Model.params): its node, its declaration,
    its device buffer and its gradient's (None for a weight that is not trained)."""
    node_id: str
    spec: WeightSpec
    w: Tensor
    dw: Tensor | None

    @property
    def key(self):
        """"node_id/name", as weights files and get_weights name it."""
        return f"{self.node_id}/{self.spec.name}"


@dataclass(slots=True, eq=False)
class NodeStep:
    """What a layer's forward/backward sees for one node: its input and output tensors (x, y)
    and their gradients (dx, dy; None where none flows), whether each input's gradient adds to
    one already there (acc), its weights and their gradients by name (w, dw), its scratch
    buffers and constants; logits: where it writes its pre-activation for a fused loss;
    skip_act_grad: dy already is the gradient of the pre-activation (a fused loss, or a
    consumer that folds the activation); fold_act: the activation of this node's input's
    producer, whose derivative this node's backward applies (Layer.folds_activation;
    "linear": none); frozen: the node is
    frozen (its weights are not trained; a BatchNormalization then runs in inference mode).
    The model sets n, training, seed and step before each call."""
    node_id: str
    params: dict
    x: list = field(default_factory=list)
    y: list = field(default_factory=list)
    dx: list = field(default_factory=list)
    dy: list = field(default_factory=list)
    acc: list = field(default_factory=list)
    w: dict = field(default_factory=dict)
    dw: dict = field(default_factory=dict)
    scratch: dict = field(default_factory=dict)
    const: dict = field(default_factory=dict)
    logits: Tensor | None = None
    skip_act_grad: bool = False
    fold_act: str = "linear"
    frozen: bool = False
    n: int = 0
    training: bool = False
    seed: int = 0
    step: int = 0


def upload_const(rt, array):
    """A layer constant on the device: integer arrays as int32, others as float32."""
    a = np.asarray(array)
    return rt.to_device(a, np.int32 if a.dtype.kind in "iub" else np.float32)


def layer_programs(graph, ops):
    """(files, defines, prelude) of the programs the layers of `graph` that declare theirs (a
    convolution's direct kernels and columns, by ops' device's plan) build in a training step:
    for Runtime.prebuild, before the model exists (cli/run.py start_runtime)."""
    shapes = graph.analysis().shapes
    try:
        needs = memory.nodes_needing_grad(graph, shapes)
    except GraphError:  # a cycle: the model refuses the graph, with its message
        return []
    outputs, specs = graph.outputs(), []
    for nid, node in graph.nodes.items():
        ins = memory.known_in_shapes(graph, shapes, nid)
        if ins is not None and hasattr(node.layer, "programs"):
            run = memory.node_run(graph, needs, nid, ops, outputs)
            for sp in node.layer.programs(ops, node.params, ins, run):
                if sp not in specs:  # a stride-1 'same' input gradient is its forward's
                    specs.append(sp)
    return specs


class Model:
    def __init__(self, graph, runtime, batch_size, seed=0, fused_logits=(), weights=None):
        problems = graph.validate()
        if problems:
            raise ProjectError(str(problems[0]), problems=problems)
        graph = graph.flat()  # a block runs inlined: no cost at run time
        graph = graph.shared_frozen()  # a frozen node's weights are frozen where shared too
        self.graph = graph
        self.rt = runtime
        self.ops = Ops(runtime)
        self.seed = seed
        self.max_batch = int(batch_size)
        self.order = graph.topo_order()
        self.shapes, _ = graph.infer_shapes()
        self.inputs = graph.inputs()
        self.outputs = graph.outputs()
        self.fused_logits = set(fused_logits)
        self.needs_grad = memory.nodes_needing_grad(graph, self.shapes, self.order)
        self.folds = self._activation_folds()
        self._check_memory()
        self._build()
        self.set_weights(weights or {}, init_missing=True)

    # -- compile -------------------------------------------------------------------------------
    def memory_needed(self):
        """(bytes in all, the largest single buffer) the model's device buffers take at this
        batch size, before any is made: activations and their gradients, weights, their
        gradients and two optimizer slots each (Adam's), layers' scratch."""
        total, largest, _ = memory.memory_needed(self.graph, self.max_batch, self.shapes,
                                                 self.needs_grad, self.ops, self.fused_logits)
        return total, largest

    def _check_memory(self):
        """Refuse, before anything is allocated, a model the device cannot hold (a Dense layer
        of 10**9 units), with the figures."""
        dev = self.rt.device
        total, largest = self.memory_needed()
        have, one = int(dev.global_mem_size), int(dev.max_mem_alloc_size)
        if total > have or largest > one:
            raise DeviceError(
                f"the model needs about {memory.size_text(total)} of device memory at batch size "
                f"{self.max_batch} (its largest buffer {memory.size_text(largest)}); "
                f"{self.rt.describe()} has {memory.size_text(have)} (at most {memory.size_text(one)} in one buffer): "
                "make layers smaller or lower the batch size", "graph")
        if largest > memory.MAX_BUFFER_BYTES:
            raise DeviceError(
                f"the model needs a buffer of {memory.size_text(largest)} at batch size "
                f"{self.max_batch}, {memory.INDEX_LIMIT}: lower the batch size or make the "
                "layer smaller", "graph")

    def _alloc(self, shape):
        return Tensor(self.rt.empty(4 * self.max_batch * int(np.prod(shape))), shape)

    def _discard_names(self, nid):
        """A frozen node's weights whose gradients its backward computes and drops (in dw, not
        in params: no update, no optimizer state); core.memory.discarded_gradients."""
        return memory.discarded_gradients(self.graph, self.shapes, self.needs_grad, nid)

    def _alloc_weights(self, nid, specs):
        """A node's weights and, for the trainable ones, their gradients ({name: Tensor} each),
        entered in self.params (a frozen node's discarded gradients: in dw, not in params)."""
        w, dw = {}, {}
        discard = self._discard_names(nid)
        for spec in specs:
            w[spec.name] = Tensor(self.rt.empty(4 * int(np.prod(spec.shape))), spec.shape)
            if spec.trainable or spec.name in discard:
                dw[spec.name] = Tensor(self.rt.empty(4 * int(np.prod(spec.shape))), spec.shape)
            self.params.append(ModelWeight(nid, spec, w[spec.name],
                                           dw.get(spec.name) if spec.trainable else None))
        return w, dw

    def _alloc_shared(self, nid, specs):
        """A node using another's weights (Keras' layer called twice): the owner's weight
        Tensors, and its own gradients, which backward adds into the owner's (only the owner
        is in self.params: saved, updated, with optimizer state)."""
        node = self.graph.nodes[nid]
        owner_w = self._weights[node.shares]
        trained = {p.spec.name: p.dw for p in self.params if p.node_id == node.shares}
        w, dw = {}, {}
        discard = self._discard_names(nid)
        for spec in specs:
            w[spec.name] = owner_w[spec.name]
            if spec.trainable or spec.name in discard:
                dw[spec.name] = Tensor(self.rt.empty(4 * int(np.prod(spec.shape))), spec.shape)
            if spec.trainable and trained.get(spec.name) is not None:
                self._shared_grads.append((dw[spec.name], trained[spec.name]))
        return w, dw

    def _activation_folds(self):
        """{consumer: producer} where the consumer's backward applies the derivative of the
        activation the producer ends with (Layer.folds_activation: a Conv2D with ReLU into a
        2x2 max pooling), so the producer skips its own pass over its output's gradient: the
        producer's only output feeds the consumer alone, is no model output and no fused
        loss's, and its activation is differentiated through its output (not NEEDS_INPUT nor
        row-wise)."""
        if os.environ.get("LAYERLOOM_FOLD_ACTIVATIONS") == "0":  # benches: before and after
            return {}
        folds = {}
        for nid in self.order:
            layer, edges = self.graph.nodes[nid].layer, self.graph.in_edges(nid)
            if len(edges) != 1 or nid not in self.needs_grad or not layer.differentiable:
                continue
            src = edges[0].src
            prod = self.graph.nodes[src]
            ap = prod.layer.activation_param
            act = prod.params.get(ap) if ap else None
            if (act in (None, "linear") or act in NEEDS_INPUT or act in ROW_WISE
                    or src not in self.needs_grad or src in self.fused_logits
                    or src in self.outputs or len(self.shapes[src]) != 1
                    or len(self.graph.out_edges(src)) != 1):
                continue
            if layer.folds_activation(self.graph.nodes[nid].params, self._in_shapes(nid)):
                folds[nid] = src
        return folds

    def _fused_logits(self, nid, layer, x):
        """Where a node whose loss is fused with its activation writes its pre-activation (None:
        not fused, or the layer's input is its pre-activation), entered in self.logits."""
        if nid not in self.fused_logits:
            return None
        if layer.pre_activation_is_input:
            self.logits[nid] = x[0]
            return None
        self.logits[nid] = self._alloc(self.shapes[nid][0])
        return self.logits[nid]

    def _build(self):
        self.act = {}    # (node, port) -> Tensor
        self.grad = {}   # (node, port) -> Tensor
        self.steps = []  # (node, layer, NodeStep)
        self.params = []  # ModelWeight, in node order
        self.logits = {}
        self._pools = {}  # shared scratch: pool -> [(a step's scratch, name, shape)]
        self._weights, self._weight_grads = {}, {}  # node -> {name: Tensor}
        self._shared_grads = []  # (a sharing node's gradient, its owner's): added in backward
        # the output gradients, in buffers shared where their lives in the backward do not
        # overlap (core/memory.gradient_plan)
        plan, slots = memory.gradient_plan(self.graph, self.needs_grad, self.outputs,
                                           self.shapes, self.order)
        bufs = [self._alloc((size,)).buf for size in slots]
        self._grad_bufs = {key: bufs[i] for key, i in plan.items()}
        for nid in self.order:  # owners first: a node sharing weights may come before them
            node = self.graph.nodes[nid]
            if node.shares is None:
                self._weights[nid], self._weight_grads[nid] = self._alloc_weights(
                    nid, node.weights(self._in_shapes(nid)))
        for nid in self.order:
            node = self.graph.nodes[nid]
            if node.shares is not None:
                self._weights[nid], self._weight_grads[nid] = self._alloc_shared(
                    nid, node.weights(self._in_shapes(nid)))
        for nid in self.order:
            self.steps.append((nid, self.graph.nodes[nid].layer, self._node_step(nid)))
        self._alloc_pools()
        self._order_gradients()

    def _in_shapes(self, nid):
        return [self.shapes[e.src][e.src_port] for e in self.graph.in_edges(nid)]

    def _alloc_outputs(self, nid, layer, in_keys):
        """A node's output tensors (its input's buffer for an alias) and, where a gradient flows
        into them, their gradients: entered in self.act and self.grad."""
        for port, shape in enumerate(self.shapes[nid]):
            key = (nid, port)
            if layer.alias_output:
                self.act[key] = Tensor(self.act[in_keys[0]].buf, shape)
            else:
                self.act[key] = self._alloc(shape)
            if key in self._grad_bufs:
                self.grad[key] = Tensor(self._grad_bufs[key], shape)

    def _node_step(self, nid):
        """The node's buffers, allocated (outputs, weights, scratch, constants, logits), as the
        NodeStep its layer's forward and backward see."""
        node = self.graph.nodes[nid]
        layer = node.layer
        in_keys = [(e.src, e.src_port) for e in self.graph.in_edges(nid)]
        in_shapes = self._in_shapes(nid)
        self._alloc_outputs(nid, layer, in_keys)
        ports = range(len(self.shapes[nid]))
        x = [self.act[k] for k in in_keys]
        w, dw = self._weights[nid], self._weight_grads[nid]
        kept, shared = memory.node_scratch(self.graph, self.shapes, self.needs_grad, nid,
                                           self.ops, self.outputs)
        scratch = {k: self._alloc(sh) for k, sh in kept.items()}
        for k, (pool, sh) in shared.items():
            self._pools.setdefault(pool, []).append((scratch, k, sh))
        const = {k: upload_const(self.rt, v)
                 for k, v in layer.constants(node.params, in_shapes).items()}
        return NodeStep(nid, node.params, x=x, y=[self.act[(nid, p)] for p in ports],
                        dx=[self.grad.get(k) if layer.differentiable else None for k in in_keys],
                        dy=[self.grad.get((nid, p)) for p in ports], w=w, dw=dw,
                        scratch=scratch, const=const, logits=self._fused_logits(nid, layer, x),
                        skip_act_grad=nid in self.fused_logits or nid in self.folds.values(),
                        fold_act=self._fold_act(nid), frozen=not node.trainable)

    def _fold_act(self, nid):
        src = self.folds.get(nid)
        if src is None:
            return "linear"
        prod = self.graph.nodes[src]
        return prod.params[prod.layer.activation_param]

    def _alloc_pools(self):
        """One buffer per shared scratch pool, at the largest size its users declared (a
        convolution's columns: the layers run one at a time), entered in each user's scratch."""
        for users in self._pools.values():
            buf = self._alloc((max(int(np.prod(sh)) for _, _, sh in users),)).buf
            for scratch, k, sh in users:
                scratch[k] = Tensor(buf, sh)

    def _order_gradients(self):
        """Gradient accumulation: in reverse order, the first contribution to a tensor writes,
        later ones add (each step's acc). Tensors nobody differentiates into (unused extra
        outputs) start from zero (self._zero_grads)."""
        seen = set()
        for nid, layer, s in reversed(self.steps):
            s.acc = []
            for e in self.graph.in_edges(nid):
                key = (e.src, e.src_port)
                s.acc.append(key in seen)
                if s.dx[len(s.acc) - 1] is not None:
                    seen.add(key)
        self._zero_grads = [k for k in self.grad
                            if k not in seen and not (k[0] in self.outputs and k[1] == 0)]

    # -- weights --------------------------------------------------------------------------------
    def set_weights(self, weights, init_missing=False):
        """weights: {"node_id/name": array}. Missing ones are initialised from the seed; a
        name that is no weight of this graph, or an array that holds no numbers, is refused
        (a weights file for another graph must not silently leave training from scratch)."""
        known = {p.key for p in self.params}
        unknown = sorted(k for k in weights if k not in known)
        if unknown:
            raise ProjectError(f"{quote(unknown[0])}"
                               + (f" and {len(unknown) - 1} more" if len(unknown) > 1 else "")
                               + " name no weight of this graph; its weights are "
                               + (", ".join(sorted(known)[:20]) or "none")
                               + (" ..." if len(known) > 20 else ""), "weights")
        for p in self.params:
            key, spec = p.key, p.spec
            if key in weights:
                raw = np.asarray(weights[key])
                if raw.dtype.kind not in "fiub":
                    raise ProjectError(f"array {quote(key)} holds {raw.dtype} values, not "
                                       "numbers", "weights")
                a = raw.astype(np.float32)
                if a.shape != spec.shape:
                    raise ProjectError(f"array {quote(key)} has shape {a.shape}, the layer needs "
                                       f"{spec.shape}", "weights")
            elif init_missing:
                a = initialize(spec, node_rng(self.seed, p.node_id, spec.name))
            else:
                continue
            self.rt.write(p.w.buf, a, blocking=True)

    def get_weights(self):
        return {p.key: self.rt.read(p.w.buf, int(np.prod(p.spec.shape)), p.spec.shape)
                for p in self.params}

    def param_count(self):
        return int(sum(np.prod(p.spec.shape) for p in self.params))

    # -- execute --------------------------------------------------------------------------------
    def load_inputs(self, arrays):
        """arrays: {input_id: host array with a batch axis}. Returns the copy events."""
        return [self.rt.write(self.act[(nid, 0)].buf, arrays[nid]) for nid in self.inputs]

    def forward(self, n, training=False, step=0):
        for _, layer, s in self.steps:
            s.n, s.training, s.seed, s.step = n, training, self.seed, step
            layer.forward(self.ops, s)

    def backward(self, n, step=0):
        for key in self._zero_grads:
            self.ops.fill(self.grad[key].buf, n * self.grad[key].size)
        for nid, layer, s in reversed(self.steps):
            if layer.is_input or nid not in self.needs_grad:
                continue  # nothing upstream learns from this node's gradient
            s.n, s.training, s.seed, s.step = n, True, self.seed, step
            layer.backward(self.ops, s)
        for mine, owners in self._shared_grads:  # shared weights: one gradient, summed
            self.ops.copy(mine.buf, owners.buf, mine.size, accumulate=True)

    def output(self, nid):
        return self.act[(nid, 0)]

    def predict(self, arrays, batch_size=None):
        """Inference on host arrays {input_id: array}; returns {output_id: array}."""
        bs = min(batch_size or self.max_batch, self.max_batch)
        total = len(next(iter(arrays.values())))
        outs = {o: [] for o in self.outputs}
        for start in range(0, total, bs):
            n = min(bs, total - start)
            self.load_inputs({k: v[start:start + n] for k, v in arrays.items()})
            self.forward(n, training=False)
            for o in self.outputs:
                t = self.output(o)
                outs[o].append(self.rt.read(t.buf, n * t.size, (n,) + t.shape))
        return {o: np.concatenate(v) if v else np.zeros((0,) + self.output(o).shape, np.float32)
                for o, v in outs.items()}
