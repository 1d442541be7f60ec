"""The editor window while a run trains: the Run toolbar (Run, Pause, Stop, Continue and the
run's progress), the edit actions locked while it runs, its results shown, and the question
before closing while it runs. A mixin of MainWindow (app/window/main_window.py), whose training
panel, docks and actions it uses."""
from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QProgressBar


class TrainingActions:
    def _build_run_toolbar(self):
        """Run, Pause and Stop always in view (F5 or Ctrl+R runs), whatever the docks show:
        they press the Training dock's buttons, so both stay in one state."""
        bar = self.addToolBar("Run")
        bar.setObjectName("Run")
        bar.setMovable(False)
        self.run_action = bar.addAction("\u25b6 Run", lambda: self.training.start.click())
        self.run_action.setShortcuts([QKeySequence("F5"), QKeySequence("Ctrl+R")])
        self.run_action.setToolTip("Train the model (F5)")
        self.pause_action = bar.addAction("Pause", lambda: self.training.pause.click())
        self.stop_action = bar.addAction("\u25a0 Stop", lambda: self.training.stop.click())
        self.continue_action = bar.addAction("Continue",
                                             lambda: self.training.continue_run.click())
        self.continue_action.setToolTip("Resume the paused run, or continue the stopped run "
                                        "where it stopped")
        for a in (self.pause_action, self.stop_action, self.continue_action):
            a.setEnabled(False)
        # the run's progress where it is always in view (the dock's bar may be scrolled away)
        self.run_progress = QProgressBar()
        self.run_progress.setMaximumWidth(220)
        self.run_progress.setTextVisible(True)
        self.run_progress.setVisible(False)
        bar.addSeparator()
        self.run_progress_action = bar.addWidget(self.run_progress)
        self.run_progress_action.setVisible(False)

    def _show_results(self, r):
        self.results.show_results(r)
        self.output_tabs.setCurrentWidget(self.results)
        self.make_room_for_results()

    def make_room_for_results(self, height=330):
        """The Output dock grows until the confusion matrix has `height` pixels (ten classes'
        three-digit counts readable), within half the window: once, as the first run starts
        (while its curves are watched), not as it ends, when the panels' moving under the
        mouse sent a click on the Log tab to the Dataset box (newcomer trial)."""
        page = self.output_tabs.currentWidget()
        if page is not self.results and page is not None:  # laid out as it would be shown
            self.results.resize(page.size())
            self.results.layout().activate()
        short = height - self.results.plot.height()
        dock = self._docks["Output"]
        if self._output_grown:  # once: the panels do not jump after every run (third trial)
            return
        if dock.isFloating() or dock.isHidden():  # resizeDocks cannot: kept for later
            return
        if short > 0 and dock.height() < self.height() // 2:
            grown = min(dock.height() + short, self.height() // 2)
            # the height it had is what the next start gets back (see _save_layout)
            self._output_grown = (dock.height(), grown)
            self.resizeDocks([dock], [grown], Qt.Vertical)

    def _paused(self, paused):
        self.pause_action.setText("Resume" if paused else "Pause")
        self.continue_action.setEnabled(paused)
        self.run_progress.setFormat("paused" if paused else "%p%")
        self.statusBar().showMessage("Paused after the current batch; Resume or Continue goes "
                                     "on" if paused else "Resumed", 0 if paused else 2000)

    def _running(self, running):
        if running:
            self.output_tabs.setCurrentWidget(self.training.plots)
            self.make_room_for_results()
        self._run_actions(running)
        self._update_model_state()  # no Predict while the graph is locked
        self.message("Training... the graph is locked until it stops." if running
                     else "Training ended; the graph can be edited again.")

    def _run_actions(self, running):
        """The toolbar and the edit actions as a run going on (or not) leaves them."""
        self.run_action.setEnabled(not running)
        self.pause_action.setEnabled(running)
        self.stop_action.setEnabled(running)
        self.continue_action.setEnabled(not running and self.training.continue_run.isEnabled())
        if not running:
            self.pause_action.setText("Pause")
        self.run_progress_action.setVisible(running)
        self.run_progress.setVisible(running)
        # the graph is locked while training runs: what would edit it is visibly off
        for w in (self.undo_action, self.redo_action, self.delete_action, self.paste_action,
                  self.duplicate_action, self.layout_action, self.import_action,
                  self.inspector, self.palette):
            w.setEnabled(not running)

    def _progress(self, done, total, status):
        self.run_progress.setRange(0, max(total, 1))
        self.run_progress.setValue(done)
        if status:
            self.run_progress.setToolTip(status)
            self.statusBar().showMessage(status, 2000)

    def ask_stop_training(self):
        """Before closing while a run goes on: stop it? Tests replace this (or answer the
        question box); without confirm it is stopped."""
        if not self.confirm:
            return True
        from PySide6.QtWidgets import QMessageBox
        r = QMessageBox.question(
            self, "Stop training?", "Training is running: stop it and close the window?\n\n"
            "It stops after the current batch; you are then asked whether to save what is "
            "unsaved. Cancel leaves it running.", QMessageBox.Yes | QMessageBox.Cancel,
            QMessageBox.Cancel)
        return r == QMessageBox.Yes
