"""A fine-tuning project from a trained one (issue 30, item 3): core/finetune.py's graph
transform with the data it is tuned on, the training section it needs and the weights it keeps.

    project, weights, plan = fine_tune_project(old, old_weights, cut="hidden",
                                               data="my_images/")

`data`: None (the project's own dataset), a folder of images (one subfolder per class, read at
the model's input size and colour) or a dataset section (a dict, as a project file holds). The
number of classes, or a regression target's shape, comes from that data unless given.
"""
import copy
import os

from layerloom.core.errors import DataError, GraphError, quote
from layerloom.core.finetune import fine_tune_graph, kept_weights
from layerloom.core.sections import training
from layerloom.project.loom import Project

STEP = 260  # the canvas' step from a node to the next, for the head's nodes
FOLDER_SPLIT = {"test": 0.2, "validation": 0.1, "seed": 0}


def image_folder_dataset(graph, folder):
    """The dataset section that reads image folder `folder` into the graph's one Input (its
    shape gives the size and colour: height, width, 1 or 3 channels)."""
    inputs = graph.inputs()
    if len(inputs) != 1:
        raise GraphError(f"an image folder feeds one Input; the model has {len(inputs)} "
                         f"({', '.join(inputs)})", "data")
    shape = tuple(graph.nodes[inputs[0]].params.get("shape") or ())
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise DataError(f"an image folder needs an Input of (height, width, 1 or 3); "
                        f"{quote(inputs[0])} is {shape}", "data")
    if not os.path.isdir(folder):
        raise DataError(f"image folder not found: {folder}", "data")
    return {"source": "images", "path": os.path.abspath(folder), "size": [shape[0], shape[1]],
            "color": "grayscale" if shape[2] == 1 else "rgb", "split": dict(FOLDER_SPLIT),
            "normalize": "scale", "inputs": {inputs[0]: "x"}, "targets": {}}


def carry_normalization(project, dataset):
    """Prepare the new data's inputs as the frozen body was trained: the source project's
    normalisation and the statistics its training fitted (renamed to the new data's arrays),
    or, for a model with no dataset of its own (imported), its inputs as the files hold them
    (a model that scales its own input, such as Keras' Rescaling, does it in the graph)."""
    from layerloom.data.prepare import default_normalization
    src = project.dataset or {}
    if not src:
        dataset["normalize"] = "none"
        return dataset
    dataset["normalize"] = src.get("normalize") or default_normalization(src)
    saved = (src.get("fitted") or {}).get("normalization") or {}
    ins = project.graph.inputs()
    old = src.get("inputs") or ({ins[0]: "x"} if len(ins) == 1 else {n: n for n in ins})
    new = dataset.get("inputs") or ({ins[0]: "x"} if len(ins) == 1 else {n: n for n in ins})
    stats = {new[nid]: saved[name] for nid, name in old.items() if nid in new and name in saved}
    dataset.pop("fitted", None)  # the rest (categories) is the new data's, fitted by training
    if stats:
        dataset["fitted"] = {"normalization": stats}
    return carry_vocabulary(project, dataset)


def carry_vocabulary(project, dataset):
    """The text layers' vocabularies the model was trained with (dataset.fitted.vocabulary,
    by node id): the kept Embedding's rows belong to those indices, so the new data is read
    through them, not through a vocabulary adapted on it."""
    fitted = (project.dataset or {}).get("fitted") or {}
    for key in ("vocabulary", "vocabulary_params"):  # the lists, and what shaped each
        if fitted.get(key):
            dataset.setdefault("fitted", {})[key] = copy.deepcopy(fitted[key])
    return dataset


def absolute_paths(dataset, project):
    """The dataset section with its file paths (path, arrays) made absolute against
    `project`'s folder: the fine-tuning project is new and untitled, elsewhere."""
    d = copy.deepcopy(dataset or {})
    if isinstance(d.get("path"), str) and d["path"]:
        d["path"] = project.resolve(d["path"])
    if isinstance(d.get("arrays"), dict):
        d["arrays"] = {k: project.resolve(v) if isinstance(v, str) else v
                       for k, v in d["arrays"].items()}
    return d


def _target_name(d):
    targets = d.get("targets") or {}
    if len(targets) > 1:
        raise DataError(f"the dataset has {len(targets)} targets ({', '.join(targets)}); a "
                        "fine-tuned model has one output: keep one target", "data.targets")
    return next(iter(targets.values()), "y")


def data_target(project, dataset):
    """(classes, None) for a classification dataset, (None, per-sample target shape) for a
    regression one, read from the data (an image folder: its class folders, not its images)."""
    if dataset.get("source") == "images":
        from layerloom.data import imagefolder
        path = dataset.get("path", "")
        classes, _ = imagefolder.scan(project.resolve(path) if path else path,
                                      "data")["train"]
        return len(classes), None
    from layerloom.data.prepare import load_arrays
    probe = Project(project.graph, dataset=dataset, training=project.training,
                    path=project.path)
    arrays = load_arrays(probe)
    if arrays.classes:
        return int(arrays.classes), None
    y = arrays.train.get(_target_name(dataset))
    if y is None:
        raise DataError(f"the dataset has no target array {quote(_target_name(dataset))}",
                        "data.targets")
    return None, tuple(int(d) for d in y.shape[1:]) or (1,)


def fine_tune_project(project, weights, cut=None, data=None, classes=None, target_shape=None):
    """(new Project, the weights it keeps, core.finetune.FineTunePlan). The new project reads
    `data` (see the module's note), trains the head with the low learning rate, keeps the
    canvas places of the kept nodes and puts the head after the cut."""
    if isinstance(data, (str, os.PathLike)):
        dataset = carry_normalization(project, image_folder_dataset(project.graph,
                                                                    os.fspath(data)))
    elif isinstance(data, dict):
        dataset = absolute_paths(data, project)
        dataset.pop("fitted", None)  # the user's section: its statistics fitted by training
        carry_vocabulary(project, dataset)  # but the body's vocabularies kept
    elif data is None:
        dataset = absolute_paths(project.dataset, project)
        if not dataset and classes is None and target_shape is None:
            raise DataError("the project has no dataset: give an image folder or a dataset "
                            "section (or the classes, to fit on arrays)", "data")
        if dataset:
            dataset = carry_normalization(project, dataset)
    else:
        raise DataError(f"expected an image folder or a dataset section, got "
                        f"{type(data).__name__}", "data")
    if classes is None and target_shape is None:
        classes, target_shape = data_target(project, dataset)
    plan = fine_tune_graph(project.graph, cut, classes, target_shape,
                           project.training.get("optimizer"),
                           training("optimizers").kinds)
    if dataset:  # none: fit(x, y) on arrays
        dataset["targets"] = {plan.output: _target_name(dataset)}
        if "inputs" in dataset:
            dataset["inputs"] = {k: v for k, v in (dataset["inputs"] or {}).items()
                                 if k in plan.graph.nodes}
    t = copy.deepcopy(project.training)
    t.update({"loss": plan.loss, "metrics": plan.metrics, "optimizer": plan.optimizer})
    places = dict((project.ui or {}).get("positions") or {})
    pos = {k: list(v) for k, v in places.items() if k in plan.graph.nodes}
    if len(pos) == len(plan.kept):
        x, y = pos[plan.cut]
        for i, nid in enumerate(plan.head, 1):
            pos[nid] = [x + STEP * i, y]
    else:
        from layerloom.core.layout import auto_layout
        pos = {k: list(p) for k, p in auto_layout(plan.graph).items()}
    name = f"{project.name or 'model'} fine-tuned"
    new = Project(plan.graph, dataset=dataset, training=t, ui={"positions": pos}, name=name)
    return new, kept_weights(weights, plan.kept), plan
