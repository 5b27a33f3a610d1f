"""A small MLP in which lazy training can be watched: the NTK moves less as the network widens and as λ grows.

Everything here runs in seconds on a CPU. The network is a fully connected MLP in the NTK parameterization
(Jacot et al. 2018): each layer computes h ← φ(W h / √fan_in) with W ~ N(0, 1) entries, and the output layer is
linear, f(x) = w_outᵀ h / √width. Under this scaling the kernel

    K(x, x') = ⟨∂f(x)/∂θ, ∂f(x')/∂θ⟩

has an O(1) limit as the width grows, and gradient descent with a fixed step moves each weight by O(1/√width), so
the relative kernel change after training shrinks at least like 1/√width (lazy training: Chizat et al. 2019,
Lee et al. 2019; perturbative analyses give 1/width for its mean, Dyer and Gur-Ari 2020).

The task is synthetic regression: x uniform on the sphere √d·S^{d-1}, a fixed random two-layer teacher gives y
(standardized). Training is full-batch gradient descent on the anchored squared loss

    R(θ) + (λ/2)‖θ − θ0‖²,   R(θ) = (1/2N) Σ_i (f(x_i; θ) − y_i)²,

for a fixed training *time* τ = η · steps, with η = ``lr_scale`` / (β̂ + λ) where β̂ = λ_max(K_0)/N is the
Gauss-Newton curvature at θ0. Equal time makes runs with different λ (and widths) comparable: each follows the
same gradient flow, discretized stably.

:func:`kernel_movement` runs a grid of widths, λ and seeds and returns a tidy DataFrame (relative kernel change,
drift, the drift bound of :mod:`linft.bound`, the relative linearization gap on held-out inputs, losses).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn
from torch.func import jacrev, jvp

from linft import LinftError, check_choice, check_positive_int
from linft.functional import call

__all__ = ["MLP", "make_regression", "ntk_matrix", "train_gd", "relative_change", "kernel_movement", "ACTIVATIONS"]

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "gelu": nn.functional.gelu}


class MLP(nn.Module):
    """Fully connected network in the NTK parameterization (no biases).

    Args:
        d_in: input dimension.
        width: hidden width m (every hidden layer).
        depth: number of hidden layers (≥ 1).
        d_out: outputs (1 for scalar regression).
        activation: ``"tanh"`` (default), ``"relu"`` or ``"gelu"``.
        seed: seeds the N(0, 1) weights.
    """

    def __init__(self, d_in: int, width: int, depth: int = 2, d_out: int = 1, activation: str = "tanh", seed: int = 0):
        super().__init__()
        d_in, width = check_positive_int(d_in, "d_in"), check_positive_int(width, "width")
        depth, d_out = check_positive_int(depth, "depth"), check_positive_int(d_out, "d_out")
        check_choice("activation", activation, ACTIVATIONS)
        gen = torch.Generator().manual_seed(int(seed))
        dims = [d_in] + [width] * depth + [d_out]
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.randn(dims[i + 1], dims[i], generator=gen)) for i in range(len(dims) - 1)]
        )
        self.activation = activation
        self.width, self.depth, self.d_in, self.d_out = width, depth, d_in, d_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.d_in:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise LinftError(f"MLP input must be a [N, {self.d_in}] tensor, got {shape}")
        phi = ACTIVATIONS[self.activation]
        h = x
        for i, w in enumerate(self.weights):
            h = h @ w.T / math.sqrt(w.shape[1])
            if i < len(self.weights) - 1:
                h = phi(h)
        return h

    def extra_repr(self) -> str:
        return (
            f"d_in={self.d_in}, width={self.width}, depth={self.depth}, d_out={self.d_out}, "
            f"activation={self.activation!r}"
        )


def make_regression(n_train: int = 64, n_test: int = 64, d: int = 8, seed: int = 0, teacher_width: int = 16) -> dict:
    """Synthetic regression data: inputs on the sphere of radius √d, targets from a random tanh teacher.

    Returns ``{"x_train": [n_train, d], "y_train": [n_train, 1], "x_test", "y_test"}`` (float32). Targets are
    standardized with the training mean and standard deviation.
    """
    n_train, n_test = check_positive_int(n_train, "n_train"), check_positive_int(n_test, "n_test")
    d, teacher_width = check_positive_int(d, "d"), check_positive_int(teacher_width, "teacher_width")
    gen = torch.Generator().manual_seed(int(seed) + 10_007)
    x = torch.randn(n_train + n_test, d, generator=gen)
    x = x / x.norm(dim=1, keepdim=True) * math.sqrt(d)
    w1 = torch.randn(teacher_width, d, generator=gen) / math.sqrt(d)
    w2 = torch.randn(teacher_width, generator=gen) / math.sqrt(teacher_width)
    y = torch.tanh(2.0 * x @ w1.T) @ w2
    y = (y - y[:n_train].mean()) / y[:n_train].std()
    y = y.unsqueeze(-1)
    return {"x_train": x[:n_train], "y_train": y[:n_train], "x_test": x[n_train:], "y_test": y[n_train:]}


def _params(model: nn.Module) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict((n, p.detach()) for n, p in model.named_parameters())


def _outputs_of(model: nn.Module, x: torch.Tensor):
    """θ (name → tensor) ↦ ``model``'s outputs on ``x`` at θ (:func:`linft.functional.call`)."""

    def f(params):
        return call(model, params, x)

    return f


def ntk_matrix(model: nn.Module, x: torch.Tensor, params=None) -> torch.Tensor:
    """Empirical NTK K[i, j] = Σ_c ⟨∂f_c(x_i)/∂θ, ∂f_c(x_j)/∂θ⟩ over all parameters, [N, N] float64.

    ``params`` (name → tensor) evaluates it at other parameters than the module's own.
    """
    theta = OrderedDict(params) if params is not None else _params(model)
    jac = jacrev(_outputs_of(model, x))(dict(theta))  # name -> [N, C, *shape]
    n = x.shape[0]
    K = torch.zeros(n, n, dtype=torch.float64)
    for block in jac.values():
        flat = block.reshape(n, block.shape[1], -1).double()
        K += torch.einsum("icp,jcp->ij", flat, flat)
    return K


def relative_change(K_t: torch.Tensor, K_0: torch.Tensor) -> float:
    """‖K_t − K_0‖_F / ‖K_0‖_F."""
    if K_t.shape != K_0.shape:
        raise LinftError(f"kernels have different shapes {tuple(K_t.shape)} and {tuple(K_0.shape)}")
    norm = torch.linalg.matrix_norm(K_0.double()).item()
    if norm == 0:
        raise LinftError("K_0 is zero: the relative change is undefined")
    return torch.linalg.matrix_norm((K_t - K_0).double()).item() / norm


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * (out - y).pow(2).sum(-1).mean()


def train_gd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lam: float = 0.0,
    time_horizon: float = 20.0,
    lr: float | None = None,
    lr_scale: float = 0.5,
    max_steps: int = 20_000,
    log_every: int | None = None,
) -> dict:
    """Full-batch gradient descent on R(θ) + (λ/2)‖θ − θ0‖² (R the half mean squared error), in place.

    Args:
        model: the network (all its parameters are trained).
        x, y: [N, d] inputs and [N, C] targets.
        lam: λ ≥ 0.
        time_horizon: training time τ; steps = ⌈τ / η⌉ (capped at ``max_steps``).
        lr: step η; default ``lr_scale / (β̂ + λ)`` with β̂ = λ_max(K_0)/N (stable for the anchored quadratic).
        log_every: also return a per-step log every this many steps (None: first and last only).

    Returns:
        ``{"theta0", "lr", "steps", "R0", "R", "objective_increases", "log"}``: θ0 (name → tensor), the step
        used, the number of steps, the task loss before and after, how many steps increased the anchored
        objective, and a DataFrame (step, R, objective, drift).
    """
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0 or math.isinf(lam):
        raise LinftError(f"lam (λ) must be a finite number >= 0, got {lam!r}")
    if not isinstance(time_horizon, (int, float)) or not time_horizon > 0:
        raise LinftError(f"time_horizon must be > 0, got {time_horizon!r}")
    if y.dim() != 2 or y.shape[0] != x.shape[0]:
        raise LinftError(f"y must be [N, C] with N = {x.shape[0]} rows, got {tuple(y.shape)}")
    max_steps = check_positive_int(max_steps, "max_steps")
    theta0 = OrderedDict((n, p.detach().clone()) for n, p in model.named_parameters())
    if lr is None:
        beta = torch.linalg.eigvalsh(ntk_matrix(model, x))[-1].item() / x.shape[0]
        lr = lr_scale / (beta + lam)
    if not lr > 0:
        raise LinftError(f"lr must be > 0, got {lr}")
    steps = min(max_steps, int(math.ceil(time_horizon / lr)))
    params = list(model.parameters())
    rows, increases, previous = [], 0, None

    def state(step):
        with torch.no_grad():
            r = _mse(model(x), y).item()
            d2 = sum(((p - theta0[n]) ** 2).sum().item() for n, p in model.named_parameters())
        return {"step": step, "R": r, "objective": r + 0.5 * lam * d2, "drift": math.sqrt(d2)}

    first = state(0)
    rows.append(first)
    for step in range(steps + 1):
        for p in params:
            p.grad = None
        loss = _mse(model(x), y)
        if not torch.isfinite(loss):
            raise LinftError(f"gradient descent diverged at step {step}: lower lr_scale (now {lr_scale})")
        with torch.no_grad():
            d2 = sum(((p - theta0[n]) ** 2).sum().item() for n, p in model.named_parameters())
        objective = loss.item() + 0.5 * lam * d2
        if previous is not None and objective > previous * (1 + 1e-6) + 1e-12:
            increases += 1
        previous = objective
        if step == steps:
            break
        loss.backward()
        with torch.no_grad():
            for n, p in model.named_parameters():
                g = p.grad if lam == 0 else p.grad + lam * (p - theta0[n])
                p.sub_(lr * g)
        if (log_every and (step + 1) % log_every == 0) or step + 1 == steps:
            rows.append(state(step + 1))
    log = pd.DataFrame(rows)
    return {
        "theta0": theta0, "lr": lr, "steps": steps, "R0": first["R"], "R": rows[-1]["R"],
        "objective_increases": increases, "log": log,
    }


def kernel_movement(
    widths: Sequence[int] = (16, 64, 256, 1024),
    lams: Sequence[float] = (0.0,),
    seeds: Sequence[int] = (0,),
    *,
    depth: int = 2,
    d: int = 8,
    n_train: int = 64,
    n_test: int = 64,
    activation: str = "tanh",
    time_horizon: float = 20.0,
    lr_scale: float = 0.5,
    max_steps: int = 20_000,
) -> pd.DataFrame:
    """Train one MLP per (width, λ, seed) and measure how much its NTK and its function left the linear regime.

    Returns a tidy DataFrame, one row per run: ``width``, ``lam``, ``seed``, ``params``, ``steps``, ``lr``,
    ``R0``, ``R`` (train loss before/after), ``test_mse``, ``kernel_change`` (‖K_T − K_0‖_F/‖K_0‖_F on the training
    inputs), ``drift`` (‖θ_T − θ0‖), ``rel_drift`` (drift/‖θ0‖), ``drift_bound`` (√(2R0/λ), inf at λ = 0),
    ``rel_gap_test`` (‖f(θ_T) − f_lin(θ_T)‖/‖f(θ_T) − f(θ0)‖ on held-out inputs: the share of the learned function
    change that is not linear), ``objective_increases`` and ``seconds``.
    """
    widths = [check_positive_int(w, "width") for w in widths]
    seeds = [int(s) for s in seeds]
    if not widths or not list(lams) or not seeds:
        raise LinftError("widths, lams and seeds must each hold at least one value")
    rows = []
    for seed in seeds:
        task = make_regression(n_train, n_test, d, seed=seed)
        x, y, xt, yt = task["x_train"], task["y_train"], task["x_test"], task["y_test"]
        for width in widths:
            for lam in lams:
                start = time.perf_counter()
                model = MLP(d, width, depth=depth, activation=activation, seed=seed)
                K0 = ntk_matrix(model, x)
                with torch.no_grad():
                    f0_test = model(xt)
                run = train_gd(model, x, y, lam=float(lam), time_horizon=time_horizon, lr_scale=lr_scale,
                               max_steps=max_steps)
                theta0 = run["theta0"]
                KT = ntk_matrix(model, x)
                theta = _params(model)
                delta = {n: theta[n] - theta0[n] for n in theta}
                with torch.no_grad():
                    _, lin = jvp(_outputs_of(model, xt), (dict(theta0),), (delta,))
                    fT_test = model(xt)
                    gap = torch.linalg.vector_norm(fT_test - f0_test - lin).item()
                    moved = torch.linalg.vector_norm(fT_test - f0_test).item()
                    test_mse = _mse(fT_test, yt).item()
                drift = math.sqrt(sum((v.double() ** 2).sum().item() for v in delta.values()))
                norm0 = math.sqrt(sum((v.double() ** 2).sum().item() for v in theta0.values()))
                rows.append({
                    "width": width, "lam": float(lam), "seed": seed,
                    "params": sum(v.numel() for v in theta0.values()), "steps": run["steps"], "lr": run["lr"],
                    "R0": run["R0"], "R": run["R"], "test_mse": test_mse,
                    "kernel_change": relative_change(KT, K0), "drift": drift, "rel_drift": drift / norm0,
                    "drift_bound": math.inf if lam == 0 else math.sqrt(2 * run["R0"] / float(lam)),
                    "rel_gap_test": gap / moved if moved > 0 else float("nan"),
                    "objective_increases": run["objective_increases"],
                    "seconds": time.perf_counter() - start,
                })
    return pd.DataFrame(rows)
