"""linft.toy: the NTK-parameterized MLP, its empirical kernel, anchored gradient descent, and the lazy-training
trends (the kernel moves less as width and λ grow), all in seconds."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch.func import functional_call, jacrev

from linft import LinftError, toy


def test_mlp_shapes_and_ntk_scaling():
    model = toy.MLP(5, 16, depth=2, d_out=2, seed=0)
    out = model(torch.randn(7, 5))
    assert out.shape == (7, 2)
    assert [tuple(w.shape) for w in model.weights] == [(16, 5), (16, 16), (2, 16)]
    assert toy.MLP(5, 16, seed=3).weights[0].equal(toy.MLP(5, 16, seed=3).weights[0])


def test_ntk_matrix_matches_explicit_jacobian():
    model = toy.MLP(3, 8, depth=2, d_out=2, seed=1).double()
    x = torch.randn(6, 3, dtype=torch.float64)
    K = toy.ntk_matrix(model, x)
    params = {n: p.detach() for n, p in model.named_parameters()}
    jac = jacrev(lambda p: functional_call(model, p, (x,)))(params)
    J = torch.cat([j.reshape(6, 2, -1) for j in jac.values()], dim=-1)  # [N, C, P]
    expected = torch.einsum("icp,jcp->ij", J, J)
    assert torch.allclose(K, expected, rtol=1e-10, atol=1e-12)
    assert torch.allclose(K, K.T) and torch.linalg.eigvalsh(K).min() > -1e-10


def test_make_regression_is_seeded_and_standardized():
    a = toy.make_regression(20, 10, d=4, seed=0)
    b = toy.make_regression(20, 10, d=4, seed=0)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["x_train"].shape == (20, 4) and a["y_test"].shape == (10, 1)
    assert torch.allclose(a["x_train"].norm(dim=1), torch.full((20,), 2.0))
    assert abs(a["y_train"].mean().item()) < 1e-5 and a["y_train"].std().item() == pytest.approx(1.0, rel=1e-4)


def test_train_gd_descends_and_respects_the_drift_bound():
    task = toy.make_regression(32, 8, d=4, seed=0)
    for lam in (0.0, 0.5):
        model = toy.MLP(4, 32, seed=0)
        run = toy.train_gd(model, task["x_train"], task["y_train"], lam=lam, time_horizon=10.0, log_every=5)
        assert run["objective_increases"] == 0
        assert run["R"] < run["R0"]
        if lam:
            assert run["log"]["drift"].max() <= math.sqrt(2 * run["R0"] / lam)
        assert list(run["log"].columns) == ["step", "R", "objective", "drift"]


def test_kernel_moves_less_with_width_and_with_lambda():
    widths = toy.kernel_movement(widths=(16, 256), lams=(0.0,), seeds=(0, 1), n_train=32, n_test=16, d=4,
                                 time_horizon=10.0)
    by_width = widths.groupby("width")["kernel_change"].mean()
    assert by_width[256] < by_width[16] / 2
    lams = toy.kernel_movement(widths=(32,), lams=(0.0, 0.5, 5.0), seeds=(0,), n_train=32, n_test=16, d=4,
                               time_horizon=10.0)
    change = lams.set_index("lam")["kernel_change"]
    assert change[0.5] < change[0.0] and change[5.0] < change[0.5]
    gap = lams.set_index("lam")["rel_gap_test"]
    assert gap[5.0] < gap[0.0]
    assert (lams["drift"] <= lams["drift_bound"]).all()
    assert {"width", "lam", "seed", "kernel_change", "drift", "rel_gap_test", "seconds"} <= set(lams.columns)


def test_relative_change():
    K = torch.eye(3, dtype=torch.float64)
    assert toy.relative_change(2 * K, K) == pytest.approx(1.0)


def test_bad_inputs_raise_linft_error():
    with pytest.raises(LinftError, match="width"):
        toy.MLP(3, 0)
    with pytest.raises(LinftError, match="activation"):
        toy.MLP(3, 4, activation="swish")
    with pytest.raises(LinftError, match=r"\[N, 3\]"):
        toy.MLP(3, 4)(torch.randn(2, 5))
    with pytest.raises(LinftError, match="lam"):
        toy.train_gd(toy.MLP(3, 4), torch.randn(4, 3), torch.randn(4, 1), lam=-1.0)
    with pytest.raises(LinftError, match="y must be"):
        toy.train_gd(toy.MLP(3, 4), torch.randn(4, 3), torch.randn(4))
    with pytest.raises(LinftError, match="shapes"):
        toy.relative_change(torch.eye(2), torch.eye(3))
    with pytest.raises(LinftError, match="at least one"):
        toy.kernel_movement(widths=(), lams=(0.0,))
    with pytest.raises(LinftError, match="n_train"):
        toy.make_regression(0)
    with pytest.raises(LinftError, match="depth must be a positive integer, got 1.5"):
        toy.MLP(3, 4, depth=1.5)
    with pytest.raises(LinftError, match="d_in must be a positive integer, got True"):
        toy.MLP(True, 4)
    assert toy.MLP(np.int64(3), 4).d_in == 3  # NumPy integers are integers


def test_kernel_movement_plot_and_slope():
    import matplotlib.pyplot as plt

    from linft.plots import linearization as lplots

    frame = pd.DataFrame({"width": [16, 64, 256], "lam": 0.0, "seed": 0, "kernel_change": [0.16, 0.04, 0.01]})
    assert lplots.loglog_slope(frame["width"], frame["kernel_change"]) == pytest.approx(-1.0)
    assert math.isnan(lplots.loglog_slope([1.0], [1.0]))
    lam_frame = pd.DataFrame({"width": 64, "lam": [0.0, 0.5, 5.0], "seed": 0, "kernel_change": [0.1, 0.05, 0.01]})
    fig = lplots.kernel_movement(frame, lam_frame)
    assert len(fig.axes) == 2 and "-1.00" in fig.axes[0].get_title()
    with pytest.raises(LinftError, match="kernel_change"):
        lplots.kernel_movement(frame.drop(columns="kernel_change"))
    plt.close("all")
