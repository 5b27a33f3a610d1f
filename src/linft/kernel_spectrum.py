"""A training kernel's eigen-decomposition, computed once in float64: :class:`KernelSpectrum`.

One job: turn a training kernel (a :class:`linft.ntk.Kernel` between one batch and itself, a 4-D ``[N, N, C, C]``
tensor, or a matrix ``[N·C, N·C]`` / ``[N, N]``) into a symmetric float64 matrix with its N and C, refuse an
asymmetric or indefinite one, and decompose it with round-off eigenvalues set to exactly 0 (the conventions are
those of :mod:`linft.predict`, which re-exports :class:`KernelSpectrum` and :data:`NEGATIVE_TOL`). Every κ, step
size and prediction of :mod:`linft.predict`, and the exact union spectra of :mod:`linft.layers`, start from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from linft import LinftError
from linft.spectral import ASYMMETRY_TOL, as_matrix, asymmetry

__all__ = ["KernelSpectrum", "NEGATIVE_TOL"]

#: an eigenvalue below −NEGATIVE_TOL·μmax means the kernel is not PSD (raises); above it, round-off (clipped to 0)
NEGATIVE_TOL = 1e-6


def kernel_values(x):
    """A :class:`linft.ntk.Kernel`'s ``values`` tensor; anything else as is."""
    values = getattr(x, "values", None)
    return values if isinstance(values, torch.Tensor) else x


def check_rtol(rtol) -> float | None:
    if rtol is None:
        return None
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not 0 <= rtol < 1:
        raise LinftError(f"rtol must be a number in [0, 1) (or None for n·eps), got {rtol!r}")
    return float(rtol)


def clip_eigenvalues(values: torch.Tensor, rtol: float | None) -> torch.Tensor:
    """Eigenvalues ≥ 0: round-off (|μ| ≤ rtol·μmax, or slightly negative) set to 0; clearly negative ones raise."""
    scale = float(values.abs().max()) if values.numel() else 0.0
    if scale == 0.0:
        return torch.zeros_like(values)
    low = float(values.min())
    if low < -NEGATIVE_TOL * scale:
        raise LinftError(f"K is not positive semi-definite (eigenvalues from {low:.3g} to {float(values.max()):.3g}): "
                         "kernel regression needs a PSD kernel (the sgd and signgd eNTKs are): recompute it in float64")
    tol = (values.numel() * torch.finfo(torch.float64).eps) if rtol is None else rtol
    return torch.where(values > tol * scale, values, torch.zeros_like(values))


def training_matrix(K, n_examples: int | None) -> tuple[torch.Tensor, int, int]:
    """(symmetric float64 matrix [n, n], N, C of the kernel) from a Kernel, a 4-D kernel or a matrix."""
    declared = getattr(K, "kernel", None) == "asym_signgd"
    raw = kernel_values(K)
    shape = tuple(raw.shape) if hasattr(raw, "shape") else None
    matrix = as_matrix(K, "K")
    n = matrix.shape[0]
    if shape is not None and len(shape) == 4:
        N, C = shape[0], shape[2]
    elif n_examples is None:
        N, C = n, 1
    else:
        N = n_examples
        if n % N:
            raise LinftError(f"K is [{n}, {n}] but there are N={N} training examples: a kernel matrix must be "
                             "[N, N] or [N·C, N·C] (flattened example-major)")
        C = n // N
    if n_examples is not None and N != n_examples:
        raise LinftError(f"K is a kernel of N={N} examples but N={n_examples} were given: pass the targets/outputs "
                         "of the same training examples")
    asym = asymmetry(matrix)
    if declared or asym > ASYMMETRY_TOL:
        raise LinftError(f"K is not symmetric (relative asymmetry {asym:.2e}): kernel regression needs a symmetric "
                         "PSD kernel; use the sgd or signgd eNTK, or pass its symmetric part (K + K.T)/2 yourself")
    return (matrix + matrix.T) / 2, N, C


@dataclass(frozen=True, eq=False)
class KernelSpectrum:
    """A training kernel's eigen-decomposition, computed once (float64) and reused by every function here.

    Build it with :meth:`KernelSpectrum.of`. Attributes:
        eigenvalues: μ ascending ``[n]``, n = N·C; round-off (|μ| ≤ rtol·μmax) set to exactly 0, none negative.
        eigenvectors: orthonormal columns ``[n, n]``, rows example-major (row ``i·C + c``).
        n_examples: N, the number of training examples.
        n_outputs: C of the kernel: 1 for a scalar ``[N, N]`` kernel (shared by every output of the task).
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    n_examples: int
    n_outputs: int

    @classmethod
    def of(cls, K, n_examples: int | None = None, rtol: float | None = None) -> KernelSpectrum:
        """Decompose a training kernel: a :class:`linft.ntk.Kernel`, ``[N, N, C, C]``, or a matrix ``[n, n]``.

        A matrix is a scalar kernel (N = n) unless ``n_examples`` N is given, then ``[N·C, N·C]`` with C = n/N.
        ``rtol``: eigenvalues at or below ``rtol·μmax`` count as 0 (default n·eps, machine precision of float64).
        A KernelSpectrum is returned as is (``n_examples`` checked). Raises :class:`LinftError` for a non-square,
        non-finite, asymmetric or indefinite kernel.
        """
        rtol = check_rtol(rtol)
        if isinstance(K, KernelSpectrum):
            if n_examples is not None and n_examples != K.n_examples:
                raise LinftError(f"the spectrum is of N={K.n_examples} examples but N={n_examples} were given: pass "
                                 "the targets/outputs of the same training examples")
            return K
        matrix, N, C = training_matrix(K, n_examples)
        values, vectors = torch.linalg.eigh(matrix)
        return cls(clip_eigenvalues(values, rtol), vectors, N, C)

    @property
    def rank(self) -> int:
        """Number of non-zero eigenvalues (after the rtol cut)."""
        return int((self.eigenvalues > 0).sum())

    @property
    def mu_max(self) -> float:
        return float(self.eigenvalues[-1])

    @property
    def mu_min(self) -> float:
        return float(self.eigenvalues[0])
