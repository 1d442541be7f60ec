"""Python's cycle collector runs wherever an allocation happens to trigger it, in any thread.
A reference cycle holding a Qt object, collected in a worker thread (the Data tab's reader of
a large CSV), runs that object's C++ destructor there: it takes a Qt lock, then waits for the
GIL, which the GUI thread holds while it waits for that lock to delete a widget of its own.
The editor hung so (seen in CI: Stop while a run read its data, both threads in futex_wait).
While an editor window is open, automatic collection is off and the GUI thread collects on a
timer, a young generation often and the whole heap now and then; Qt objects are then only
ever destroyed on the GUI thread by the collector. The last window closed turns automatic
collection back on, as it was."""
import gc

from PySide6.QtCore import QTimer

INTERVAL_MS = 250  # a young-generation pass: about what the default thresholds give
FULL_EVERY = 120   # passes between full collections (30 s)

_open = []          # the windows open, each holding its timer
_was_enabled = None  # gc.isenabled() before the first window


def install(window):
    """Take over collection for `window`'s lifetime (undone by uninstall)."""
    global _was_enabled
    if not _open:
        _was_enabled = gc.isenabled()
        gc.disable()
    timer = QTimer(window)
    count = [0]

    def collect():
        count[0] += 1
        if count[0] % FULL_EVERY == 0:
            gc.collect()
        elif count[0] % 10 == 0:
            gc.collect(1)
        else:
            gc.collect(0)
    timer.timeout.connect(collect)
    timer.start(INTERVAL_MS)
    _open.append((window, timer))


def uninstall(window):
    """`window` closes: its timer stops; with no window left, collection is automatic again
    (after one full pass here, in the GUI thread)."""
    for k, (w, timer) in enumerate(_open):
        if w is window:
            timer.stop()
            del _open[k]
            break
    else:
        return
    if not _open:
        gc.collect()
        if _was_enabled:
            gc.enable()
