"""Registries with a public register, filled by the built-ins and by installed plugins through
entry points (engine/core/plugins.py): a plugin's layer and source are found, a name already
taken is refused, and a broken plugin is reported once by name while the built-ins go on."""
import sys
import textwrap
import warnings

import pytest

from layerloom.core import plugins, registry
from layerloom.core.plugins import PluginWarning
from layerloom.data import sources
from layerloom.train import losses, metrics

PLUGIN_MODULES = ("llplug_layers", "llplug_sources", "llplug_losses", "llplug_metrics",
                  "llplug_duplicate", "llplug_harnessed")

LAYERS = '''
import numpy as np
from layerloom.core.registry import Layer, register


@register
class FakeScale(Layer):
    type_id = "FakeScale"
    help = "Doubles its input (a plugin's layer)."

    def output_shapes(self, p, in_shapes):
        return [in_shapes[0]]

    def forward(self, ops, s):
        raise NotImplementedError

    def backward(self, ops, s):
        raise NotImplementedError

    def reference(self, p, xs, ws, training=False):
        return [2.0 * np.asarray(xs[0], np.float64)]
'''

SOURCES = '''
from layerloom.data.sources import Source, register


def register_all():
    register(Source("fake_rows", "Rows from a plugin.", keys=(), load=lambda d, project, **k: None,
                    array_names=lambda d, project: ["x", "y"]))
'''

LOSSES = '''
from layerloom.train.losses import LossKind, register

register(LossKind("fake_loss", "A plugin's loss.", lambda p, t, lg: (p - t).mean(-1),
                  k_probs="regression", regression=0))
'''

METRICS = '''
import numpy as np
from layerloom.train.metrics import MetricKind, register

register(MetricKind("fake_abs", "A plugin's metric: mean absolute difference.", "abs_err",
                    lambda m, p, t: float(np.mean(np.abs(p - t)))))
'''

DUPLICATE = '''
from layerloom.core.registry import register
from layerloom.layers.core import Dense


@register
class AnotherDense(Dense):
    """Takes the built-in Dense's type id: refused."""
'''


@pytest.fixture
def install(tmp_path, monkeypatch):
    """install(entry_points_txt, modules): a distribution "llplug" on sys.path (a dist-info
    folder, as pip would leave it) and fresh registries that load its entry points."""
    registry.layer_types()
    sources.all_sources()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(sources, "_SOURCES", dict(sources._SOURCES))
    monkeypatch.setattr(sources, "_loaded", False)
    for name in ("KINDS", "ALIASES"):
        monkeypatch.setattr(losses, name, dict(getattr(losses, name)))
    monkeypatch.setattr(losses, "NAMES", losses.NAMES)
    for name in ("KINDS", "ALIASES"):
        monkeypatch.setattr(metrics, name, dict(getattr(metrics, name)))
    monkeypatch.setattr(metrics, "NAMES", metrics.NAMES)
    monkeypatch.setattr(plugins, "_loaded", {})

    def install(entry_points, modules):
        info = tmp_path / "llplug-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: llplug\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
        for name, text in modules.items():
            (tmp_path / f"{name}.py").write_text(text)
        monkeypatch.syspath_prepend(str(tmp_path))

    yield install
    for name in PLUGIN_MODULES:
        sys.modules.pop(name, None)


def test_a_plugin_registers_a_layer_a_source_a_loss_and_a_metric(install):
    install("""
        [layerloom.layers]
        scale = llplug_layers
        [layerloom.sources]
        rows = llplug_sources:register_all
        [layerloom.losses]
        fake = llplug_losses
        [layerloom.metrics]
        fake = llplug_metrics
        """, {"llplug_layers": LAYERS, "llplug_sources": SOURCES, "llplug_losses": LOSSES,
              "llplug_metrics": METRICS})
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)
        layer = registry.get_layer("FakeScale")
        source = sources.get("fake_rows")
        plugins.load_plugins("layerloom.losses")  # losses.py loads its group when imported
        plugins.load_plugins("layerloom.metrics")  # and metrics.py its own
    assert layer is not None and layer.help.startswith("Doubles")
    assert registry.get_layer("Dense") is not None  # the built-ins still there
    assert source is not None and sources.all_sources()[-1] is source  # after the built-ins
    assert [s.name for s in sources.all_sources()][:2] == ["synthetic", "keras"]
    assert "fake_loss" in losses.NAMES and losses.check_entry("fake_loss", "p")[1] == []
    assert "fake_abs" in metrics.NAMES and metrics.NAMES[0] == "accuracy"
    assert plugins.problems() == []


def test_a_name_already_taken_is_refused():
    class Dense(registry.Layer):
        type_id = "Dense"

    with pytest.raises(ValueError, match="registered twice"):
        registry.register(Dense)
    with pytest.raises(ValueError, match="registered twice"):
        sources.register(sources.Source("synthetic", "", (), load=None, array_names=None))
    with pytest.raises(ValueError, match="'mse' is registered twice"):
        losses.register(losses.LossKind("my_mse", "", lambda p, t, lg: 0, aliases=("mse",)))
    assert registry.get_layer("Dense").__class__.__name__ == "Dense"
    assert "my_mse" not in losses.KINDS


def test_a_broken_plugin_is_reported_once_and_the_built_ins_work(install):
    install("""
        [layerloom.layers]
        missing = llplug_not_there
        twice = llplug_duplicate
        [layerloom.sources]
        raises = llplug_sources:nothing_here
        """, {"llplug_duplicate": DUPLICATE, "llplug_sources": SOURCES})
    with pytest.warns(PluginWarning) as said:
        dense = registry.get_layer("Dense")
        names = [s.name for s in sources.all_sources()]
    assert dense is not None and dense.__class__.__name__ == "Dense"  # not the plugin's
    assert names == ["synthetic", "keras", "npz", "csv", "images", "npy", "text_folder"]
    lines = plugins.problems()
    assert len(lines) == len(said) == 3
    assert "'missing' (llplug_not_there from llplug 1.0)" in lines[0]
    assert "ModuleNotFoundError" in lines[0]
    assert "'twice'" in lines[1] and "'Dense' is registered twice" in lines[1]
    assert "'raises'" in lines[2] and "AttributeError" in lines[2]
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)  # said once
        registry.get_layer("Dense")
        sources.all_sources()
        assert plugins.load_plugins("layerloom.layers") == lines[:2]


HARNESSED = '''
import numpy as np
from layerloom.core.registry import Layer, register


@register
class PlugDouble(Layer):
    type_id = "PlugDouble"
    help = "Doubles its input (a plugin's layer with a kernel: the engine's scaled op)."
    examples = (({}, [(4,)]), ({}, [(2, 3)]))
    GRAD = 2.0

    def output_shapes(self, p, in_shapes):
        return [in_shapes[0]]

    def forward(self, ops, s):
        ops.scaled(s.x[0].buf, s.y[0].buf, s.n * s.x[0].size, 2.0)

    def backward(self, ops, s):
        if s.dx[0] is not None:
            ops.scaled(s.dy[0].buf, s.dx[0].buf, s.n * s.x[0].size, self.GRAD,
                       accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        return [2.0 * np.asarray(xs[0], np.float64)]


@register
class PlugDoubleWrongGradient(PlugDouble):
    type_id = "PlugDoubleWrongGradient"
    GRAD = 3.0
'''


def test_the_public_harness_checks_a_plugin_layer_as_a_built_in_one(install):
    """layerloom.testing.check_layer runs tests/test_layers.py's checks (the same code) on a
    plugin's layer: its examples pass; a backward that disagrees with the reference fails,
    naming the layer and the gradient (so the check can fail)."""
    from layerloom.testing import check_layer
    install("""
        [layerloom.layers]
        double = llplug_harnessed
        """, {"llplug_harnessed": HARNESSED})
    assert check_layer("PlugDouble") == 4  # two examples, batches 1 and 3
    assert check_layer(registry.get_layer("PlugDouble"), cases=[({}, [(1, 5, 2)])],
                       batches=(2,)) == 1
    with pytest.raises(AssertionError, match="PlugDoubleWrongGradient: the gradient of input 0"):
        check_layer("PlugDoubleWrongGradient")
    with pytest.raises(AssertionError, match="no layer type 'Nope' is registered"):
        check_layer("Nope")
