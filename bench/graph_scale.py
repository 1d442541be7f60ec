"""Graph operations on large graphs (issue 26, item 9): each should grow linearly with the node
count. Prints seconds for:

- a graph of N Dense nodes after one Input (unconnected: the issue's case, every Dense a
  problem; and in a chain), built through the Graph API (which has no node limit): problems(),
  compute_shapes(), the analysis (what infer_shapes() returns), auto-layout, removing every
  node last first (as an undo of a paste does);
- a project file of min(N, MAX_NODES) such nodes: reading it, and `--run` reaching its exit 2;
  a file of 3 x MAX_NODES nodes, refused by the limit;
- a paste (parse_text + PasteCmd, a document without a window) of MAX_NODES / 2 nodes into a
  document holding them: fresh ids for every node, then undo.

    python bench/graph_scale.py [--nodes 20000] [--no-run] [--no-paste]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def project_text(n, chain):
    nodes = [{"id": "in", "type": "Input", "params": {"shape": [4]}}]
    nodes += [{"id": f"d{i}", "type": "Dense", "params": {"units": 4}} for i in range(n)]
    edges = []
    if chain:
        prev = "in"
        for i in range(n):
            edges.append({"from": [prev, 0], "to": [f"d{i}", 0]})
            prev = f"d{i}"
    return json.dumps({"format": "layerloom-project", "version": 1,
                       "graph": {"nodes": nodes, "edges": edges},
                       "dataset": {"source": "synthetic", "name": "spirals"},
                       "training": {"loss": "categorical_crossentropy"}})


def build(n, chain):
    from layerloom.core.graph import Graph
    g = Graph()
    g.add_node("Input", {"shape": [4]}, id="in")
    prev = "in"
    for i in range(n):
        g.add_node("Dense", {"units": 4}, id=f"d{i}")
        if chain:
            g.connect(prev, 0, f"d{i}", 0)
            prev = f"d{i}"
    return g


def timed(label, fn):
    t = time.perf_counter()
    out = fn()
    print(f"  {label:<36} {time.perf_counter() - t:8.3f} s", flush=True)
    return out


def run_cli(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "big.loom")
        with open(path, "w") as f:
            f.write(text)
        r = timed("--run to its exit", lambda: subprocess.run(
            [sys.executable, "-m", "layerloom.cli", "--run", path, "--out",
             os.path.join(tmp, "out")], capture_output=True, text=True))
        lines = r.stderr.splitlines() or [""]
        print(f"    exit {r.returncode}; {len(lines)} lines, longest "
              f"{max(map(len, lines))} characters")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=20000)
    ap.add_argument("--no-run", action="store_true")
    ap.add_argument("--no-paste", action="store_true")
    args = ap.parse_args()
    from layerloom.core import analysis, graph as graph_module
    # (an older checkout has no limit: PYTHONPATH pointing at one gives the figures before)
    MAX_NODES = getattr(graph_module, "MAX_NODES", 10_000)
    from layerloom.core.layout import auto_layout
    from layerloom.project import loom as projectfile
    n = args.nodes
    for chain in (False, True):
        print(f"a graph of {n} Dense nodes, {'a chain' if chain else 'unconnected'}:")
        g = build(n, chain)
        timed("problems()", g.problems)
        timed("compute_shapes()", g.compute_shapes)
        timed("analysis (infer_shapes())", lambda: analysis.analyse(g, g.version))
        timed("auto_layout()", lambda: auto_layout(g))
        timed("remove every node, last first", lambda: [g.remove_node(i)
                                                         for i in reversed(list(g.nodes))])
    f = min(n, MAX_NODES - 1)
    for chain in (False, True):
        print(f"a file of {f} Dense nodes, {'a chain' if chain else 'unconnected'}:")
        text = project_text(f, chain)
        timed("read it (strict=False)", lambda: projectfile.loads(text, strict=False))
        if not args.no_run and not chain:
            run_cli(text)
    if not args.no_run:
        print(f"a file of {3 * MAX_NODES} unconnected Dense nodes:")
        run_cli(project_text(3 * MAX_NODES, False))
    if not args.no_paste:
        from PySide6.QtWidgets import QApplication
        from layerloom.app.editing.clipboard import copy_text, parse_text
        from layerloom.app.editing.commands import PasteCmd
        from layerloom.app.editing.document import Document
        QApplication.instance() or QApplication([])
        p = MAX_NODES // 2 - 1
        print(f"a paste of {p + 1} nodes (a chain) into a document that holds them:")
        doc = Document(projectfile.loads(project_text(p, True), strict=False))
        clip = timed("copy_text() of every node", lambda: copy_text(doc, list(doc.graph.nodes)))
        sub, pos = timed("parse_text()", lambda: parse_text(clip))
        timed("PasteCmd (fresh ids) + push", lambda: doc.push(PasteCmd(doc, sub, pos)))
        timed("analysis after the paste", lambda: doc.graph.analysis())
        timed("undo the paste", doc.undo.undo)


if __name__ == "__main__":
    main()
