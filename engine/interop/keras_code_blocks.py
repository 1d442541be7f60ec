"""The Keras script of a project with blocks (keras_code.py): a Python function per block type
that builds its layers, called where its instances are (a repeat as a loop, a nested block as
a call inside); the layers keep the names of the inlined script, so its weights are the same.
torch_code.py's module per block type shares how a block's own graph is made (block_graph,
config_key)."""
import json
import keyword

from layerloom.core import blocks as blocks_kit
from layerloom.core.blocks import BlockType
from layerloom.core.errors import DataError, ProjectError, quote
from layerloom.interop import keras_out_layers as kl
from layerloom.interop.keras_graph import (KERAS_SEP, KNode, _check, _indent, _model_name,
                                          graph_lines, host_params, input_lines, keras_ready)


# -- blocks: a function per block type ---------------------------------------------------------
# A project with block instances is written with a Python function per block type (`def
# res_block(x, filters=4, name="res_block")`) that builds its layers named f"{name}__conv_1",
# the names the inlined graph gives them (keras_ready), so KERAS_WEIGHTS and the weights file
# are those of the flat export; the model body calls it, a repeat as a loop, a nested block
# as a call inside. The function takes the block's parameters where every layer's Keras form
# writes the value as it is (checked: `_Sym`); otherwise there is one function per parameter
# values and input shapes used (res_block, res_block_2). Anything the structured form cannot
# write exactly falls back to the inlined script (code()).
_NAME = "LLBLOCKNAME"   # an instance's Keras name while its function is written
_SYM = "__llsym{}__"    # a block parameter's value while its function is written


class _NotSymbolic(Exception):
    """A converter looked at a block parameter's value (or an input shape): the function is
    written per parameter values instead."""


def _refuse(*_a, **_k):
    raise _NotSymbolic()


class _Sym:
    """A block parameter's value while a function is written: its repr is a placeholder;
    anything else done with it raises _NotSymbolic."""

    def __init__(self, token):
        self.token = token

    def __repr__(self):
        return self.token

    __str__ = __repr__

    def __format__(self, spec):
        if spec:
            raise _NotSymbolic()
        return self.token

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = __bool__ = _refuse
    __int__ = __float__ = __index__ = __round__ = __abs__ = __neg__ = __pos__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _refuse
    __truediv__ = __rtruediv__ = __floordiv__ = __mod__ = __pow__ = _refuse
    __iter__ = __len__ = __getitem__ = __contains__ = __copy__ = __deepcopy__ = _refuse


class _Watched(list):
    """A node's input shapes while a symbolic function is written: reading them raises."""
    __getitem__ = __iter__ = __len__ = __bool__ = __contains__ = _refuse


def block_graph(block, params, in_shapes, trainable=True):
    """The inner graph of an instance of `block` with `params` fed `in_shapes`: an Input of
    each shape, the inner nodes with the block parameters set (a block used inside stays one
    node), frozen where the instance or the node is; and its shapes."""
    from layerloom.core.graph import Graph
    inner = block.inner_params(params)
    g = Graph(blocks=block.graph.blocks)
    for nid, node in block.graph.nodes.items():
        if nid in block.input_ids:
            g.add_node("Input", {"shape": list(in_shapes[block.input_ids.index(nid)])}, id=nid)
        else:
            g.add_node(node.type, inner[nid], id=nid,
                       trainable=bool(trainable and node.trainable))
    for e in block.graph.edges:
        g.connect(e.src, e.src_port, e.dst, e.dst_port)
    a = g.analysis()
    if a.problems:
        raise ProjectError(f"block {block.type_id}: {a.problems[0].message}")
    return g, a.shapes


def block_copies(block, params):
    return params.get("repeat", 1) if block.chains else 1


def promoted_values(block, params):
    return {p.name: params.get(p.name, p.default) for p, _ in block.promoted}


def config_key(block, params, in_shapes, trainable=True):
    return (block.type_id, json.dumps(promoted_values(block, params), sort_keys=True, default=str),
            tuple(tuple(s) for s in in_shapes), bool(trainable))


def snake(name):
    import re
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    return s or "block"


class _KerasBlocks:
    """The block functions of a script: which configurations each block type is used with,
    and, per type, one function taking its parameters or one per configuration."""

    def __init__(self, graph, used):
        self.configs = {}    # type -> {key: (block, params, in_shapes)}
        self.symbolic = {}   # type -> function name (it takes the parameters)
        self.concrete = {}   # config key -> function name
        self.sources = {}    # function name -> source, each after those it calls
        self.classes = {}    # Keras classes the functions' layers need
        self.used = set(used)
        shapes = graph.analysis().shapes
        for nid in graph.topo_order():
            node = graph.nodes[nid]
            if isinstance(node.layer, BlockType):
                self._collect(node.layer, node.params,
                              [shapes[e.src][e.src_port] for e in graph.in_edges(nid)])

    def _collect(self, block, params, in_shapes):
        for _ in range(block_copies(block, params)):
            key = config_key(block, params, in_shapes)
            seen = self.configs.setdefault(block.type_id, {})
            g, shapes = block_graph(block, params, in_shapes)
            if key not in seen:
                seen[key] = (block, params, in_shapes)
                for nid in g.topo_order():
                    node = g.nodes[nid]
                    if isinstance(node.layer, BlockType):
                        self._collect(node.layer, node.params,
                                      [shapes[e.src][e.src_port] for e in g.in_edges(nid)])
            in_shapes = [shapes[n][p] for n, p in block.output_refs]

    def make(self, order):
        """Write the functions, block types in `order` (each after those it uses)."""
        for name in order:
            if name not in self.configs:
                continue
            configs = list(self.configs[name].values())
            block = configs[0][0]
            try:
                self._symbolic(block, configs)
            except _NotSymbolic:
                for b, params, in_shapes in configs:
                    fname = self._fname(snake(b.type_id))
                    self.concrete[config_key(b, params, in_shapes)] = fname
                    args, body = self._body(b, params, in_shapes, None)
                    self._define(fname, b, args, [], body, params)

    def _fname(self, base):
        fname, k = base, 2
        while fname in self.used or keyword.iskeyword(fname):
            fname, k = f"{base}_{k}", k + 1
        self.used.add(fname)
        return fname

    def _define(self, fname, block, args, pargs, body, params):
        doc = (block.help or "").replace("\\", "/").replace('"""', "'''").strip()
        values = promoted_values(block, params)
        what = "" if pargs or not values else \
            " (" + ", ".join(f"{k}={v!r}" for k, v in values.items()) + ")"
        sig = ", ".join(args + [f"{p}={kl.fmt(v)}" for p, v in pargs]
                        + [f"name={snake(block.type_id)!r}"])
        head = [f"def {fname}({sig}):",
                f'    """Block {block.type_id}{what}: {doc or "its layers"}. Its layers are '
                'named f"{name}__<layer>"."""']
        self.sources[fname] = "\n".join(head) + "\n" + _indent(body)

    def _symbolic(self, block, configs):
        for n in block.graph.nodes.values():  # a block used inside must take its parameters
            if isinstance(n.layer, BlockType) and n.type not in self.symbolic:
                raise _NotSymbolic()
        pnames = [p.name for p, _ in block.promoted]
        reserved = kl.RESERVED | self.used | {"name", "copy"} | set(block.input_ids)
        if any(keyword.iskeyword(p) or p in reserved for p in pnames):
            raise _NotSymbolic()
        first = configs[0]
        syms, exprs = {}, {}  # placeholder -> (node, param, block parameter); -> expression
        inner = block.inner_params(first[1])
        for k, (p, targets) in enumerate(block.promoted):
            for j, t in enumerate(targets):
                token = _SYM.format(f"{k}_{j}")
                value = p.default
                if t.times == 1:
                    expr = p.name
                elif isinstance(value, int) and not isinstance(value, bool) and \
                        not float(t.times).is_integer():
                    expr = f"round({p.name} * {t.times!r})"
                else:
                    expr = f"{p.name} * {t.times!r}"
                syms[token], exprs[token] = (t.node, t.param, p.name), expr
                inner[t.node][t.param] = _Sym(token)
        args, body = self._body(block, first[1], first[2], inner)
        text = "\n".join(body)
        if any(token not in text for token in syms):
            raise _NotSymbolic()
        for b, params, in_shapes in configs:  # each use, written out, is the function's
            _, want = self._body(b, params, in_shapes, None)
            values = b.inner_params(params)
            got = text
            for token, (node, param, pname) in syms.items():
                v = values[node][param]
                computed = eval(exprs[token], {"round": round},  # noqa: S307 (our text)
                                {pname: params.get(pname, _default(b, pname))})
                if kl.fmt(computed) != kl.fmt(v):
                    raise _NotSymbolic()
                got = got.replace(token, kl.fmt(v))
            if got != "\n".join(want):
                raise _NotSymbolic()
        text = _substitute(text, exprs)
        fname = self._fname(snake(block.type_id))
        self.symbolic[block.type_id] = fname
        self._define(fname, block, args, [(p.name, p.default) for p, _ in block.promoted],
                     text.split("\n"), first[1])

    def _body(self, block, params, in_shapes, sym_params):
        """(argument names, lines) of a function building an instance; sym_params: the
        inner nodes' parameters with placeholders (None: the values of `params`)."""
        g, shapes = block_graph(block, params, in_shapes)
        names = kl.Names()
        names.used |= self.used | {"name"} | {p.name for p, _ in block.promoted}
        tensors, args = {}, []
        for iid in block.input_ids:
            v = names.make(iid)
            args.append(v)
            tensors[(iid, 0)] = v
        values = sym_params if sym_params is not None else block.inner_params(params)
        lines, classes = [], {}
        self.lines(g, shapes, names, tensors, lines, classes,
                   params_of=lambda nid: values[nid],
                   id_of=lambda nid: f"{_NAME}{KERAS_SEP}{nid.replace('/', KERAS_SEP)}",
                   watch=sym_params is not None)
        outs = [tensors[(n, p)] for n, p in block.output_refs]
        lines.append("return " + ", ".join(outs))
        if any(_NAME in src for src in classes.values()):
            raise ProjectError("a layer's Keras class is named by its node")
        self.classes.update(classes)
        return args, _names_as_fstrings(lines)

    def lines(self, g, shapes, names, tensors, lines, classes, params_of, id_of, watch=False):
        """The lines building `g`'s layers and block instances (calls of their functions)."""
        for nid in g.topo_order():
            node = g.nodes[nid]
            if node.layer.is_input:
                continue
            edges = g.in_edges(nid)
            in_shapes = [shapes[e.src][e.src_port] for e in edges]
            xs = [tensors[(e.src, e.src_port)] for e in edges]
            ports = node.layer.output_names(node.params)
            out = [names.make(nid)] + [names.make(f"{nid}_{p}") for p in ports[1:]]
            if isinstance(node.layer, BlockType):
                lines += self._call(node.layer, node.params, params_of(nid), in_shapes, xs, out,
                                    repr(id_of(nid)), names)
            else:
                convert = kl.CONVERTERS.get(node.type)
                if convert is None:
                    raise DataError(f"{node.type} layer {quote(nid)}: no Keras form is written "
                                    "for this layer type", f"graph.nodes.{nid}.type")
                n = KNode(id_of(nid), node.type, params_of(nid), node.layer, xs, out,
                          in_shapes=_Watched(in_shapes) if watch else in_shapes)
                lines.extend(convert(n))
                classes.update(n.classes)
            for port, t in enumerate(out):
                tensors[(nid, port)] = t

    def _call(self, block, params, given, in_shapes, xs, out, name, names):
        copies = block_copies(block, params)
        fname = self.symbolic.get(block.type_id)
        args = ([f"{p.name}={kl.fmt(given.get(p.name, p.default))}" for p, _ in block.promoted]
                if fname else [])
        fnames, shapes = [], in_shapes
        for _ in range(copies):
            fnames.append(fname or self.concrete[config_key(block, params, shapes)])
            _, inner = block_graph(block, params, shapes)
            shapes = [inner[n][p] for n, p in block.output_refs]
        lhs = ", ".join(out)
        if copies == 1:
            return [f"{lhs} = {fnames[0]}({', '.join(xs + args + [f'name={name}'])})"]
        lines = [f"{lhs} = {', '.join(xs)}"]
        if len(set(fnames)) == 1:
            copy = names.make("copy")
            lines += [f"for {copy} in range(1, {copies + 1}):  # {block.type_id} x{copies}, "
                      "each copy with its own weights",
                      f"    {lhs} = {fnames[0]}({', '.join(out + args)}, name={name} + "
                      f"(f'{KERAS_SEP}{blocks_kit.COPY}{{{copy}}}' if {copy} > 1 else ''))"]
            return lines
        for k, f in enumerate(fnames, 1):
            suffix = "" if k == 1 else f" + {KERAS_SEP + blocks_kit.COPY + str(k)!r}"
            lines.append(f"{lhs} = {f}({', '.join(out + args)}, name={name}{suffix})")
        return lines


def _default(block, pname):
    return next(p.default for p, _ in block.promoted if p.name == pname)


def _tokens(text):
    import io
    import tokenize
    return list(tokenize.generate_tokens(io.StringIO(text).readline))


def _names_as_fstrings(lines):
    """Each string literal that is an instance's layer name ('LLBLOCKNAME__conv_1') as
    f'{name}__conv_1'; raises where the placeholder is anywhere else."""
    import ast
    import tokenize
    text = "\n".join(lines)
    for tok in _tokens(text):
        if tok.type == tokenize.STRING and _NAME in tok.string:
            try:
                s = ast.literal_eval(tok.string)
            except (ValueError, SyntaxError):
                raise ProjectError("a layer name is written in a form not understood") from None
            if not isinstance(s, str) or not s.startswith(_NAME) or _NAME in s[len(_NAME):]:
                raise ProjectError("a layer name is written in a form not understood")
            rest = s[len(_NAME):].replace("{", "{{").replace("}", "}}")
            text = text.replace(tok.string, "f" + repr("{name}" + rest))
    if _NAME in text:
        raise ProjectError("a layer name is written in a form not understood")
    return text.split("\n")


def _substitute(text, exprs):
    """The placeholders of a symbolic body replaced by their expressions (names only)."""
    import tokenize
    out = text
    found = 0
    for tok in _tokens(text):
        if tok.type == tokenize.NAME and tok.string in exprs:
            found += 1
    if found != sum(text.count(t) for t in exprs):
        raise _NotSymbolic()  # a placeholder inside a string or a longer name
    for token, expr in exprs.items():
        plain = expr.isidentifier()
        out = out.replace(token, expr if plain else f"({expr})")
    return out


def structured_lines(project):
    """graph_lines of a project with blocks: (lines of build_layers()'s body, stats,
    KERAS_WEIGHTS, {name: module-level source}: the Keras classes and the block functions).
    The weights and names are those of the inlined graph (keras_ready)."""
    flat, _ = keras_ready(project)
    if any(n.shares is not None for n in flat.graph.nodes.values()):
        raise DataError("shared weights are written in the inlined script", "graph")
    _, stats, weights, classes = graph_lines(flat)
    g = _check(project)
    kb = _KerasBlocks(g, set(kl.RESERVED) | set(classes))
    from layerloom.core.blocks import used_blocks
    kb.make(used_blocks(g))
    names = kl.Names()
    names.used |= kb.used
    tensors, lines = {}, []
    ins = g.inputs()
    shapes = g.analysis().shapes
    in_names = input_lines(g, shapes, names, stats, lines, tensors)
    layer_classes = {}
    kb.lines(g, shapes, names, tensors, lines, layer_classes,
             params_of=lambda nid: host_params(project, nid), id_of=lambda nid: nid)
    outs = g.outputs()
    inputs = in_names[ins[0]] if len(ins) == 1 else \
        "{" + ", ".join(f"{nid!r}: {in_names[nid]}" for nid in ins) + "}"
    outputs = tensors[(outs[0], 0)] if len(outs) == 1 else \
        "{" + ", ".join(f"{nid!r}: {tensors[(nid, 0)]}" for nid in outs) + "}"
    model = (f"keras.Model(inputs={inputs}, outputs={outputs}, "
             f"name={_model_name(project)!r})")
    instances = {nid for nid, n in g.nodes.items() if isinstance(n.layer, BlockType)}
    fg = flat.graph
    frozen = tuple(nid for nid in fg.frozen() if not fg.nodes[nid].layer.is_input
                   and nid not in instances)
    if frozen:
        lines += [f"model = {model}", f"for name in {frozen!r}:",
                  "    model.get_layer(name).trainable = False", "return model"]
    else:
        lines.append(f"return {model}")
    out = dict(classes)
    out.update(kb.classes)
    out.update(layer_classes)
    out.update(kb.sources)
    return lines, stats, weights, out
