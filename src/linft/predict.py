"""Fine-tuning as kernel regression with an empirical NTK: predicted outputs, losses and drift, step by step.

Setting. The linearized model ``f(x; θ) = f0(x) + J(x)(θ − θ0)`` with N training examples X, outputs flattened
example-major (row ``i·C + c``) into n = N·C rows, K = J(X) J(X)ᵀ [n, n], targets Y, residual r = f(X) − Y,
trained by gradient descent (step η) on the anchored mean squared loss

    F(θ) = (1/(2N)) ‖f(X; θ) − Y‖² + (λ/2) ‖θ − θ0‖².

This is :func:`linft.train.task_loss` with ``loss="mse"`` (``mse_target="onehot"``: Y = e_y; ``"logit_diff"``: the
scalar output f_1 − f_0 with targets ±1) plus the anchored penalty of :mod:`linft.regularize`.

Derivation. With δ_t = θ_t − θ0, u_t = f_t(X) − f0(X) = J δ_t = r_t − r_0, one step is
δ_{t+1} = δ_t − η (Jᵀ r_t / N + λ δ_t). Multiplying by J:

    r_{t+1} − r_0 = (r_t − r_0) − η K r_t / N − η λ (r_t − r_0)
    ⇒  r_{t+1} = (I − η (K/N + λI)) r_t + η λ r_0.

In K's eigenbasis (μ_i, v_i), c_i = v_iᵀ r, with s_i = μ_i/N + λ, each coefficient obeys the scalar recursion
c_{t+1} = (1 − η s_i) c_t + η λ c_0, whose fixed point is c*_i = λ c_i(0) / s_i, so

    c_i(t) = c*_i + (1 − η s_i)^t (c_i(0) − c*_i)          (gradient flow: e^{−s_i t} instead of (1 − η s_i)^t).

Writing ρ_i = (μ_i/N)/s_i and p_i(t) = (1 − η s_i)^t: c_i(t) = c_i(0) ((1 − ρ_i) + ρ_i p_i(t)) — evaluated this way
(and 1 − p through ``expm1``/``log1p``) there is no cancellation even when the loss falls by many orders. The training
loss is R_t = (1/(2N)) Σ_i c_i(t)². When s_i = 0 (λ = 0 and μ_i = 0) nothing moves: the part of the residual in K's
null space never changes (for λ > 0 it does not either, since c*_i = c_i(0) there).

Drift. δ_0 = 0 and every step adds −η(Jᵀ r_t/N + λ δ_t), so δ_t = Jᵀ w_t stays in J's row space; u_t = K w_t and
‖δ_t‖² = w_tᵀ K w_t = u_tᵀ K⁺ u_t = Σ_{μ_i>0} (c_i(t) − c_i(0))² / μ_i, so the anchored objective
F_t = R_t + (λ/2)‖δ_t‖² is predicted too.

Test outputs. f_t(x) = f0(x) + J(x) Jᵀ w_t = f0(x) + K(x, X) K⁺ u_t (the part of w_t in K's null space is also in
J(X)ᵀ's null space, so K(x, X) = J(x) J(X)ᵀ annihilates it). As t → ∞ (stable η) this is kernel ridge regression
f0(x) + K(x, X)(K + NλI)⁻¹(Y − f0(X)) for λ > 0 and the min-norm interpolant f0(x) + K(x, X) K⁺ (Y − f0(X)) for λ = 0.

Step sizes. With L = μmax/N + λ (the largest eigenvalue of F's Hessian JᵀJ/N + λI on J's row space) GD converges iff
η < 2/L (:func:`max_stable_lr`). For η ≤ 1/L (:func:`descent_lr`) no eigen-component changes sign (1 − η s_i ≥ 0):
each coefficient moves monotonically to its limit and F drops by at least (η/2)‖∇F‖² per step (the descent lemma).
On this quadratic F also decreases, strictly, for every η < 2/L; between 1/L and 2/L the stiffest components oscillate.
κ_λ = (μmax + Nλ)/(μmin + Nλ) (:func:`kappa_lambda`) sets how many steps the slowest component needs.
:func:`check_lr` raises for η ≥ 2/L and says which regime a smaller η is in; the prediction functions themselves take
any η > 0 and return the (possibly diverging) curve without a warning.

Kernels and targets (conventions):

- the training kernel is a :class:`linft.ntk.Kernel` (between one batch and itself), a 4-D ``[N, N, C, C]`` tensor,
  or a matrix: ``[N·C, N·C]`` (flattened example-major, as :meth:`linft.ntk.Kernel.matrix`) or ``[N, N]``;
  a :class:`KernelSpectrum` can be passed wherever a training kernel is, so the eigen-decomposition is done once;
- a *scalar* kernel ``[N, N]`` (outputs "trace", "logit_diff", or C = 1) with targets Y ``[N, C]`` means the same
  kernel for every output, K ⊗ I_C (each output has its own parameters on the same features);
- Y: float targets ``[N, C]`` (``[N]`` for one output), or integer labels ``[N]``: one-hot e_y for a kernel with
  C ≥ 2 outputs, ±1 (label 1 → +1, label 0 → −1, binary only) for a scalar kernel — the ``logit_diff`` task, whose
  output is f_1 − f_0. For K ⊗ I_C with one-hot targets pass float Y ``[N, C]``;
- test kernels ``K(x, X)``: ``[M, N, C, C]`` (``empirical_ntk(model, test_batch, train_batch)``), ``[M·C, N·C]``,
  or ``[M, N]`` for a scalar kernel; f0 defaults to zeros;
- the kernel must be symmetric and positive semi-definite. An asymmetric kernel (``asym_signgd``) is refused, not
  silently symmetrized: pass ``(K + Kᵀ)/2`` yourself to use its symmetric part. Eigenvalues at or below
  ``rtol·μmax`` (round-off, default rtol = n·eps; slightly negative ones included) are set to 0: that is K's
  numerical null space, where nothing moves; an eigenvalue below −1e-6·max|μ| (:data:`NEGATIVE_TOL`) raises.

Work is done in float64 on the CPU. Public: :class:`KernelSpectrum`, :class:`KernelRegression`, :class:`TrainCurves`,
:func:`predicted_train_loss`, :func:`predicted_eval_loss`, :func:`kappa_lambda`, :func:`max_stable_lr`,
:func:`descent_lr`, :func:`check_lr`, :func:`targets_from_labels`, :func:`asymmetric_regression`.
:class:`KernelSpectrum` and :data:`NEGATIVE_TOL` live in :mod:`linft.kernel_spectrum` (re-exported here); κ_λ goes
through the one κ formula, :func:`linft.spectral.kappa_from_extremes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from linft import LinftError
from linft.kernel_spectrum import NEGATIVE_TOL, KernelSpectrum, clip_eigenvalues, kernel_values, training_matrix
from linft.regularize import check_lam
from linft.spectral import as_matrix, kappa_from_extremes

__all__ = [
    "KernelSpectrum",
    "KernelRegression",
    "TrainCurves",
    "predicted_train_loss",
    "predicted_eval_loss",
    "kappa_lambda",
    "max_stable_lr",
    "descent_lr",
    "check_lr",
    "targets_from_labels",
    "asymmetric_regression",
    "NEGATIVE_TOL",
]

#: elements per block of the [steps, n] arrays formed at once (bounds memory for long curves)
_BLOCK = 1 << 22


# ---------------------------------------------------------------------------------------------- inputs


def _tensor(x, name: str) -> torch.Tensor:
    """``x`` as a CPU tensor of its own dtype (checked real and finite), from a tensor, array or nested list."""
    x = kernel_values(x)
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError, RuntimeError):
            raise LinftError(f"{name} must be a tensor or array of numbers, got {type(x).__name__}") from None
    if x.is_complex():
        raise LinftError(f"{name} is complex: pass real numbers")
    x = x.detach().cpu()
    if x.is_floating_point() and not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise LinftError(f"{name} has {bad} non-finite entries (NaN/inf): recompute it (check the model's outputs)")
    return x


def _is_labels(x: torch.Tensor) -> bool:
    return not x.is_floating_point()


def _check_lr(lr) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)):
        raise LinftError(f"lr must be a finite number > 0, got {lr!r}")
    lr = float(lr)
    if not (math.isfinite(lr) and lr > 0):
        raise LinftError(f"lr must be a finite number > 0, got {lr!r}: pass the gradient-descent step size")
    return lr


def _check_steps(steps, name: str = "steps") -> int:
    if isinstance(steps, bool) or not hasattr(steps, "__index__") or int(steps) < 0:
        raise LinftError(f"{name} must be an integer >= 0 (a number of gradient-descent steps), got {steps!r}")
    return int(steps)


def targets_from_labels(labels, num_outputs: int) -> torch.Tensor:
    """Float64 targets ``[N, C]`` from integer labels ``[N]``: one-hot for C ≥ 2, ±1 (0 → −1, 1 → +1) for C = 1."""
    labels = _tensor(labels, "labels")
    if labels.dim() != 1 or not _is_labels(labels):
        raise LinftError(f"labels must be a 1-D integer array [N], got shape {tuple(labels.shape)} "
                         f"of dtype {labels.dtype}")
    labels = labels.long()
    if num_outputs == 1:
        if labels.numel() and not ((labels == 0) | (labels == 1)).all():
            raise LinftError(f"labels {sorted(set(labels.tolist()))} are not binary: a scalar kernel takes labels "
                             "0/1 (targets ±1); for C classes use a full [N, N, C, C] kernel or one-hot float Y [N, C]")
        return (2.0 * labels.to(torch.float64) - 1.0)[:, None]
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_outputs):
        raise LinftError(f"labels must lie in 0..{num_outputs - 1} for C={num_outputs} outputs, "
                         f"got {int(labels.min())}..{int(labels.max())}")
    return torch.nn.functional.one_hot(labels, num_outputs).to(torch.float64)


def _outputs(x, n_rows: int, n_outputs: int | None, name: str, labels_to: int | None = None) -> torch.Tensor:
    """``x`` as float64 ``[n_rows, C]``: float ``[n_rows, C]`` or ``[n_rows]`` (C = 1), or labels → targets."""
    x = _tensor(x, name)
    if _is_labels(x):
        if labels_to is None:
            raise LinftError(f"{name} must be float outputs [N, C], got integers {x.dtype}: pass logits, not labels")
        x = targets_from_labels(x, labels_to)
    x = x.to(torch.float64)
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2 or x.shape[0] != n_rows or (n_outputs is not None and x.shape[1] != n_outputs):
        want = f"[{n_rows}, {n_outputs if n_outputs is not None else 'C'}]"
        raise LinftError(f"{name} has shape {tuple(x.shape)} but {want} is needed (examples × outputs): "
                         "pass one row per example, one column per output")
    return x


# ---------------------------------------------------------------------------------------------- κ and step sizes


def _extremes(K, N: int | None) -> tuple[float, float, int]:
    """(μmax, μmin, N) of a KernelSpectrum, a KernelRegression, a kernel, or eigenvalues (1-D, N required)."""
    if isinstance(K, KernelRegression):
        K = K.spectrum
    if isinstance(K, KernelSpectrum):
        if N is not None and N != K.n_examples:
            raise LinftError(f"the spectrum is of N={K.n_examples} examples but N={N} was given: drop N or pass the "
                             "matching spectrum")
        return K.mu_max, K.mu_min, K.n_examples
    if isinstance(K, (list, tuple)) or getattr(K, "ndim", None) == 1:
        values = _tensor(K, "eigenvalues").to(torch.float64)
        if values.numel() == 0:
            raise LinftError("no eigenvalues given (empty array): pass a kernel matrix or its eigenvalues")
        if N is None:
            raise LinftError("eigenvalues alone do not say how many training examples there are: pass N")
        values = clip_eigenvalues(values, None)
    else:
        matrix, N, _ = training_matrix(K, N)
        values = clip_eigenvalues(torch.linalg.eigvalsh(matrix), None)
    N = _check_N(N)
    return float(values.max()), float(values.min()), N


def _check_N(N) -> int:
    if isinstance(N, bool) or not hasattr(N, "__index__") or int(N) < 1:
        raise LinftError(f"N must be a positive integer (the number of training examples), got {N!r}")
    return int(N)


def kappa_lambda(K, N: int | None = None, lam: float = 0.0) -> float:
    """κ_λ = (μmax + Nλ)/(μmin + Nλ) of the training kernel (``inf`` for a singular kernel with λ = 0).

    ``K``: a :class:`KernelSpectrum`, a :class:`KernelRegression`, a training kernel, or its eigenvalues (1-D; then
    ``N`` is required). ``N`` defaults to the kernel's number of examples (a plain matrix counts as scalar, N = n; pass
    N for a flattened ``[N·C, N·C]`` one). κ_λ is the ratio of the fastest to the slowest eigen-rate s_i = μ_i/N + λ.
    """
    lam = check_lam(lam)
    mu_max, mu_min, N = _extremes(K, N)
    return kappa_from_extremes(mu_max, mu_min, N * lam)


def _curvature(K, N, lam) -> float:
    """L = μmax/N + λ, the largest eigen-rate (the Hessian's top eigenvalue on J's row space)."""
    lam = check_lam(lam)
    mu_max, _, N = _extremes(K, N)
    return mu_max / N + lam


def max_stable_lr(K, N: int | None = None, lam: float = 0.0) -> float:
    """η_max = 2/(μmax/N + λ): GD on the linearized model converges iff η < η_max (``inf`` for a zero kernel, λ = 0).

    Arguments as :func:`kappa_lambda`.
    """
    L = _curvature(K, N, lam)
    return math.inf if L == 0 else 2.0 / L


def descent_lr(K, N: int | None = None, lam: float = 0.0) -> float:
    """1/(μmax/N + λ): the largest η for which no eigen-component oscillates (1 − η s_i ≥ 0 for all i).

    Up to this step every residual coefficient moves monotonically to its limit and F drops by at least
    (η/2)‖∇F‖² per step (descent lemma). F itself keeps decreasing up to :func:`max_stable_lr` on this quadratic.
    η = descent_lr removes the stiffest component in one step. Arguments as :func:`kappa_lambda`.
    """
    L = _curvature(K, N, lam)
    return math.inf if L == 0 else 1.0 / L


def check_lr(K, N: int | None = None, lam: float = 0.0, *, lr) -> str:
    """Raise :class:`LinftError` when GD with step ``lr`` does not converge (lr ≥ :func:`max_stable_lr`).

    Otherwise return the regime: ``"monotone"`` (lr ≤ :func:`descent_lr`: no component changes sign) or
    ``"oscillating"`` (between the two: the stiffest components alternate in sign while shrinking).
    Arguments as :func:`kappa_lambda`.
    """
    lr = _check_lr(lr)
    L = _curvature(K, N, lam)
    if lr * L >= 2.0:
        raise LinftError(f"lr={lr:.4g} is at or above the stable limit 2/(μmax/N + λ) = {2.0 / L:.4g}: gradient "
                         f"descent diverges along the top eigenvector; use lr < {2.0 / L:.4g} (at most {1.0 / L:.4g} "
                         "to avoid oscillation)")
    return "monotone" if lr * L <= 1.0 else "oscillating"


# ---------------------------------------------------------------------------------------------- dynamics


def _decay(s: torch.Tensor, moving: torch.Tensor, t: torch.Tensor, lr: float, flow: bool
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(p, g = 1 − p), each ``[T, n]`` for steps t ``[T]``: p = (1 − lr·s)^t for GD, e^{−s·lr·t} for flow.

    Where ``moving`` is False (μ_i = 0: K's null space, whose coefficient never changes) p = 1 and g = 0, so an
    unstable λ-only factor cannot turn 0·inf into NaN there.
    """
    t = t[:, None]
    if flow:
        x = -s[None] * (lr * t)
        p, g = torch.exp(x), -torch.expm1(x)
    else:
        a = 1.0 - lr * s
        positive = a > 0
        log_p = torch.log1p(torch.where(positive, -lr * s, torch.zeros_like(s)))[None] * t  # exact where a > 0
        p_neg = torch.pow(a[None], t)
        p = torch.where(positive[None], torch.exp(log_p), p_neg)
        g = torch.where(positive[None], -torch.expm1(log_p), 1.0 - p_neg)
    return torch.where(moving[None], p, 1.0), torch.where(moving[None], g, 0.0)


def _blocks(total: int, width: int):
    size = max(1, _BLOCK // max(width, 1))
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


@dataclass(frozen=True, eq=False)
class TrainCurves:
    """Predicted training dynamics, one entry per step 0..steps (float64 ``[steps + 1]`` each).

    Attributes:
        time: the step index t (GD), or the flow time lr·t (gradient flow).
        loss: training loss R_t = (1/(2N)) ‖f_t(X) − Y‖².
        drift: ‖θ_t − θ0‖² = u_tᵀ K⁺ u_t.
        objective: the anchored objective R_t + (λ/2) ‖θ_t − θ0‖².
    """

    time: torch.Tensor
    loss: torch.Tensor
    drift: torch.Tensor
    objective: torch.Tensor


class KernelRegression:
    """Gradient descent on the linearized model as kernel regression. Build it with :meth:`KernelRegression.fit`.

    Attributes: ``spectrum`` (:class:`KernelSpectrum`), ``lam`` λ, ``n_examples`` N, ``n_outputs`` C (of the task),
    ``targets`` Y and ``f0`` (float64 ``[N, C]``), ``shared`` (True when a scalar kernel serves C > 1 outputs, K ⊗ I_C).
    Nothing is mutated after construction.
    """

    def __init__(self, spectrum: KernelSpectrum, targets: torch.Tensor, f0: torch.Tensor, lam: float):
        """Internal: use :meth:`fit`."""
        self.spectrum, self.targets, self.f0, self.lam = spectrum, targets, f0, lam
        self.n_examples, self.n_outputs = targets.shape
        self.shared = spectrum.n_outputs == 1 and self.n_outputs > 1
        mu = spectrum.eigenvalues
        N = self.n_examples
        self._s = mu / N + lam  # eigen-rates s_i
        self._moving = mu > 0  # μ_i = 0: K's null space, where nothing moves
        safe = torch.where(self._moving, self._s, torch.ones_like(self._s))
        self._rho = torch.where(self._moving, (mu / N) / safe, torch.zeros_like(mu))  # share of c_i(0) that moves
        self._gamma = torch.where(self._moving, 1.0 / (N * safe), torch.zeros_like(mu))  # ρ_i/μ_i
        self._c0 = spectrum.eigenvectors.T @ self._rows(f0 - targets)  # [n, k]
        self._q = (self._c0**2).sum(1)  # ‖c_i(0)‖² [n]

    @classmethod
    def fit(cls, K_train, Y, f0=None, lam: float = 0.0, *, rtol: float | None = None) -> KernelRegression:
        """Set up kernel regression on the training kernel ``K_train`` for targets ``Y`` from outputs ``f0``.

        ``K_train``: :class:`linft.ntk.Kernel`, ``[N, N, C, C]``, ``[N·C, N·C]``, ``[N, N]`` (scalar: K ⊗ I_C for
        C outputs) or a :class:`KernelSpectrum`. ``Y``: float targets ``[N, C]`` (``[N]`` for C = 1) or integer labels
        ``[N]`` (one-hot for C ≥ 2 kernel outputs, ±1 for a scalar kernel; see the module docstring). ``f0``: the
        outputs (logits, or f_1 − f_0 for ``logit_diff``) at θ0, ``[N, C]``; None = zeros. ``lam``: λ ≥ 0 of the
        anchored penalty. ``rtol``: see :meth:`KernelSpectrum.of`.
        """
        lam = check_lam(lam)
        Y = _tensor(Y, "Y")
        if Y.dim() == 0 or Y.shape[0] == 0:
            raise LinftError(f"Y has shape {tuple(Y.shape)}: pass one target row (or label) per training example")
        spectrum = KernelSpectrum.of(K_train, n_examples=Y.shape[0], rtol=rtol)
        C_kernel = spectrum.n_outputs
        targets = _outputs(Y, spectrum.n_examples, None, "Y", labels_to=C_kernel)
        C = targets.shape[1]
        if C_kernel > 1 and C != C_kernel:
            raise LinftError(f"Y has C={C} outputs but the kernel has C={C_kernel}: pass targets [N, {C_kernel}] "
                             f"(or integer labels), or a scalar [N, N] kernel to share it across outputs")
        if f0 is None:
            f0 = torch.zeros_like(targets)
        else:
            f0 = _outputs(f0, spectrum.n_examples, C, "f0")
        return cls(spectrum, targets, f0, lam)

    # ------------------------------------------------------------------------------------------ layout

    @property
    def _k(self) -> int:
        """Columns of the row layout: C when a scalar kernel is shared by C outputs, else 1."""
        return self.n_outputs if self.shared else 1

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C] → [n, k]: example-major column [N·C, 1] for a full kernel, [N, C] for a shared one."""
        return x.reshape(-1, self._k)

    def _test(self, K_test_train, f0_test) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(test kernel rows [m, n] float64, f0_test [M, C], M) checked against the training kernel."""
        K = _tensor(K_test_train, "K_test_train").to(torch.float64)
        N, Ck, n = self.n_examples, self.spectrum.n_outputs, self.spectrum.eigenvalues.numel()
        hint = "compute it as empirical_ntk(model, test_batch, train_batch) (test examples first)"
        if K.dim() == 4:
            M, Ntr, c1, c2 = K.shape
            if Ntr != N or c1 != Ck or c2 != Ck:
                raise LinftError(f"K_test_train has shape {tuple(K.shape)} but [M, {N}, {Ck}, {Ck}] is needed: {hint}")
            K = K.permute(0, 2, 1, 3).reshape(M * Ck, N * Ck)
        elif K.dim() == 2:
            if K.shape[1] != n or K.shape[0] % Ck:
                want = f"[M, {N}]" if Ck == 1 else f"[M·{Ck}, {n}] (or [M, {N}, {Ck}, {Ck}])"
                raise LinftError(f"K_test_train has shape {tuple(K.shape)} but {want} is needed: {hint}")
            M = K.shape[0] // Ck
        else:
            raise LinftError(f"K_test_train has shape {tuple(K.shape)}: pass [M, N, C, C] or a matrix [M·C, N·C]")
        if f0_test is None:
            f0_test = torch.zeros(M, self.n_outputs, dtype=torch.float64)
        else:
            f0_test = _outputs(f0_test, M, self.n_outputs, "f0_test")
        return K, f0_test, M

    def _g(self, step, lr, flow) -> torch.Tensor:
        """g = 1 − p [n] at one step (step None: the t → ∞ limit)."""
        if step is None:
            return (self._s > 0).to(torch.float64)
        step = _check_steps(step, "step")
        if lr is None:
            raise LinftError(f"step={step} needs lr (the step size; for flow, time = lr·step): pass lr=...")
        lr = _check_lr(lr)
        return _decay(self._s, self._moving, torch.tensor([float(step)], dtype=torch.float64), lr, flow)[1][0]

    # ------------------------------------------------------------------------------------------ outputs

    def train_outputs(self, *, step: int | None = None, lr: float | None = None, flow: bool = False) -> torch.Tensor:
        """Training outputs f_t(X) ``[N, C]`` after ``step`` GD steps of size ``lr`` (None: the t → ∞ limit)."""
        g = self._g(step, lr, flow)
        c = self._c0 * (1.0 - self._rho * g)[:, None]
        return self.targets + (self.spectrum.eigenvectors @ c).reshape(-1, self.n_outputs)

    def predict(self, K_test_train, f0_test=None, *, step: int | None = None, lr: float | None = None,
                flow: bool = False) -> torch.Tensor:
        """Test outputs f_t(x) = f0(x) + K(x, X) K⁺ u_t, ``[M, C]`` float64.

        ``K_test_train``: ``[M, N, C, C]`` or ``[M·C, N·C]`` (``[M, N]`` for a scalar kernel), a Kernel from
        ``empirical_ntk(model, test_batch, train_batch)``; ``f0_test``: outputs at θ0 ``[M, C]`` (None: zeros).
        ``step`` None gives the t → ∞ limit: kernel ridge regression f0 + K(x, X)(K + NλI)⁻¹(Y − f0) for λ > 0, the
        min-norm interpolant for λ = 0 (lr is ignored). Otherwise ``lr`` is required (flow: time lr·step).
        """
        K, f0_test, M = self._test(K_test_train, f0_test)
        g = self._g(step, lr, flow)
        alpha = -self.spectrum.eigenvectors @ (self._c0 * (self._gamma * g)[:, None])  # K⁺ u_t  [n, k]
        return f0_test + (K @ alpha).reshape(M, self.n_outputs)

    def classify(self, K_test_train, f0_test=None, **when) -> torch.Tensor:
        """Predicted labels ``[M]`` (int64): argmax over C outputs, or f > 0 → 1 else 0 for one output.

        ``when``: ``step``, ``lr``, ``flow`` as in :meth:`predict`.
        """
        out = self.predict(K_test_train, f0_test, **when)
        return (out[:, 0] > 0).long() if self.n_outputs == 1 else out.argmax(1)

    def accuracy(self, K_test_train, f0_test, labels, **when) -> float:
        """Fraction of ``labels`` ``[M]`` that :meth:`classify` gets right."""
        predicted = self.classify(K_test_train, f0_test, **when)
        labels = _tensor(labels, "labels")
        if labels.shape != predicted.shape or labels.is_floating_point():
            raise LinftError(f"labels must be integers [{predicted.shape[0]}], got {labels.dtype} "
                             f"{tuple(labels.shape)}: pass one label per test example")
        return float((predicted == labels.long()).to(torch.float64).mean())

    # ------------------------------------------------------------------------------------------ curves

    def curves(self, *, lr: float, steps: int, flow: bool = False) -> TrainCurves:
        """Predicted training loss, drift ‖θ_t − θ0‖² and anchored objective for t = 0..steps (:class:`TrainCurves`).

        GD with step ``lr``, or gradient flow (``flow=True``) sampled at times lr·t. Any lr > 0 is accepted (an
        unstable one gives a diverging curve; see :func:`check_lr`).
        """
        lr, steps = _check_lr(lr), _check_steps(steps)
        t = torch.arange(steps + 1, dtype=torch.float64)
        n, N = self._s.numel(), self.n_examples
        loss, drift = torch.empty(steps + 1, dtype=torch.float64), torch.empty(steps + 1, dtype=torch.float64)
        w = self._q * self._rho * self._gamma  # ‖c_i(0)‖² ρ_i²/μ_i
        for sl in _blocks(steps + 1, n):
            p, g = _decay(self._s, self._moving, t[sl], lr, flow)
            h = (1.0 - self._rho) + self._rho * p  # c_i(t)/c_i(0)
            loss[sl] = (h**2) @ self._q / (2 * N)
            drift[sl] = (g**2) @ w
        return TrainCurves(time=t * lr if flow else t, loss=loss, drift=drift, objective=loss + 0.5 * self.lam * drift)

    def eval_loss(self, K_test_train, Y_test, f0_test=None, *, lr: float, steps: int, flow: bool = False
                  ) -> torch.Tensor:
        """Predicted test loss (1/(2M)) ‖f_t(x) − Y_test‖² for t = 0..steps, float64 ``[steps + 1]``.

        ``Y_test``: float ``[M, C]`` or integer labels ``[M]`` (one-hot for C ≥ 2, ±1 for C = 1); the rest as
        :meth:`predict` and :meth:`curves`.
        """
        lr, steps = _check_lr(lr), _check_steps(steps)
        K, f0_test, M = self._test(K_test_train, f0_test)
        Y_test = _outputs(Y_test, M, self.n_outputs, "Y_test", labels_to=self.n_outputs)
        e0 = (f0_test - Y_test).reshape(1, -1)  # [1, M·C], same order as (K @ alpha).reshape(1, -1)
        B = K @ self.spectrum.eigenvectors  # [m, n]
        F = (self._gamma[:, None, None] * B.T[:, :, None] * self._c0[:, None, :]).reshape(B.shape[1], -1)
        t = torch.arange(steps + 1, dtype=torch.float64)
        out = torch.empty(steps + 1, dtype=torch.float64)
        for sl in _blocks(steps + 1, max(F.shape)):
            _, g = _decay(self._s, self._moving, t[sl], lr, flow)
            out[sl] = ((e0 - g @ F) ** 2).sum(1) / (2 * M)
        return out


# ---------------------------------------------------------------------------------------------- one-call forms


def predicted_train_loss(K, Y, f0=None, lam: float = 0.0, *, lr: float, steps: int, flow: bool = False
                         ) -> torch.Tensor:
    """Predicted training loss R_t, t = 0..steps, float64 ``[steps + 1]``; arguments as :meth:`KernelRegression.fit`
    and :meth:`KernelRegression.curves` (which also gives the drift and the anchored objective)."""
    return KernelRegression.fit(K, Y, f0, lam).curves(lr=lr, steps=steps, flow=flow).loss


def predicted_eval_loss(K_train, K_test_train, Y_train, f0_train, f0_test, Y_test, lam: float = 0.0, *, lr: float,
                        steps: int, flow: bool = False) -> torch.Tensor:
    """Predicted test loss, t = 0..steps, float64 ``[steps + 1]``; see :meth:`KernelRegression.eval_loss`."""
    model = KernelRegression.fit(K_train, Y_train, f0_train, lam)
    return model.eval_loss(K_test_train, Y_test, f0_test, lr=lr, steps=steps, flow=flow)


def asymmetric_regression(K_train, K_test_train, Y, f0_train=None, f0_test=None, lam: float = 0.0) -> torch.Tensor:
    """Kernel regression with a kernel that need not be symmetric (the asymmetric SignGD kernel of Adam-style runs):
    f0(x) + K(x, X) (K + NλI)⁺ (Y − f0(X)), ``[M, C]`` float64.

    This is the t → ∞ form that Malladi et al. (2023) use for Adam-trained fine-tuning (their A-SignGD kernel);
    it has no gradient-descent curve of its own here. Shapes and target conventions as :meth:`KernelRegression.fit`
    and :meth:`KernelRegression.predict` (full ``[N, N, C, C]`` / ``[M, N, C, C]`` kernels, integer labels → one-hot);
    the pseudo-inverse makes λ = 0 well defined when K is singular.
    """
    lam = check_lam(lam)
    K = as_matrix(K_train, "K_train")
    Y = _tensor(Y, "Y")
    N = Y.shape[0] if Y.dim() else 0
    if N == 0 or K.shape[0] % N:
        raise LinftError(f"K_train has {K.shape[0]} rows, not a multiple of the {N} training examples in Y")
    C = K.shape[0] // N
    targets = _outputs(Y, N, None, "Y", labels_to=C)
    if targets.shape[1] != C:
        raise LinftError(f"Y has {targets.shape[1]} outputs but the kernel has C={C}: pass targets [N, {C}] or labels")
    f0_train = torch.zeros_like(targets) if f0_train is None else _outputs(f0_train, N, C, "f0_train")
    Kx = kernel_values(K_test_train)
    Kx = _tensor(Kx, "K_test_train")
    if Kx.dim() == 4:
        Kx = Kx.permute(0, 2, 1, 3).reshape(Kx.shape[0] * Kx.shape[2], Kx.shape[1] * Kx.shape[3])
    if Kx.dim() != 2 or Kx.shape[1] != K.shape[0] or Kx.shape[0] % C:
        raise LinftError(f"K_test_train has shape {tuple(Kx.shape)}: pass [M, N, C, C] or [M·C, {K.shape[0]}]")
    M = Kx.shape[0] // C
    f0_test = torch.zeros(M, C, dtype=torch.float64) if f0_test is None else _outputs(f0_test, M, C, "f0_test")
    system = K + N * lam * torch.eye(K.shape[0], dtype=torch.float64)
    alpha = torch.linalg.pinv(system) @ (targets - f0_train).reshape(-1, 1)
    return f0_test + (Kx @ alpha).reshape(M, C)
