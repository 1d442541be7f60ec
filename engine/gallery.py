"""The gallery of bundled example projects, as the editor's File > Open Example lists them.

They install with the package (layerloom/examples/: each .loom and the data files it names);
in a source checkout they are read from assets/examples/. An example is opened as a copy in a
folder of the user's (copy()), so training, saving and the weights written beside it never
touch the installed files."""
import json
import os
import shutil
from dataclasses import dataclass

__all__ = ["Example", "folder", "examples", "copy"]


@dataclass(frozen=True)
class Example:
    key: str      # the file name without .loom: "spirals"
    path: str     # the installed .loom
    title: str    # the project's name: "Two spirals"
    summary: str  # one line: the graph and the data


def folder():
    """Where the examples are: the installed package's, else the source checkout's."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(here, "examples"),
                      os.path.join(os.path.dirname(here), "assets", "examples")):
        if os.path.isdir(candidate):
            return candidate
    return None


def _keras_data(name):
    """A Keras dataset as a card names it: here already, or what its first use downloads."""
    from layerloom.data import keras_sets
    spec = keras_sets.DATASETS.get(name) if isinstance(name, str) else None
    if spec is None:
        return str(name or "a Keras dataset")
    if keras_sets.local_folder(name):
        return f"{name} (on disk)"
    return f"{name} (downloaded on first use, about {spec['download_mb']} MB)"


def _summary(project):
    g, d = project.get("graph") or {}, project.get("dataset") or {}
    nodes = g.get("nodes") or []
    layers = [n.get("type") for n in nodes if n.get("type") != "Input"]
    kinds = sorted(set(layers), key=layers.index)
    data = {"synthetic": f"synthetic {d.get('name', '')}".strip(),
            "keras": _keras_data(d.get("name")),
            "csv": f"the CSV file {os.path.basename(str(d.get('path', '')))}",
            "images": "a folder of images"}.get(d.get("source"), str(d.get("source")))
    return f"{len(layers)} layers ({', '.join(kinds[:4])}{', ...' if len(kinds) > 4 else ''}); {data}"


def examples():
    """The bundled examples, sorted by title; an unreadable file is left out."""
    root = folder()
    out = []
    for name in sorted(os.listdir(root)) if root else []:
        if not name.endswith(".loom"):
            continue
        path = os.path.join(root, name)
        try:
            with open(path, encoding="utf-8") as f:
                project = json.load(f)
        except (OSError, ValueError):
            continue
        key = name[:-5]
        out.append(Example(key, path, str(project.get("name") or key), _summary(project)))
    return sorted(out, key=lambda e: e.title.lower())


def _data_paths(path):
    with open(path, encoding="utf-8") as f:
        d = json.load(f).get("dataset") or {}
    paths = [d["path"]] if isinstance(d.get("path"), str) else []
    paths += [p for p in (d.get("arrays") or {}).values() if isinstance(p, str)]
    return [p for p in paths if not os.path.isabs(p) and ".." not in p.replace("\\", "/").split("/")]


def copy(example, into):
    """Copy the example's .loom and the data it names into a new folder under `into`
    (into/spirals, into/spirals-2, ...). Returns the copied .loom's path."""
    base = os.path.join(into, example.key)
    dest, n = base, 1
    while os.path.exists(dest):
        n += 1
        dest = f"{base}-{n}"
    src_root = os.path.dirname(example.path)
    os.makedirs(dest)
    for rel in _data_paths(example.path):
        src, target = os.path.join(src_root, rel), os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target) or dest, exist_ok=True)
        if os.path.isdir(src):
            shutil.copytree(src, target)
        elif os.path.isfile(src):
            shutil.copy2(src, target)
    target = os.path.join(dest, os.path.basename(example.path))
    shutil.copy2(example.path, target)
    return target
