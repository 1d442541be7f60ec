"""The project file (.loom): JSON text with the graph, dataset, training setup and view data.

Loading validates everything and reports every problem with its place
(`graph.nodes[3].params.units: expected a positive integer, got -5`). Files from a newer format
version are refused as such; older versions are migrated step by step. See docs/file-format.md.
"""
import copy
import difflib
import json
import os

from layerloom.core import blocks as block_kit
from layerloom.core.errors import MESSAGE_LIMIT, GraphError, ParamError, ProjectError, quote
from layerloom.core.graph import MAX_NODES, Graph, too_many_nodes
from layerloom.core.params import validate_params
from layerloom.core.registry import layer_types
from layerloom.core.sections import unknown_keys
from layerloom.data import sources
from layerloom.core.fileio import atomic_write_text
from layerloom.project.training import default_training, parse_training

FORMAT = "layerloom-project"
VERSION = 1
# MIGRATIONS[v] turns a version-v dict into a version-(v+1) dict.
MIGRATIONS = {}

class Project:
    def __init__(self, graph=None, dataset=None, training=None, ui=None, path=None,
                 weights=None, name=None):
        self.graph = graph if graph is not None else Graph()
        self.name = name  # the project's title, kept as the file had it
        self.dataset = dataset or {}
        self.training = training or default_training()
        self.ui = ui or {}
        self.path = path
        self.weights = weights  # path of a weights .npz relative to the project, or None
        self.problems = []      # network problems of an unfinished project (strict=False)

    @property
    def folder(self):
        return os.path.dirname(os.path.abspath(self.path)) if self.path else os.getcwd()

    def resolve(self, rel):
        return rel if os.path.isabs(rel) else os.path.join(self.folder, rel)


# -- reading ------------------------------------------------------------------------------
def _type_hint(name, known):
    """'; did you mean 'Dense'?' for a near miss, else "" (the known types are listed once,
    after the first unknown type without one)."""
    close = difflib.get_close_matches(str(name), known, n=1)
    return f"; did you mean {quote(close[0])}?" if close else ""


def parse_graph(g, problems, blocks=None, place="graph"):
    """The graph of a file's "graph" object, with a problem for each node or edge refused.
    blocks: the block types its nodes may use ({name: BlockType}); place: where the object is
    (a block's graph is blocks.<name>.graph)."""
    graph = Graph(blocks=blocks)
    if not isinstance(g, dict):
        problems.append(ProjectError("expected an object with \"nodes\" and \"edges\"", place))
        return graph
    problems.extend(unknown_keys(g, {"nodes", "edges"}, place))
    nodes, edges = g.get("nodes"), g.get("edges", [])
    if not isinstance(nodes, list):
        problems.append(ProjectError("expected a list of nodes", f"{place}.nodes"))
        nodes = []
    if not isinstance(edges, list):
        problems.append(ProjectError("expected a list of edges", f"{place}.edges"))
        edges = []
    too_many = too_many_nodes(len(nodes))
    if too_many:  # refused before any node is read
        problems.append(ProjectError(too_many, f"{place}.nodes"))
        return graph
    broken, ids_known = _add_nodes(graph, nodes, problems, place)
    if graph.blocks:  # what its block instances become inlined, bounded before any is built
        memo, total = {}, 0
        for n in graph.nodes.values():
            total += n.layer.expanded_size(n.params, memo) + 1 \
                if isinstance(n.layer, block_kit.BlockType) else 1
            if too_many_nodes(total):
                problems.append(ProjectError(f"its blocks inlined, the graph would have more "
                                             f"than the {MAX_NODES:,} nodes a project may "
                                             "hold", f"{place}.nodes"))
                return graph
    ids_known = ids_known and isinstance(g.get("nodes"), list)
    for j, e in enumerate(edges):
        ends = _edge_ends(e, f"{place}.edges[{j}]", problems)
        if ends is None:
            continue
        (src, sp), (dst, dp) = ends
        missing = [n for n in (src, dst) if n not in graph.nodes]
        if missing and (not ids_known or all(n in broken for n in missing)):
            continue  # follows from a node refused above
        try:  # the editor's own rules; cycles are reported with the graph's other problems
            graph.connect(src, sp, dst, dp, allow_cycle=True)
        except GraphError as err:
            problems.append(ProjectError(err.message, f"{place}.edges[{j}].{err.end}"))
    return graph


def parse_blocks(section, problems, known=None, place="blocks"):
    """{name: BlockType} of a file's "blocks" object (core/blocks.py); a block may use the
    blocks before it (so none uses itself). A refused block is left out, with its problems
    placed (blocks.ResBlock.graph.nodes[2].params.filters: ...)."""
    blocks = dict(known or {})
    if section is None:
        return blocks
    if not isinstance(section, dict):
        problems.append(ProjectError("expected an object of block types by name", place))
        return blocks
    if len(section) > block_kit.MAX_BLOCKS:
        problems.append(ProjectError(f"{len(section):,} block types, more than the "
                                     f"{block_kit.MAX_BLOCKS:,} a file may declare", place))
        return blocks
    for name, d in section.items():
        where = f"{place}.{name}"
        try:
            block_kit.check_name(name, where)
            if name in blocks:
                raise ProjectError(f"block {quote(name)} is declared twice", where)
            if not isinstance(d, dict):
                raise ProjectError("expected an object with inputs, outputs and graph", where)
            found = unknown_keys(d, {"help", "inputs", "outputs", "params", "graph"}, where)
            inner = parse_graph(d.get("graph"), found, blocks=blocks, place=f"{where}.graph")
            if found:
                problems.extend(found)
                continue
            blocks[name] = block_kit.define(name, inner, d.get("inputs"), d.get("outputs"),
                                            d.get("params", {}), d.get("help", ""), where)
        except ProjectError as e:
            problems.append(e)
        except ParamError as e:  # a default the parameter refuses
            problems.append(ProjectError(e.message, e.place))
    return blocks


def graph_dict(graph):
    """A graph as the file's "graph" object."""
    return {"nodes": [node_dict(n) for n in graph.nodes.values()],
            "edges": [{"from": [e.src, e.src_port], "to": [e.dst, e.dst_port]}
                      for e in graph.edges]}


def block_dict(block):
    """A block type as the file's "blocks" section holds it."""
    d = {}
    if block.help and not block.help.startswith("Block of "):
        d["help"] = block.help
    d["inputs"] = list(block.input_ids)
    d["outputs"] = [[n, p] for n, p in block.output_refs]
    if block.promoted:
        d["params"] = {p.name: {"default": p.to_json(p.default),
                                "sets": [t.text() for t in targets]}
                       for p, targets in block.promoted}
    d["graph"] = graph_dict(block.graph)
    return d


def blocks_dict(graph, names=None):
    """The "blocks" section for the block types `graph` uses (or `names`), each after those
    it uses."""
    names = block_kit.used_blocks(graph, every=True) if names is None else names
    return {name: block_dict(graph.blocks[name]) for name in names}


def _add_nodes(graph, nodes, problems, place="graph"):
    """Add the readable nodes. Returns (ids of nodes refused for their type or parameters,
    whether every node's id could be read: if not, any dangling edge may be to it)."""
    first_index, broken, ids_known = {}, set(), True
    shared = []  # (index, id, "shares"): set once every node is read
    known, hints, listed = [lt.type_id for lt in layer_types()], {}, False
    known = known + list(graph.blocks)
    top = place
    for i, n in enumerate(nodes):
        place = f"{top}.nodes[{i}]"
        if not isinstance(n, dict):
            problems.append(ProjectError("expected an object with id, type, params", place))
            ids_known = False
            continue
        problems.extend(unknown_keys(n, {"id", "type", "params", "trainable", "shares"},
                                     place))
        nid, typ = n.get("id"), n.get("type")
        if not isinstance(nid, str) or not nid:
            problems.append(ProjectError(f"expected a non-empty string, got {quote(nid)}",
                                         f"{place}.id"))
            ids_known = False
            continue
        if nid in first_index:
            problems.append(ProjectError(f"duplicate node id {quote(nid)} (first used by "
                                         f"graph.nodes[{first_index[nid]}])", f"{place}.id"))
            continue
        layer = graph.layer_type(typ) if isinstance(typ, str) else None
        if layer is None:
            key = typ if isinstance(typ, str) and len(typ) <= 100 else None
            hint = hints.get(key) if key is not None else None
            if hint is None:  # a type's hint is worked out once, not for each of its nodes
                hint = _type_hint(typ, known)
                if key is not None:
                    hints[key] = hint
            problems.append(ProjectError(f"unknown layer type {quote(typ)}{hint}",
                                         f"{place}.type"))
            if not hint and not listed:
                listing = ProjectError(f"the layer types are {', '.join(known)} "
                                       "(docs/layers.md)", f"{top}.nodes")
                listing.limit = 8 * MESSAGE_LIMIT  # whole: the registry bounds it, not a file
                problems.append(listing)
                listed = True
            broken.add(nid)
            continue
        values, perr = validate_params(layer.params, n.get("params", {}), f"{place}.params")
        problems.extend(perr)
        trainable = n.get("trainable", True)
        if not isinstance(trainable, bool):
            problems.append(ProjectError(f"expected true or false, got {quote(trainable)}",
                                         f"{place}.trainable"))
            trainable = True
        first_index[nid] = i
        graph.add_node(typ, None if perr else values, id=nid, trainable=trainable)
        if "shares" in n:
            shared.append((i, nid, n["shares"]))
    for i, nid, other in shared:  # once every node is there: it may share a later one
        if isinstance(other, str) and other in broken:
            continue  # refused for its type or parameters: said there
        try:
            graph.set_shares(nid, other)
        except GraphError as e:
            problems.append(ProjectError(e.message, f"{top}.nodes[{i}].shares"))
    return broken, ids_known


def _edge_ends(e, place, problems):
    """((src, port), (dst, port)) of an edge object, or None with the problem."""
    if not isinstance(e, dict):
        problems.append(ProjectError("expected an object with \"from\" and \"to\"", place))
        return None
    problems.extend(unknown_keys(e, {"from", "to"}, place))
    ends = []
    for key in ("from", "to"):
        v = e.get(key)
        if (not isinstance(v, list) or len(v) != 2 or not isinstance(v[0], str)
                or not isinstance(v[1], int) or isinstance(v[1], bool) or v[1] < 0):
            problems.append(ProjectError(f"expected [node_id, port], got {quote(v)}",
                                         f"{place}.{key}"))
            return None
        ends.append(v)
    return ends


def format_version(d, fmt, newest, what, version_words):
    """The version of a file's object `d` whose "format" must be `fmt` ("a Layerloom
    project" it is not, else) and whose version this Layerloom reads (at most `newest`)."""
    if not isinstance(d, dict) or d.get("format") != fmt:
        got = d.get("format") if isinstance(d, dict) else None
        raise ProjectError(f"not a Layerloom {what} (\"format\" is {quote(got)}, expected "
                           f"{quote(fmt)})", "format")
    v = d.get("version")
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ProjectError(f"expected a positive integer, got {quote(v)}", "version")
    if v > newest:
        raise ProjectError(f"written by a newer Layerloom ({version_words} {v}; this version "
                           f"reads up to {newest}); update Layerloom to open it", "version")
    return v


def from_dict(d, path=None, strict=True):
    problems = []
    if not isinstance(d, dict):
        raise ProjectError("not a Layerloom project (expected a JSON object)")
    v = format_version(d, FORMAT, VERSION, "project", "format version")
    while v < VERSION:
        d = MIGRATIONS[v](d)
        v += 1
    problems.extend(unknown_keys(d, {"format", "version", "graph", "dataset", "training", "ui",
                                     "weights", "name", "blocks"}, ""))
    blocks = parse_blocks(d.get("blocks"), problems)
    graph = parse_graph(d.get("graph"), problems, blocks=blocks)
    # Network problems (unconnected inputs, shapes, missing losses) make a project unfinished,
    # not damaged: the editor opens it with them listed; --run (strict) refuses it.
    soft = []
    graph_broken = bool(problems)
    if not graph_broken:
        soft.extend(ProjectError(e.message, e.place) for e in graph.validate())
    dataset = d.get("dataset", {})
    problems.extend(sources.check(dataset))
    if not isinstance(dataset, dict):
        dataset = {}
    # a graph that could not be read has no outputs to check losses and metrics against:
    # "no output node" and "has no loss" would only follow from its problems
    training = parse_training(d.get("training", {}), graph, problems,
                              [] if graph_broken else soft)
    ui = d.get("ui", {})
    if not isinstance(ui, dict):
        problems.append(ProjectError("expected an object", "ui"))
    weights = d.get("weights")
    if weights is not None and not isinstance(weights, str):
        problems.append(ProjectError("expected the path of a .npz file", "weights"))
    name = d.get("name")
    if name is not None and not isinstance(name, str):
        problems.append(ProjectError(f"expected a text, got {quote(name)}", "name"))
    if strict:
        problems = soft + problems
    if problems:
        raise ProjectError(str(problems[0]), problems=problems)
    proj = Project(graph, dataset, training, ui, path, weights, name)
    proj.problems = soft
    return proj


MAX_DEPTH = 64  # nesting of a project file's JSON; the deepest valid one has about 8


def loads(text, path=None, strict=True):
    try:
        d = parse_json(text)
    except json.JSONDecodeError as e:
        raise ProjectError(f"not valid JSON (truncated or damaged?): {e.msg} at line {e.lineno} "
                           f"column {e.colno}") from None
    return from_dict(d, path, strict)


def parse_json(text, what="a project file"):
    """The JSON value of untrusted text within a project file's limits (nesting, integer
    digits), else ProjectError saying it is not `what`. Text that is no JSON at all raises
    json.JSONDecodeError, which the caller words (a pasted text is read here too)."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise ProjectError(f"not {what}: JSON nested more than {MAX_DEPTH} levels "
                           "deep") from None
    except ValueError as e:  # an integer of more than 4300 digits
        raise ProjectError(f"not {what}: {str(e).split(':')[0].lower()}") from None
    if _depth(d) > MAX_DEPTH:
        raise ProjectError(f"not {what}: JSON nested more than {MAX_DEPTH} levels deep")
    return d


def _depth(v):
    """How deeply v nests (without recursion: the parser accepts up to ~1000 levels)."""
    deepest, stack = 0, [(v, 1)]
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if d > MAX_DEPTH:
            break
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return deepest


def load(path, strict=True):
    return loads(read_text(path, "a project file"), path, strict)


def read_text(path, what, limit=None):
    """The UTF-8 text of the file at `path` (`what` it should be: "a project file"), at most
    `limit` bytes; ProjectError saying why it cannot be read."""
    try:
        size = os.path.getsize(path) if limit is not None else 0
        if limit is not None and size > limit:
            raise ProjectError(f"{size:,} bytes, more than the {limit:,} {what} may have")
        with open(path, "rb") as f:
            raw = f.read() if limit is None else f.read(limit + 1)
    except FileNotFoundError:
        raise ProjectError("no such file") from None
    except IsADirectoryError:
        raise ProjectError(f"is a folder, not {what}") from None
    except OSError as e:
        raise ProjectError(f"cannot read: {e.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProjectError(f"not UTF-8 text (byte {e.start})") from None


def flat(project):
    """The project with its block instances inlined (core/blocks.py flatten): what the
    exports write and the engine compiles. The project itself where it has none."""
    g = project.graph.flat()
    if g is project.graph:
        return project
    out = copy.copy(project)
    out.graph = g
    return out


def problems_of(project):
    """What `layerloom --run` would refuse in a project as it is in memory (the editor's
    Problems list), without a round trip through JSON. The graph's part is its analysis,
    which the canvas has computed already for this version."""
    hard, soft = [], []
    soft.extend(ProjectError(e.message, e.place, kind=e.kind, fields=e.fields)
                for e in project.graph.validate())
    parse_training(project.training, project.graph, hard, soft)
    if project.dataset:
        hard.extend(sources.check(project.dataset))
    return hard + soft


# -- writing --------------------------------------------------------------------------------
def node_dict(node):
    """A node as the file writes it; "trainable" only for a frozen one (older files and
    unfrozen nodes read the same), an Input's dtype only when it is not float32 (issue 28:
    files of float Inputs are written as before)."""
    decls = {p.name: p for p in node.layer.params}
    d = {"id": node.id, "type": node.type,
         "params": {k: decls[k].to_json(v) for k, v in node.params.items()
                    if not (node.layer.is_input and k == "dtype" and v == "float32")}}
    if not node.trainable:
        d["trainable"] = False
    if node.shares is not None:  # uses that node's weights (Keras' layer called twice)
        d["shares"] = node.shares
    return d


def to_dict(project):
    g = project.graph
    nodes = [node_dict(n) for n in g.nodes.values()]
    d = {
        "format": FORMAT,
        "version": VERSION,
        **({"name": project.name} if project.name else {}),
        **({"blocks": blocks_dict(g)} if g.blocks else {}),
        "graph": {"nodes": nodes,
                  "edges": [{"from": [e.src, e.src_port], "to": [e.dst, e.dst_port]}
                            for e in g.edges]},
        "dataset": project.dataset,
        "training": project.training,
        "ui": project.ui,
    }
    if project.weights:
        d["weights"] = project.weights
    return d


def dumps(project):
    return json.dumps(to_dict(project), indent=2, ensure_ascii=False) + "\n"


def trained_dict(project, folder, fitted, weights="weights.npz"):
    """The project as a file in `folder` beside its trained weights: dataset paths rewritten
    relative to that folder, and the fitted normalisation and categories recorded under
    dataset.fitted, so running or predicting with it prepares data exactly as in training."""
    d = to_dict(project)
    ds = dict(d.get("dataset") or {})

    def rel(p):
        return os.path.relpath(os.path.abspath(project.resolve(p)), os.path.abspath(folder))
    if isinstance(ds.get("path"), str):
        ds["path"] = rel(ds["path"])
    if isinstance(ds.get("arrays"), dict):
        ds["arrays"] = {k: rel(v) for k, v in ds["arrays"].items()}
    if fitted:
        ds["fitted"] = fitted
    d["dataset"] = ds
    d["weights"] = weights
    return d


def save(project, path=None):
    """Atomic save (temp file, fsync, rename); the previous version is kept as PATH.bak."""
    path = path or project.path
    atomic_write_text(path, dumps(project), backup=True)
    project.path = path
