"""A project as a readable PyTorch training script (`layerloom --export P --format pytorch-code
--to train_torch.py`):

    from layerloom.interop import torch_code
    torch_code.write(project, weights, "train_torch.py")  # + train_torch.weights.npz
    text = torch_code.code(project, "train_torch.weights.npz")

The script holds an nn.Module with the graph's layers (data channels-last between layers, as
in Layerloom and Keras; convolutions and poolings permute around their call), the fitted input
normalisation as buffers (the model takes raw inputs, as `layerloom --predict`), Keras'
initialisers and BatchNormalization momentum/epsilon, and the weights written beside it in
Layerloom's names and layout ("node/weight"), converted on load. Run, it trains with the
project's optimizer, losses and loss weights on one device or under torchrun (DDP, gloo on
CPU, nccl on GPU, a DistributedSampler); `--save-weights FILE.npz` writes the trained weights
back in Layerloom's names and layout, which a project's "weights" key reads. Anything
without a PyTorch form raises DataError naming the node (or section), type and option
(docs/pytorch.md)."""
import os
import re
from dataclasses import dataclass

from layerloom.core import blocks as blocks_kit, host
from layerloom.core.blocks import BlockType
from layerloom.core.errors import DataError, quote
from layerloom.project import loom
from layerloom.interop import keras_code, keras_code_blocks, torch_layers as tl
from layerloom.interop.keras_out_layers import Names, RESERVED

__all__ = ["code", "write", "weights_path_for"]

weights_path_for = keras_code.weights_path_for
_RESERVED = RESERVED | {"torch", "nn", "F", "dist", "self", "LayerloomModel", "TORCH_WEIGHTS",
                        "KerasAdam", "compute_loss", "make_optimizer", "layerloom_arrays"}
# What an nn.Module has (its class's names and what its __init__ sets, torch 2.13), which no
# layer's attribute may be: written down, so that writing the script, a text file, needs no
# torch (test_torch_code checks it covers the torch installed)
MODULE_NAMES = frozenset("""
    T_destination __annotations__ __call__ __class__ __delattr__ __dict__ __dir__ __doc__
    __eq__ __format__ __ge__ __getattr__ __getattribute__ __getstate__ __gt__ __hash__
    __init__ __init_subclass__ __le__ __lt__ __module__ __ne__ __new__ __reduce__
    __reduce_ex__ __repr__ __setattr__ __setstate__ __sizeof__ __str__ __subclasshook__
    __weakref__ _apply _backward_hooks _backward_pre_hooks _buffers _call_impl
    _compiled_call_impl _forward_hooks _forward_hooks_always_called _forward_hooks_with_kwargs
    _forward_pre_hooks _forward_pre_hooks_with_kwargs _get_backward_hooks
    _get_backward_pre_hooks _get_name _is_full_backward_hook _load_from_state_dict
    _load_state_dict_post_hooks _load_state_dict_pre_hooks _maybe_warn_non_full_backward_hook
    _modules _named_members _non_persistent_buffers_set _parameters
    _register_load_state_dict_pre_hook _register_state_dict_hook _replicate_for_data_parallel
    _save_to_state_dict _slow_forward _state_dict_hooks _state_dict_pre_hooks _version
    _wrapped_call_impl add_module apply bfloat16 buffers call_super_init children compile cpu
    cuda double dump_patches eval extra_repr float forward get_buffer get_extra_state
    get_parameter get_submodule half ipu load_state_dict modules mtia named_buffers
    named_children named_modules named_parameters parameters register_backward_hook
    register_buffer register_forward_hook register_forward_pre_hook
    register_full_backward_hook register_full_backward_pre_hook
    register_load_state_dict_post_hook register_load_state_dict_pre_hook register_module
    register_parameter register_state_dict_post_hook register_state_dict_pre_hook
    requires_grad_ set_extra_state set_submodule share_memory state_dict to to_empty train
    training type xpu zero_grad
""".split())


@dataclass
class TNode:
    id: str
    type: str
    params: dict
    self: str          # "self.<attr>": the node's module
    x: list            # Python names of the input tensors
    out: str           # Python name of the output tensor
    in_shapes: list
    out_shape: tuple


def graph_source(project, classes=None):
    """(lines of __init__, lines of forward, TORCH_WEIGHTS): the device graph's (host layers,
    text, run before it in the script's preprocess: host_source). classes: a Classes, for a
    graph whose blocks are kept (an nn.Module class per block type, written into it); None:
    the graph inlined."""
    g = keras_code._check(project)
    if classes is None:
        g = host.device_graph(g)
    shapes = g.analysis().shapes
    names = Names()
    names.used |= _RESERVED
    if classes is not None:
        names.used |= classes.names.used
    init, fwd, weights, tensors, frozen_bn = [], [], {}, {}, []
    stats = keras_code._normalization(project)
    for nid in g.inputs():
        v = names.make(nid)
        fwd.append(f"{v} = inputs[{nid!r}]")
        if nid in stats:
            fwd.append(f"{v} = (({v} - self.shift_{v}) * self.scale_{v})  # as Layerloom's "
                       "predict")
            init.append(f"self.register_buffer('shift_{v}', torch.tensor("
                        f"NORMALIZATION[{nid!r}]['shift']))")
            init.append(f"self.register_buffer('scale_{v}', torch.tensor("
                        f"NORMALIZATION[{nid!r}]['scale']))")
        tensors[(nid, 0)] = v
    _layers(g, shapes, names, tensors, init, fwd, weights, frozen_bn, classes)
    outs = g.outputs()
    if len(outs) == 1:
        fwd.append(f"return {tensors[(outs[0], 0)]}")
    else:
        fwd.append("return {" + ", ".join(f"{o!r}: {tensors[(o, 0)]}" for o in outs) + "}")
    return init, fwd, weights, frozen_bn


def _layers(g, shapes, names, tensors, init, fwd, weights, frozen_bn, classes):
    """The lines of `g`'s layers into init and fwd (a block instance: classes.instance). A
    node using another's weights is that node's module (`self.b = self.a`, set after every
    module is made), called on its own inputs."""
    attrs, aliases = {}, []
    for nid in g.topo_order():
        node = g.nodes[nid]
        if node.layer.is_input:
            continue
        edges = g.in_edges(nid)
        attr = names.make(nid)
        while attr in MODULE_NAMES:
            attr = names.make(attr + "_")
        in_shapes = [tuple(shapes[e.src][e.src_port]) for e in edges]
        if isinstance(node.layer, BlockType):
            classes.instance(node, attr, [tensors[(e.src, e.src_port)] for e in edges],
                             in_shapes, names, tensors, init, fwd, weights)
            continue
        convert = tl.CONVERTERS.get(node.type)
        if convert is None:
            raise DataError(f"{node.type} layer {quote(nid)}: " + (
                node.layer.no_form.get("torch") or "no PyTorch form is written for this layer "
                "type"), f"graph.nodes.{nid}.type")
        ports = node.layer.output_names(node.params)
        if len(ports) > 1 and node.type not in tl.STATE_PORTS:
            raise tl.unsupported(nid, node.type, "return_state", True)
        n = TNode(nid, node.type, node.params, f"self.{attr}",
                  [tensors[(e.src, e.src_port)] for e in edges], attr, in_shapes,
                  tuple(shapes[nid][0]))
        i_lines, f_lines, wmap = convert(n)
        attrs[nid] = attr
        specs = node.layer.weights(node.params, in_shapes)
        if node.shares is not None:  # the owner's module, its weights: one tensor each
            aliases.append((attr, node.shares))
            fwd += f_lines
            tensors[(nid, 0)] = attr
            for i, port in enumerate(ports[1:], 1):
                tensors[(nid, i)] = f"{attr}_{port}"
            continue
        init += i_lines
        if not node.trainable and specs:  # frozen in Layerloom: not trained (a BatchNorm:
            # eval mode); a layer without weights may have no module to freeze
            init.append(f"self.{attr}.requires_grad_(False)  # frozen")
            if node.type == "BatchNormalization":
                frozen_bn.append(attr)
        fwd += f_lines
        tensors[(nid, 0)] = attr
        for i, port in enumerate(ports[1:], 1):  # a recurrent layer's final states
            tensors[(nid, i)] = f"{attr}_{port}"
        for spec in specs:
            if spec.name not in wmap:
                raise DataError(f"{node.type} layer {quote(nid)}: weight {spec.name} has no "
                                "PyTorch place", f"graph.nodes.{nid}")
            key, layout = wmap[spec.name]
            weights[f"{nid}/{spec.name}"] = (f"{attr}.{key}", layout)
    for attr, owner in aliases:
        init.append(f"self.{attr} = self.{attrs[owner]}  # uses {owner}'s weights (shared)")


# -- blocks: an nn.Module class per block type ------------------------------------------------
def _script_globals():
    """The names the script's template defines at module level (no class may take one)."""
    from layerloom.interop import torch_script
    found = set()
    for text in (torch_script.TEMPLATE, torch_script.HOST, torch_script.NO_HOST):
        found |= set(re.findall(r"^(?:def|class)\s+(\w+)", text, re.M))
        for m in re.findall(r"^((?:\w+\s*,\s*)*\w+)\s*=", text, re.M):
            found |= {w.strip() for w in m.split(",")}
    return found


def _doc(text):
    return (text or "").replace("\\", "/").replace('"""', "'''").strip()


class Classes:
    """The nn.Module classes of a script's block types: one per block type, parameter values,
    input shapes and frozen state used (ResBlock; ResBlock2 for other values), each written
    once, after the classes it uses."""

    def __init__(self):
        self.names = Names()
        self.names.used |= _RESERVED | _script_globals() | MODULE_NAMES
        self.by_key = {}    # keras_code_blocks.config_key -> (class name, weights, output shapes)
        self.sources = {}   # class name -> source

    def klass(self, block, params, in_shapes, trainable):
        key = keras_code_blocks.config_key(block, params, in_shapes, trainable)
        hit = self.by_key.get(key)
        if hit is not None:
            return hit
        name, k = block.type_id, 2
        while name in self.names.used:
            name, k = f"{block.type_id}{k}", k + 1
        self.names.used.add(name)
        g, shapes = keras_code_blocks.block_graph(block, params, in_shapes, trainable)
        names = Names()
        names.used |= _RESERVED
        tensors, args = {}, []
        for iid in block.input_ids:
            v = names.make(iid)
            args.append(v)
            tensors[(iid, 0)] = v
        init, fwd, weights, frozen_bn = [], [], {}, []
        _layers(g, shapes, names, tensors, init, fwd, weights, frozen_bn, self)
        fwd.append("return " + ", ".join(tensors[r] for r in block.output_refs))
        values = keras_code_blocks.promoted_values(block, params)
        what = ", ".join(f"{k}={v!r}" for k, v in values.items())
        shapes_in = ", ".join(str(tuple(s)) for s in in_shapes)
        ind = "        "
        src = (f"class {name}(nn.Module):\n"
               f'    """Block {block.type_id}' + (f" ({what})" if what else "") +
               f": {_doc(block.help) or 'its layers'}. Takes {shapes_in}, channels-last" +
               ("; frozen" if not trainable else "") + '."""\n\n'
               "    def __init__(self):\n        super().__init__()\n" +
               ("".join(f"{ind}{line}\n" for line in init) or f"{ind}pass\n") +
               f"\n    def forward(self, {', '.join(args)}):\n" +
               "".join(f"{ind}{line}\n" for line in fwd) + frozen_source(frozen_bn))
        self.sources[name] = src
        hit = (name, weights, [tuple(shapes[n][p]) for n, p in block.output_refs])
        self.by_key[key] = hit
        return hit

    def instance(self, node, attr, xs, in_shapes, names, tensors, init, fwd, weights):
        """An instance as an attribute (an nn.Sequential of its copies for a repeat) and its
        call; its weights' names, those of the inlined graph, mapped to its modules'."""
        block, nid = node.layer, node.id
        copies = keras_code_blocks.block_copies(block, node.params)
        made, shapes = [], in_shapes
        for _ in range(copies):
            name, wmap, shapes = self.klass(block, node.params, shapes, node.trainable)
            made.append((name, wmap))
        outs = [attr] + [names.make(f"{attr}_{p}") for p in range(1, len(block.output_refs))]
        lhs = ", ".join(outs)
        kinds = [m[0] for m in made]
        if copies == 1:
            init.append(f"self.{attr} = {kinds[0]}()")
            fwd.append(f"{lhs} = self.{attr}({', '.join(xs)})")
        else:
            one = len(xs) == 1
            if len(set(kinds)) == 1:
                made_text = f"[{kinds[0]}() for _ in range({copies})]"
                made_text = f"*{made_text}" if one else made_text
            else:
                made_text = ", ".join(f"{k}()" for k in kinds)
                made_text = made_text if one else f"[{made_text}]"
            container = "nn.Sequential" if one else "nn.ModuleList"
            init.append(f"self.{attr} = {container}({made_text})  # {block.type_id} "
                        f"x{copies}, each copy with its own weights")
            if one:
                fwd.append(f"{lhs} = self.{attr}({xs[0]})")
            else:
                copy = names.make("copy")
                fwd += [f"{lhs} = {', '.join(xs)}", f"for {copy} in self.{attr}:",
                        f"    {lhs} = {copy}({lhs})"]
        for k, (_, wmap) in enumerate(made):
            flat = f"{nid}{blocks_kit.SEP}" if k == 0 else \
                f"{nid}{blocks_kit.SEP}{blocks_kit.COPY}{k + 1}{blocks_kit.SEP}"
            module = f"{attr}." if copies == 1 else f"{attr}.{k}."
            for w, (key, layout) in wmap.items():
                weights[flat + w] = (module + key, layout)
        for p, t in enumerate(outs):
            tensors[(nid, p)] = t


def structured_source(project):
    """(classes' source, init, forward, TORCH_WEIGHTS, frozen BatchNorms) of a project whose
    block instances stay modules; None where that cannot be written exactly (the inlined
    script is written instead: it raises what has no PyTorch form, placed)."""
    if not blocks_kit.has_blocks(project.graph) or host.has_host(project.graph):
        return None
    if any(n.shares is not None for n in loom.flat(project).graph.nodes.values()):
        return None  # shared weights: written in the inlined script
    try:
        classes = Classes()
        init, fwd, weights, frozen_bn = graph_source(project, classes)
        flat = graph_source(loom.flat(project))[2]
    except Exception:  # noqa: BLE001
        return None
    # the same weights, in the same layouts, at the modules' places
    if set(flat) != set(weights) or any(flat[k][1] != weights[k][1] for k in flat):
        return None
    text = "".join(src + "\n\n" for src in classes.sources.values())
    return text, init, fwd, weights, frozen_bn


def frozen_source(frozen_bn):
    """The model's train() that keeps frozen BatchNormalization layers in eval mode (moving
    statistics, not updated), as Layerloom and Keras run them; "" when there is none."""
    if not frozen_bn:
        return ""
    names = ", ".join(f"self.{a}" for a in frozen_bn)
    return ("\n    def train(self, mode=True):\n"
            "        \"\"\"Frozen BatchNormalization layers stay in eval mode (moving statistics, "
            "not updated).\"\"\"\n"
            "        super().train(mode)\n"
            f"        for m in ({names},):\n"
            "            m.eval()\n"
            "        return self\n")


# -- training ----------------------------------------------------------------------------------
def optimizer_source(training):
    from layerloom.train.optimizers import OPTIMIZERS
    opt = training["optimizer"]
    name = opt["name"]
    if name not in ("sgd", "adam", "rmsprop", "adagrad"):
        raise DataError(f"optimizer {quote(name)} has no PyTorch form in this export (sgd, "
                        "adam, rmsprop, adagrad)", "training.optimizer.name")
    values = {p.name: p.default for p in OPTIMIZERS[name].params}
    values.update(opt.get("params") or {})
    for k in ("weight_decay", "clipvalue", "clipnorm", "global_clipnorm", "amsgrad"):
        if values.get(k):
            raise DataError(f"optimizer {name}: option {k}={values[k]!r} has no PyTorch form in "
                            "this export", f"training.optimizer.params.{k}")
    lr = values["learning_rate"]
    rate = "learning_rate" if isinstance(lr, dict) else repr(float(lr))
    if name == "rmsprop":
        return (f"KerasRMSprop(params, lr={rate}, rho={float(values['rho'])!r}, "
                f"momentum={float(values['momentum'])!r}, epsilon={float(values['epsilon'])!r}, "
                f"centered={bool(values['centered'])!r})")
    if name == "adagrad":
        return (f"KerasAdagrad(params, lr={rate}, initial_accumulator_value="
                f"{float(values['initial_accumulator_value'])!r}, "
                f"epsilon={float(values['epsilon'])!r})")
    if isinstance(lr, dict):  # the script's learning_rate(step), schedule_source's lines
        return (f"KerasSGD(params, lr=learning_rate, momentum={float(values['momentum'])!r}, "
                f"nesterov={bool(values['nesterov'])!r})" if name == "sgd" else
                f"KerasAdam(params, lr=learning_rate, beta_1={float(values['beta_1'])!r}, "
                f"beta_2={float(values['beta_2'])!r}, epsilon={float(values['epsilon'])!r})")
    if name == "sgd":
        # Keras: v = m v - lr g; w += v (nesterov: w += m v - lr g); torch's SGD is the same
        # update for a constant learning rate
        return (f"torch.optim.SGD(params, lr={float(lr)!r}, momentum={float(values['momentum'])!r}, "
                f"nesterov={bool(values['nesterov'])!r})")
    return (f"KerasAdam(params, lr={float(lr)!r}, beta_1={float(values['beta_1'])!r}, "
            f"beta_2={float(values['beta_2'])!r}, epsilon={float(values['epsilon'])!r})")


def schedule_source(training):
    """The body of the script's learning_rate(step): Layerloom's schedule formulas
    (engine/train/schedules.py, Keras 3's), or the constant rate."""
    lr = (training["optimizer"].get("params") or {}).get("learning_rate")
    if not isinstance(lr, dict):
        from layerloom.train.optimizers import OPTIMIZERS
        name = training["optimizer"]["name"]
        lr = lr if lr is not None else {p.name: p.default for p in
                                        OPTIMIZERS[name].params}["learning_rate"]
        return [f"return {float(lr)!r}"]
    c, name = lr, lr["schedule"]
    if name == "exponential_decay":
        return [f"p = step / {int(c['decay_steps'])}",
                *(["p = float(int(p))  # staircase"] if c.get("staircase") else []),
                f"return {float(c['initial_learning_rate'])!r} * {float(c['decay_rate'])!r} ** p"]
    if name == "piecewise_constant_decay":
        return [f"for bound, value in zip({list(c['boundaries'])!r}, {list(c['values'])!r}):",
                "    if step <= bound:", "        return value", f"return {c['values'][-1]!r}"]
    if name == "cosine_decay":
        init, target = float(c["initial_learning_rate"]), float(c.get("warmup_target", 0.0))
        ws, decay = int(c.get("warmup_steps", 0)), int(c["decay_steps"])
        alpha = float(c.get("alpha", 0.0))
        lines = []
        if target:
            lines += [f"if step < {ws}:  # linear warm-up",
                      f"    return {init!r} + {target - init!r} * step / {ws}"]
        peak, start = (target, ws) if target else (init, 0)
        return lines + [f"s = min(step - {start}, {decay})",
                        f"cos = 0.5 * (1 + np.cos(np.pi * s / {decay}))",
                        f"return {peak!r} * ({1 - alpha!r} * cos + {alpha!r})"]
    raise DataError(f"learning-rate schedule {quote(name)} has no PyTorch form in this export",
                    "training.optimizer.params.learning_rate")


_LOSSES = {"sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
           "mean_squared_error", "mean_absolute_error"}


def loss_table(project):
    """{output: (loss name, from_logits, weight)} for the outputs that have a loss."""
    losses = project.training.get("loss") or {}
    out = {}
    for o in project.graph.outputs():
        if o not in losses:
            continue
        e = losses[o]
        if e["name"] not in _LOSSES:
            raise DataError(f"loss {quote(e['name'])} has no PyTorch form in this export",
                            f"training.loss.{o}")
        out[o] = (e["name"], bool(e.get("from_logits")), float(e.get("weight", 1.0)))
    return out


def host_source(project):
    """The script's preprocess: the host layers (layers/text.py) in plain Python with the
    vocabularies training adapted, or, without any, a preprocess that changes nothing."""
    from layerloom.interop import torch_script
    from layerloom.layers import text_pieces
    from layerloom.layers.text import PUNCTUATION, WHITESPACE
    g = project.graph
    if not host.has_host(g):
        return torch_script.NO_HOST
    layers = []
    vocab = {}
    for nid in host.host_order(g):
        node = g.nodes[nid]
        params = keras_code.host_params(project, nid)
        vocab[nid] = params.get("vocabulary")
        layers.append((nid, node.type, g.in_edges(nid)[0].src,
                       {k: v for k, v in params.items() if k != "vocabulary"}))
    values = {"raw_inputs": repr(g.inputs()), "host_layers": repr(layers),
              "vocabulary": repr(vocab), "punctuation": repr(PUNCTUATION.pattern),
              "whitespace": repr(WHITESPACE.pattern),
              "pieces": text_pieces.script_source() if any(
                  g.nodes[nid].type in text_pieces.SCRIPT_KINDS for nid in host.host_order(g))
              else ""}
    return re.sub(r"@(\w+)@", lambda m: values.get(m[1], m[0]), torch_script.HOST)


def code(project, weights_file, script_name="train_torch.py"):
    """The script's text; weights_file: the weights' file name, beside the script."""
    made = structured_source(project)  # an nn.Module class per block type
    if made is not None:
        classes, init, fwd, weights, frozen_bn = made
    else:
        project = loom.flat(project)  # blocks inlined
        init, fwd, weights, frozen_bn = graph_source(project)
        classes = ""
    t = project.training
    if t.get("callbacks"):
        raise DataError("training callbacks have no PyTorch form in this export",
                        "training.callbacks")
    path = project.path
    inputs, targets, sparse = keras_code._mappings(project)
    from layerloom.interop.keras_script import TAIL as head
    start, end = head.index("INPUTS = "), head.index("\n\ndef main(")
    data = head[start:end].format(inputs=inputs, targets=targets, sparse=sparse)
    ind = "        "
    wrows = "".join(f"    {k!r}: {v!r},\n" for k, v in weights.items())
    from layerloom.interop.torch_script import fill
    return fill(
        project=os.path.basename(path) if path else "a Layerloom project",
        script=os.path.basename(script_name),
        module=os.path.splitext(os.path.basename(script_name))[0],
        project_path=repr(os.path.abspath(path) if path else ""),
        weights=os.path.basename(weights_file),
        weights_repr=repr(os.path.basename(weights_file)), epochs=int(t["epochs"]),
        batch_size=int(t["batch_size"]), seed=int(t["seed"]),
        validation_split=float(t.get("validation_split", 0.0)),
        shuffle=bool(t.get("shuffle", True)),
        normalization=keras_code._fmt_normalization(keras_code._normalization(project)),
        input_ids=host.device_graph(project.graph).inputs(),
        output_ids=project.graph.outputs(), host=host_source(project), classes=classes,
        torch_weights="{\n" + wrows + "}" if wrows else "{}",
        init="".join(f"{ind}{line}\n" for line in init) or f"{ind}pass\n",
        forward="".join(f"{ind}{line}\n" for line in fwd), frozen=frozen_source(frozen_bn),
        losses=loss_table(project), optimizer=optimizer_source(t), data=data,
        schedule="".join(f"    {line}\n" for line in schedule_source(t)).rstrip("\n"))


def write(project, weights, path):
    """Write the script to `path` and the weights beside it (NAME.weights.npz), each
    atomically. Returns the script's text."""
    from layerloom.core.fileio import atomic_write_bytes, atomic_write_text, npz_bytes
    wpath = weights_path_for(path)
    text = code(project, os.path.basename(wpath), os.path.basename(path))
    arrays = keras_code.weight_arrays(project, weights, keras_names=False)
    atomic_write_bytes(wpath, npz_bytes(arrays))
    atomic_write_text(path, text)
    return text
