"""The editor's colours, light or dark as the system palette is (issue 19, item 18): the
canvas, nodes, wires and plots read them here instead of hard-coding a light scheme.
LAYERLOOM_THEME=dark or light overrides the system (and, for dark, gives the widgets Qt's
Fusion style with a dark palette, for desktops that have no dark palette of their own);
View > Theme chooses the same in the editor (set_mode)."""
import os

from PySide6.QtGui import QColor, QGuiApplication, QPalette

LIGHT = {"canvas": "#eef1f5", "grid": "#dde2e8", "node": "#fbfbfb", "border": "#333333",
         "text": "#222222", "subtext": "#555555", "wire": "#555555", "wire_off": "#c0c0c0",
         "label": "#1d3557", "port_pen": "#222222", "plot_bg": "#ffffff", "plot_fg": "#000000",
         "hint": "#888888"}
DARK = {"canvas": "#1e2126", "grid": "#2a2f36", "node": "#2b3038", "border": "#9aa3ad",
        "text": "#e8e8e8", "subtext": "#b4b9c0", "wire": "#a7b0ba", "wire_off": "#555b63",
        "label": "#9ecbff", "port_pen": "#dddddd", "plot_bg": "#1e2126", "plot_fg": "#dddddd",
        "hint": "#8a9099"}
_cache = {}


def is_dark():
    forced = os.environ.get("LAYERLOOM_THEME", "").lower()
    if forced in ("dark", "light"):
        return forced == "dark"
    app = QGuiApplication.instance()
    if app is None:
        return False
    return app.palette().color(QPalette.Window).lightness() < 128


def colors():
    dark = is_dark()
    if dark not in _cache:
        _cache[dark] = {k: QColor(v) for k, v in (DARK if dark else LIGHT).items()}
    return _cache[dark]


def color(name):
    return colors()[name]


def hex_color(name):
    return (DARK if is_dark() else LIGHT)[name]


MODES = ("system", "light", "dark")
_system = {}  # the desktop's own style and palette, kept before a mode replaces them


def mode():
    forced = os.environ.get("LAYERLOOM_THEME", "").lower()
    return forced if forced in ("dark", "light") else "system"


def set_mode(app, chosen):
    """Use `chosen` (MODES) from now on: "dark" or "light" as LAYERLOOM_THEME would force
    them, "system" the desktop's own style and palette again. Widgets made afterwards take
    it; the editor makes its canvas and panels again (MainWindow.set_theme)."""
    _remember_system(app)
    if chosen in ("dark", "light"):
        os.environ["LAYERLOOM_THEME"] = chosen
    else:
        os.environ.pop("LAYERLOOM_THEME", None)
    _cache.clear()
    if chosen == "dark":
        apply_forced(app)
        return
    app.setStyle(_system["style"])
    if chosen == "light" and _system["palette"].color(QPalette.Window).lightness() < 128:
        app.setStyle("Fusion")  # a dark desktop: Fusion's own light palette
        app.setPalette(app.style().standardPalette())
    else:
        app.setPalette(_system["palette"])


def _remember_system(app):
    if not _system:  # before anything here replaces them
        _system.update(style=app.style().name(), palette=QPalette(app.palette()))


def apply_forced(app):
    """LAYERLOOM_THEME=dark on a desktop without a dark palette: Fusion with a dark one."""
    _remember_system(app)
    if os.environ.get("LAYERLOOM_THEME", "").lower() != "dark":
        return
    app.setStyle("Fusion")
    p = QPalette()
    for role, value in ((QPalette.Window, "#2b2e33"), (QPalette.WindowText, "#e8e8e8"),
                        (QPalette.Base, "#1f2227"), (QPalette.AlternateBase, "#2b2e33"),
                        (QPalette.Text, "#e8e8e8"), (QPalette.Button, "#33373d"),
                        (QPalette.ButtonText, "#e8e8e8"), (QPalette.Highlight, "#3d7ab8"),
                        (QPalette.HighlightedText, "#ffffff"), (QPalette.ToolTipBase, "#33373d"),
                        (QPalette.ToolTipText, "#e8e8e8"), (QPalette.PlaceholderText, "#8a9099")):
        p.setColor(role, QColor(value))
    for role in (QPalette.WindowText, QPalette.Text, QPalette.ButtonText):
        p.setColor(QPalette.Disabled, role, QColor("#6c727a"))  # off looks off
    app.setPalette(p)


def subtext(label, extra=""):
    """Style a label in the grey of secondary text, and mark it so that restyle() redoes it."""
    label.setProperty("theme_role", "subtext")
    label.setProperty("theme_extra", extra)
    label.setStyleSheet(f"color: {hex_color('subtext')};{extra}")


def restyle(root):
    """After a theme change: the marked labels and the plots (pyqtgraph widgets) under `root`
    in the theme's colours; the canvas redraws itself (GraphView.restyle)."""
    from PySide6.QtWidgets import QLabel
    for label in root.findChildren(QLabel):
        if label.property("theme_role") == "subtext":
            subtext(label, label.property("theme_extra") or "")
    import pyqtgraph as pg
    pg.setConfigOptions(background=hex_color("plot_bg"), foreground=hex_color("plot_fg"))
    for view in root.findChildren(pg.GraphicsView):
        view.setBackground(hex_color("plot_bg"))
        for item in view.scene().items():
            if isinstance(item, pg.AxisItem):
                item.setPen(hex_color("plot_fg"))
                item.setTextPen(hex_color("plot_fg"))
            elif isinstance(item, pg.LabelItem):
                item.setText(item.text, color=hex_color("plot_fg"))
