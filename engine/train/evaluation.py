"""After training a classifier: the confusion matrix on the test split (or the validation
part of the training data) and a few samples with predicted and true labels, for the editor's
results panel. Pure numpy."""
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
    if data.test is not None:
        x, y, split = data.x_test, data.y_test, "test"
    else:
        n = len(next(iter(data.x.values())))
        k = min(n, limit)
        x = {kk: v[n - k:] for kk, v in data.x.items()}
        y = {kk: v[n - k:] for kk, v in data.y.items()}
        split = "training data (last samples)"
    x = {k: v[:limit] for k, v in x.items()}
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
    return {"output": out, "split": split, "classes": class_names(project, C, getattr(data, "class_names", None)),
            "matrix": matrix, "accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)),
            "samples": shown}
