"""The editor's uses of its trained model, off the GUI thread: Predict (a user's file, read and
prepared as `layerloom --predict` reads it, the same CSV rows) and Evaluate (loss, metrics and
the Results tab's confusion matrix on the test split). Both go through the engine's API
(layerloom.api.Model) on a snapshot of the project, so edits made meanwhile change nothing;
compiling the model takes 0.2-2 s, too long for the GUI thread."""
import csv
import io

from PySide6.QtCore import QThread, Signal

from layerloom.core.errors import LayerloomError
from layerloom.project import loom as projectfile


def snapshot(project):
    """A copy of the project the task may read while the document is edited."""
    return projectfile.from_dict(projectfile.to_dict(project), project.path, strict=False)


class Prediction:
    """What Predict found for a file: the CSV the command line writes for it (csv_text), as a
    header and rows, the inputs as read (images: the decoded pictures, `names` their files)."""

    def __init__(self, csv_text, description, names=None, images=None):
        self.csv_text, self.description = csv_text, description
        rows = list(csv.reader(io.StringIO(csv_text)))
        self.header, self.rows = rows[0], rows[1:]
        self.names, self.images = names, images


def predict_file(project, weights, path, device=None):
    from layerloom import api
    from layerloom.cli.use_model import predictions_csv
    from layerloom.data import inputs
    model = api.Model(project, weights, device)
    f = inputs.read(project, path)
    result = model.predict(f.arrays)
    result = result if isinstance(result, dict) else {model.outputs[0]: result}
    images = next(iter(f.arrays.values())) if f.names else None
    _name_folder_classes(project)
    return Prediction(predictions_csv(model, result, f.names), f.description, f.names, images)


def _name_folder_classes(project):
    """Give a snapshot of an image-folder project its class names where predictions_csv looks
    for them (the label column's fitted categories): training records none for an image
    folder, so the classes would be numbers. They are the folder's subfolders, as training
    read them; a folder no longer there leaves the numbers."""
    from layerloom.data import imagefolder
    d = project.dataset
    fitted = d.get("fitted") or {}
    if d.get("source") != "images" or fitted.get("columns") or not d.get("path"):
        return
    try:
        classes = imagefolder.scan(project.resolve(d["path"]))["train"][0]
    except LayerloomError:
        return
    d["fitted"] = {**fitted, "columns": {"features": [], "labels": ["class"]},
                   "categories": {**(fitted.get("categories") or {}), "class": classes}}


def evaluate_test(project, weights, device=None):
    """(logs on the test split or None when there is none, the Results tab's results or None)."""
    from layerloom import api
    from layerloom.data.prepare import prepare_data
    from layerloom.train.evaluation import output_results
    from layerloom.train.fit import evaluate
    s = api.Model(project, weights, device).session
    data = prepare_data(project)
    logs = evaluate(s.trainer, data.x_test, data.y_test, s.batch_size) \
        if data.test is not None else None
    return logs, output_results(s, data)


class ModelTask(QThread):
    """fn(*args) in a thread: sigDone(result), or sigFailed(message) with the engine's placed
    message (never a traceback in the window)."""
    sigDone = Signal(object)
    sigFailed = Signal(str)

    def __init__(self, fn, *args):
        super().__init__()
        self.fn, self.args = fn, args

    def run(self):
        try:
            result = self.fn(*self.args)
        except LayerloomError as e:  # "--input" is the command line's place, not the editor's
            self.sigFailed.emit(e.message if e.place == "--input" else str(e))
        except Exception as e:  # a reader's or driver's error: its kind and text
            self.sigFailed.emit(f"{type(e).__name__}: {e}")
        else:
            self.sigDone.emit(result)
