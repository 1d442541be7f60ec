"""The dataset sources, each declared once, beside its loader: synthetic sets
(data/synthetic.py), Keras' built-in sets (data/keras_sets.py), .npz, CSV/TSV, image folders and
.npy files (data/userdata.py). A declaration gives what the project file's dataset section may
hold for the source (Params: validation and the file-format docs come from them), how to load
it, the names of its arrays, its default normalisation, whether it brings its own test split,
its class names, and how the editor offers it. A new source is one declaration; an installed
package adds sources with `register`, through the entry point group layerloom.sources."""
import importlib
from dataclasses import dataclass
from typing import Callable

from layerloom.core import plugins
from layerloom.core.errors import DataError, ProjectError, quote
from layerloom.core.params import Float, Int
from layerloom.core.sections import Group, MapOf, Object, Option, Str, check_section
from layerloom.data.preprocess import NORMALIZATIONS


@dataclass(frozen=True)
class Source:
    name: str
    help: str
    keys: tuple  # Params: the source's own keys of the dataset section
    # load(d, project, progress=None, table=None) -> Arrays with the project's split applied;
    # progress(url, done, total) while a download runs, table: a CSV file already read
    load: Callable
    # array_names(d, project) -> sorted training array names, without loading the data
    array_names: Callable
    brings_test_split: bool = False  # True: the split's "test" fraction never applies
    normalization: str = "none"  # the default the Data tab proposes
    class_names: Callable = None  # class_names(d) -> label names or None
    # form(d) -> {array name: data.forms.ImageForm}: what the source itself does to its raw
    # arrays (channel axis, pixel scaling, image size and colour), which a trained model keeps
    form: Callable = None
    # the editor's training dock: "named" lists each of `choices`, "file" opens a file dialog
    # with `file_filter`, "data_tab" hands over to the Data tab, None: not offered there
    editor: str = None
    choices: tuple = ()
    label: str = ""  # the dock's entry for "file" and "data_tab" sources
    file_filter: str = ""


_SOURCES = {}
_MODULES = ("synthetic", "keras_sets", "userdata", "textfolder")  # the modules that declare sources
_loaded = False


def register(source):
    """Add a dataset source; the built-ins (the modules of _MODULES) and installed plugins
    (entry point group layerloom.sources) register this way. Refuses a name already taken
    (ValueError). Returns the source."""
    if not isinstance(source, Source):
        raise TypeError(f"expected a Source, got {type(source).__name__}")
    if source.name in _SOURCES:
        raise ValueError(f"dataset source {source.name!r} registered twice")
    _SOURCES[source.name] = source
    return source


def _load_all():
    """The built-in sources, then the installed plugins' (a broken one is reported and
    skipped: core/plugins.py)."""
    global _loaded
    if not _loaded:
        _loaded = True
        for m in _MODULES:
            importlib.import_module(f"layerloom.data.{m}")
        plugins.load_plugins("layerloom.sources")


def all_sources():
    """Every declared source, in the order of _MODULES and of declaration in each (not of
    import: whichever module a program imports first), then the plugins' as registered."""
    _load_all()
    order = {n: i for i, n in enumerate(f"layerloom.data.{m}" for m in _MODULES)}
    seq = list(_SOURCES)
    return sorted(_SOURCES.values(),
                  key=lambda s: (order.get(s.load.__module__, len(order)), seq.index(s.name)))


def get(name):
    _load_all()
    return _SOURCES.get(name) if isinstance(name, str) else None


def source_of(d, place="dataset"):
    """The declaration of dataset section d's source, or a DataError."""
    if not d:
        raise DataError("the project has no dataset", place)
    s = get(d.get("source"))
    if s is None:
        raise DataError(f"unknown dataset source {quote(d.get('source'))}", f"{place}.source")
    return s


SPLIT = (
    Float("test", 0.0, min=0.0, max=1.0, max_exclusive=True,
          help="Fraction of the rows held out for testing, where the source has no test split."),
    Float("validation", 0.0, min=0.0, max=1.0, max_exclusive=True,
          help="Fraction of the training rows held out for validation."),
    Int("seed", 0, min=0, help="Seeds the split."),
)
# the keys every source's dataset section may hold
COMMON = (
    MapOf("inputs", Str(), "an object {node_id: array_name}",
          help="The array each Input node reads."),
    MapOf("targets", Str(), "an object {node_id: array_name}",
          help="The array each output node is trained towards."),
    Group("split", SPLIT, help="Rows held out for validation and testing."),
    Option("normalize", "none", NORMALIZATIONS, help="Normalisation fitted on the training rows."),
    Object("fitted", help="Statistics and categories recorded by training (written by Layerloom)."),
)


def check(d, place="dataset"):
    """Problems of a project's dataset section, from the declarations."""
    if not isinstance(d, dict):
        return [ProjectError("expected an object", place)]
    if not d:
        return []  # no dataset chosen yet: fine for editing, refused by --run
    rest = {k: v for k, v in d.items() if k != "source"}
    s = get(d.get("source"))
    if s is not None:
        return check_section(COMMON + s.keys, rest, place)
    if "source" not in d and set(d) <= {p.name for p in COMMON}:
        # no data chosen yet, but what a model brings (an imported model's input
        # normalisation: fitted, normalize, inputs) is kept for when it is
        return check_section(COMMON, rest, place)
    names = ", ".join(f'"{s.name}"' for s in all_sources())
    common = {k: v for k, v in rest.items() if k in {p.name for p in COMMON}}
    return ([ProjectError(f"expected one of {names}; got {quote(d.get('source'))}",
                          f"{place}.source")] + check_section(COMMON, common, place))


def reference():
    """Markdown: each source with its keys, for docs/file-format.md (a test keeps it equal)."""
    rows = ["| source | keys | what it is |", "| --- | --- | --- |"]
    for s in all_sources():
        keys = "<br>".join(f"`{p.name}`: {p.describe()}".replace("|", "\\|")
                           for p in s.keys) or "none"
        rows.append(f"| `{s.name}` | {keys} | {s.help} |")
    common = "<br>".join(f"`{p.name}`: {p.describe()}" for p in COMMON)
    rows.append(f"| every source | {common} | |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # the registry is the imported module's, not __main__'s
    from layerloom.data.sources import reference as _reference
    print(_reference(), end="")
