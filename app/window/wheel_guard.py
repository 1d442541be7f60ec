"""The mouse wheel over a form scrolls the form: a combo box or spin box takes the wheel only
when it has the keyboard focus (clicked or tabbed into). Without this, scrolling down the
Training dock turned adam into nadam and the device into 'auto' as fields passed under the
pointer. An application-wide event filter, installed once by the main window."""
from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractScrollArea, QAbstractSpinBox, QComboBox

FIELDS = (QComboBox, QAbstractSpinBox)


class WheelGuard(QObject):
    def eventFilter(self, obj, event):
        if event.type() != QEvent.Wheel or not isinstance(obj, FIELDS) or obj.hasFocus():
            return False
        if obj.focusPolicy() == Qt.WheelFocus:  # a wheel must not give it the focus either
            obj.setFocusPolicy(Qt.StrongFocus)
        area = obj.parentWidget()
        while area is not None and not isinstance(area, QAbstractScrollArea):
            area = area.parentWidget()
        if area is not None:  # the form around it scrolls instead
            QCoreApplication.sendEvent(area.verticalScrollBar(), event)
        return True


_guard = None


def install(app):
    """Once per application."""
    global _guard
    if _guard is None:
        _guard = WheelGuard()
        app.installEventFilter(_guard)
