"""The editor window: palette (left), canvas (centre), inspector and training (right), plots,
problems and log (bottom)."""
import sys

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (QApplication, QDockWidget, QMainWindow, QPlainTextEdit,
                               QScrollArea, QTabWidget)

from layerloom.core import fixes

from layerloom.app.canvas.canvas import GraphScene
from layerloom.app.canvas.canvas_view import GraphView
from layerloom.app.editing.document import Document
from layerloom.app.panels.inspector import Inspector
from layerloom.app.panels.palette import Palette
from layerloom.app.panels.data_panel import DataPanel
from layerloom.app.panels.results import ResultsPanel
from layerloom.app.panels.summary import SummaryPanel
from layerloom.app.panels.training_panel import TrainingPanel
from layerloom.app.panels.predictions import PredictionsPanel
from layerloom.app.panels.problems_panel import ProblemsPanel
from layerloom.app.canvas import context_menus
from layerloom.app.look import theme
from . import gc_guard, wheel_guard
from .window_files import FileActions
from .window_interop import InteropActions
from layerloom.app.panels.start_page import StartPage
from .window_help import HelpActions
from .window_model import ModelActions
from .window_runs import RunActions
from .window_edit import EditActions
from .window_blocks import BlockActions
from .window_problems import ProblemsActions, node_of, plain  # noqa: F401 (their old home)
from .window_training import TrainingActions


class MainWindow(EditActions, FileActions, ModelActions, RunActions, TrainingActions,
                 ProblemsActions, InteropActions, HelpActions, BlockActions, QMainWindow):
    AUTOSAVE_MS = 60_000

    def __init__(self, doc=None, confirm=True, remember_layout=None, start_page=None):
        super().__init__()
        # the start page over an empty untitled canvas (tests, which use confirm=False, ask
        # for it where they check it)
        self.wants_start_page = confirm if start_page is None else start_page
        self.start_page = None
        # the window's size and dock layout are kept between sessions (not for tests and
        # --screenshot, which use confirm=False and a fixed size)
        self.remember_layout = confirm if remember_layout is None else remember_layout
        wheel_guard.install(QApplication.instance())
        gc_guard.install(self)  # Qt objects collected on the GUI thread only (gc_guard.py)
        self.scene = None  # set_document makes one per document
        self._laid_out = False  # the docks get their sizes when the window is first shown
        self.autosave_timer = QTimer(self)
        self.autosave_timer.timeout.connect(self.autosave)
        self.autosave_timer.start(self.AUTOSAVE_MS)
        # bottom panels (curves, problems, log) span the full width under the side panels
        self.setCorner(Qt.BottomLeftCorner, Qt.BottomDockWidgetArea)
        self.setCorner(Qt.BottomRightCorner, Qt.BottomDockWidgetArea)
        self.confirm = confirm  # tests turn the unsaved-changes question off
        self.setMinimumSize(900, 600)
        self._docks = {}
        self._output_grown = None  # (height before, height after) make_room_for_results
        self._build_actions()
        self.set_document(doc or Document())

    # -- setup --------------------------------------------------------------------------------
    def set_document(self, doc):
        """Show `doc`: a new scene, view and panels for it in the docks (the window's)."""
        if self.scene is not None:
            self.scene.detach()
            self.scene.blockSignals(True)
            self.training.plots.scene().blockSignals(True)
            # the old panels go with deleteLater: a thread of theirs still running then
            # aborts the process ("QThread: Destroyed while thread is still running")
            self.training.device_survey.wait()
            self.data.shutdown()
            self.wait_model_tasks()
        doc.setParent(self)
        self.doc = doc
        self.scene = GraphScene(doc, self)
        self.view = GraphView(self.scene)
        self.setCentralWidget(self.view)
        self.start_page = None  # the old view took it along
        if self.wants_start_page and doc.path is None and not doc.graph.nodes:
            self.start_page = StartPage(self.view, self)
        doc.sigChanged.connect(self._leave_start_page)
        self._place(self._build_panels(doc))
        self._connect_panels(doc)
        doc.graph.blocks_changed.connect(self.refresh_blocks)
        self.refresh_blocks()
        self.undo_action.setEnabled(True)
        doc.undo.undoTextChanged.connect(self._name_undo)
        doc.undo.redoTextChanged.connect(self._name_undo)
        self._name_undo()
        self._flow_shown(self.scene.flow)
        self.view.minimap.enabled = self.minimap_action.isChecked()
        self._run_actions(False)  # the toolbar as the new panels are: nothing to continue
        self._changed()
        self.show_block_mode()  # an open block: the bar back to the project above the canvas
        self.view.fit(whole=True)  # all of it, however large (issue 30, item 4)

    def _leave_start_page(self):
        if self.start_page is not None and self.doc.graph.nodes:
            self.start_page.dismiss()

    def _step(self, redo):
        """Edit > Undo or Redo, said in the status bar ("Undone: Make Block ConvStage"): the
        newcomer trial saw nothing happen where the canvas looked the same."""
        stack = self.doc.undo
        text = stack.redoText() if redo else stack.undoText()
        stack.redo() if redo else stack.undo()
        if text:
            self.statusBar().showMessage(f"{'Redone' if redo else 'Undone'}: {text}", 4000)

    def _name_undo(self, *_):
        """Edit > Undo and Redo say what they undo: "Undo Add Dense"."""
        for action, word, text in ((self.undo_action, "&Undo", self.doc.undo.undoText()),
                                   (self.redo_action, "&Redo", self.doc.undo.redoText())):
            action.setText(f"{word} {text}" if text else word)

    def _build_panels(self, doc):
        """The panels of a document, by the dock that holds them."""
        self.palette = Palette()
        self.inspector = Inspector(doc)
        self.training = TrainingPanel(doc)
        self.log = QPlainTextEdit(readOnly=True)
        self.problems_panel = ProblemsPanel()
        self.problems = self.problems_panel.list
        self.summary = SummaryPanel(doc)
        self.results = ResultsPanel()
        self.predictions = PredictionsPanel()
        self.data = DataPanel(doc)
        self.runs = self._build_runs(doc)
        # NOTE: tabs are plain QTabWidgets inside two docks, not QMainWindow dock tabbing,
        # which left stale tab bars painted over other panels.
        self.output_tabs = QTabWidget()
        self.data_tab = self._scroll(self.data)
        self.output_tabs.addTab(self.training.plots, "Curves")
        self.output_tabs.addTab(self.results, "Results")
        self.output_tabs.addTab(self.runs, "Runs")
        self.output_tabs.addTab(self.predictions, "Predictions")
        self.output_tabs.addTab(self.data_tab, "Data")
        self.message_tabs = QTabWidget()
        self.message_tabs.addTab(self.problems_panel, "Problems")
        self.message_tabs.addTab(self.summary, "Summary")
        self.message_tabs.addTab(self.log, "Log")
        return {"Layers": self.palette, "Inspector": self._scroll(self.inspector),
                "Training": self._scroll(self.training), "Output": self.output_tabs,
                "Messages": self.message_tabs}

    def _place(self, widgets):
        """Put the panels in the docks: made on the first document, reused after."""
        if self._docks:  # docks stay; their contents are replaced
            for name, w in widgets.items():
                old = self._docks[name].widget()
                self._docks[name].setWidget(w)
                if old is not None:
                    old.deleteLater()
            if self.isVisible():  # new contents bring new size hints: lay the docks out again
                QTimer.singleShot(0, self._relayout)
        else:
            for name, w in widgets.items():
                self._docks[name] = self._dock(name, w, self.dock_area(name))
                self.panels_menu.addAction(self._docks[name].toggleViewAction())
            self.splitDockWidget(self._docks["Output"], self._docks["Messages"], Qt.Horizontal)
            self._layout_docks()

    def _connect_panels(self, doc):
        self.palette.sigActivated.connect(self.add_from_palette)
        self.palette.sigTyped.connect(lambda chain: self.add_chain(chain))
        self.palette.sigMessage.connect(self.message)
        self.view.sigDropLayer.connect(lambda t, pos: self._add(t, (pos.x(), pos.y())))
        self.view.sigQuickAdd.connect(lambda chain, pos: self.add_chain(chain, (pos.x(),
                                                                                pos.y())))
        self.view.sigMessage.connect(self.message)
        self.view.sigContextMenu.connect(
            lambda pos, at: context_menus.build(self, pos).exec(at))
        self.scene.sigSelectionNode.connect(self.inspector.show_node)
        self.inspector.sigRenamed.connect(self._select_node)
        self.scene.sigMessage.connect(self.message)
        self.scene.sigOpenNode.connect(self._open_node)
        self.training.sigLog.connect(self.log_line)
        self.training.sigRunning.connect(self._running)
        self.training.sigPaused.connect(self._paused)
        self.training.sigProgress.connect(self._progress)
        self.training.sigResults.connect(self._show_results)
        self.training.sigChooseData.connect(self._choose_data)
        self.data.sigFit.connect(self._data_fit)
        self.data.sigImpliedLoss.connect(self.training.show_implied_loss)
        self.data.attach_status_bar(self.statusBar())
        self.problems.itemClicked.connect(self._problem_clicked)
        self.problems_panel.sigFix.connect(self.apply_fix)
        doc.sigChanged.connect(self._changed)
        doc.sigPathChanged.connect(lambda _: self._changed())
        self._connect_model()
        self._connect_runs(doc)

    def _relayout(self):
        self._layout_docks()
        self.view.fit()

    def _layout_docks(self):
        """The canvas gets most of the window; side and bottom panels stay compact."""
        h = max(self.height(), 600)
        self.resizeDocks([self._docks["Layers"]], [190], Qt.Horizontal)
        self.resizeDocks([self._docks["Inspector"]], [380], Qt.Horizontal)
        self.resizeDocks([self._docks["Inspector"], self._docks["Training"]],
                         [int(h * 0.42), int(h * 0.3)], Qt.Vertical)
        self.resizeDocks([self._docks["Output"], self._docks["Messages"]], [int(h * 0.28)] * 2,
                         Qt.Vertical)
        self.resizeDocks([self._docks["Output"], self._docks["Messages"]],
                         [int(self.width() * 0.65), int(self.width() * 0.35)], Qt.Horizontal)

    @staticmethod
    def dock_area(name):
        """Where a panel is docked at first: the palette left, the inspector and training
        right, the rest at the bottom."""
        return {"Layers": Qt.LeftDockWidgetArea, "Inspector": Qt.RightDockWidgetArea,
                "Training": Qt.RightDockWidgetArea}.get(name, Qt.BottomDockWidgetArea)

    def reset_panels(self):
        """Every panel shown, docked where it starts, at its first size."""
        for name, dock in self._docks.items():
            dock.setFloating(False)
            self.addDockWidget(self.dock_area(name), dock)
            dock.show()
        self.splitDockWidget(self._docks["Output"], self._docks["Messages"], Qt.Horizontal)
        self._output_grown = None
        self._layout_docks()

    def set_theme(self, mode):
        """View > Theme: light, dark, or the desktop's, applied in place (the window's palette,
        the canvas, the plots and the grey texts). Remembered."""
        if self.training.worker is not None:
            self.message("The theme changes after training ends")
            self.theme_actions[theme.mode()].setChecked(True)
            return
        from PySide6.QtWidgets import QApplication
        theme.set_mode(QApplication.instance(), mode)
        self.theme_actions[mode].setChecked(True)
        if self.remember_layout:
            self._settings().setValue("view/theme", mode)
        self.view.restyle()
        theme.restyle(self)

    def _show_minimap(self, on):
        self.view.minimap.enabled = bool(on)
        self.view.minimap.refresh()

    def showEvent(self, event):
        super().showEvent(event)
        if not self._laid_out:
            self._laid_out = True
            if not self._restore_layout():
                self._layout_docks()

    def _restore_layout(self):
        """The last session's window geometry and docks, where they were saved."""
        if not self.remember_layout:
            return False
        settings = self._settings()
        geometry, state = settings.value("window/geometry"), settings.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        return state is not None and self.restoreState(state)

    def _save_layout(self):
        if self.remember_layout:
            dock = self._docks.get("Output")
            if self._output_grown and dock is not None and \
                    abs(dock.height() - self._output_grown[1]) <= 4:
                # grown for a run's results and not resized since: saved at its own height
                self.resizeDocks([dock], [self._output_grown[0]], Qt.Vertical)
            settings = self._settings()
            settings.setValue("window/geometry", self.saveGeometry())
            settings.setValue("window/state", self.saveState())
            settings.sync()

    def resizeEvent(self, event):
        super().resizeEvent(event)
        if self._laid_out and not self.isVisible():
            self._layout_docks()

    @staticmethod
    def _scroll(widget):
        area = QScrollArea()
        area.setWidget(widget)
        area.setWidgetResizable(True)
        area.setFrameShape(QScrollArea.NoFrame)
        return area

    def _dock(self, title, widget, area):
        d = QDockWidget(title, self)
        d.setObjectName(title)
        d.setWidget(widget)
        self.addDockWidget(area, d)
        return d

    def _build_actions(self):
        m = self.menuBar()
        f = m.addMenu("&File")
        self._act(f, "&New", QKeySequence.New, self.new)
        self._act(f, "&Open...", QKeySequence.Open, self.open_dialog)
        self.recent_menu = f.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        self._build_examples_menu(f)
        self._act(f, "&Save", QKeySequence.Save, self.save)
        self._act(f, "Save &As...", QKeySequence.SaveAs, self.save_as)
        f.addSeparator()
        self._build_interop_menu(f)
        self._build_block_file_actions(f)
        f.addSeparator()
        self._act(f, "&Quit", QKeySequence.Quit, self.close)
        e = m.addMenu("&Edit")
        self.undo_action = self._act(e, "&Undo", QKeySequence.Undo, lambda: self._step(False))
        self.redo_action = self._act(e, "&Redo", QKeySequence.Redo, lambda: self._step(True))
        # every key the platform binds to Redo (Ctrl+Shift+Z among them), and Ctrl+Y
        redo_keys = QKeySequence.keyBindings(QKeySequence.Redo)
        self.redo_action.setShortcuts(redo_keys + [k for k in [QKeySequence("Ctrl+Y")]
                                                   if k not in redo_keys])
        e.addSeparator()
        self.delete_action = self._act(e, "&Delete", QKeySequence.Delete,
                                       lambda: self.scene.delete_selection())
        self._act(e, "&Copy", QKeySequence.Copy, self.copy)
        self.paste_action = self._act(e, "&Paste", QKeySequence.Paste, self.paste)
        self.duplicate_action = self._act(e, "D&uplicate", "Ctrl+D", self.duplicate)
        self._act(e, "Select &All", QKeySequence.SelectAll, self._select_all)
        self._act(e, "&Find Node...", QKeySequence.Find, self.find_node)
        e.addSeparator()
        self.layout_action = self._act(e, "Auto &Layout", "Ctrl+L", self.auto_layout)
        self._build_block_actions(e)
        v = m.addMenu("&View")
        self._act(v, "&Fit to View", "F", lambda: self.view.fit(whole=True))
        self._act(v, "&Actual Size", "Ctrl+0", lambda: self.view.actual_size())
        v.addSeparator()
        self.flow_action = self._act(v, "Flow &Top to Bottom", "Ctrl+Shift+L",
                                     lambda on: self.set_flow("down" if on else "right"))
        self.flow_action.setCheckable(True)
        self.flow_action.setToolTip("Draw the graph top to bottom (inputs above) instead of "
                                    "left to right; laid out again, one undo step")
        self.minimap_action = self._act(v, "&Minimap", "", self._show_minimap)
        self.minimap_action.setCheckable(True)
        self.minimap_action.setChecked(True)
        self.minimap_action.setToolTip("The whole graph small in the canvas's corner while it "
                                       "is larger than the view")
        themes = v.addMenu("T&heme")
        group = QActionGroup(self)
        self.theme_actions = {}
        for mode, text in (("system", "&System"), ("light", "&Light"), ("dark", "&Dark")):
            a = themes.addAction(text)
            a.setCheckable(True)
            a.setChecked(mode == theme.mode())
            a.triggered.connect(lambda _=False, m=mode: self.set_theme(m))
            group.addAction(a)
            self.theme_actions[mode] = a
        v.addSeparator()
        self.panels_menu = v.addMenu("&Panels")  # each dock shown or hidden (filled in _place)
        self._act(v, "&Reset Panel Layout", "", self.reset_panels)
        self._build_model_menu(m)
        self._build_help_menu(m)
        self._build_run_toolbar()

    def _act(self, menu, text, shortcut, slot):
        a = QAction(text, self)
        a.setShortcut(shortcut)
        a.triggered.connect(slot)
        menu.addAction(a)
        return a

    def message(self, text, ms=6000):
        self.statusBar().showMessage(text, ms)
        self.log_line(text)

    def log_line(self, text):
        self.log.appendPlainText(text)

    def _choose_data(self, kind):
        self.output_tabs.setCurrentWidget(self.data_tab)
        (self.data.choose_csv if kind == "csv" else self.data.choose_folder)()

    def _select_node(self, nid):
        if nid in self.scene.nodes:
            self.scene.clearSelection()
            self.scene.nodes[nid].setSelected(True)

    def closeEvent(self, event):
        # ask before stopping a run: Cancel leaves it running, untouched (it was stopped first)
        if self.training.worker is not None and not self.ask_stop_training():
            event.ignore()
            return
        self.closing = True  # no new Predict/Evaluate threads (one running at exit aborts Qt)
        if self.training.worker is not None:  # (it may have ended while the question was up)
            self.training.stop_training()
            self.training.worker.wait(10000)
            QApplication.processEvents()  # the run's end: its weights join the document
        self.training.device_survey.wait()  # a first probe of the devices ends in seconds
        self.wait_model_tasks()
        if self._may_discard():
            self.doc.remove_autosave()  # saved or knowingly discarded: nothing to recover
            self._save_layout()
            self.shutdown()
            event.accept()
        else:
            self.closing = False
            event.ignore()

    def shutdown(self):
        """Make destruction safe: the scene stops following the model, and the scene and plot
        signals are blocked so Qt's destructors (a scene emits selectionChanged while it clears
        its items) never call back into Python, possibly while the interpreter is exiting."""
        self.scene.detach()
        self.scene.blockSignals(True)
        self.training.plots.scene().blockSignals(True)
        self.training.plots.blockSignals(True)
        self.results.plot.scene().blockSignals(True)
        self.runs.plot.scene().blockSignals(True)
        self.data.shutdown()
        gc_guard.uninstall(self)


def screenshot(path, project_path=None, size=(1400, 860)):
    """Render the window with a project loaded to a PNG (for docs and tests)."""
    from PySide6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication([])
    theme.apply_forced(app)
    doc = Document.open(project_path) if project_path else Document()
    win = MainWindow(doc, confirm=False, start_page=project_path is None)
    win.resize(*size)
    win.show()
    win.training.device_survey.wait()  # the device list as the user sees it once found
    for _ in range(5):
        app.processEvents()
    win._layout_docks()
    app.processEvents()
    # show a real node in the inspector: the first layer after the inputs
    first = next((n for n in doc.graph.nodes.values() if not n.layer.is_input), None)
    if first is not None:
        win.scene.nodes[first.id].setSelected(True)
    win.view.fit()
    import time
    for _ in range(10):  # the inspector's new form is laid out over a few passes
        app.processEvents()
        time.sleep(0.02)
    ok = win.grab().save(path)
    win.close()
    win.deleteLater()
    app.processEvents()
    return ok



def run_editor(project_path=None):
    import signal
    from PySide6.QtWidgets import QApplication
    from .qt_platform import problem
    why = problem() if QApplication.instance() is None else None
    if why:
        sys.stderr.write(f"layerloom: {why}\n")
        return 1
    for s in (signal.SIGINT, signal.SIGTERM):  # a Qt app's: Ctrl-C ends it (the autosave keeps
        signal.signal(s, signal.SIG_DFL)       # unsaved work), not the command's start-up exit
    app = QApplication.instance() or QApplication([])
    app.setApplicationName("Layerloom")
    theme.apply_forced(app)
    saved = MainWindow._settings().value("view/theme")
    if theme.mode() == "system" and saved in ("light", "dark"):  # View > Theme, last chosen
        theme.set_mode(app, saved)
    win = MainWindow()
    if project_path:
        if not win.open_path(project_path):
            return 2
    else:
        win.offer_untitled_recovery()
    win.resize(1400, 860)
    win.show()
    code = app.exec()
    win.deleteLater()  # destroy the window while Python and Qt are both still running
    app.processEvents()
    return code
