"""Weyl bounds on the eigenvalues of a sum of symmetric matrices, from the summands' spectra alone.

For symmetric n×n A, B with eigenvalues ascending (a_1 ≤ … ≤ a_n), Weyl's inequalities read

    λ_{i+j−1}(A + B) ≥ a_i + b_j   (i + j − 1 ≤ n),        λ_{i+j−n}(A + B) ≤ a_i + b_j   (i + j − n ≥ 1).

Both stay valid when a, b are replaced by lower (resp. upper) bounds of the true eigenvalues, so a sum of many
matrices is bounded by folding the summands in one at a time: the lower bound vector of A + B is the max-plus
convolution of the lower vectors along anti-diagonals, the upper one the min-plus convolution. With PSD summands
(b_1 ≥ 0) the fold never does worse than the plain λ_k(A + B) ≥ λ_k(A) and λ_k(A + B) ≤ λ_k(A) + b_n.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from linft import LinftError

__all__ = ["weyl_sum_bounds"]


def _as_spectrum(values, n: int | None, position: int) -> torch.Tensor:
    spectrum = torch.as_tensor(values, dtype=torch.float64).flatten()
    if spectrum.numel() == 0:
        raise LinftError(f"spectrum {position} is empty: pass the eigenvalues of each summand")
    if n is not None and spectrum.numel() != n:
        raise LinftError(f"spectrum {position} has {spectrum.numel()} eigenvalues, the first has {n}: every summand "
                         "must be a matrix of the same size")
    if not torch.isfinite(spectrum).all():
        raise LinftError(f"spectrum {position} has non-finite eigenvalues: check the kernel for NaN/inf")
    return torch.sort(spectrum).values


def _fold(a: torch.Tensor, b: torch.Tensor, lower: bool) -> torch.Tensor:
    """Weyl bound vector [n] of A + B from bound vectors a, b [n] (ascending) of A and B."""
    n = a.numel()
    sums = (a[:, None] + b[None, :]).flatten()
    i = torch.arange(n)
    diagonal = (i[:, None] + i[None, :]).flatten()  # 0-based i + j
    if lower:  # λ_{i+j} ≥ a_i + b_j for i + j ≤ n − 1 (0-based)
        keep = diagonal <= n - 1
        target = diagonal[keep]
        init = torch.full((n,), -torch.inf, dtype=torch.float64)
        return init.scatter_reduce(0, target, sums[keep], reduce="amax")
    keep = diagonal >= n - 1  # λ_{i+j−(n−1)} ≤ a_i + b_j
    target = diagonal[keep] - (n - 1)
    init = torch.full((n,), torch.inf, dtype=torch.float64)
    return init.scatter_reduce(0, target, sums[keep], reduce="amin")


def weyl_sum_bounds(spectra: Sequence, psd: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper bounds ``[n]`` (ascending) on every eigenvalue of Σ_s M_s, from the spectra of the M_s.

    ``spectra``: one eigenvalue vector ``[n]`` per symmetric summand (any order; sorted here). ``psd``: the sum is
    positive semi-definite (kernels are), so lower bounds are clipped at 0. With one summand both bounds are its
    spectrum. Returns float64 tensors ``(lower, upper)`` with lower[k] ≤ λ_k(Σ M_s) ≤ upper[k].
    """
    if isinstance(spectra, torch.Tensor) or not len(spectra):
        raise LinftError("weyl_sum_bounds needs a list of spectra (one eigenvalue vector per summand)")
    items = [_as_spectrum(spectra[0], None, 0)]
    items += [_as_spectrum(s, items[0].numel(), k) for k, s in enumerate(spectra[1:], start=1)]
    lower, upper = items[0], items[0]
    for spectrum in items[1:]:
        lower, upper = _fold(lower, spectrum, lower=True), _fold(upper, spectrum, lower=False)
    if psd:
        lower = lower.clamp_min(0.0)
    return lower, upper
