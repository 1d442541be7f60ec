"""A sweep's runs in the Runs tab (runs_panel.py): ranked by the sweep's metric (each trial's
latest run; engine/project/sweeps.py ranks), the metric plotted against a swept parameter, the
best restored in one click. A mixin of RunsPanel, which builds the widgets it fills (show_which,
parameter, sweep_plot, restore_best, sweep_button) and its records."""
import pyqtgraph as pg

from layerloom.project import sweeps


class SweepRanking:
    def sweep_names(self):
        """The sweeps among the records, oldest first."""
        return list(dict.fromkeys(r["sweep"]["name"] for r in self.records
                                  if isinstance(r.get("sweep"), dict) and "name" in r["sweep"]))

    def sweep_records(self, name=None):
        """A sweep's runs: each trial's latest, by trial."""
        name = name or self.sweep_name
        latest = {}
        for r in self.records:
            sw = r.get("sweep")
            if isinstance(sw, dict) and sw.get("name") == name:
                latest[sw.get("trial")] = r
        return [latest[t] for t in sorted(latest, key=str)]

    def sweep_metric(self):
        """(metric, goal) of the sweep shown, as its latest run has them."""
        recs = self.sweep_records()
        sw = recs[-1]["sweep"] if recs else {}
        return sw.get("metric", "loss"), sw.get("goal", "min")

    def swept(self):
        names = []
        for r in self.sweep_records():
            names += [k for k in r["sweep"].get("values", {}) if k not in names]
        return names

    def ranking(self):
        """[(value or None, record)] of the sweep shown, best first; a stopped trial has no
        rank."""
        metric, goal = self.sweep_metric()
        return sweeps.ranked([(None if r.get("stopped") else sweeps.value_of(r, metric), r)
                              for r in self.sweep_records()], goal)

    def best(self):
        if self.sweep_name is None:
            return None
        ranking = self.ranking()
        return ranking[0][1] if ranking and ranking[0][0] is not None else None

    def show_sweep(self, name):
        """Show one sweep's runs ranked (None: every run)."""
        index = self.show_which.findData(name)
        if index >= 0:
            self.show_which.setCurrentIndex(index)
        return index >= 0

    def _fill_show_which(self):
        names = self.sweep_names()
        if self.sweep_name not in names:
            self.sweep_name = None
        self.show_which.blockSignals(True)
        self.show_which.clear()
        self.show_which.addItem(f"All runs ({len(self.records)})", None)
        for name in names:
            self.show_which.addItem(f"Sweep {name} ({len(self.sweep_records(name))} runs, "
                                    "ranked)", name)
        self.show_which.setCurrentIndex(max(0, self.show_which.findData(self.sweep_name)))
        if self.sweep_name is not None:  # a trial that ended since is shown with the others
            self.checked = {r["id"] for r in self.sweep_records()}
        self.show_which.setEnabled(bool(names))
        self.show_which.blockSignals(False)
        self.views.setTabEnabled(self.sweep_tab, self.sweep_name is not None)

    def _show_which_changed(self, _):
        self.sweep_name = self.show_which.currentData()
        self.views.setTabEnabled(self.sweep_tab, self.sweep_name is not None)
        if self.sweep_name is not None:
            self.checked = {r["id"] for r in self.sweep_records()}
            self.views.setCurrentIndex(self.sweep_tab)
        self._fill_table()
        self._fill_quantities()
        self._draw()
        self._fill_compare()
        self._fill_parameters()

    def set_sweeping(self, running):
        """A sweep runs (the button stops it) or not."""
        self.sweeping = running
        self.sweep_button.setText("Stop Sweep" if running else "Sweep...")

    def _fill_parameters(self):
        refill(self.parameter, self.swept() if self.sweep_name else [])
        self._draw_sweep()

    def sweep_points(self):
        """[(parameter value, metric value)] the plot shows: the ranked trials' figures against
        the chosen parameter, in the parameter's order."""
        name = self.parameter.currentText()
        if not self.sweep_name or not name:
            return []
        pts = [(r["sweep"]["values"].get(name), v) for v, r in self.ranking()
               if v is not None and r["sweep"]["values"].get(name) is not None]
        return sorted(pts, key=lambda p: (isinstance(p[0], str), p[0]))

    def _draw_sweep(self):
        self.sweep_plot.clear()
        metric, goal = self.sweep_metric() if self.sweep_name else ("", "")
        name = self.parameter.currentText()
        pts = self.sweep_points()
        self.sweep_plot.setTitle(f"{metric} ({'lower' if goal == 'min' else 'higher'} is "
                                 f"better) by {name}" if pts else "")
        axis = self.sweep_plot.getAxis("bottom")
        axis.setTicks(None)
        self.sweep_plot.setLogMode(x=False, y=False)
        if not pts:
            return
        xs = [p[0] for p in pts]
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs):
            xs = [float(x) for x in xs]
            log = min(xs) > 0 and max(xs) / min(xs) >= 100
            self.sweep_plot.setLogMode(x=log, y=False)
        else:  # choices (an optimizer): one place each
            labels = list(dict.fromkeys(str(x) for x in xs))
            axis.setTicks([list(enumerate(labels))])
            xs = [labels.index(str(x)) for x in xs]
        self.sweep_plot.setLabel("bottom", name)
        self.sweep_plot.setLabel("left", metric)
        ys = [p[1] for p in pts]
        self.sweep_plot.plot(xs, ys, pen=pg.mkPen("#1f77b4", width=1), symbol="o",
                             symbolSize=9, symbolBrush="#1f77b4")
        best = self.best()
        if best is not None and best["sweep"]["values"].get(name) is not None:
            bx = best["sweep"]["values"][name]
            bx = xs[[p[0] for p in pts].index(bx)] if bx in [p[0] for p in pts] else bx
            self.sweep_plot.plot([bx], [self.ranking()[0][0]], pen=None, symbol="star",
                                 symbolSize=18, symbolBrush="#d62728")

    def _restore_best_clicked(self):
        rec = self.best()
        if rec is not None:
            self.sigRestore.emit(rec)


def refill(box, items):
    """A combo box's items replaced, its current one kept where it is still there, without
    signals (the caller draws)."""
    current = box.currentText()
    box.blockSignals(True)
    box.clear()
    box.addItems(items)
    if current in items:
        box.setCurrentText(current)
    box.blockSignals(False)
