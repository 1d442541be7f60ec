"""After training: for a classifier the confusion matrix on the test split (or the last part
of the training data) and a few samples with predicted and true labels; for an image output
(an autoencoder) inputs beside what the model made of them; for any other output its
predicted against its true values. For the editor's Results tab. Pure numpy."""
import numpy as np

from layerloom.data import sources

CLASSIFICATION = {"sparse_categorical_crossentropy", "categorical_crossentropy"}


def class_names(project, n, names=None):
    if names is not None and len(names) == n:
        return [str(v) for v in names]
    d = project.dataset
    s = sources.get(d.get("source"))
    names = s.class_names(d) if s and s.class_names else None
    if names and len(names) == n:
        return list(names)
    return [str(i) for i in range(n)]


def classification_results(session, data, samples=24, limit=10000):
    """None unless the graph has a softmax-style classification output; otherwise
    {"output", "split", "classes", "matrix", "accuracy", "samples": [(image, pred, true)]}."""
    project = session.project
    out = next((o for o, l in session.losses.items() if l.name in CLASSIFICATION), None)
    if out is None:
        return None
    x, y, split = _shown_split(data, limit)
    truth = np.asarray(y[out][:limit])
    probs = session.model.predict(x)[out]
    C = probs.shape[-1]
    pred = probs.reshape(-1, C).argmax(-1)
    true = (truth.reshape(-1).astype(int) if session.losses[out].sparse
            else truth.reshape(-1, C).argmax(-1))
    matrix = np.zeros((C, C), np.int64)
    np.add.at(matrix, (true, pred), 1)
    shown = []
    images = [k for k, v in x.items() if v.ndim == 4 and v.shape[-1] in (1, 3)]
    if images and probs.ndim == 2:
        imgs = x[images[0]]
        for i in range(min(samples, len(imgs))):
            shown.append((imgs[i], int(pred[i]), int(true[i])))
    return {"kind": "classification", "output": out, "split": split,
            "classes": class_names(project, C, getattr(data, "class_names", None)),
            "matrix": matrix, "accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)),
            "samples": shown}


def _shown_split(data, limit):
    """(x, y, split's name) the results are taken on: the test split, else the last samples
    of the training data; at most `limit` samples."""
    if data.test is not None:
        x, y, split = data.x_test, data.y_test, "test"
    else:
        n = len(next(iter(data.x.values())))
        k = min(n, limit)
        x = {kk: v[n - k:] for kk, v in data.x.items()}
        y = {kk: v[n - k:] for kk, v in data.y.items()}
        split = "training data (last samples)"
    return {k: v[:limit] for k, v in x.items()}, {k: v[:limit] for k, v in y.items()}, split


def _is_image(a):
    return a.ndim == 4 and a.shape[-1] in (1, 3)


def output_results(session, data, samples=16, limit=2000, points=5000):
    """What the Results tab shows after training (issue 31, item 5): classification_results
    for a classifier; else for the first output with a loss, an image output's
    {"kind": "reconstruction", "output", "split", "mse", "samples": [(input image, output
    image)]}, or {"kind": "regression", "output", "split", "predicted", "true", "r2"} of its
    values (flattened: at most `points`). None without an output to show."""
    r = classification_results(session, data)  # its own limit: the whole test split to 10k
    if r is not None or not session.losses:
        return r
    out = next(iter(session.losses))
    x, y, split = _shown_split(data, limit)
    pred = np.asarray(session.model.predict(x)[out], np.float64)
    true = np.asarray(y[out], np.float64)
    if pred.shape != true.shape:  # a target of another form (sparse labels): nothing to plot
        return None
    if _is_image(pred):
        images = [k for k, v in x.items() if _is_image(np.asarray(v))]
        given = x[images[0]] if images else y[out]
        return {"kind": "reconstruction", "output": out, "split": split,
                "mse": float(((pred - true) ** 2).mean()),
                "samples": [(np.asarray(given[i]), pred[i]) for i in
                            range(min(samples, len(pred)))]}
    t, p = true.ravel()[:points], pred.ravel()[:points]
    spread = ((t - t.mean()) ** 2).sum()
    return {"kind": "regression", "output": out, "split": split, "predicted": p, "true": t,
            "r2": float(1 - ((t - p) ** 2).sum() / spread) if spread > 0 else None}
