"""File > Open Example (the bundled gallery, each opened as a copy) and the Help menu
(keyboard shortcuts, About with the version and the OpenCL devices), mixed into MainWindow."""
import os

from PySide6.QtCore import QStandardPaths
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMessageBox

from layerloom import gallery


class HelpActions:
    """Needs: self.open_path(path), self.message(text)."""

    # -- File > Open Example ------------------------------------------------------------------
    def _build_examples_menu(self, file_menu):
        self.examples_menu = file_menu.addMenu("Open E&xample")
        for ex in gallery.examples():
            a = self.examples_menu.addAction(ex.title)
            a.setToolTip(ex.summary)
            a.setStatusTip(ex.summary)
            a.triggered.connect(lambda checked=False, ex=ex: self.open_example(ex.key))
        self.examples_menu.setToolTipsVisible(True)
        if not self.examples_menu.actions():
            self.examples_menu.addAction("(this installation has no examples)").setEnabled(False)

    @staticmethod
    def examples_home():
        """Where opened examples are copied: Documents/Layerloom examples."""
        docs = QStandardPaths.writableLocation(QStandardPaths.DocumentsLocation) or \
            os.path.expanduser("~")
        return os.path.join(docs, "Layerloom examples")

    def open_example(self, key):
        """Copy the example (its project and data) into a new folder of the user's and open
        the copy, so training and saving never change the installed files."""
        ex = next((e for e in gallery.examples() if e.key == key), None)
        if ex is None:
            return False
        try:
            os.makedirs(self.examples_home(), exist_ok=True)
            path = gallery.copy(ex, self.examples_home())
        except OSError as e:
            QMessageBox.warning(self, "Cannot open the example",
                                f"Copying {ex.title} into {self.examples_home()} failed:\n{e}")
            return False
        if not self.open_path(path):
            return False
        self.message(f"Opened a copy of the example {ex.title!r}: {path}")
        return True

    # -- Help ---------------------------------------------------------------------------------
    def _build_help_menu(self, menubar):
        h = menubar.addMenu("&Help")
        a = QAction("&Keyboard Shortcuts", self)
        a.setShortcut(QKeySequence.HelpContents)
        a.triggered.connect(self.show_shortcuts)
        h.addAction(a)
        h.addAction("&About Layerloom", self.show_about)

    def shortcuts_text(self):
        """Every menu and toolbar action with a shortcut, as "Action: keys" lines."""
        rows, seen = [], set()
        for a in self.findChildren(QAction):
            keys = [k.toString(QKeySequence.NativeText) for k in a.shortcuts() if not k.isEmpty()]
            name = a.text().replace("&", "").replace("\u25b6", "").replace("\u25a0", "").strip()
            if keys and name and name not in seen:
                seen.add(name)
                rows.append(f"{name}: {', '.join(keys)}")
        rows += ["Tab (on the canvas): add a layer by name",
                 "Drag from a port to a port: connect; Delete: remove the selection"]
        return "\n".join(rows)

    def show_shortcuts(self):
        return self._info("shortcuts", "Keyboard shortcuts", self.shortcuts_text())

    def _info(self, name, title, text):
        box = QMessageBox(QMessageBox.Information, title, text, QMessageBox.Ok, self)
        box.setObjectName(name)
        box.open()  # not modal to the application: training goes on behind it
        return box

    def about_text(self):
        import layerloom
        from PySide6 import __version__ as qt_version
        try:
            devices = [str(d) for d in layerloom.devices()]
        except Exception as e:  # noqa: BLE001 (a broken OpenCL setup must not stop About)
            devices = [f"none usable: {e}"]
        return (f"Layerloom {layerloom.__version__}\n"
                "Neural networks as graphs of layers, trained by OpenCL kernels on any device.\n\n"
                f"OpenCL devices:\n  " + "\n  ".join(devices or ["none found"]) +
                f"\n\nQt for Python {qt_version}")

    def show_about(self):
        return self._info("about", "About Layerloom", self.about_text())
