"""The Curves tab: loss and metric curves plotted live while training runs (batch read-outs,
validation per epoch), redrawn at most every 250 ms, with a hover read-out."""
import pyqtgraph as pg
from PySide6.QtCore import QTimer

from layerloom.app.look import theme


class Curves(pg.GraphicsLayoutWidget):
    def __init__(self, epochs):
        pg.setConfigOptions(antialias=True, background=theme.hex_color("plot_bg"),
                            foreground=theme.hex_color("plot_fg"), exitCleanup=False)
        super().__init__()
        self.loss_plot = self.addPlot(title="loss")
        self.metric_plot = self.addPlot(title="metrics")
        # legends where the curves are not: losses fall (top right), metrics mostly rise
        self.loss_plot.addLegend(offset=(-10, 10))
        self.metric_plot.addLegend(offset=(-10, -10))
        for plot in (self.loss_plot, self.metric_plot):
            plot.showGrid(x=True, y=True, alpha=0.3)
            plot.setLabel("bottom", "epoch")
            for side in ("bottom", "left"):  # epochs and losses as numbers, not "(x0.001)"
                plot.getAxis(side).enableAutoSIPrefix(False)
            plot.setXRange(0, max(1, epochs))
            plot.setYRange(0, 1)
        self.hint = pg.TextItem("curves appear here while training runs",
                                color=theme.hex_color("hint"),
                                anchor=(0.5, 0.5))
        self.loss_plot.addItem(self.hint)
        self.hint.setPos(max(1, epochs) / 2, 0.5)
        self.curves = {}
        self.series = {}
        self._dirty = set()
        self._follow = False  # the axes start following the data at the first read-out
        self._redraw = QTimer(self, singleShot=True, interval=250)
        self._redraw.timeout.connect(self.flush)
        self.readout = pg.TextItem(color=theme.hex_color("plot_fg"), anchor=(0, 1))
        self.loss_plot.addItem(self.readout)
        self.loss_plot.scene().sigMouseMoved.connect(self._hover)

    def begin(self, keep=False, epochs=None):
        """A run starts: the hint goes, the axes follow the data from its first read-out (until
        then they show the run's epochs and 0..1, not an empty plot's -2..2); keep: go on
        drawing the curves so far (a resumed run), else they start empty."""
        self.hint.setVisible(False)
        self._follow = not keep  # a resumed run's axes follow the data at once
        for plot in (self.loss_plot, self.metric_plot):
            if keep:
                plot.enableAutoRange()
            else:
                plot.setXRange(0, max(1, epochs or 1))
                plot.setYRange(0, 1)
        if not keep:
            for c in self.curves.values():
                c.setData([], [])
            self.series = {k: ([], []) for k in self.series}

    def curve(self, key):
        if key not in self.curves:
            is_loss = key.endswith("loss")
            plot = self.loss_plot if is_loss else self.metric_plot
            colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
            # a validation curve takes its training curve's colour (dashed)
            base = key[4:] if key.startswith("val_") else key
            bases = list(dict.fromkeys(k[4:] if k.startswith("val_") else k for k in self.curves
                                       if k.endswith("loss") == is_loss))
            color = colors[(bases.index(base) if base in bases else len(bases)) % 6]
            style = {"width": 2}
            if key.startswith("val_"):
                style["style"] = pg.QtCore.Qt.DashLine
            # NOTE: no symbols: scatter symbols made each redraw 2-3x slower on the GUI thread
            # and pushed event-loop gaps past 100 ms while training (bench/training_ui.py)
            self.curves[key] = plot.plot([], [], pen=pg.mkPen(color, **style), name=key)
            self.series[key] = ([], [])
        return self.curves[key]

    def add_point(self, key, x, y):
        """Series grow at once; curves are redrawn at most every 250 ms, so a burst of queued
        updates (many short epochs) costs one redraw instead of one per point."""
        self.curve(key)
        xs, ys = self.series[key]
        xs.append(x)
        ys.append(y)
        self._dirty.add(key)
        if not self._redraw.isActive():
            self._redraw.start()

    def flush(self):
        for key in self._dirty:
            c, xs = self.curves[key], self.series[key][0]
            c.setData(*self.series[key], skipFiniteCheck=True)
            # one point is no line: a marker until the second (a 1-epoch run's validation)
            alone = len(xs) == 1
            if alone != (c.opts["symbol"] is not None):
                pen = c.opts["pen"]
                c.setSymbol("o" if alone else None)
                if alone:
                    c.setSymbolBrush(pen.color())
                    c.setSymbolPen(pen.color())
                    c.setSymbolSize(7)
        if self._dirty and self._follow:
            self._follow = False
            for plot in (self.loss_plot, self.metric_plot):
                plot.enableAutoRange()
        self._dirty.clear()

    def _hover(self, pos):
        vb = self.loss_plot.vb
        if not self.loss_plot.sceneBoundingRect().contains(pos):
            return
        p = vb.mapSceneToView(pos)
        parts = []
        for key, (xs, ys) in self.series.items():
            if xs:
                i = min(range(len(xs)), key=lambda k: abs(xs[k] - p.x()))
                parts.append(f"{key} {ys[i]:.4f}")
        self.readout.setText(f"epoch {p.x():.2f}\n" + "\n".join(parts))
        self.readout.setPos(p.x(), p.y())
