"""The editor window's run history: each run that ends goes to the Runs tab (runs_panel.py);
Restore makes a recorded run's weights the document's model and its settings the project's
(one undo step for the settings). A mixin of MainWindow (app/window/main_window.py)."""
import json

from layerloom.project import runs

from layerloom.app.editing.commands import SetSetupCmd
from layerloom.app.editing.document import weights_mismatch
from layerloom.app.panels.runs_panel import RunsPanel


class RunActions:
    def _build_runs(self, doc):
        return RunsPanel(runs.folder_of(doc.path) if doc.path else None, confirm=self.confirm)

    def _connect_runs(self, doc):
        self.runs.sigLog.connect(self.log_line)
        self.runs.sigRestore.connect(self.restore_run)
        self.training.sigRun.connect(self.runs.add)
        doc.sigPathChanged.connect(lambda path: self.runs.set_folder(runs.folder_of(path)))
        self.runs.reload()

    def restore_run(self, record):
        """The run's weights become the model and its training setup and data the project's,
        when the graph is still the one it trained; otherwise nothing changes and the log
        says why."""
        when = record.get("started", record["id"]).replace("T", " ")
        if self.doc.locked:
            self.message("Cannot restore a run while training runs")
            return False
        try:
            weights = runs.weights_of(record)
        except Exception as e:  # an unreadable weights file: said, nothing changed
            self.message(f"Cannot restore the run of {when}: its weights were not read ({e})")
            return False
        if not weights:
            self.message(f"Cannot restore the run of {when}: it kept no weights")
            return False
        problem = weights_mismatch(self.doc.graph, weights)
        if problem:
            self.message(f"Cannot restore the run of {when}: the graph changed since ({problem}"
                         "); undo the edits, or build the graph it trained again")
            return False
        saved = record["project"]
        changes = [SetSetupCmd(self.doc, "training", key, _copy(value),
                               self.training._changed_setup)
                   for key, value in (saved.get("training") or {}).items()
                   if self.doc.project.training.get(key) != value]
        if isinstance(saved.get("dataset"), dict) and saved["dataset"] != self.doc.project.dataset:
            changes.append(SetSetupCmd(self.doc, "dataset", None, _copy(saved["dataset"]),
                                       self.training._changed_setup))
        if changes:
            self.doc.undo.beginMacro(f"Restore Settings of Run {when}")
            try:
                for cmd in changes:
                    self.doc.push(cmd)
            finally:
                self.doc.undo.endMacro()
            self.training.load_setup()
            self.data.load_fields()
        self.doc.set_trained(weights)
        self.message(f"Restored the run of {when}: its weights are the model"
                     + (f", {len(changes)} setting(s) back as they were" if changes else
                        "; the settings were already its own"))
        return True


def _copy(value):
    return json.loads(json.dumps(value))
