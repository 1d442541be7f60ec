"""The editor window's run history: each run that ends goes to the Runs tab (runs_panel.py);
Restore makes a recorded run's weights the document's model and its settings the project's
(one undo step for the settings, and for a sweep's node parameters). Sweep... starts
`layerloom --sweep` on the saved project as a child process (engine/cli/sweep.py: its state,
resume and records are the command line's), its lines in the Log and its runs in the Runs tab
as each trial ends. A mixin of MainWindow (app/window/main_window.py)."""
import json
import os
import sys

from PySide6.QtCore import QProcess
from PySide6.QtWidgets import QDialog, QMessageBox

from layerloom.core.errors import LayerloomError
from layerloom.project import runs, sweeps

from layerloom.app.editing.commands import SetParamsCmd, SetSetupCmd
from layerloom.app.editing.document import weights_mismatch
from layerloom.app.panels.runs_panel import RunsPanel


class RunActions:
    def _build_runs(self, doc):
        return RunsPanel(runs.folder_of(doc.path) if doc.path else None, confirm=self.confirm)

    def _connect_runs(self, doc):
        self.runs.sigLog.connect(self.log_line)
        self.runs.sigRestore.connect(self.restore_run)
        self.runs.sigSweep.connect(self.sweep_pressed)
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
        nodes = _swept_nodes(self.doc.graph, record)
        problem = _mismatch_with(self.doc.graph, nodes, weights)
        if problem:
            self.message(f"Cannot restore the run of {when}: the graph changed since ({problem}"
                         "); undo the edits, or build the graph it trained again")
            return False
        saved = record["project"]
        changes = [SetParamsCmd(self.doc, nid, params) for nid, params in nodes.items()]
        changes += [SetSetupCmd(self.doc, "training", key, _copy(value),
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


    # -- sweeps --------------------------------------------------------------------------------
    sweep_process = None
    sweep_name = None

    def sweep_pressed(self):
        """Sweep... : the dialog, then the sweep; while one runs: stop it."""
        if self.sweep_process is not None:
            return self.stop_sweep()
        if not self._sweepable():
            return False
        from .sweep_dialog import SweepDialog
        dialog = SweepDialog(self.doc.project, self)
        if dialog.exec() != QDialog.Accepted:
            return False
        return self.start_sweep(dialog.spec())

    def _sweepable(self):
        """A sweep trains the saved project and records its runs beside it: an untitled
        project or a bundled example is saved elsewhere first (asked before the dialog, so
        no settings are filled in for nothing)."""
        if self.doc.path and runs.folder_of(self.doc.path) is not None:
            return True
        if self.confirm and QMessageBox.question(
                self, "Sweep", "A sweep trains the saved project and records its runs beside "
                "it: save this project first?") == QMessageBox.Yes and self.save_as():
            return runs.folder_of(self.doc.path) is not None
        self.message("Save the project first (File > Save As): a sweep trains the saved "
                     "project and records its runs beside it")
        return False

    def start_sweep(self, spec):
        """Run `layerloom --sweep` on the saved project with `spec` (its JSON form) as a child
        process; its runs are recorded in the project's runs folder, which the Runs tab lists.
        An unsaved project is saved first (asked when the window confirms)."""
        if self.sweep_process is not None:
            self.message("A sweep is running; stop it first")
            return False
        if self.doc.locked:
            self.message("Cannot start a sweep while training runs")
            return False
        folder = runs.folder_of(self.doc.path) if self.doc.path else None
        if folder is None:
            self.message("Save the project first (File > Save As): a sweep trains the saved "
                         "project and records its runs beside it")
            return False
        try:
            name = sweeps.check(spec, self.doc.project).name
        except LayerloomError as e:
            self.message(f"Sweep not started: {e}")
            return False
        if not self.doc.undo.isClean():
            if self.confirm and QMessageBox.question(
                    self, "Sweep", "The sweep trains the saved project: save the changes "
                    "first?") != QMessageBox.Yes:
                return False
            if not self.save():
                return False
        proc = QProcess(self)
        proc.setProgram(sys.executable)
        device = self.training.device.currentData()
        proc.setArguments(["-m", "layerloom.cli", "--sweep", self.doc.path, json.dumps(spec),
                           "--out", folder] + (["--device", device] if device else []))
        proc.setWorkingDirectory(os.path.dirname(os.path.abspath(self.doc.path)))
        proc.setProcessChannelMode(QProcess.MergedChannels)
        proc.readyReadStandardOutput.connect(self._sweep_output)
        proc.finished.connect(self._sweep_finished)
        self.sweep_process, self.sweep_name, self._sweep_tail = proc, name, ""
        self.runs.set_sweeping(True)
        proc.start()
        self.message(f"Sweep {name} started: each trial is recorded in the Runs tab as it ends")
        return True

    def stop_sweep(self):
        """Stop after the current batch (SIGTERM); the same sweep started again goes on."""
        if self.sweep_process is None:
            return False
        self.sweep_process.terminate()
        self.message("Stopping the sweep after this batch; start the same sweep again to go "
                     "on where it stopped")
        return True

    def _sweep_output(self):
        text = self._sweep_tail + bytes(self.sweep_process.readAllStandardOutput()).decode(
            "utf-8", "replace")
        *lines, self._sweep_tail = text.split("\n")
        for line in lines:
            self.log_line(line.rstrip("\r"))
            if line.startswith("Recorded as run"):
                self.runs.reload()
                self.runs.show_sweep(self.sweep_name)

    def _sweep_finished(self, code, _status=None):
        if self._sweep_tail:
            self.log_line(self._sweep_tail)
        proc, self.sweep_process = self.sweep_process, None
        self.runs.set_sweeping(False)
        self.runs.reload()
        self.runs.show_sweep(self.sweep_name)
        best = self.runs.best() if self.runs.sweep_name == self.sweep_name else None
        if code == 0:
            self.message(f"Sweep {self.sweep_name} finished"
                         + (f"; best: {sweeps.describe(best['sweep']['values'])}" if best
                            else ""))
        elif code in (130, 143):
            self.message(f"Sweep {self.sweep_name} stopped; start it again to go on")
        else:
            self.message(f"Sweep {self.sweep_name} ended with exit code {code}: see the Log")
        proc.deleteLater()


def _swept_nodes(graph, record):
    """{node id: {param: value}} a sweep's run set on the document's nodes (as its project
    has them), where they differ from the document's."""
    values = (record.get("sweep") or {}).get("values") or {}
    saved = {n.get("id"): n.get("params") or {}
             for n in (record.get("project", {}).get("graph") or {}).get("nodes") or []}
    out = {}
    for name in values:
        nid, dot, param = name.rpartition(".")
        if not dot or nid not in graph.nodes or param not in saved.get(nid, {}):
            continue
        if graph.nodes[nid].params.get(param) != saved[nid][param]:
            out.setdefault(nid, {})[param] = saved[nid][param]
    return out


def _mismatch_with(graph, nodes, weights):
    """weights_mismatch of the graph as it is with `nodes`' parameters set ({id: {param:
    value}}), the graph left as it was."""
    old = {nid: {k: graph.nodes[nid].params[k] for k in params} for nid, params in nodes.items()}
    try:
        for nid, params in nodes.items():
            graph.set_params(nid, **params)
        return weights_mismatch(graph, weights)
    except Exception as e:  # noqa: BLE001 - a value the graph refuses: said as the mismatch
        return str(e)
    finally:
        for nid, params in old.items():
            graph.set_params(nid, **params)


def _copy(value):
    return json.loads(json.dumps(value))
