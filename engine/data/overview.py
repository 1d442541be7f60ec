"""What the editor's Data tab shows of a project's dataset, computed without Qt on the code path
of `layerloom --run`: the columns of a CSV file with their roles, the sizes of the splits, class
counts, a few images per class, and how the arrays map onto the graph's inputs and outputs (or
why they do not)."""
import numpy as np

from layerloom.core.errors import LayerloomError
from layerloom.core.graph import fmt_shape
from layerloom.data import tabular, tabular_columns

PREVIEW_ROWS = 50
THUMBS_PER_CLASS, MAX_THUMBS = 4, 32


def overview(proj, progress=None):
    """A dict of what there is to show of Project `proj` (as project/loom.py reads it, with
    strict=False: a project still unfinished). "error": why the dataset cannot be read (with
    what could be shown before that: a CSV file's columns, to fix their roles); "check": why
    the arrays do not fit the graph (None when they do). progress(path, done, total, unit):
    while the data is read, as `layerloom --run` gets it; a progress that raises
    (engine/data/cancel.py's Cancelled) ends the read with that exception."""
    from layerloom.data.prepare import load_arrays
    info = {}
    try:
        if not proj.dataset:
            return {"error": "No dataset chosen."}
        table_info, table = _table(proj, progress)
        info.update(table_info)
        arrays = load_arrays(proj, progress, table=table)
        info["description"] = arrays.description
        info["sizes"] = {k: len(next(iter(v.values()))) for k, v in
                         (("training", arrays.train), ("validation", arrays.validation),
                          ("test", arrays.test)) if v}
        info.update(_classes(arrays))
        info.update(_fit(proj, arrays))
        return info
    except LayerloomError as e:
        info["error"] = str(e)
        return info


def _table(proj, progress=None):
    """The CSV file's columns, their roles and its first rows (nothing for other sources)."""
    d = proj.dataset
    if d.get("source") != "csv":
        return {}, None
    t = tabular.read(proj.resolve(d["path"]), d.get("delimiter", "auto"), d.get("header", "auto"),
                     progress=progress)
    roles = tabular_columns.roles(t, d.get("columns"))
    settings = d.get("columns") or {}
    columns = [(c.name, "number" if c.numeric else f"text, {len(c.categories)} values",
                len(c.missing), roles[c.name], settings.get(c.name, {}).get("encoding", "auto"))
               for c in t.columns]
    return {"columns": columns, "header": t.names, "rows": t.preview(PREVIEW_ROWS)}, t


def _classes(arrays):
    """Counts per class and, for images, the first few of each class."""
    out = {}
    y = arrays.train.get("y")
    if y is None or not arrays.classes:
        return out
    yy = np.asarray(y, np.int64).reshape(-1)
    counts = np.bincount(yy, minlength=arrays.classes)
    names = arrays.class_names or [str(i) for i in range(len(counts))]
    out["counts"] = list(zip(names, counts.tolist()))
    x = arrays.train.get("x")
    if x is not None and getattr(x, "ndim", 0) == 4:
        picks = [i for k in range(arrays.classes)
                 for i in np.flatnonzero(yy == k)[:THUMBS_PER_CLASS]][:MAX_THUMBS]
        out["thumbs"] = [(np.asarray(x[np.array([i])])[0], int(yy[i])) for i in picks]
        out["class_names"] = arrays.class_names
    return out


def _fit(proj, arrays):
    """How the arrays map onto the graph ("mapping"), a warning about outputs wider than the
    classes, or why they do not fit ("check")."""
    from layerloom.data.prepare import prepare_data
    try:
        data = prepare_data(proj, arrays)
    except LayerloomError as e:  # placed at the Input or output it concerns, when it is one
        place = str(e.place or "")
        node = place.split(".", 2)[2] if place.startswith(("dataset.inputs.",
                                                             "dataset.targets.")) else None
        return {"check": str(e), "check_node": node if node in proj.graph.nodes else None,
                "check_message": e.message, "check_problem": e}
    shapes = proj.graph.analysis().shapes

    def shape(n):  # unknown where the graph has a problem upstream (listed in Problems)
        return fmt_shape(shapes[n][0]) if n in shapes else "(shape unknown: see Problems)"
    out = {"check": None, "mapping": (
        [f"{a} -> Input '{n}' {shape(n)}" for n, a in data.mapping["inputs"].items()]
        + [f"{a} -> target of '{n}' {shape(n)}" for n, a in data.mapping["targets"].items()])}
    from layerloom.core.fixes import implied_loss, output_activation
    # the loss each output's activation and targets leave no doubt about (the editor sets it)
    implied = {n: implied_loss(output_activation(proj.graph, n), shapes[n][0][-1], data.y[n])
               for n in data.mapping["targets"] if n in shapes and n in data.y}
    out["implied_loss"] = {n: name for n, name in implied.items() if name}
    for n, a in data.mapping["targets"].items():
        if n not in shapes:
            continue
        units = shapes[n][0][-1]
        if a == "y" and arrays.classes and units > arrays.classes:
            out["warning"] = (f"the data has {arrays.classes} classes but output '{n}' has "
                              f"{units} units; {units - arrays.classes} will never be the "
                              f"answer (set its units to {arrays.classes})")
    return out
