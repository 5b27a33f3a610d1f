"""Spectra of empirical NTKs: eigen-decomposition in float64, condition numbers, rank, extreme eigenvalues.

Every function takes a kernel as a square matrix (a ``torch.Tensor`` or NumPy array), a 4-D ``[N, N, C, C]``
full-output kernel (flattened example-major, class-minor, as :meth:`linft.ntk.Kernel.matrix` does), or a
:class:`linft.ntk.Kernel` (anything with a ``matrix()`` method). Work is done in float64.

- :func:`eigh`: symmetric eigen-decomposition (ascending), after symmetrizing away round-off.
- :func:`eigenvalues`: real eigenvalues, ascending; asymmetric kernels (``asym_signgd``) go through
  ``torch.linalg.eigvals`` and keep the real parts (:func:`spectrum_report` says so).
- :func:`condition_number`: κ = (λmax + σ)/(λmin + σ), ``inf`` when the kernel is singular or indefinite and σ = 0;
  :func:`kappa_from_extremes`: the one κ formula every κ of the package goes through.
- :func:`spectrum_report`: a :class:`SpectrumReport` with κ, ridge κ, negative and near-zero eigenvalue counts,
  effective rank (entropy and participation ratio), trace, and a plain-language ``note``.
- :func:`extreme_eigenvalues`: the k largest/smallest eigenvalues of a large kernel, or of a matrix-vector
  product, by Lanczos (``scipy.sparse.linalg.eigsh``) or LOBPCG, without forming the full decomposition.
- :func:`symmetric_part`, :func:`singular_values`, :func:`singular_condition_number`: what to report for an
  asymmetric kernel instead of the real parts of complex eigenvalues: the spectrum of its symmetric part
  (K + Kᵀ)/2, which governs d‖r‖²/dt under r′ = −K r, and σmax/σmin of K itself, the condition number of the
  linear system K α = y.
- :func:`top_share`: the share of the trace carried by the largest eigenvalues (how fast a spectrum decays).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from linft import LinftError, check_choice, check_positive_int

#: relative asymmetry ‖K − Kᵀ‖_F / ‖K‖_F above which a kernel is treated as asymmetric (not round-off)
ASYMMETRY_TOL = 1e-6


# ---------------------------------------------------------------------------------------------- inputs


def as_matrix(K, name: str = "K") -> torch.Tensor:
    """``K`` as a finite, non-empty, square float64 matrix (a Kernel, a 4-D full kernel, a tensor or array)."""
    if hasattr(K, "matrix") and callable(K.matrix):
        K = K.matrix()
    if isinstance(K, np.ndarray):
        K = torch.from_numpy(K)
    if not isinstance(K, torch.Tensor):
        try:
            K = torch.as_tensor(K)
        except (TypeError, ValueError, RuntimeError):
            raise LinftError(
                f"{name} must be a square matrix (tensor, array or Kernel), got {type(K).__name__}"
            ) from None
    if K.is_complex():
        raise LinftError(f"{name} is complex: pass a real kernel matrix")
    if K.dim() == 4:
        n, m, c1, c2 = K.shape
        if n != m or c1 != c2:
            raise LinftError(f"{name} has shape {tuple(K.shape)}: a 4-D kernel must be [N, N, C, C] to be square")
        K = K.permute(0, 2, 1, 3).reshape(n * c1, m * c2)
    if K.dim() != 2 or K.shape[0] != K.shape[1]:
        raise LinftError(
            f"{name} has shape {tuple(K.shape)}: pass a square matrix [n, n] "
            "(or a Kernel between one batch and itself)"
        )
    if K.shape[0] == 0:
        raise LinftError(f"{name} is empty (shape {tuple(K.shape)}): compute the kernel on at least one example")
    K = K.detach().to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(K).all():
        bad = int((~torch.isfinite(K)).sum())
        raise LinftError(
            f"{name} has {bad} non-finite entries (NaN/inf): recompute the kernel (check the model's outputs)"
        )
    return K


def asymmetry(K) -> float:
    """Relative asymmetry ‖K − Kᵀ‖_F / ‖K‖_F (0 for a symmetric matrix, 0 for the zero matrix)."""
    K = as_matrix(K)
    norm = torch.linalg.matrix_norm(K)
    return 0.0 if norm == 0 else float(torch.linalg.matrix_norm(K - K.T) / norm)


def _is_declared_asymmetric(K) -> bool:
    return getattr(K, "kernel", None) == "asym_signgd"


# ---------------------------------------------------------------------------------------------- decompositions


def eigh(K, check_symmetric: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric eigen-decomposition in float64: ``(eigenvalues ascending [n], eigenvectors [n, n] as columns)``.

    ``K`` is symmetrized, ``(K + Kᵀ)/2``, to remove round-off. A kernel that is asymmetric beyond round-off
    (relative asymmetry above :data:`ASYMMETRY_TOL`, e.g. the ``asym_signgd`` kernel) raises unless
    ``check_symmetric=False`` (then its symmetric part is decomposed); use :func:`eigenvalues` for its spectrum.
    """
    declared = _is_declared_asymmetric(K)
    K = as_matrix(K)
    if check_symmetric:
        asym = asymmetry(K)
        if asym > ASYMMETRY_TOL or declared:
            raise LinftError(
                f"K is not symmetric (relative asymmetry {asym:.2e}): use linft.spectral.eigenvalues(K) for its "
                "(real parts of) eigenvalues, or eigh(K, check_symmetric=False) to decompose its symmetric part"
            )
    values, vectors = torch.linalg.eigh((K + K.T) / 2)
    return values, vectors


def eigenvalues(K) -> torch.Tensor:
    """Real eigenvalues of ``K`` in ascending order, float64.

    Symmetric kernels use ``torch.linalg.eigvalsh``. Asymmetric ones (relative asymmetry above
    :data:`ASYMMETRY_TOL`, or a Kernel whose ``kernel`` is ``asym_signgd``) use ``torch.linalg.eigvals`` and
    return the real parts; :func:`spectrum_report` records the largest imaginary part it dropped.
    """
    return _spectrum(K)[0]


def _spectrum(K) -> tuple[torch.Tensor, bool, float]:
    """(real eigenvalues ascending, symmetric?, largest |imaginary part| dropped)."""
    declared = _is_declared_asymmetric(K)
    K = as_matrix(K)
    if not declared and asymmetry(K) <= ASYMMETRY_TOL:
        return torch.linalg.eigvalsh((K + K.T) / 2), True, 0.0
    complex_values = torch.linalg.eigvals(K)
    real = complex_values.real
    order = torch.argsort(real)
    return real[order].contiguous(), False, float(complex_values.imag.abs().max())


def _as_eigenvalues(K_or_values) -> torch.Tensor:
    """A 1-D input (list, array, tensor) is taken as eigenvalues; anything else as a kernel matrix."""
    if isinstance(K_or_values, (list, tuple)) or getattr(K_or_values, "ndim", None) == 1:
        if isinstance(K_or_values, torch.Tensor):
            values = K_or_values.detach().cpu().to(torch.float64)
        else:
            values = torch.as_tensor(np.asarray(K_or_values, dtype=np.float64))
        if values.numel() == 0:
            raise LinftError("no eigenvalues given (empty array): pass a kernel matrix or its eigenvalues")
        if not torch.isfinite(values).all():
            raise LinftError("eigenvalues contain NaN/inf: recompute the kernel (check the model's outputs)")
        return torch.sort(values).values
    return eigenvalues(K_or_values)


def _check_ridge(ridge: float) -> float:
    try:
        ridge = float(ridge)
    except (TypeError, ValueError):
        raise LinftError(f"ridge must be a number >= 0, got {ridge!r}") from None
    if not math.isfinite(ridge) or ridge < 0:
        raise LinftError(f"ridge must be a finite number >= 0, got {ridge!r}")
    return ridge


def kappa_from_extremes(lambda_max: float, lambda_min: float, shift: float = 0.0) -> float:
    """κ = (λmax + s)/(λmin + s), ``inf`` when λmin + s ≤ 0: **the** condition-number formula of linft.

    ``shift`` s: 0 for the plain κ = λmax/λmin, σ for a ridge, Nλ for the anchored κ_λ = (μmax + Nλ)/(μmin + Nλ)
    (:func:`linft.predict.kappa_lambda`). Plain floats in, no clipping: callers clip negative eigenvalues first
    where they mean to (:func:`condition_number` does for σ > 0). Every κ in :mod:`linft.spectral`,
    :mod:`linft.predict` and :mod:`linft.layers` is computed here.
    """
    bottom = lambda_min + shift
    return math.inf if bottom <= 0 else (lambda_max + shift) / bottom


def _kappa(lmax: float, lmin: float, ridge: float) -> float:
    """(λmax+σ)/(λmin+σ) of sorted eigenvalues (λmax ≥ λmin); with σ > 0 a negative λmin is clipped at 0 so the
    result is finite, with σ = 0 it is ``inf`` for λmin ≤ 0."""
    if ridge > 0:
        return kappa_from_extremes(max(lmax, 0.0), max(lmin, 0.0), ridge)
    return kappa_from_extremes(lmax, lmin)


def condition_number(K_or_eigenvalues, ridge: float = 0.0) -> float:
    """Condition number κ = (λmax + σ)/(λmin + σ) of a kernel (or of its eigenvalues, a 1-D input).

    With ``ridge`` σ = 0, a singular or indefinite kernel (λmin ≤ 0) has κ = ``inf``. With σ > 0 eigenvalues
    below zero (round-off, or a non-PSD kernel variant) are clipped at 0, so κ is finite: (λmax + σ)/σ at most.
    """
    ridge = _check_ridge(ridge)
    values = _as_eigenvalues(K_or_eigenvalues)
    return _kappa(float(values[-1]), float(values[0]), ridge)


# ---------------------------------------------------------------------------------------------- report


def effective_rank(K_or_eigenvalues) -> float:
    """Entropy effective rank exp(H(p)), p = λ/Σλ over the positive eigenvalues (n for c·I, 1 for rank one)."""
    values = _as_eigenvalues(K_or_eigenvalues)
    pos = values[values > 0]
    if pos.numel() == 0:
        return 0.0
    p = pos / pos.sum()
    return float(torch.exp(-(p * torch.log(p)).sum()))


def participation_ratio(K_or_eigenvalues) -> float:
    """Participation ratio (Σλ)²/Σλ² over the positive eigenvalues (n for c·I, 1 for rank one)."""
    values = _as_eigenvalues(K_or_eigenvalues)
    pos = values[values > 0]
    if pos.numel() == 0:
        return 0.0
    return float(pos.sum() ** 2 / (pos**2).sum())


@dataclass
class SpectrumReport:
    """What the spectrum of a kernel says about conditioning. Build it with :func:`spectrum_report`.

    Attributes:
        eigenvalues: real eigenvalues, ascending, float64 ``[n]``.
        n: size of the kernel matrix.
        lambda_max, lambda_min: largest and smallest eigenvalue.
        kappa: λmax/λmin; ``inf`` when λmin ≤ 0 (see ``note``).
        ridge: σ used for ``kappa_ridge``.
        kappa_ridge: (λmax+σ)/(max(λmin, 0)+σ); finite whenever σ > 0; equals ``kappa`` for σ = 0.
        n_negative: eigenvalues below −rtol·λmax (round-off, or a kernel variant that is not PSD).
        n_near_zero: eigenvalues with |λ| ≤ rtol·λmax.
        effective_rank: exp(entropy) of p = λ/Σλ over positive eigenvalues.
        participation_ratio: (Σλ)²/Σλ² over positive eigenvalues.
        trace: trace of K (= Σλ).
        rtol: relative tolerance for the two counts.
        symmetric: False for asymmetric kernels, whose eigenvalues are the real parts of complex ones.
        max_imag: largest |imaginary part| dropped (0 for symmetric kernels).
        note: plain-language caveats ("" when there are none).
    """

    eigenvalues: torch.Tensor = field(repr=False)
    n: int
    lambda_max: float
    lambda_min: float
    kappa: float
    ridge: float
    kappa_ridge: float
    n_negative: int
    n_near_zero: int
    effective_rank: float
    participation_ratio: float
    trace: float
    rtol: float
    symmetric: bool = True
    max_imag: float = 0.0
    note: str = ""

    def as_dict(self) -> dict:
        """The scalar fields (no eigenvalue array), e.g. for a DataFrame row or a results file."""
        out = asdict(self)
        out.pop("eigenvalues")
        return out

    def __str__(self) -> str:
        text = (
            f"n={self.n}  λmax={self.lambda_max:.4g}  λmin={self.lambda_min:.4g}  κ={self.kappa:.4g}  "
            f"κ(σ={self.ridge:.3g})={self.kappa_ridge:.4g}  eff.rank={self.effective_rank:.2f}  "
            f"PR={self.participation_ratio:.2f}  negative={self.n_negative}  near-zero={self.n_near_zero}"
        )
        return text + (f"\nnote: {self.note}" if self.note else "")


def spectrum_report(K, ridge: float = 0.0, rtol: float = 1e-10) -> SpectrumReport:
    """Eigenvalues, κ (plain and with ridge σ), negative/near-zero counts, effective rank and trace of ``K``.

    When λmin ≤ 0, κ is ``inf`` and ``note`` explains why (round-off of a PSD kernel, or an indefinite
    kernel variant); ``kappa_ridge`` clips λmin at 0 and is finite for σ > 0. Asymmetric kernels
    (``asym_signgd``) are reported through the real parts of their eigenvalues, and ``note`` says so.
    """
    ridge = _check_ridge(ridge)
    if not (isinstance(rtol, (int, float)) and 0 <= rtol < 1):
        raise LinftError(f"rtol must be a number in [0, 1), got {rtol!r}")
    matrix = as_matrix(K)
    values, symmetric, max_imag = _spectrum(K if _is_declared_asymmetric(K) else matrix)
    lmax, lmin = float(values[-1]), float(values[0])
    scale = float(values.abs().max())
    threshold = rtol * scale
    n_negative = int((values < -threshold).sum())
    n_near_zero = int((values.abs() <= threshold).sum())
    kappa = _kappa(lmax, lmin, 0.0)
    kappa_ridge = _kappa(lmax, lmin, ridge) if ridge > 0 else kappa
    notes = []
    if not symmetric:
        notes.append(
            f"K is not symmetric (relative asymmetry {asymmetry(matrix):.2e}); eigenvalues are the real parts of "
            f"complex ones (largest |imaginary part| dropped: {max_imag:.3g})"
        )
    if scale == 0:
        notes.append("K is the zero matrix: every eigenvalue is 0, κ is undefined (reported as inf)")
    elif lmin <= 0:
        if n_negative:
            why = (
                f"{n_negative} eigenvalue(s) are below −rtol·λmax (most negative {lmin:.3g}): round-off if the "
                "kernel should be PSD, or a kernel variant that is not PSD"
            )
        else:
            why = f"λmin = {lmin:.3g} is zero up to rtol·λmax: the kernel is singular (rank-deficient)"
        notes.append(f"κ is infinite because λmin ≤ 0; {why}")
        if ridge > 0:
            notes.append(f"κ with ridge σ={ridge:.3g} clips λmin at 0: (λmax+σ)/σ = {kappa_ridge:.4g}")
        else:
            notes.append("pass ridge > 0 for a finite κ")
    elif n_near_zero:
        notes.append(
            f"{n_near_zero} eigenvalue(s) are within rtol·λmax of zero: κ = {kappa:.3g} is set by round-off, "
            "not by the kernel"
        )
    return SpectrumReport(
        eigenvalues=values,
        n=int(values.numel()),
        lambda_max=lmax,
        lambda_min=lmin,
        kappa=kappa,
        ridge=ridge,
        kappa_ridge=kappa_ridge,
        n_negative=n_negative,
        n_near_zero=n_near_zero,
        effective_rank=effective_rank(values),
        participation_ratio=participation_ratio(values),
        trace=float(torch.diagonal(matrix).sum()),
        rtol=float(rtol),
        symmetric=symmetric,
        max_imag=max_imag,
        note="; ".join(notes),
    )


def layer_shares(per_layer: dict) -> dict[str, float]:
    """Each block's share of the kernel's trace, tr K_l / Σ_l tr K_l, from ``Kernel.per_layer`` (sums to 1).

    The trace is the summed squared gradient norm, so the share says how much of the kernel's "size" each
    layer (or the head) contributes. Blocks may be square matrices or 4-D ``[N, N, C, C]`` kernels.
    """
    if not per_layer:
        raise LinftError("no per-layer blocks given: compute the kernel with empirical_ntk(..., per_layer=True)")
    traces = {
        str(name): float(torch.diagonal(as_matrix(block, name=str(name))).sum()) for name, block in per_layer.items()
    }
    total = sum(traces.values())
    if total == 0:
        raise LinftError("the per-layer blocks have zero total trace (every gradient is zero): check the parameter set")
    return {name: value / total for name, value in traces.items()}


# ---------------------------------------------------------------------------------------------- large kernels


def _operator(K_or_matvec, n: int | None):
    """(numpy matmat function, n, dense float64 tensor or None) for a matrix or a matvec callable."""
    if (
        callable(K_or_matvec)
        and not hasattr(K_or_matvec, "matrix")
        and not isinstance(K_or_matvec, (torch.Tensor, np.ndarray))
    ):
        if n is None or int(n) < 1:
            raise LinftError("a matvec callable needs its size: pass n=<number of rows of the kernel>")
        n = int(n)
        fn = K_or_matvec

        def matmat(x: np.ndarray) -> np.ndarray:
            out = fn(torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float64))
            out = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
            out = out.astype(np.float64, copy=False).reshape(x.shape)
            if not np.isfinite(out).all():
                raise LinftError("the matvec returned NaN/inf: check the kernel's matrix-vector product")
            return out

        return matmat, n, None
    dense = as_matrix(K_or_matvec)
    if asymmetry(dense) > ASYMMETRY_TOL or _is_declared_asymmetric(K_or_matvec):
        raise LinftError("extreme_eigenvalues needs a symmetric kernel: use eigenvalues(K) for an asymmetric one")
    dense = (dense + dense.T) / 2
    array = dense.numpy()
    return (lambda x: array @ x), dense.shape[0], dense


def extreme_eigenvalues(
    K_or_matvec: torch.Tensor | np.ndarray | Callable,
    k: int = 1,
    which: str = "both",
    method: str = "lanczos",
    n: int | None = None,
    tol: float = 1e-10,
    maxiter: int | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """The ``k`` largest and/or smallest eigenvalues of a symmetric kernel without a full decomposition.

    ``K_or_matvec``: a symmetric matrix (tensor, array, Kernel) or a function ``x [n] or [n, m] -> K @ x``
    (then give ``n``). ``which``: ``"largest"``, ``"smallest"`` or ``"both"``. ``method``: ``"lanczos"``
    (``scipy.sparse.linalg.eigsh``, implicitly restarted Lanczos) or ``"lobpcg"`` (``torch.lobpcg`` for a
    matrix, ``scipy.sparse.linalg.lobpcg`` for a matvec). Returns ``{"largest": [k] descending,
    "smallest": [k] ascending}`` (only the keys asked for), float64.
    """
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh, lobpcg

    check_choice("which", which, ("largest", "smallest", "both"))
    check_choice("method", method, ("lanczos", "lobpcg"))
    k = check_positive_int(k, "k")
    matmat, size, dense = _operator(K_or_matvec, n)
    limit = size - 1 if method == "lanczos" else (size - 1) // 3
    if k > limit:
        hint = "k < n" if method == "lanczos" else "3k < n"
        raise LinftError(f"k={k} is too large for a {size}×{size} kernel with {method} ({hint}): use eigh(K) instead")
    rng = np.random.default_rng(seed)
    sides = ["largest", "smallest"] if which == "both" else [which]
    out: dict[str, torch.Tensor] = {}
    for side in sides:
        if method == "lanczos":
            op = LinearOperator((size, size), matvec=matmat, matmat=matmat, dtype=np.float64)
            try:
                vals = eigsh(op, k=k, which="LA" if side == "largest" else "SA", tol=tol,
                             maxiter=maxiter or 50 * size, v0=rng.standard_normal(size), return_eigenvectors=False)
            except ArpackNoConvergence as err:
                raise LinftError(
                    f"Lanczos did not converge for the {side} {k} eigenvalue(s) ({len(err.eigenvalues)} converged): "
                    "raise maxiter or tol, or use eigh(K)"
                ) from None
        else:
            x0 = rng.standard_normal((size, k))
            if dense is not None:
                vals, _ = torch.lobpcg(dense, k=k, X=torch.as_tensor(x0), largest=side == "largest",
                                       tol=max(tol, 1e-12), niter=maxiter or 10 * size)
                vals = vals.numpy()
            else:
                op = LinearOperator((size, size), matvec=matmat, matmat=matmat, dtype=np.float64)
                vals = lobpcg(op, x0, largest=side == "largest", tol=max(tol, 1e-12),
                              maxiter=maxiter or 10 * size)[0]
        vals = np.sort(np.asarray(vals, dtype=np.float64))
        out[side] = torch.as_tensor(vals[::-1].copy() if side == "largest" else vals)
    return out


# ---------------------------------------------------------------------------------------------- asymmetric kernels


def symmetric_part(K) -> torch.Tensor:
    """(K + Kᵀ)/2 as a float64 matrix (K itself, up to round-off, for a symmetric kernel).

    Under linear dynamics r′ = −K r the squared residual moves as d‖r‖²/dt = −2 rᵀ K r = −2 rᵀ sym(K) r, so the
    symmetric part's eigenvalues bound how fast ‖r‖ can shrink or grow, whatever K's (complex) eigenvalues are;
    ‖r‖ decreases along every direction iff λmin(sym K) > 0.
    """
    K = as_matrix(K)
    return (K + K.T) / 2


def singular_values(K) -> torch.Tensor:
    """Singular values of ``K`` in descending order, float64 (|eigenvalues| for a symmetric kernel)."""
    return torch.linalg.svdvals(as_matrix(K))


def singular_condition_number(K) -> float:
    """σmax/σmin of ``K`` (the 2-norm condition number, ``numpy.linalg.cond(K)``); ``inf`` when σmin = 0.

    It bounds how much solving K α = y amplifies relative errors in y, for any square K; for a symmetric PSD
    kernel it equals κ = λmax/λmin.
    """
    values = singular_values(K)
    smax, smin = float(values[0]), float(values[-1])
    return math.inf if smin == 0 else smax / smin


def top_share(K_or_eigenvalues, fraction: float = 0.1) -> float:
    """Share of the trace Σλ carried by the largest ⌈fraction·n⌉ eigenvalues (``fraction`` for c·I, 1 for rank one).

    Over the positive eigenvalues, like :func:`effective_rank`; 0 when there are none.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise LinftError(f"fraction must be a number in (0, 1], got {fraction!r}")
    values = _as_eigenvalues(K_or_eigenvalues)
    pos = values.clamp(min=0)
    total = float(pos.sum())
    if total == 0:
        return 0.0
    k = max(1, math.ceil(fraction * values.numel() - 1e-9))
    return float(torch.sort(pos, descending=True).values[:k].sum()) / total


__all__ = [
    "ASYMMETRY_TOL",
    "SpectrumReport",
    "as_matrix",
    "asymmetry",
    "condition_number",
    "effective_rank",
    "eigenvalues",
    "eigh",
    "extreme_eigenvalues",
    "kappa_from_extremes",
    "layer_shares",
    "participation_ratio",
    "singular_condition_number",
    "singular_values",
    "spectrum_report",
    "symmetric_part",
    "top_share",
]
