"""Plugins: what installed packages add to Layerloom's registries, through Python entry points.

A distribution declares its additions in its own pyproject.toml, one entry point per group:

    [project.entry-points."layerloom.layers"]
    my_layers = "my_package.layers"              # a module whose import registers (@register)
    [project.entry-points."layerloom.sources"]
    my_sources = "my_package.data:register_all"  # or a function, called with no arguments

| group | registers with |
| --- | --- |
| `layerloom.layers` | `layerloom.core.registry.register` (a class decorator on a `Layer`) |
| `layerloom.sources` | `layerloom.data.sources.register(Source(...))` |
| `layerloom.losses` | `layerloom.train.losses.register(LossKind(...))` |
| `layerloom.metrics` | `layerloom.train.metrics.register(MetricKind(...))` |

Each registry loads its built-ins first, through the same public register, then calls
`load_plugins(group)`, which loads the group's entry points once per process. A plugin that
fails (it does not import, its register refuses a name already taken, it raises) is skipped:
the failure is reported once, as a PluginWarning naming the plugin and its distribution, and
kept in `problems()` for the editor and the command line to show; the built-ins and the other
plugins still work.

Built-ins that a lower room's registry needs from a higher room are loaded the way a plugin is,
by name, from BUILTIN below: the layer registry (core) loads the layer declarations (layers/),
and the training section's declarations (core/sections.py, asked for by project/) come from
train/. Core never imports those rooms; this table is the one place that names them, and
tests/test_layers_of_imports.py checks that no other module imports by a name in a string.
"""
import importlib
import importlib.metadata
import pkgutil
import warnings

GROUPS = ("layerloom.layers", "layerloom.sources", "layerloom.losses", "layerloom.metrics")

# what a registry in a lower room loads as its built-ins, by name: a package (each of its
# modules is imported) or a module
BUILTIN = {
    "layerloom.layers": "layerloom.layers",  # every category module registers its layers
    "layerloom.training": "layerloom.train.training_section",
}


class PluginWarning(UserWarning):
    """An installed plugin could not be loaded; Layerloom goes on without it."""


_loaded = {}  # group: [problem lines], once loaded


def load_builtins(group):
    """Import the built-in modules BUILTIN names for `group` (a package: each of its modules).
    A built-in that fails raises: the built-ins must work."""
    name = BUILTIN[group]
    module = importlib.import_module(name)
    if hasattr(module, "__path__"):
        for sub in pkgutil.iter_modules(module.__path__):
            importlib.import_module(f"{name}.{sub.name}")
    return module


def _entry_points(group):
    return importlib.metadata.entry_points(group=group)


def _label(ep):
    dist = getattr(ep, "dist", None)
    where = f" from {dist.name} {dist.version}" if dist is not None else ""
    return f"{ep.name!r} ({ep.value}{where})"


def load_plugins(group):
    """Load the entry points of `group` once: each names a module (importing it registers what
    it declares) or a function (called with no arguments, it registers). Returns the problem
    lines of the plugins that failed, each said once as a PluginWarning."""
    if group in _loaded:
        return _loaded[group]
    problems = _loaded[group] = []
    try:
        found = list(_entry_points(group))
    except Exception as e:  # a broken installed distribution's metadata: no plugins then
        found = []
        problems.append(f"the {group} plugins could not be listed: {type(e).__name__}: {e}")
        warnings.warn(problems[-1], PluginWarning, stacklevel=2)
    for ep in found:
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, type):
                obj()
        except Exception as e:  # whatever a plugin raises, Layerloom goes on without it
            problems.append(f"the {group} plugin {_label(ep)} was not loaded: "
                            f"{type(e).__name__}: {e}")
            warnings.warn(problems[-1], PluginWarning, stacklevel=2)
    return problems


def add_named(kinds, aliases, kind, what):
    """Add `kind` (with .name and .aliases) to a table {name: kind} and its aliases to
    {alias: name}, refusing (ValueError) a name or alias already taken, in which case neither
    table changes: the register of a table of named kinds (losses; metrics may share it).
    Returns the names in order of registration."""
    taken = {**{n: n for n in kinds}, **aliases}
    for word in (kind.name,) + tuple(kind.aliases):
        if word in taken:
            raise ValueError(f"{what} {word!r} is registered twice"
                             + (f" (a name of {taken[word]!r})" if taken[word] != word else ""))
        taken[word] = kind.name
    kinds[kind.name] = kind
    aliases.update({a: kind.name for a in kind.aliases})
    return tuple(kinds)


def problems():
    """Every plugin failure so far, one line each."""
    return [p for group in _loaded.values() for p in group]
