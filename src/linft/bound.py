"""The anchored-regularization bound: how far anchored training can move, and how far it can leave the linearization.

Setting. f(θ) ∈ R^{N×C} are the logits of a batch of N examples as a function of the trainable parameters θ ∈ R^P
(the LoRA matrices and head, or any tensors of a small network), θ0 the start, J(θ) = ∂f/∂θ (NC × P), and
f_lin(θ) = f(θ0) + J(θ0)(θ − θ0) the linearization. Norms of logits are Frobenius norms over the batch (the ``gap``
of :func:`linft.linearize.linearization_gap`); norms of parameters are Euclidean over all trainable tensors
(``drift_total`` of :func:`linft.regularize.drift`). R ≥ 0 is the task loss averaged over the training batch and

    F(θ) = R(θ) + (λ/2) ‖θ − θ0‖²                                                    (anchored objective)

Three steps, each with its assumptions. Which step is whose is marked, so the chapter can say so.

1. **Drift bound** (textbook optimization; written out here, not quoted from the reference study). If the training
   iterates never increase F, i.e. F(θ_{t+1}) ≤ F(θ_t) (true for gradient descent on F with step
   η ≤ 1/(β + λ) when ∇R is β-Lipschitz, by the descent lemma; also for gradient flow), then F(θ_t) ≤ F(θ0) = R(θ0),
   so (λ/2)‖θ_t − θ0‖² ≤ R(θ0) − R(θ_t) ≤ R(θ0), using R ≥ 0:

       ‖θ_t − θ0‖ ≤ √(2 (R(θ0) − R(θ_t)) / λ) ≤ √(2 R(θ0) / λ).                      (:func:`drift_bound`)

   Only monotone descent of F is used. It can be checked after the fact from the logged objective
   (:func:`descent_violations`), which is how the book checks it rather than by estimating β. It does not hold in
   general for minibatch SGD, AdamW (the preconditioner changes the geometry), or the selective variant (its
   update is not the gradient of F). For those runs the bound is a reference line, not a theorem.

2. **Taylor remainder with a Lipschitz Jacobian** (standard calculus). For u = θ − θ0,

       f(θ0 + u) − f_lin(θ0 + u) = ∫_0^1 (J(θ0 + s u) − J(θ0)) u ds.

   If ‖(J(θ0 + s u) − J(θ0)) u‖ ≤ L s ‖u‖² for s ∈ [0, 1] (which holds when J is L-Lipschitz in operator norm on
   the segment), then ‖f(θ) − f_lin(θ)‖ ≤ (L/2) ‖θ − θ0‖² (:func:`gap_bound`). Applied per example it gives the
   per-example form; applied to the stacked batch it gives the Frobenius form used here.

3. **Combination** (ours: the reference study bounds the distance between the nonlinear and the linearized
   training trajectories as a function of λ; this same-parameters corollary is derived here). With L the constant
   of step 2 over the ball of radius √(2R(θ0)/λ) that step 1 confines the iterates to,

       ‖f(θ_t) − f_lin(θ_t)‖ ≤ (L/2) · 2R(θ0)/λ = L R(θ0) / λ.                         (:func:`anchored_gap_bound`)

   The gap bound falls as 1/λ, the drift bound as 1/√λ.

Estimating L (ours). :func:`jacobian_lipschitz` samples directions u of norm r around θ0 and measures the change of
the Jacobian with Jacobian-vector products (``torch.func.jvp``, exact up to float rounding):

- ``L_jac`` = ‖(J(θ0 + u) − J(θ0)) v‖ / (‖u‖ ‖v‖), with v = u (``probe="along"``, the quantity step 2 needs) or an
  independent random v (``probe="random"``, a lower estimate of the operator-norm Lipschitz constant);
- ``L_taylor`` = 2 ‖f(θ0 + u) − f(θ0) − J(θ0) u‖ / ‖u‖², the logits-level second difference (the average curvature
  along the segment; by step 2 it never exceeds the sup of ``L_jac`` along it).

A maximum over finitely many sampled directions is a *lower* estimate of the supremum in step 2: a bound built from
it is an estimate, not a certificate, and random directions can miss those training takes. ``directions=[...]``
probes chosen ones (the book uses other runs' θ_T − θ0, never the checked run's own, which would be close to
self-fulfilling); :func:`worst_direction` searches for a bad one; :func:`lipschitz_at` gives L over a ball.
:func:`bound_table` lines a training log up with both bounds and flags where the gap exceeds them.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import jvp, vjp

from linft import LinftError, check_choice, check_positive_int, require_columns
from linft.batches import check_batch
from linft.functional import call

__all__ = [
    "drift_bound", "descent_violations", "objective_increases",  # step 1
    "gap_bound", "anchored_gap_bound",  # steps 2, 3
    "functional", "random_directions", "taylor_remainder", "jacobian_lipschitz", "worst_direction",  # estimating L
    "lipschitz_curve", "lipschitz_at", "covering_radius", "PROBES",
    "bound_table",  # a training log
]

Params = Mapping[str, torch.Tensor]
#: the ``probe`` choices of :func:`jacobian_lipschitz`
PROBES = ("along", "random")


# ---------------------------------------------------------------------------------------------- checks


def _number(value, name: str, *, positive: bool = False, allow_inf: bool = False) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise LinftError(f"{name} must be a single number, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool):
        raise LinftError(f"{name} must be a number, got {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise LinftError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(value) or (not allow_inf and math.isinf(value)):
        raise LinftError(f"{name} must be a finite number, got {value}")
    if positive and not value > 0:
        raise LinftError(f"{name} must be > 0, got {value}")
    if not positive and value < 0:
        raise LinftError(f"{name} must be >= 0, got {value}")
    return value


def _params(theta, name: str = "theta0") -> OrderedDict[str, torch.Tensor]:
    if isinstance(theta, torch.Tensor):
        return OrderedDict([("theta", theta)])
    if not isinstance(theta, Mapping) or not theta:
        kind = type(theta).__name__
        raise LinftError(f"{name} must be a non-empty name → tensor mapping (or one tensor), got {kind}")
    for key, value in theta.items():
        if not isinstance(value, torch.Tensor):
            raise LinftError(f"{name}[{key!r}] must be a tensor, got {type(value).__name__}")
    return OrderedDict((k, v.detach()) for k, v in theta.items())


def _norm(params: Params) -> torch.Tensor:
    return torch.sqrt(sum((t.double() ** 2).sum() for t in params.values()))


def _combine(a: Params, b: Params, alpha: float = 1.0) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict((k, a[k] + alpha * b[k]) for k in a)


def _scaled(u: Params, s: float) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict((k, v * s) for k, v in u.items())


# ---------------------------------------------------------------------------------------------- step 1


def drift_bound(R0, lam, R_t=None) -> float:
    """√(2 (R(θ0) − R(θ_t)) / λ), the largest ‖θ_t − θ0‖ monotone descent on the anchored objective allows.

    Args:
        R0: task loss at θ0 (≥ 0), averaged over the training batch as in the objective.
        lam: λ ≥ 0. With λ = 0 there is no bound: returns ``inf``.
        R_t: task loss at θ_t (optional, ≥ 0). Gives the tighter √(2(R0 − R_t)/λ); without it, √(2 R0/λ).

    Assumptions (module docstring, step 1): R ≥ 0 and F(θ_t) ≤ F(θ0) (monotone descent). If R_t > R0 the
    anchored objective cannot have decreased unless θ_t = θ0, so the bound is 0.
    """
    R0 = _number(R0, "R0")
    lam = _number(lam, "lam (λ)")
    budget = R0 if R_t is None else max(R0 - _number(R_t, "R_t"), 0.0)
    return math.inf if lam == 0 else math.sqrt(2.0 * budget / lam)


def descent_violations(objective, rtol: float = 1e-6) -> int:
    """How many steps increased the anchored objective F = R + (λ/2)‖θ − θ0‖² (the ``loss`` column of a
    :func:`linft.train.fine_tune` log), beyond a relative tolerance ``rtol`` for float rounding.

    Zero means the drift bound's one assumption held on this run (at the logged steps).
    """
    return int(_rises(objective, rtol)[3].size)


def _rises(objective, rtol) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(F as float64, its increases F_{t+1} − F_t, the scales max(|F_t|, 1e-12), the t where it rose beyond rtol)."""
    values = np.asarray(objective, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise LinftError("objective is empty: pass the logged values of R + (λ/2)‖θ − θ0‖²")
    if not np.all(np.isfinite(values)):
        raise LinftError("objective has non-finite values: the run diverged, so no bound applies")
    rtol = _number(rtol, "rtol")
    increase = np.diff(values)
    scale = np.maximum(np.abs(values[:-1]), 1e-12)
    return values, increase, scale, np.flatnonzero(increase > rtol * scale)


# ---------------------------------------------------------------------------------------------- steps 2, 3


def gap_bound(L, drift):
    """(L/2)‖θ − θ0‖²: the Taylor-remainder bound on ‖f(θ) − f_lin(θ)‖ (step 2), for an L valid on the segment.

    ``L`` and ``drift`` may be floats or arrays (elementwise); both must be ≥ 0.
    """
    L_arr = np.asarray(L, dtype=np.float64)
    d_arr = np.asarray(drift, dtype=np.float64)
    if np.any(np.isnan(L_arr)) or np.any(L_arr < 0):
        raise LinftError(f"L must be >= 0 (a Lipschitz constant), got {L}")
    if np.any(np.isnan(d_arr)) or np.any(d_arr < 0):
        raise LinftError(f"drift must be >= 0 (a norm ‖θ − θ0‖), got {drift}")
    out = 0.5 * L_arr * d_arr**2
    return float(out) if out.ndim == 0 else out


def anchored_gap_bound(L, R0, lam) -> float:
    """L·R(θ0)/λ: the gap bound implied by the drift bound (step 3, ours); ``inf`` for λ = 0.

    ``L`` must be valid on the ball of radius :func:`drift_bound` ``(R0, lam)`` (see :func:`lipschitz_at`).
    """
    L = _number(L, "L", allow_inf=True)
    R0 = _number(R0, "R0")
    lam = _number(lam, "lam (λ)")
    return math.inf if lam == 0 else L * R0 / lam


# ---------------------------------------------------------------------------------------------- functions of θ


def functional(model: nn.Module, *args, params: Sequence[str] | None = None, **kwargs):
    """``(f, theta0)`` for a module: ``f(θ)`` is its output on the given inputs with the trainable tensors replaced.

    Args:
        model: any module (a linft classifier with LoRA, a :class:`linft.toy.MLP`, ...). Put in eval mode.
        *args: the inputs, e.g. ``functional(mlp, x)``. A batch dict from :func:`linft.data.as_batch` can be passed
            as the one positional argument; it is checked by :func:`linft.batches.check_batch` (``attention_mask``
            required, ``labels`` dropped).
        **kwargs: the inputs by name, e.g. ``functional(lora_model, input_ids=ids, attention_mask=mask)``.
        params: names of the tensors that form θ (default: every parameter with ``requires_grad``).

    Returns:
        ``f``: θ (name → tensor) → logits [N, C] (:func:`linft.functional.call`: a Hugging Face output is reduced
        to its ``logits``; a 1-D output becomes [N, 1]);
        ``theta0``: the current values of those tensors, detached.
    """
    if not isinstance(model, nn.Module):
        raise LinftError(f"model must be an nn.Module, got {type(model).__name__}")
    if len(args) == 1 and isinstance(args[0], Mapping) and not kwargs:
        args, kwargs = (), check_batch(args[0], "batch")
    named = dict(model.named_parameters())
    if params is None:
        names = [n for n, p in named.items() if p.requires_grad]
    else:
        names = list(params)
        missing = [n for n in names if n not in named]
        if missing:
            raise LinftError(f"model has no parameter {missing[0]!r}: pass names from model.named_parameters()")
    if not names:
        raise LinftError("model has no trainable parameters: attach LoRA or set requires_grad on some tensors")
    model.eval()
    theta0 = OrderedDict((n, named[n].detach().clone()) for n in names)

    def f(theta: Params) -> torch.Tensor:
        out = call(model, theta, *args, **kwargs)
        return out if out.dim() > 1 else out.unsqueeze(-1)

    return f, theta0


def random_directions(theta0, n: int, seed: int = 0) -> list[OrderedDict[str, torch.Tensor]]:
    """``n`` directions, isotropic Gaussian over all tensors of θ jointly, each scaled to unit Euclidean norm."""
    theta0 = _params(theta0)
    n = check_positive_int(n, "n")
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    for _ in range(n):
        u = OrderedDict((k, torch.randn(v.shape, generator=gen, dtype=v.dtype).to(v.device)) for k, v in theta0.items())
        norm = _norm(u).item()
        out.append(_scaled(u, 1.0 / norm))
    return out


def _check_direction(u, theta0, index: int) -> OrderedDict[str, torch.Tensor]:
    if not isinstance(u, Mapping):
        raise LinftError(f"directions[{index}] must be a name → tensor mapping like theta0, got {type(u).__name__}")
    missing = [k for k in theta0 if k not in u]
    if missing:
        raise LinftError(f"directions[{index}] lacks tensor {missing[0]!r}: give one tensor per tensor of theta0")
    out = OrderedDict()
    for k, t0 in theta0.items():
        t = torch.as_tensor(u[k]).detach().to(dtype=t0.dtype, device=t0.device)
        if t.shape != t0.shape:
            raise LinftError(f"directions[{index}][{k!r}] has shape {tuple(t.shape)}, theta0 has {tuple(t0.shape)}")
        out[k] = t
    norm = _norm(out).item()
    if not norm > 0 or not math.isfinite(norm):
        raise LinftError(f"directions[{index}] has norm {norm}: a direction must be non-zero and finite")
    return _scaled(out, 1.0 / norm)


@torch.no_grad()
def taylor_remainder(f: Callable, theta0, theta) -> torch.Tensor:
    """f(θ) − f_lin(θ) = f(θ) − f(θ0) − J(θ0)(θ − θ0), same shape as f's output (one jvp and one forward)."""
    theta0 = _params(theta0)
    theta = _check_point(theta, theta0, "theta")
    u = OrderedDict((k, theta[k] - theta0[k]) for k in theta0)
    base, lin = jvp(f, (dict(theta0),), (dict(u),))
    return f(dict(theta)) - base - lin


def _check_point(theta, theta0, name: str) -> OrderedDict[str, torch.Tensor]:
    theta = _params(theta, name)
    missing = [k for k in theta0 if k not in theta]
    if missing:
        raise LinftError(f"{name} lacks tensor {missing[0]!r}: give the same tensors as theta0")
    return OrderedDict((k, theta[k]) for k in theta0)


def _row_norms(x: torch.Tensor, per_example: bool) -> torch.Tensor:
    x = x.double()
    if per_example:
        return torch.linalg.vector_norm(x.reshape(x.shape[0], -1), dim=1)
    return torch.linalg.vector_norm(x).reshape(1)


@torch.no_grad()
def jacobian_lipschitz(
    f: Callable,
    theta0,
    radii: Sequence[float],
    n_samples: int = 4,
    *,
    probe: str = "along",
    directions: Sequence[Params] | None = None,
    seed: int = 0,
    per_example: bool = False,
) -> pd.DataFrame:
    """Sampled Jacobian-Lipschitz ratios around θ0, one row per (direction, radius[, example]).

    For each unit direction û and radius r, u = r û and

    - ``L_jac`` = ‖(J(θ0 + u) − J(θ0)) v‖ / (‖u‖‖v‖) with v = û (``probe="along"``) or an independent random unit
      v (``probe="random"``), from two Jacobian-vector products;
    - ``L_taylor`` = 2‖f(θ0 + u) − f(θ0) − J(θ0)u‖ / ‖u‖² (logits-level second difference; free with ``"along"``).

    Args:
        f: θ → logits [N, C] (e.g. from :func:`functional`); must be differentiable with ``torch.func.jvp``.
        theta0: the expansion point (name → tensor).
        radii: positive radii r.
        n_samples: random directions (ignored when ``directions`` is given).
        probe: ``"along"`` or ``"random"`` (see above).
        directions: explicit directions (name → tensor, any non-zero norm; normalized here), e.g. θ_T − θ0.
        seed: seeds the random directions.
        per_example: norms per example (columns ``example``) instead of over the whole batch (Frobenius).

    Returns:
        DataFrame with columns ``radius``, ``sample``, [``example``], ``L_jac``, ``L_taylor`` (NaN for
        ``probe="random"``), ``f_change`` (‖f(θ0 + u) − f(θ0)‖). The numbers are ratios of measured changes: a max
        over samples is a lower estimate of the true supremum (see the module docstring).
    """
    theta0 = _params(theta0)
    if not callable(f):
        raise LinftError(f"f must be a function θ → logits, got {type(f).__name__}")
    check_choice("probe", probe, PROBES)
    radii = [_number(r, "radius", positive=True) for r in ([radii] if isinstance(radii, (int, float)) else radii)]
    if not radii:
        raise LinftError("radii is empty: pass at least one radius r > 0")
    if directions is None:
        units = random_directions(theta0, check_positive_int(n_samples, "n_samples"), seed=seed)
    else:
        if len(directions) == 0:
            raise LinftError("directions is empty: pass at least one direction or leave it None")
        units = [_check_direction(u, theta0, i) for i, u in enumerate(directions)]
    probes = units if probe == "along" else random_directions(theta0, len(units), seed=seed + 7919)

    t0 = dict(theta0)
    base = f(t0)
    if not isinstance(base, torch.Tensor):
        raise LinftError(f"f must return a tensor of logits, got {type(base).__name__}")
    rows = []
    for i, (u_hat, v_hat) in enumerate(zip(units, probes)):
        _, jv0 = jvp(f, (t0,), (dict(v_hat),))  # J(θ0) v̂
        ju0 = jv0 if probe == "along" else jvp(f, (t0,), (dict(u_hat),))[1]  # J(θ0) û
        for r in radii:
            point = _combine(theta0, u_hat, r)
            f_r, jv_r = jvp(f, (dict(point),), (dict(v_hat),))
            jac = _row_norms(jv_r - jv0, per_example) / r
            change = _row_norms(f_r - base, per_example)
            if probe == "along":
                taylor = 2.0 * _row_norms(f_r - base - r * ju0, per_example) / r**2
            else:
                taylor = torch.full_like(jac, float("nan"))
            for k in range(jac.shape[0]):
                row = {"radius": r, "sample": i, **({"example": k} if per_example else {})}
                row.update(L_jac=jac[k].item(), L_taylor=taylor[k].item(), f_change=change[k].item())
                rows.append(row)
    return pd.DataFrame(rows)


def lipschitz_curve(samples: pd.DataFrame, column: str = "L_jac") -> pd.DataFrame:
    """Summary per radius of :func:`jacobian_lipschitz` output: ``radius``, ``mean``, ``max``, ``n``."""
    if not isinstance(samples, pd.DataFrame) or "radius" not in samples or column not in samples:
        raise LinftError(f"samples must be the DataFrame of jacobian_lipschitz (with 'radius' and {column!r})")
    if samples.empty:
        raise LinftError("samples is empty: run jacobian_lipschitz with at least one radius and direction")
    grouped = samples.groupby("radius")[column]
    return pd.DataFrame({"mean": grouped.mean(), "max": grouped.max(), "n": grouped.count()}).reset_index()


def lipschitz_at(curve: pd.DataFrame, radius, stat: str = "max", extrapolate: bool = False):
    """L over the ball of radius ``radius``, from sampled radii **at or above** it.

    Step 2 needs the Jacobian change at every distance s·‖u‖ ≤ ‖u‖ = d, so a ball's constant must cover every
    radius up to d. The value returned for d is the running maximum of ``curve[stat]`` over the sampled radii up to
    and including r*(d), the smallest sampled radius ≥ d: the samples taken at radius r*(d) probe the Jacobian out
    to r*(d) ≥ d, so they cover the whole ball of radius d. (Stopping at the largest sampled radius ≤ d would leave
    the shell between it and d unsampled.) Below the smallest sampled radius, r* is the smallest radius. Beyond
    the largest sampled radius the value is unknown: NaN, or with ``extrapolate`` the running maximum over all
    radii (an optimistic guess). Sample radii above every drift a bound is asked for (see the chapter's grid).
    ``radius`` may be a float or an array; returns the same.
    """
    if not isinstance(curve, pd.DataFrame) or "radius" not in curve or stat not in curve:
        raise LinftError(f"curve must be the DataFrame of lipschitz_curve (with 'radius' and {stat!r})")
    if curve.empty:
        raise LinftError("curve is empty: estimate L at one radius at least")
    ordered = curve.sort_values("radius")
    r = ordered["radius"].to_numpy(dtype=np.float64)
    running = np.maximum.accumulate(ordered[stat].to_numpy(dtype=np.float64))
    query = np.asarray(radius, dtype=np.float64)
    if np.any(np.isnan(query)) or np.any(query < 0):
        raise LinftError(f"radius must be >= 0, got {radius}")
    idx = _cover_index(r, query)
    out = running[np.clip(idx, 0, len(r) - 1)]
    if not extrapolate:
        out = np.where(idx >= len(r), np.nan, out)
    return float(out) if out.ndim == 0 else out


def _cover_index(r: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of r*(d), the first sampled radius (``r`` sorted) >= d, for each d of ``query`` (len(r) beyond the
    largest; a relative 1e-9 slack so that d equal to a grid radius picks it)."""
    return np.searchsorted(r, query * (1 - 1e-9), side="left")


def covering_radius(curve: pd.DataFrame, radius):
    """r*(d): the smallest sampled radius of ``curve`` at or above ``radius`` (NaN beyond the largest), the radius
    whose samples :func:`lipschitz_at` uses for a ball of radius d. Float or array, like ``radius``."""
    if not isinstance(curve, pd.DataFrame) or "radius" not in curve or curve.empty:
        raise LinftError("curve must be a non-empty DataFrame with a 'radius' column (lipschitz_curve)")
    r = np.sort(curve["radius"].to_numpy(dtype=np.float64))
    idx = _cover_index(r, np.asarray(radius, dtype=np.float64))
    out = np.where(idx >= len(r), np.nan, r[np.clip(idx, 0, len(r) - 1)])
    return float(out) if out.ndim == 0 else out


def worst_direction(
    f: Callable, theta0, radius: float, iters: int = 3, *, start: Params | None = None, seed: int = 0
) -> tuple[OrderedDict[str, torch.Tensor], pd.DataFrame]:
    """A direction that makes the Jacobian change large: power iteration on the second-order term at one radius.

    For a unit direction û and u = r û, with D(u) = (J(θ0 + u) − J(θ0)) u (two Jacobian-vector products), the
    iteration is

        û ← g / ‖g‖,   g = (J(θ0 + u) − J(θ0))ᵀ D(u)   (two vector-Jacobian products, at θ0 + u and at θ0).

    For a quadratic f, J(θ0 + u) − J(θ0) = ∇²f[u, ·], so g is exactly ¼ ∇_u ‖D(u)‖²: the step is the
    higher-order power method for max ‖∇²f[û, û]‖ on the unit sphere (with one output, the ordinary power method:
    it converges to the top eigenvector of the Hessian). For a general f, g is the finite-difference (Jacobian
    difference) version of that gradient, exact up to third-order terms. Only first-order automatic
    differentiation is used (``torch.func.jvp`` and ``torch.func.vjp``), so it runs on any model
    :func:`functional` wraps. Cost per iteration: two jvps and one vjp (plus one vjp at θ0, built once).

    The iteration is not guaranteed to increase the ratio at every step (the objective is quartic), so the
    direction returned is the best one seen, and every iterate's ratio is reported.

    Args:
        f, theta0: as for :func:`jacobian_lipschitz`.
        radius: r > 0, the distance from θ0 at which the Jacobian change is measured.
        iters: power iterations (≥ 0; 0 returns the start).
        start: the starting direction (any non-zero norm); default one isotropic random direction (``seed``).
        seed: seeds the default start.

    Returns:
        ``(direction, history)``: the best unit direction (name → tensor), and a DataFrame with one row per iterate
        (``iteration`` 0 = the start, ``radius``, ``L_jac`` = ‖D(u)‖/r², the quantity :func:`jacobian_lipschitz`
        reports along û).
    """
    theta0 = _params(theta0)
    if not callable(f):
        raise LinftError(f"f must be a function θ → logits, got {type(f).__name__}")
    r = _number(radius, "radius", positive=True)
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise LinftError(f"iters must be an integer >= 0, got {iters!r}")
    u_hat = random_directions(theta0, 1, seed=seed)[0] if start is None else _check_direction(start, theta0, 0)
    t0 = dict(theta0)
    with torch.enable_grad():
        _, vjp0 = vjp(f, t0)
    rows, best, best_ratio = [], u_hat, -1.0
    for k in range(iters + 1):
        u = _scaled(u_hat, r)
        point = _combine(theta0, u)
        with torch.no_grad():
            _, ju0 = jvp(f, (t0,), (dict(u),))
            _, juu = jvp(f, (dict(point),), (dict(u),))
        d = (juu - ju0).detach()
        ratio = torch.linalg.vector_norm(d.double()).item() / r**2
        rows.append({"iteration": k, "radius": r, "L_jac": ratio})
        if ratio > best_ratio:
            best, best_ratio = u_hat, ratio
        if k == iters:
            break
        with torch.enable_grad():
            _, vjp_u = vjp(f, dict(point))
            (g_u,), (g_0,) = vjp_u(d), vjp0(d)
        g = OrderedDict((n, (g_u[n] - g_0[n]).detach()) for n in theta0)
        norm = _norm(g).item()
        if not norm > 0 or not math.isfinite(norm):
            break  # no curvature along û (or a non-finite value): keep the best direction so far
        u_hat = _scaled(g, 1.0 / norm)
    return best, pd.DataFrame(rows)


def objective_increases(objective, rtol: float = 1e-6) -> pd.DataFrame:
    """Every step at which the anchored objective rose by more than ``rtol`` (relative), one row each.

    ``objective``: F at steps 0 … T (e.g. ``TrainResult.objective`` of a full-batch run). Columns ``step`` (the
    step after the rise, t + 1), ``before`` (F_t), ``after`` (F_{t+1}), ``rise`` and ``rel_rise`` (rise / |F_t|).
    Its length is :func:`descent_violations` of the same values.
    """
    values, increase, scale, hit = _rises(objective, rtol)  # the same checks and rises as descent_violations
    return pd.DataFrame({"step": hit + 1, "before": values[hit], "after": values[hit + 1], "rise": increase[hit],
                         "rel_rise": increase[hit] / scale[hit]})


# ---------------------------------------------------------------------------------------------- a training log


def bound_table(
    log: pd.DataFrame,
    curve: pd.DataFrame,
    lam: float,
    *,
    gap: str = "gap_train",
    stat: str = "max",
    extrapolate: bool = False,
    rtol: float = 1e-3,
) -> pd.DataFrame:
    """A :func:`linft.train.fine_tune` log next to both bounds, one row per logged step.

    The gap column and ``curve`` must refer to the same examples (fine_tune's ``gap_train`` uses the first
    ``gap_n`` training examples: estimate L on those). Columns:

    - ``step``, ``lam``, ``R``, ``objective`` (R + penalty), ``drift`` (measured ‖θ_t − θ0‖), ``gap`` (measured);
    - ``drift_bound`` = √(2R(θ0)/λ) and ``drift_bound_t`` = √(2(R(θ0) − R(θ_t))/λ) (step 1);
    - ``L_measured`` = L over the ball of the measured drift, ``bound_measured`` = (L/2)·drift² (step 2, a
      posteriori; also defined for λ = 0); ``radius_measured`` = the sampled radius ≥ drift it comes from
      (:func:`covering_radius`);
    - ``L_anchored`` = L over the ball of radius drift_bound, ``bound_anchored`` = L·R(θ0)/λ (step 3, a priori);
      ``radius_anchored`` likewise;
    - ``ratio_measured`` = gap / bound_measured and ``ratio_anchored`` = gap / bound_anchored (≤ 1 where the bound
      holds);
    - ``drift_exceeds``, ``gap_exceeds_measured``, ``gap_exceeds_anchored``: booleans, True where the measured
      value is above its bound by more than the relative tolerance ``rtol`` (NaN bounds count as not exceeded;
      check the bound columns for NaN). Steps with zero drift (θ_t = θ0) are not checked: both bounds are 0 there
      and the measured gap is rounding noise between two code paths.

    Why a tolerance: when the network is close to quadratic along its path, the Taylor bound is attained (the
    remainder *is* (L/2)‖u‖² for a quadratic), so measurement and bound can tie, and float32 rounding of logits and
    Jacobian-vector products (relative error around 1e-4 on these differences) decides the sign. The ratios are
    reported unrounded.
    """
    require_columns(log, ["step", "task_loss", "drift_total", gap], "bound_table's log",
                    hint="pass a fine_tune log run with track_gap=True")
    lam = _number(lam, "lam (λ)")
    R = log["task_loss"].to_numpy(dtype=np.float64)
    drift = log["drift_total"].to_numpy(dtype=np.float64)
    objective = log["loss"].to_numpy(dtype=np.float64) if "loss" in log else R + 0.5 * lam * drift**2
    step1 = _drift_columns(R, lam)
    steps23 = _gap_columns(curve, drift, float(R[0]), lam, step1["drift_bound"], stat, extrapolate)
    rtol = _number(rtol, "rtol")
    table = pd.DataFrame({"step": log["step"].to_numpy(), "lam": lam, "R": R, "objective": objective, "drift": drift,
                          **step1, "gap": log[gap].to_numpy(dtype=np.float64), **steps23})
    _add_checks(table, steps23["bound_anchored"], rtol)
    return table


def _drift_columns(R: np.ndarray, lam: float) -> dict:
    """Step 1: ``drift_bound`` √(2R(θ0)/λ) and, per step, ``drift_bound_t`` √(2(R(θ0) − R(θ_t))/λ)."""
    R0 = float(R[0])
    return {"drift_bound": drift_bound(R0, lam),
            "drift_bound_t": np.array([drift_bound(R0, lam, max(r, 0.0)) for r in R])}


def _gap_columns(curve, drift: np.ndarray, R0: float, lam: float, d_bound: float, stat: str, extrapolate: bool) -> dict:
    """Step 2 at the measured drift (``*_measured``) and step 3 at the drift bound (``*_anchored``, NaN L and an
    infinite bound for λ = 0)."""
    L_meas = np.asarray(lipschitz_at(curve, drift, stat=stat, extrapolate=extrapolate), dtype=np.float64)
    if lam > 0:
        L_anch = float(lipschitz_at(curve, d_bound, stat=stat, extrapolate=extrapolate))
        b_anch = L_anch * R0 / lam
    else:
        L_anch, b_anch = float("nan"), math.inf
    r_anch = covering_radius(curve, d_bound) if lam > 0 else float("nan")
    return {"L_measured": L_meas, "radius_measured": covering_radius(curve, drift),
            "bound_measured": 0.5 * L_meas * drift**2, "L_anchored": L_anch, "radius_anchored": r_anch,
            "bound_anchored": b_anch}


def _add_checks(table: pd.DataFrame, b_anch: float, rtol: float) -> None:
    """Add the ``ratio_*`` and ``*_exceeds`` columns to ``table`` (steps at zero drift are not checked)."""
    drift, measured = table["drift"].to_numpy(), table["gap"].to_numpy()
    b_meas = table["bound_measured"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        table["ratio_measured"] = np.where(b_meas > 0, measured / b_meas, np.where(measured > 0, np.inf, np.nan))
        if math.isnan(b_anch):
            table["ratio_anchored"] = np.nan
        else:
            table["ratio_anchored"] = measured / b_anch if b_anch > 0 else np.where(measured > 0, np.inf, np.nan)
    moved = drift > 0  # at θ = θ0 both bounds are 0 and the "gap" is float noise between two code paths
    table.loc[~moved, ["ratio_measured", "ratio_anchored"]] = np.nan
    table["drift_exceeds"] = drift > table["drift_bound"].to_numpy() * (1 + rtol) + 1e-12
    table["gap_exceeds_measured"] = moved & np.where(np.isnan(b_meas), False, measured > b_meas * (1 + rtol) + 1e-12)
    table["gap_exceeds_anchored"] = moved & bool(not math.isnan(b_anch)) & (measured > b_anch * (1 + rtol) + 1e-12)
