"""Block files and the block library: block types kept outside a project, to reuse.

A block file (`.lblock`, JSON) holds one or more block types in the project file's "blocks"
form, each after those it uses:

    {"format": "layerloom-blocks", "version": 1, "blocks": {"ResBlock": {...}}}

The library is the bundled blocks (layerloom/examples/blocks/, from assets/examples/blocks/)
and the user's (the folder `user_folder()`, where Export Block writes); the editor's palette
lists both under "Blocks". A block file is untrusted input: it is read with the project
file's checks and limits, and a broken one is left out of the library with its reason.
"""
import json
import os

from layerloom.core import blocks as block_kit
from layerloom.core.errors import ProjectError, quote
from layerloom.core.fileio import atomic_write_text
from layerloom.core.sections import unknown_keys
from layerloom.project import loom

FORMAT = "layerloom-blocks"
VERSION = 1
SUFFIX = ".lblock"
MAX_FILE_BYTES = 16 * 2**20  # a block file is text a person could read: 16 MiB is plenty


def bundled_folder():
    """The bundled block files: the installed package's, else the source checkout's."""
    from layerloom import gallery
    root = gallery.folder()
    path = os.path.join(root, "blocks") if root else None
    return path if path and os.path.isdir(path) else None


def user_folder():
    """Where the user's block files are kept: $LAYERLOOM_BLOCKS, else
    $XDG_DATA_HOME/layerloom/blocks (~/.local/share/layerloom/blocks)."""
    if os.environ.get("LAYERLOOM_BLOCKS"):
        return os.environ["LAYERLOOM_BLOCKS"]
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                             "share")
    return os.path.join(data, "layerloom", "blocks")


def loads(text, known=None):
    """{name: BlockType} of a block file's text; known: block types its blocks may use
    besides their own (a project's). ProjectError with every problem placed."""
    try:
        d = loom.parse_json(text, "a block file")
    except json.JSONDecodeError as e:
        raise ProjectError(f"not valid JSON (truncated or damaged?): {e.msg} at line {e.lineno} "
                           f"column {e.colno}") from None
    loom.format_version(d, FORMAT, VERSION, "block file", "block file version")
    problems = list(unknown_keys(d, {"format", "version", "blocks"}, ""))
    if not isinstance(d.get("blocks"), dict) or not d["blocks"]:
        problems.append(ProjectError("expected an object of block types by name", "blocks"))
    got = loom.parse_blocks(d.get("blocks"), problems, known=known) if not problems else {}
    if problems:
        raise ProjectError(str(problems[0]), problems=problems)
    return {name: bt for name, bt in got.items() if name in d["blocks"]}


def read(path, known=None):
    """{name: BlockType} of the block file at `path` (see loads)."""
    return loads(loom.read_text(path, "a block file", MAX_FILE_BYTES), known)


def dumps(graph, names):
    """The text of a block file holding block types `names` of `graph` and those they use."""
    order, seen = [], set()
    for name in names:
        probe = type(graph)(blocks=graph.blocks)
        probe.add_node(name, None, id="probe")  # its dependencies, each before its user
        for dep in block_kit.used_blocks(probe):
            if dep not in seen:
                seen.add(dep)
                order.append(dep)
    d = {"format": FORMAT, "version": VERSION, "blocks": loom.blocks_dict(graph, order)}
    return json.dumps(d, indent=2, ensure_ascii=False) + "\n"


def write(path, graph, names):
    """Write block types `names` of `graph` (with those they use) to `path`, atomically."""
    atomic_write_text(path, dumps(graph, names))


class Entry:
    """A block type of the library: its name, help, the file it is in and whether it is
    bundled; types: every block type that file holds (its dependencies with it)."""

    def __init__(self, name, help, path, bundled, types):
        self.name, self.help, self.path, self.bundled, self.types = (name, help, path, bundled,
                                                                     types)


def library():
    """(entries by name, problems): the bundled blocks, then the user's (a user's block of a
    bundled name is listed instead of it). A file that cannot be read is left out and said
    in problems as "path: reason"."""
    entries, problems = {}, []
    for folder, bundled in ((bundled_folder(), True), (user_folder(), False)):
        if not folder or not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if not name.endswith(SUFFIX):
                continue
            path = os.path.join(folder, name)
            try:
                types = read(path)
            except ProjectError as e:
                problems.append(f"{path}: {e}")
                continue
            for bt in types.values():
                entries[bt.type_id] = Entry(bt.type_id, bt.help, path, bundled, types)
    return entries, problems


def needed(entry, graph):
    """The block types adding `entry`'s block to `graph` defines first, in order: it and those
    it uses that the graph does not have. ProjectError where the graph has a block of one of
    those names that is not the same."""
    out = []
    for name in block_kit.used_blocks(_probe(entry)):
        bt = entry.types[name]
        have = graph.blocks.get(name)
        if have is None:
            out.append(bt)
        elif loom.block_dict(have) != loom.block_dict(bt):
            raise ProjectError(f"the project has another block called {quote(name)}; rename "
                               "one of them before adding this one")
    return out


def _probe(entry):
    from layerloom.core.graph import Graph
    g = Graph(blocks=entry.types)
    g.add_node(entry.name, None, id="probe")
    return g
