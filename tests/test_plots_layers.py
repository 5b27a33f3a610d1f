"""linft.plots.layers on small synthetic tidy data: each figure has its panels, draws on each, labels what it shows,
and rejects input without its columns with LinftError."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from linft import LinftError
from linft.plots import layers as lp

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def drawn(ax) -> int:
    return len(ax.lines) + len(ax.collections) + len(ax.patches)


def panels(fig, n: int) -> list:
    assert isinstance(fig, Figure) and len(fig.axes) == n
    for ax in fig.axes:
        assert drawn(ax) > 0, f"nothing drawn on {ax.get_title()!r}"
    return fig.axes


def per_layer(n: int) -> pd.DataFrame:
    layer = np.arange(n)
    return pd.DataFrame({"layer": layer, "λmin": 0.01 * (layer + 1), "λmax": 1.0 + layer, "trace": 5.0 + layer})


def path(n: int) -> pd.DataFrame:
    size = np.arange(1, n + 1)
    frame = pd.DataFrame({"size": size, "λmin": 0.1 * size, "λmax": 1.0 * size, "κ_λ": 10.0 + size})
    for q in ("λmin", "λmax", "κ_λ"):
        frame[f"{q}_lo"], frame[f"{q}_hi"] = frame[q] / 2, frame[q] * 2
    frame.loc[n - 1, "κ_λ_hi"] = np.inf  # an unbounded end is left open
    return frame


def test_per_layer_spectra_one_panel_per_model():
    fig = lp.per_layer_spectra({"minilm": per_layer(6), "smollm2": per_layer(30)}, title="t")
    axes = panels(fig, 2)
    assert [ax.get_title() for ax in axes] == ["minilm", "smollm2"]
    assert all(ax.get_yscale() == "log" for ax in axes) and len(axes[0].lines) == 3
    assert len(axes[1].lines[0].get_xdata()) == 30
    with pytest.raises(LinftError):
        lp.per_layer_spectra({"m": per_layer(3).drop(columns="trace")})
    with pytest.raises(LinftError):
        lp.per_layer_spectra({})


def test_bounds_path_shades_bounds_and_skips_infinite_ends():
    fig = lp.bounds_path({"a": path(6), "b": path(4)})
    axes = panels(fig, 3)
    assert [ax.get_title() for ax in axes] == ["λmin", "λmax", "κ_λ"]
    kappa = axes[2]
    assert len(kappa.collections) == 2  # one shaded band per model
    exact_a = [line for line in kappa.lines if line.get_label() == "a: exact"][0]
    assert len(exact_a.get_xdata()) == 6
    upper = [line for line in kappa.lines if line.get_linestyle() == ":"]
    assert max(len(line.get_xdata()) for line in upper) == 5  # the infinite upper end is not drawn
    with pytest.raises(LinftError):
        lp.bounds_path({"a": path(3).drop(columns="κ_λ_hi")})


def test_choice_intervals_highlights_the_advisor():
    table = pd.DataFrame({"choice": ["advisor", "first", "last"], "layers": ["0, 2", "0, 1", "4, 5"],
                          "κ_λ": [10.0, 20.0, 30.0], "κ_λ_lo": [5.0, 8.0, 9.0], "κ_λ_hi": [12.0, np.inf, 40.0],
                          "model": "minilm"})
    fig = lp.choice_intervals(table)
    (ax,) = panels(fig, 1)
    ticks = {t.get_text(): t.get_position()[1] for t in ax.get_yticklabels()}
    assert ticks == {"advisor (0, 2)": 2, "first (0, 1)": 1, "last (4, 5)": 0}  # the first choice on top
    dots = [line for line in ax.lines if line.get_marker() == "o"]
    colors = {tuple(np.round(matplotlib.colors.to_rgb(d.get_color()), 3)) for d in dots}
    assert len(dots) == 3 and len(colors) == 2 and ax.get_xscale() == "log"
    with pytest.raises(LinftError):
        lp.choice_intervals(table.drop(columns="model"))


def test_accuracy_by_choice_marks_the_median():
    summary = pd.DataFrame({"task": ["mr"] * 3 + ["subj"] * 3, "choice": ["advisor", "first", "all"] * 2,
                            "acc": [0.6, 0.55, 0.7, 0.8, 0.75, 0.85]})
    summary["acc_low"], summary["acc_high"] = summary["acc"] - 0.05, summary["acc"] + 0.05
    verdicts = pd.DataFrame({"task": ["mr", "subj"], "median_baseline_acc": [0.55, 0.75]})
    fig = lp.accuracy_by_choice(summary, verdicts)
    axes = panels(fig, 2)
    assert [ax.get_title() for ax in axes] == ["mr", "subj"]
    medians = [line for line in axes[0].lines if line.get_linestyle() == "--"]
    assert len(medians) == 1 and medians[0].get_xdata()[0] == pytest.approx(0.55)
    with pytest.raises(LinftError):
        lp.accuracy_by_choice(summary.drop(columns="acc_low"))


def test_layer_profile_labels_every_layer():
    profile = pd.DataFrame({"task": "mr", "seed": 0, "layer": range(6), "κ_λ": np.geomspace(5, 500, 6),
                            "acc": np.linspace(0.7, 0.5, 6)})
    fig = lp.layer_profile(profile)
    (ax,) = panels(fig, 1)
    assert sorted(t.get_text() for t in ax.texts) == [str(i) for i in range(6)] and ax.get_xscale() == "log"
    with pytest.raises(LinftError):
        lp.layer_profile(profile.drop(columns="κ_λ"))


def test_loss_curves_measured_and_predicted_per_choice():
    steps = np.arange(5)
    curves = pd.concat([pd.DataFrame({"choice": name, "layers": layers, "step": steps,
                                      "measured": 0.5 * 0.9**steps, "predicted": 0.5 * 0.8**steps})
                        for name, layers in (("advisor", "0, 2"), ("first", "0, 1"))])
    fig = lp.loss_curves(curves)
    (ax,) = panels(fig, 1)
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["advisor (0, 2), measured", "advisor (0, 2), predicted", "first (0, 1), measured",
                      "first (0, 1), predicted"]
    assert ax.lines[1].get_linestyle() == "--" and ax.get_yscale() == "log"
    with pytest.raises(LinftError):
        lp.loss_curves(curves.drop(columns="predicted"))
