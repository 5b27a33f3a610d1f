"""One summary of a training kernel: κ, κ_λ, λmin, λmax, trace, effective rank, kernel-regression accuracy.

:func:`summarize` reads every number a run reports about its eNTK from one eigen-decomposition
(:class:`linft.predict.KernelSpectrum`), with one κ formula (:func:`linft.predict.kappa_lambda`). An asymmetric kernel
(the reference study's ⟨∇f, sign ∇f'⟩) has an indefinite symmetric part in general: its κ is the 2-norm condition
number σmax/σmin, and its kernel regression uses the kernel as it is (:func:`linft.predict.asymmetric_regression`).

It is the one kernel summary of the package: ``linft predict`` → :func:`linft.preflight.preflight` →
:func:`linft.kernel_summary.summarize` (through :func:`from_spectrum`, which reads the same numbers off a spectrum
a caller has already decomposed, e.g. for its own predicted curves); the study's runs (:mod:`linft.study`) and
chapter 3's kernel-regression protocol (:mod:`linft.experiments.kernel_regression`) report it too.

Shapes: ``K`` [N, N, C, C] (or [N, N] scalar), ``K_test`` [M, N, C, C], ``f0`` [N, C], ``f0_test`` [M, C],
``labels`` / ``labels_test`` [N] / [M] integer classes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from linft import LinftError, predict, spectral

__all__ = ["KernelSummary", "summarize", "from_spectrum", "gradient_norm"]


@dataclass(frozen=True)
class KernelSummary:
    """The numbers of one training kernel. ``kappa`` = λmax/λmin (inf when singular), ``kappa_lambda`` at ``lam``,
    ``lambda_min``/``lambda_max`` (of the symmetric part, [N·C, N·C]), ``trace``, ``effective_rank`` (entropy
    effective rank, at most N·C), ``kr_acc``: held-out accuracy of kernel regression (t → ∞; NaN without test
    rows), ``n_examples`` N."""

    n_examples: int
    kappa: float
    kappa_lambda: float
    lam: float
    lambda_min: float
    lambda_max: float
    trace: float
    effective_rank: float
    kr_acc: float

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(K, *, lam: float = 0.0, K_test=None, f0=None, f0_test=None, labels=None, labels_test=None,
              asymmetric: bool = False) -> KernelSummary:
    """:class:`KernelSummary` of training kernel ``K`` (values or :class:`linft.ntk.Kernel`); with ``K_test``,
    ``f0``, ``f0_test``, ``labels`` and ``labels_test`` also the kernel-regression accuracy at ``lam``.

    ``asymmetric``: ``K`` is not symmetric by construction (the asym SignGD kernel ⟨∇f, sign ∇f'⟩). Its symmetric
    part is indefinite in general, so κ is then the 2-norm condition number σmax/σmin of K (``numpy.linalg.cond``;
    κ_λ that of K + NλI), ``effective_rank`` that of the singular values, ``lambda_min``/``lambda_max`` the extreme
    eigenvalues of the symmetric part (``lambda_min`` may be negative), and kernel regression uses K as it is.
    """
    values = (K if isinstance(K, torch.Tensor) else K.values).to(torch.float64)
    n = values.shape[0]
    test_values = None
    if K_test is not None:
        test_values = (K_test if isinstance(K_test, torch.Tensor) else K_test.values).to(torch.float64)
    if asymmetric:
        return _asymmetric(values, lam, test_values, f0, f0_test, labels, labels_test)
    if spectral.asymmetry(values) > spectral.ASYMMETRY_TOL:
        raise LinftError(f"K is not symmetric (relative asymmetry {spectral.asymmetry(values):.2e}): pass "
                         "asymmetric=True for the asymmetric SignGD kernel")
    spectrum = predict.KernelSpectrum.of(values, n_examples=n)
    kr_acc = math.nan
    if test_values is not None:
        regression = predict.KernelRegression.fit(spectrum, labels, f0, lam)
        kr_acc = regression.accuracy(test_values, f0_test, torch.as_tensor(labels_test))
    return from_spectrum(spectrum, lam=lam, kr_acc=kr_acc)


def from_spectrum(spectrum, *, lam: float = 0.0, kr_acc: float = math.nan) -> KernelSummary:
    """:class:`KernelSummary` of a symmetric kernel already decomposed (:class:`linft.predict.KernelSpectrum`, e.g.
    ``KernelRegression.fit(...).spectrum``), with a kernel-regression accuracy ``kr_acc`` the caller measured."""
    eigenvalues = spectrum.eigenvalues
    return KernelSummary(
        n_examples=int(spectrum.n_examples), kappa=predict.kappa_lambda(spectrum, lam=0.0),
        kappa_lambda=predict.kappa_lambda(spectrum, lam=lam), lam=float(lam), lambda_min=spectrum.mu_min,
        lambda_max=spectrum.mu_max, trace=float(eigenvalues.sum()),
        effective_rank=spectral.effective_rank(eigenvalues), kr_acc=float(kr_acc),
    )


def _asymmetric(values, lam, test_values, f0, f0_test, labels, labels_test) -> KernelSummary:
    matrix = spectral.as_matrix(values)
    n = values.shape[0]
    sym = torch.linalg.eigvalsh(spectral.symmetric_part(matrix))
    kr_acc = math.nan
    if test_values is not None:
        scores = predict.asymmetric_regression(values, test_values, labels, f0, f0_test, lam)
        kr_acc = float((scores.argmax(-1) == torch.as_tensor(labels_test)).double().mean())
    shifted = matrix + n * float(lam) * torch.eye(matrix.shape[0], dtype=torch.float64)
    return KernelSummary(
        n_examples=n, kappa=spectral.singular_condition_number(matrix),
        kappa_lambda=spectral.singular_condition_number(shifted), lam=float(lam), lambda_min=float(sym[0]),
        lambda_max=float(sym[-1]), trace=float(torch.trace(matrix)),
        effective_rank=spectral.effective_rank(spectral.singular_values(matrix)), kr_acc=kr_acc,
    )


def gradient_norm(K_sgd, f0, labels) -> float:
    """‖∇θ L(θ0)‖ of the mean cross-entropy over the kernel's N examples, from the SGD kernel alone:
    ‖(1/N) Σ_i Σ_c r_ic ∇f_c(x_i)‖ with r = softmax(f0) − onehot(labels), i.e. √(rᵀ K r)/N. ``K_sgd``
    [N, N, C, C], ``f0`` [N, C], ``labels`` [N]."""
    values = (K_sgd if isinstance(K_sgd, torch.Tensor) else K_sgd.values).to(torch.float64)
    f0 = torch.as_tensor(f0, dtype=torch.float64)
    labels = torch.as_tensor(labels).long()
    r = torch.softmax(f0, -1) - torch.nn.functional.one_hot(labels, f0.shape[1]).double()
    quad = torch.einsum("ic,ijcd,jd->", r, values, r)
    return float(quad.clamp_min(0).sqrt()) / values.shape[0]
