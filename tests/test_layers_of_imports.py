"""The engine's rooms import downwards only, and no circle of imports crosses two rooms
(docs/architecture.md, "Rooms and their order"). Every engine module's imports are read from its
source with ast, those inside functions included, as well as importlib.import_module calls
whose module name is written out."""
import ast
import pathlib

ENGINE = pathlib.Path(__file__).resolve().parent.parent / "engine"

# lowest first: a room may import its own modules and those of rooms before it, never one after
# it. A room is a subpackage of layerloom or a module at its top (gallery, api, testing: the
# public layer harness); clkernels is the kernel sources' folder (it imports nothing of ours);
# cli is the command line.
ORDER = ("clkernels", "core", "backend", "layers", "data", "gallery", "project", "train",
         "interop", "api", "testing", "cli")

# (importer, imported): why. Each is an arrow back up that is known and left; a test below
# fails when one of them no longer exists, so the list only shrinks.
ALLOWED = {}

# modules that may import a module whose name is not written out (a variable): the plugin
# loader (its BUILTIN table and installed entry points) and the package's lazy exports
DYNAMIC = {"layerloom.core.plugins", "layerloom"}


def _modules():
    """{module name: path} for every module under engine/."""
    out = {}
    for path in sorted(ENGINE.rglob("*.py")):
        parts = list(path.relative_to(ENGINE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(["layerloom"] + parts)] = path
    return out


MODULES = _modules()


def _room(name):
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the package itself


def _target(name):
    """The module `name` stands for: itself, else its longest enclosing module."""
    while name not in MODULES and "." in name:
        if name == "layerloom.clkernels" or name.startswith("layerloom.clkernels."):
            return "layerloom.clkernels"
        name = name.rsplit(".", 1)[0]
    return name


def _dynamic_name(call):
    """The module an importlib.import_module / __import__ call names in writing, or None; "?"
    where it is not written out."""
    f = call.func
    named = (isinstance(f, ast.Attribute) and f.attr == "import_module") or \
        (isinstance(f, ast.Name) and f.id in ("import_module", "__import__"))
    if not named or not call.args:
        return None
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return arg.values[0].value.rstrip(".")  # f"layerloom.data.{m}": within layerloom.data
    return "?"


def _imports(name, path):
    """[(imported module, line)] of module `name`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                up = up[:len(up) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            for a in node.names:  # from package import module: the module
                sub = f"{base}.{a.name}"
                found.append((sub if sub in MODULES or sub.startswith("layerloom.clkernels")
                              else base, node.lineno))
        elif isinstance(node, ast.Call):
            written = _dynamic_name(node)
            if written is not None:
                found.append((written, node.lineno))
    return [(m, line) for m, line in found if m == "?" or m == "layerloom"
            or m.startswith("layerloom.")]


def _graph():
    edges = {}
    for name, path in MODULES.items():
        for target, line in _imports(name, path):
            edges.setdefault(name, {}).setdefault(_target(target) if target != "?" else "?",
                                                  line)
    return edges


EDGES = _graph()


def test_every_room_has_its_place():
    rooms = {_room(n) for n in MODULES} - {None}
    assert rooms <= set(ORDER), f"place these rooms in ORDER: {sorted(rooms - set(ORDER))}"


def test_no_import_runs_back_up():
    rank = {room: i for i, room in enumerate(ORDER)}
    back = []
    for a, targets in EDGES.items():
        for b, line in targets.items():
            if b in ("?", "layerloom") or _room(a) is None:
                continue
            if rank[_room(b)] > rank[_room(a)] and (a, b) not in ALLOWED:
                back.append(f"{MODULES[a].relative_to(ENGINE.parent)}:{line} imports {b}")
    assert not back, "imports back up the rooms (docs/architecture.md):\n" + "\n".join(back)


def test_the_allowed_arrows_still_exist():
    gone = [edge for edge in ALLOWED if edge[1] not in EDGES.get(edge[0], {})]
    assert not gone, f"no longer imported, take them off ALLOWED: {gone}"


def test_nothing_is_imported_from_the_package_itself():
    """`import layerloom` (for __version__) is fine: Python imports the package before any of
    its modules. A name the package exports lazily would hide which module is imported."""
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "layerloom" \
                    and not node.level:
                for a in node.names:
                    assert f"layerloom.{a.name}" in MODULES or a.name == "clkernels", \
                        f"{path}:{node.lineno} imports {a.name} from the package itself"


def test_only_the_plugin_loader_imports_by_a_name_it_computes():
    others = [f"{MODULES[a].relative_to(ENGINE.parent)}:{line}"
              for a, targets in EDGES.items() for b, line in targets.items()
              if b == "?" and a not in DYNAMIC]
    assert not others, "modules importing by a computed name (a way around this test):\n" + \
        "\n".join(others)


def _circles():
    """Strongly connected components of more than one module (Tarjan's, iterative)."""
    graph = {a: [b for b in targets if b in MODULES] for a, targets in EDGES.items()}
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in MODULES:
        if root in index:
            continue
        work = [(root, iter(graph.get(root, ())))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(graph.get(w, ()))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_circle_crosses_rooms():
    crossing = [c for c in _circles() if len({_room(m) for m in c}) > 1]
    assert not crossing, f"import circles across rooms: {crossing}"


# circles inside one room that are known (the command line moving in from app/, issue 27)
CIRCLES_IN_A_ROOM = [["layerloom.cli.launch", "layerloom.cli.main"]]


def test_no_other_circle_inside_a_room():
    """Within a room a circle is legal Python but still a knot (backend's capabilities and
    runtime were one: the probe's child process now lives in probe_child.py)."""
    inside = [c for c in _circles() if len({_room(m) for m in c}) == 1]
    assert all(c in CIRCLES_IN_A_ROOM for c in inside), f"import circles: {inside}"


def test_the_checks_see_what_they_should():
    """The reader finds imports inside functions, relative ones and written-out dynamic ones,
    and the circle finder finds a circle (the test would pass vacuously otherwise)."""
    assert "layerloom.core.fileio" in EDGES["layerloom.backend.drivers"]  # inside a function
    assert "layerloom.core.errors" in EDGES["layerloom.core.fixes"]  # from .errors import
    assert "layerloom.data" in EDGES["layerloom.data.sources"]  # import_module(f"...{m}")
    saved = dict(EDGES)
    try:
        EDGES["layerloom.core.errors"] = {**EDGES.get("layerloom.core.errors", {}),
                                          "layerloom.project.loom": 1}
        assert any("layerloom.core.errors" in c for c in _circles())
    finally:
        EDGES.clear()
        EDGES.update(saved)
