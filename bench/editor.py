"""Editor responsiveness on a large graph: builds a 300-node network (a chain with side
branches merged by Add), then times single edits (add, wire, parameter change, undo, move) and
a full repaint of the window. Prints milliseconds; 100 ms is the bar for feeling instant.

    QT_QPA_PLATFORM=offscreen python bench/editor.py [--nodes 300]
"""
import argparse
import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def build_graph(doc, nodes):
    """A chain of residual pairs (two Dense into an Add) of about `nodes` nodes, one macro."""
    from layerloom.app.editing.commands import AddNodeCmd, ConnectCmd
    g = doc.graph
    doc.undo.beginMacro("build")
    doc.push(AddNodeCmd(doc, "Input", (0, 0), {"shape": [16]}, "in"))
    prev, k = "in", 0
    while len(g.nodes) < nodes - 2:
        a, b, s = f"d{k}a", f"d{k}b", f"add{k}"
        doc.push(AddNodeCmd(doc, "Dense", (260 * (k + 1), 0), {"units": 16}, a))
        doc.push(AddNodeCmd(doc, "Dense", (260 * (k + 1), 150), {"units": 16}, b))
        doc.push(AddNodeCmd(doc, "Add", (260 * (k + 1) + 130, 300), None, s))
        for src, dst, port in ((prev, a, 0), (prev, b, 0), (a, s, 0), (b, s, 1)):
            doc.push(ConnectCmd(doc, src, 0, dst, port))
        prev, k = s, k + 1
    doc.push(AddNodeCmd(doc, "Dense", (260 * (k + 2), 0), {"units": 2}, "out"))
    doc.push(ConnectCmd(doc, prev, 0, "out", 0))
    doc.undo.endMacro()


def timed(app, label, fn, n=5):
    """The median time of fn and the events it posts, in ms (printed with the worst)."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        app.processEvents()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(f"{label:34s} median {times[len(times) // 2]:7.1f} ms   worst {times[-1]:7.1f} ms")
    return times[len(times) // 2]


def timed_pair(app, doc, label, do):
    """Times an edit and its undo separately, three times each; the slower median."""
    t_do, t_undo = [], []
    for _ in range(3):
        t = time.perf_counter()
        do()
        app.processEvents()
        t_do.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        doc.undo.undo()
        app.processEvents()
        t_undo.append((time.perf_counter() - t) * 1000)
    for name, ts in ((label, sorted(t_do)), ("  its undo", sorted(t_undo))):
        print(f"{name:34s} median {ts[1]:7.1f} ms   worst {ts[-1]:7.1f} ms")
    return max(sorted(t_do)[1], sorted(t_undo)[1])


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=300)
    args = ap.parse_args(argv)
    from PySide6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication([])
    from layerloom.app.editing.clipboard import copy_text
    from layerloom.app.editing.commands import SetParamsCmd
    from layerloom.app.window.main_window import MainWindow
    w = MainWindow(confirm=False)
    w.resize(1400, 900)
    w.show()
    app.processEvents()
    doc, g = w.doc, w.doc.graph
    t0 = time.perf_counter()
    build_graph(doc, args.nodes)
    app.processEvents()
    print(f"built {len(g.nodes)} nodes, {len(g.edges)} edges in {time.perf_counter() - t0:.2f} s")
    results = {
        "add node": timed(app, "add a node", lambda: w.add_at_centre("Dense")),
        "param": timed(app, "change a parameter (units)", lambda: doc.push(
            SetParamsCmd(doc, "d0a", {"units": g.nodes["d0a"].params["units"] + 1}))),
        "undo": timed(app, "undo", lambda: doc.undo.undo()),
        "redo": timed(app, "redo", lambda: doc.undo.redo())}
    text = copy_text(doc, list(g.nodes)[:100])
    results["paste 100"] = timed_pair(app, doc, "paste 100 nodes", lambda: w.paste(text))
    results["auto-layout"] = timed_pair(app, doc, "auto-layout", w.auto_layout)
    w.view.fit()
    results["repaint"] = timed(app, "repaint the whole window", lambda: w.grab())
    worst = max(results.values())
    print(f"slowest median: {worst:.1f} ms ({'under' if worst < 100 else 'OVER'} 100 ms)")
    w.shutdown()
    w.deleteLater()
    app.processEvents()


if __name__ == "__main__":
    main()
