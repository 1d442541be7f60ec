"""Blocks in the editor (issue 30, item 1): Edit > Make Block (the selected layers become one
node of a new block type, with the parameters chosen in a dialog promoted), Expand Block (an
instance's layers back in its place), File > Import Block and Export Block (block files, the
user's library), and the palette's Blocks category (the project's block types, then the
library's: adding one of the library's defines it in the project first, in the same undo
step). A mixin of MainWindow (app/window/main_window.py)."""
import os

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (QCheckBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout,
                               QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout,
                               QWidget)

from layerloom.core import block_edits, blocks
from layerloom.core.errors import LayerloomError
from layerloom.project import block_library

from layerloom.app.canvas.canvas_items import NODE_W
from layerloom.app.editing.block_commands import (DefineBlocksCmd, ExpandBlockCmd,
                                                  MakeBlockCmd, RedefineBlockCmd)
from layerloom.app.look.dialogs import start_in

BLOCK_FILTER = f"Layerloom blocks (*{block_library.SUFFIX});;All files (*)"


def free_block_name(graph, base="Block"):
    """Block, Block2, Block3...: the first name neither a layer type nor a block has."""
    from layerloom.core.registry import get_layer
    k = 1
    while True:
        name = base if k == 1 else f"{base}{k}"
        if name not in graph.blocks and get_layer(name) is None:
            return name
        k += 1


class MakeBlockDialog(QDialog):
    """The block's name and which parameters to promote (each one the selection sets,
    suggested by core.block_edits.suggested_params: `filters` of a pair of convolutions)."""

    def __init__(self, parent, graph, ids):
        super().__init__(parent)
        self.setWindowTitle("Make Block")
        self.graph, self.ids = graph, ids
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.name = QLineEdit(free_block_name(graph))
        self.name.selectAll()
        form.addRow("Name:", self.name)
        lay.addLayout(form)
        self.suggested = block_edits.suggested_params(graph, ids)
        self.checks = {}
        if self.suggested:
            lay.addWidget(QLabel("Parameters of the block (set on each of its nodes):"))
            for name, (default, targets) in self.suggested.items():
                if default is None:  # nothing to promote (strides left to their default)
                    continue
                shown = ("x".join(map(str, default)) if isinstance(default, (list, tuple))
                         else default)  # as the node faces show it: 3x3
                box = QCheckBox(f"{name} = {shown}: sets "
                                + ", ".join(t.text() for t in targets))
                box.setChecked(name in ("filters", "units") and bool(targets))
                self.checks[name] = box
                lay.addWidget(box)
        self.error = QLabel()
        self.error.setStyleSheet("color: #d62828")
        self.error.setWordWrap(True)
        self.error.hide()
        lay.addWidget(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.made = None

    def promoted(self):
        return {n: self.suggested[n][1] for n, box in self.checks.items() if box.isChecked()}

    def _accept(self):
        try:
            self.made = block_edits.make_block(self.graph, self.ids, self.name.text().strip(),
                                          self.promoted())
        except LayerloomError as e:  # said in the dialog: the name can be mended there
            self.error.setText(e.message)
            self.error.show()
            return
        self.accept()


class BlockActions:
    def _build_block_file_actions(self, file_menu):
        self._act(file_menu, "Import &Block...", "", lambda: self.import_block())
        self._act(file_menu, "Export Bloc&k...", "", lambda: self.export_block())

    def _build_block_actions(self, edit_menu):
        edit_menu.addSeparator()
        self.make_block_action = self._act(edit_menu, "Make &Block...", "Ctrl+B",
                                           lambda: self.make_block())
        self.make_block_action.setToolTip("The selected layers become one node of a new "
                                          "block type, reusable from the palette")
        self.expand_block_action = self._act(edit_menu, "E&xpand Block", "Ctrl+Shift+B",
                                             lambda: self.expand_block())

    # -- the palette's Blocks ------------------------------------------------------------------
    def refresh_blocks(self, *_):
        """The palette's Blocks category: the project's types, then the library's others."""
        entries, seen = [], set()
        for name, bt in self.doc.graph.blocks.items():
            entries.append((name, bt.help, "this project"))
            seen.add(name)
        self.block_library, problems = block_library.library()
        for name, e in sorted(self.block_library.items()):
            if name not in seen:
                entries.append((name, e.help, "bundled" if e.bundled else
                                f"library: {os.path.basename(e.path)}"))
        for p in problems:
            self.log_line(f"Block library: {p}")
        self.palette.set_blocks(entries)
        # typed entries ("resblock 64" in the palette's search or the canvas's Tab box)
        types = list(self.doc.graph.blocks.values()) + [
            e.types[name] for name, e in sorted(self.block_library.items())
            if name not in self.doc.graph.blocks]
        self.palette.extra_types = self.view.extra_types = types

    def define_library_block(self, type_id):
        """Before `type_id` is added: where it is a library block the project lacks, its
        types are defined (an undo step of its own, inside the caller's). False where that
        is refused (a block of the same name that differs)."""
        if type_id in self.doc.graph.blocks or type_id not in getattr(self, "block_library", {}):
            return True
        try:
            types = block_library.needed(self.block_library[type_id], self.doc.graph)
        except LayerloomError as e:
            self.message(f"Not added: {e.message}")
            return False
        if types:
            self.doc.push(DefineBlocksCmd(self.doc, types))
        return True

    # -- Make and Expand -----------------------------------------------------------------------
    def make_block(self, name=None, promote=None):
        """Edit > Make Block: the selection becomes one instance of a new block type, where
        its first node was. With `name` (tests, scripts) no dialog is shown."""
        ids = self.selected_ids()
        if not ids:
            self.message("Make Block: select the layers the block is made of first")
            return None
        if not self.scene.editable():
            self.message("Make Block: not while a run trains")
            return None
        if name is None:
            dialog = MakeBlockDialog(self, self.doc.graph, ids)
            if not dialog.exec() or dialog.made is None:
                return None
            made = dialog.made
        else:
            try:
                made = block_edits.make_block(self.doc.graph, ids, name, promote)
            except LayerloomError as e:
                self.message(f"Make Block: {e.message}")
                return None
        pos = self.doc.positions()
        xs = [pos.get(i, [0, 0]) for i in made.removed]
        at = (min(p[0] for p in xs), min(p[1] for p in xs))
        self.doc.push(MakeBlockCmd(self.doc, made, at))
        self.scene.clearSelection()
        self.scene.nodes[made.instance].setSelected(True)
        n = len(made.removed)
        self.message(f"{made.instance} is a {made.block.type_id} block now ({n} layer"
                     f"{'s' if n != 1 else ''}; double-click to open it). The palette's "
                     "Blocks list it")
        return made.instance

    def selected_block(self):
        ids = self.selected_ids()
        g = self.doc.graph
        found = [i for i in ids if isinstance(g.nodes[i].layer, blocks.BlockType)]
        return found[0] if len(found) == 1 and len(ids) == 1 else None

    def expand_block(self, nid=None):
        """Edit > Expand Block: the selected instance's layers in its place, wired as it was
        (blocks used inside it stay blocks), laid out along the flow; one undo step."""
        nid = nid or self.selected_block()
        if nid is None:
            self.message("Expand Block: select one block node first")
            return []
        try:
            plan = block_edits.inline_plan(self.doc.graph, nid)
        except LayerloomError as e:
            self.message(f"Expand Block: {e.message}")
            return []
        x0, y0 = self.doc.positions().get(nid, [0, 0])
        rank = _ranks(plan)
        down = self.scene.flow == "down"
        row = {}
        spots = {}
        for node_id, *_ in plan.nodes:
            r = rank[node_id]
            k = row.get(r, 0)
            row[r] = k + 1
            step, side = (r * 140, k * (NODE_W + 40)) if down else (r * (NODE_W + 50), k * 120)
            spots[node_id] = (x0 + side, y0 + step) if down else (x0 + step, y0 + side)
        self.doc.undo.beginMacro(f"Expand Block {nid}")
        try:  # its layers, then the graph laid out again: they never land on other nodes
            self.doc.push(ExpandBlockCmd(self.doc, plan, spots))
            layout = self.layout_cmd()
            if layout is not None:
                self.doc.push(layout)
        finally:
            self.doc.undo.endMacro()
        self.scene.clearSelection()
        for node_id, *_ in plan.nodes:
            self.scene.nodes[node_id].setSelected(True)
        self.view.fit(whole=True)
        n = len(plan.nodes)
        self.message(f"Expanded {nid}: {n} layer{'s' if n != 1 else ''} in its place "
                     "(Ctrl+Z puts the block back)")
        return [n[0] for n in plan.nodes]

    def _open_node(self, nid):
        """A node double-clicked: a block opens."""
        node = self.doc.graph.nodes.get(nid)
        if node is not None and isinstance(node.layer, blocks.BlockType):
            self.open_block(nid)

    # -- Open Block: its graph in the canvas, a bar leading back ----------------------------------
    def block_path(self):
        """[(document, block name)] from the project to the block open now ([]: none)."""
        out, doc = [], self.doc
        while getattr(doc, "block_of", None):
            parent, name = doc.block_of
            out.insert(0, (parent, name))
            doc = parent
        return out

    def root_doc(self):
        """The project's document, whichever block is open."""
        path = self.block_path()
        return path[0][0] if path else self.doc

    def open_block(self, nid=None):
        """Double-click on a block node (or its menu's Open Block): the block's own graph in
        the canvas, edited with every tool of the editor (its Inputs stand for its inputs and
        their shapes are examples). The bar above the canvas goes back: the edits then apply
        to the block type, and each of its instances follows (one undo step in the project);
        Discard goes back without them."""
        from layerloom.core.layout import auto_layout
        from layerloom.project import loom
        from layerloom.project.loom import Project
        from layerloom.app.editing.document import Document
        nid = nid or self.selected_block()
        g = self.doc.graph
        if nid is None or not isinstance(g.nodes[nid].layer, blocks.BlockType):
            self.message("Open Block: select one block node first")
            return None
        if self.training.worker is not None:
            self.message("Open Block: not while a run trains")
            return None
        block = g.nodes[nid].layer
        problems = []  # the block's graph with copies of the types: what is edited inside it
        # (a block opened in it, a block made in it) joins the project on Back, not before
        types = loom.parse_blocks(loom.blocks_dict(g), problems)
        inner = loom.parse_graph(loom.graph_dict(block.graph), problems, blocks=types)
        project = Project(inner, name=block.type_id)
        vp = self.view.viewport()  # laid out in rows of the canvas's shape, as Ctrl+L does
        flow = self.scene.flow
        at = auto_layout(inner, flow=flow, view=(max(vp.width(), 600), max(vp.height(), 400)),
                         short=6)  # a block's dozen layers in rows that stay readable
        project.ui = {"positions": {k: list(p) for k, p in at.items()}, "flow": flow}
        doc = Document(project)
        doc.block_of = (self.doc, block.type_id)
        self.set_document(doc)
        self._focus_canvas()
        self.message(f"Editing block {block.type_id}: Back applies the edits to its "
                     f"{sum(n.type == block.type_id for n in g.nodes.values())} node(s)")
        return doc

    def _focus_canvas(self):
        """The keyboard on the canvas once it is shown (Ctrl+Z went to the palette's search box
        after Back, the newcomer trial found)."""
        view = self.view
        QTimer.singleShot(0, lambda: view.setFocus() if view is self.view else None)

    def _block_bar(self):
        """The bar above the canvas while a block is open: where it is, Back and Discard."""
        path = self.block_path()
        bar = QWidget()
        lay = QHBoxLayout(bar)
        lay.setContentsMargins(6, 3, 6, 3)
        root = path[0][0]
        names = [os.path.basename(root.path) if root.path else "untitled"] + [n for _, n in path]
        crumbs = QLabel(" \u203a ".join(names))
        crumbs.setStyleSheet("font-weight: bold")
        back = QPushButton(f"\u2190 Back to {names[-2]}")
        back.setToolTip("Apply the edits to the block (its nodes in the project follow) and "
                        "go back")
        back.clicked.connect(lambda: self.close_block(True))
        discard = QPushButton("Discard Edits")
        discard.setToolTip("Go back without changing the block")
        discard.clicked.connect(lambda: self.close_block(False))
        self.block_ports = QLabel()  # its inputs and outputs as Back would make them
        self.block_ports.setStyleSheet("color: gray")
        lay.addWidget(QLabel("Block:"))
        lay.addWidget(crumbs)
        lay.addWidget(self.block_ports)
        lay.addStretch(1)
        lay.addWidget(discard)
        lay.addWidget(back)
        bar.setObjectName("block_bar")
        self.block_back, self.block_crumbs = back, crumbs
        self.doc.sigChanged.connect(self._show_block_ports)
        self._show_block_ports()
        return bar

    def _show_block_ports(self):
        """The bar says what the block's inputs and outputs are as edited now (a layer added
        after an output becomes the output), or why it is no block yet."""
        from layerloom.core.errors import LayerloomError
        if not getattr(self.doc, "block_of", None):
            return
        parent, name = self.doc.block_of
        try:
            b = block_edits.redefined(parent.graph.blocks[name], self.doc.graph)[0]
        except LayerloomError as e:
            self.block_ports.setText(f"not a block yet: {e.message}")
            return
        outs = [n if p == 0 else f"{n}:{p}" for n, p in b.output_refs]
        self.block_ports.setText(f"in: {', '.join(b.input_ids)} \u2192 out: {', '.join(outs)}")

    def show_block_mode(self):
        """After set_document: in a block, the bar above the canvas and no training (a block
        has no data of its own)."""
        if not self.block_path():
            return
        holder = QWidget()
        lay = QVBoxLayout(holder)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self._block_bar())
        lay.addWidget(self.view)
        self.setCentralWidget(holder)
        self.run_action.setEnabled(False)
        self.training.setEnabled(False)
        self.training.setToolTip("A block trains as part of a project: go back to run it")

    def block_problems(self):
        """The Problems list in a block: its layers' problems, and why it would be no block."""
        from layerloom.core.errors import ProjectError
        g = self.doc.graph
        found = [(str(p), getattr(p, "node", None), p) for p in g.validate()
                 if p.kind not in ("no_output",)]
        parent, name = self.doc.block_of
        try:
            block_edits.redefined(parent.graph.blocks[name], g)
        except ProjectError as e:
            found.append((f"Block: {e.message}", None, None))
        return found

    def close_block(self, apply=True):
        """Back from an open block: with apply, its graph becomes the block type (refused,
        with the reason, where it is no block or an instance uses a port it no longer has).
        True once back."""
        if not self.block_path():
            return True
        from layerloom.core.errors import LayerloomError
        parent, name = self.doc.block_of
        old = parent.graph.blocks[name]
        new, others = None, []
        if apply and self.doc.undo.count():
            try:
                new, in_moves, out_moves = block_edits.redefined(old, self.doc.graph)
            except LayerloomError as e:
                self.message(f"Block {name} not changed: {e.message} (Discard Edits goes back "
                             "without the edits)")
                return False
            why = _rewired(parent.graph, name, in_moves, out_moves)
            if why:
                self.message(f"Block {name} not changed: {why}; give it back its inputs and "
                             "outputs, or Discard Edits")
                return False
            # blocks defined or edited inside it (its document has its own copies of the types)
            from layerloom.project.loom import block_dict
            others = [t for n, t in self.doc.graph.blocks.items() if n != name and (
                n not in parent.graph.blocks or
                block_dict(parent.graph.blocks[n]) != block_dict(t))]
        inner = self.doc
        self.set_document(parent)
        self._focus_canvas()
        inner.deleteLater()
        if new is not None:
            parent.undo.beginMacro(f"Edit Block {name}")
            try:
                for t in others:  # each before the blocks using it, as the copy holds them
                    parent.push(RedefineBlockCmd(parent, parent.graph.blocks.get(t.type_id), t))
                parent.push(RedefineBlockCmd(parent, old, new))
            finally:
                parent.undo.endMacro()
            self.message(f"Block {name} changed: its nodes follow (Undo takes it back)")
        return True

    # -- block files ---------------------------------------------------------------------------
    def export_block(self, name=None, path=None):
        """File > Export Block: the selected block's type (with the blocks it uses) to a block
        file; by default into the user's library, so the palette offers it in every project."""
        g = self.doc.graph
        if name is None:
            nid = self.selected_block()
            name = g.nodes[nid].type if nid else (next(iter(g.blocks)) if len(g.blocks) == 1
                                                   else None)
        if name is None:
            self.message("Export Block: select a block node first")
            return None
        if path is None:
            folder = block_library.user_folder()
            os.makedirs(folder, exist_ok=True)
            path, _ = QFileDialog.getSaveFileName(
                self, f"Export Block {name}", os.path.join(folder, name + block_library.SUFFIX),
                BLOCK_FILTER)
            if not path:
                return None
        try:
            block_library.write(path, g, [name])
        except (OSError, LayerloomError) as e:
            self.message(f"Block not exported: {getattr(e, 'message', None) or e}")
            return None
        self.refresh_blocks()
        self.message(f"Exported block {name} to {path}")
        return path

    def import_block(self, path=None):
        """File > Import Block: the block types of a block file join the project (one undo
        step) and the palette's Blocks."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Import Block",
                                                  start_in(self), BLOCK_FILTER)
            if not path:
                return []
        g = self.doc.graph
        try:
            types = block_library.read(path, known=g.blocks)
        except LayerloomError as e:
            self.message(f"Block not imported: {os.path.basename(path)}: {e}")
            return []
        from layerloom.project.loom import block_dict
        new = []
        for name, bt in types.items():
            have = g.blocks.get(name)
            if have is not None and block_dict(have) != block_dict(bt):
                self.message(f"Block not imported: the project has another block called "
                             f"{name!r}; rename one of them first")
                return []
            if have is None:
                new.append(bt)
        if new:
            self.doc.push(DefineBlocksCmd(self.doc, new, f"Import Block {os.path.basename(path)}"))
        self.message(f"Imported {', '.join(types)} from {os.path.basename(path)}: in the "
                     "palette's Blocks")
        return list(types)


def _ranks(plan):
    """{node id: its depth among the expanded nodes}, for placing them along the flow."""
    ids = {n[0] for n in plan.nodes}
    rank = {nid: 0 for nid in ids}
    for _ in range(len(ids)):  # longest path, by relaxation (blocks are small)
        changed = False
        for src, _, dst, _ in plan.edges:
            if src in ids and dst in ids and rank[dst] < rank[src] + 1:
                rank[dst] = rank[src] + 1
                changed = True
        if not changed:
            break
    return rank



def _rewired(graph, name, in_moves, out_moves):
    """Why the instances of block `name` in `graph` cannot follow its new ports (a wired port
    it no longer has, or one that moved), or None."""
    for nid, n in graph.nodes.items():
        if n.type != name:
            continue
        for e in graph.in_edges(nid):
            if in_moves.get(e.dst_port, e.dst_port) != e.dst_port:
                return (f"{nid!r}'s input {e.dst_port} is wired, and the block " +
                        ("no longer has that input" if in_moves.get(e.dst_port) is None else
                         f"would take it as input {in_moves[e.dst_port]}"))
        for e in graph.out_edges(nid):
            if out_moves.get(e.src_port, e.src_port) != e.src_port:
                return (f"{nid!r}'s output {e.src_port} is wired, and the block " +
                        ("no longer has that output" if out_moves.get(e.src_port) is None else
                         f"would give it as output {out_moves[e.src_port]}"))
    return None
