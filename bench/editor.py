"""Editor responsiveness on large graphs (issue 30, item 4). For generated graphs of 100, 300
and 500 nodes (a chain of residual pairs: two Dense into an Add, written as a project file laid
out as an import is) and for Keras' ResNet50 (keras.applications.ResNet50(weights=None), saved
under /tmp and read with the editor's Keras import), prints milliseconds for:

- open: reading the document, building the canvas and its first paint (the window grabbed);
- drag: a node dragged by mouse moves on the canvas, each move and the repaint it causes (one
  frame): median and p95;
- auto-layout (Ctrl+L) and its undo;
- a paste of 200 nodes and its undo (checked to be one undo step);
- single edits (add a node, change a parameter, undo, redo) and a repaint of the window.

16 ms a frame and 1 s to open are the bars.

    QT_QPA_PLATFORM=offscreen python bench/editor.py [--nodes 100 300 500] [--no-resnet]
        [--no-edits] [--clock wall|cpu]
"""
import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("KERAS_BACKEND", "torch")

RESNET = "/tmp/layerloom_bench_resnet50.keras"


def residual_project(nodes):
    """A project file's text of about `nodes` nodes: an Input, residual pairs, a Dense head;
    laid out by the engine's auto-layout as an imported model is."""
    from layerloom.core.layout import auto_layout
    from layerloom.project import loom as projectfile
    d = {"format": "layerloom-project", "version": 1,
         "graph": {"nodes": [{"id": "in", "type": "Input", "params": {"shape": [16]}}],
                   "edges": []},
         "dataset": {"source": "synthetic", "name": "spirals"},
         "training": {"loss": "categorical_crossentropy"}}
    ns, es = d["graph"]["nodes"], d["graph"]["edges"]
    prev, k = "in", 0
    while len(ns) < nodes - 1:
        a, b, s = f"d{k}a", f"d{k}b", f"add{k}"
        ns += [{"id": a, "type": "Dense", "params": {"units": 16}},
               {"id": b, "type": "Dense", "params": {"units": 16}},
               {"id": s, "type": "Add", "params": {}}]
        es += [{"from": [prev, 0], "to": [a, 0]}, {"from": [prev, 0], "to": [b, 0]},
               {"from": [a, 0], "to": [s, 0]}, {"from": [b, 0], "to": [s, 1]}]
        prev, k = s, k + 1
    ns.append({"id": "out", "type": "Dense", "params": {"units": 2}})
    es.append({"from": [prev, 0], "to": ["out", 0]})
    project = projectfile.loads(json.dumps(d), strict=False)
    project.ui = {"positions": {k: list(p) for k, p in auto_layout(project.graph).items()}}
    return projectfile.dumps(project)


def resnet_path():
    if not os.path.exists(RESNET):
        import keras
        keras.applications.ResNet50(weights=None).save(RESNET)
    return RESNET


def relaid(project):
    """The project laid out as the editor's import lays it out (window_interop.read_model)."""
    from layerloom.core.layout import auto_layout
    project.ui = {"positions": {k: list(p) for k, p in auto_layout(project.graph).items()}}
    return project


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
now = CLOCK["wall"]


def ms(t):
    return (now() - t) * 1000


def line(label, times):
    times = sorted(times)
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    print(f"  {label:30s} median {statistics.median(times):8.1f} ms   p95 {p95:8.1f} ms"
          f"   ({len(times)} runs)", flush=True)
    return statistics.median(times)


def open_window(app, w, make_doc):
    """Milliseconds from nothing to the window painted with the document's graph."""
    w.training.device_survey.wait()  # the last document's device survey (a thread started
    # with every window's panels) done, untimed: a user opens a file seconds after the last
    t = now()
    doc = make_doc()
    w.set_document(doc)
    app.processEvents()
    w.grab()
    return ms(t)


def _PaintCounter(widget):
    """An event filter on `widget` counting its paint events (count)."""
    from PySide6.QtCore import QEvent, QObject

    class Counter(QObject):
        count = 0

        def eventFilter(self, obj, event):
            if event.type() == QEvent.Paint:
                self.count += 1
            return False
    c = Counter(widget)
    widget.installEventFilter(c)
    return c


def drag(app, w, frames=60):
    """Mouse moves dragging the node nearest the view's centre: ms per move and repaint."""
    from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication
    view, scene = w.view, w.scene
    vp = view.viewport()
    centre = view.mapToScene(vp.rect().center())
    item = min(scene.nodes.values(), key=lambda i: (i.pos() - centre).manhattanLength())
    start = view.mapFromScene(item.pos() + QPointF(60, 12))  # on its header

    def send(kind, p, button, buttons):
        e = QMouseEvent(kind, QPointF(p), QPointF(vp.mapToGlobal(p)), button, buttons,
                        Qt.NoModifier)
        QApplication.sendEvent(vp, e)
    send(QEvent.MouseButtonPress, start, Qt.LeftButton, Qt.LeftButton)
    app.processEvents()
    before = item.pos()
    painted = _PaintCounter(vp)
    times = []
    for i in range(1, frames + 1):
        p = start + QPoint(3 * i, 2 * (i % 7))
        t = now()
        send(QEvent.MouseMove, p, Qt.NoButton, Qt.LeftButton)
        n = painted.count
        for _ in range(3):  # the frame: the view paints the part that changed (its update
            app.processEvents()  # is posted from the scene's, which is posted itself)
            if painted.count > n:
                break
        times.append(ms(t))
    send(QEvent.MouseButtonRelease, p, Qt.LeftButton, Qt.NoButton)
    app.processEvents()
    vp.removeEventFilter(painted)
    assert item.pos() != before, "the drag did not move the node"
    assert painted.count >= frames, f"only {painted.count} of {frames} moves were painted"
    w.doc.undo.undo()
    app.processEvents()
    return times


def scramble(w):
    """Every node moved (untimed) so that the auto-layout has work to do: the nodes' places
    taken in reverse order."""
    pos = w.doc.positions()
    ids = list(w.scene.nodes)
    w.scene.apply_positions({a: pos[b] for a, b in zip(ids, reversed(ids))})
    pos.update({a: list(pos[b]) for a, b in zip(ids, reversed(ids))})


def measure(app, w, label, make_doc, edits=True):
    from layerloom.app.editing.clipboard import copy_text
    from layerloom.app.editing.commands import SetParamsCmd
    print(f"{label}", flush=True)
    t_open = [open_window(app, w, make_doc) for _ in range(3)]
    g = w.doc.graph
    print(f"  {len(g.nodes)} nodes, {len(g.edges)} edges; zoom {w.view.transform().m11():.2f}")
    out = {"open": line("open (load, canvas, paint)", t_open)}
    out["drag"] = line("drag a node, per frame", drag(app, w))
    t_lay, t_undo = [], []
    for _ in range(3):
        scramble(w)
        t = now()
        w.auto_layout()
        app.processEvents()
        t_lay.append(ms(t))
        moved = w.doc.undo.undoText().startswith("Move")
        t = now()
        if moved:
            w.doc.undo.undo()
        app.processEvents()
        t_undo.append(ms(t))
    out["layout"] = line("auto-layout", t_lay)
    line("  its undo", t_undo)
    ids = list(g.nodes)[:200]
    text = copy_text(w.doc, ids)
    t_paste, t_undo = [], []
    for _ in range(3):
        steps = w.doc.undo.index()
        t = now()
        pasted = w.paste(text)
        app.processEvents()
        t_paste.append(ms(t))
        assert len(pasted) == len(ids) and w.doc.undo.index() == steps + 1, \
            "a paste is not one undo step"
        t = now()
        w.doc.undo.undo()
        app.processEvents()
        t_undo.append(ms(t))
        assert len(g.nodes) == len(w.scene.nodes) and not set(pasted) & set(g.nodes)
    out["paste"] = line(f"paste {len(ids)} nodes (one step)", t_paste)
    out["paste undo"] = line("  its undo", t_undo)
    if edits:
        def timed(label, fn, n=5):
            times = []
            for _ in range(n):
                t = now()
                fn()
                app.processEvents()
                times.append(ms(t))
            return line(label, times)
        dense = next(n for n in g.nodes.values() if n.type in ("Dense", "Conv2D"))
        key = "units" if dense.type == "Dense" else "filters"
        out["add"] = timed("add a node", lambda: w.add_at_centre("Dense"))
        out["param"] = timed(f"change a parameter ({key})", lambda: w.doc.push(SetParamsCmd(
            w.doc, dense.id, {key: g.nodes[dense.id].params[key] + 1})))
        out["undo"] = timed("undo", w.doc.undo.undo)
        out["redo"] = timed("redo", w.doc.undo.redo)
        out["repaint"] = timed("repaint the whole window", w.grab)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, nargs="*", default=[100, 300, 500])
    ap.add_argument("--no-resnet", action="store_true")
    ap.add_argument("--no-edits", action="store_true", help="skip the single edits")
    ap.add_argument("--clock", choices=CLOCK, default="wall",
                    help="wall-clock time, or this process's CPU time (steadier on a machine "
                         "others use: threads aside, what the editor computes and paints)")
    args = ap.parse_args(argv)
    global now
    now = CLOCK[args.clock]
    print(f"times: {args.clock} clock")
    from PySide6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication([])
    from layerloom.app.editing.document import Document
    from layerloom.app.window.main_window import MainWindow
    w = MainWindow(confirm=False)
    w.resize(1400, 900)
    w.show()
    app.processEvents()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.nodes:
            path = os.path.join(tmp, f"graph{n}.loom")
            with open(path, "w", encoding="utf-8") as f:
                f.write(residual_project(n))
            results[f"{n} nodes"] = measure(app, w, f"generated graph, {n} nodes",
                                            lambda: Document.open(path), not args.no_edits)
    if not args.no_resnet:
        from layerloom.app.window.window_interop import read_model
        from layerloom.project import loom as projectfile
        path = resnet_path()
        t = now()
        project, _ = read_model(path)
        print(f"Keras ResNet50 read (import and layout, not in 'open'): {ms(t):.0f} ms")
        text = projectfile.dumps(project)
        results["ResNet50"] = measure(
            app, w, "Keras ResNet50, imported (its layout timed in 'open')",
            lambda: Document(relaid(projectfile.loads(text, strict=False))), not args.no_edits)
    print("summary (ms): " + "; ".join(
        f"{k}: open {v['open']:.0f}, drag {v['drag']:.1f}, layout {v['layout']:.0f}, "
        f"paste {v['paste']:.0f} / undo {v['paste undo']:.0f}" for k, v in results.items()))
    w.shutdown()
    w.deleteLater()
    app.processEvents()


if __name__ == "__main__":
    main()
