"""Kernel blocks from per-example gradient blocks: the one place the three kernel variants are defined.

One job: given, for each parameter unit, blocks of per-example gradients ``G[i, c, p] = ∂f_c(x_i)/∂θ_p``
(float64), accumulate ``K[i, j, c, c'] = Σ_p φ(G_x)[i, c, p] ψ(G_y)[j, c', p]`` per parameter group, with

- ``sgd``:         φ = ψ = identity            → ⟨∇f(x), ∇f(x')⟩
- ``signgd``:      φ = ψ = sign                → ⟨sign ∇f(x), sign ∇f(x')⟩
- ``asym_signgd``: φ = identity, ψ = sign      → ⟨∇f(x), sign ∇f(x')⟩

(the SignGD and asymmetric SignGD kernels of Malladi et al. 2023, "A Kernel-Based View of Language Model
Fine-Tuning", Sec. 4, which describe early-stage Adam; sign(0) = 0). Every variant is a sum over parameter
coordinates, so it splits exactly over groups (Σ_l K_l = K) and over units within a group.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch

KERNELS = ("sgd", "signgd", "asym_signgd")
OUTPUTS = ("full", "trace", "logit_diff")


def kernel_shape(n: int, m: int, n_out: int, output: str) -> tuple[int, ...]:
    """[N, M, C', C'] for output "full", else [N, M]."""
    return (n, m, n_out, n_out) if output == "full" else (n, m)


def pair_block(left: torch.Tensor, right: torch.Tensor, output: str, kernel: str) -> torch.Tensor:
    """Kernel block between gradient blocks ``left`` [b, C', P] and ``right`` [b2, C', P] (float64)."""
    if kernel == "signgd":
        left = left.sign()
    if kernel in ("signgd", "asym_signgd"):
        right = right.sign()
    b, n_out, p = left.shape
    b2 = right.shape[0]
    if output == "full":
        prod = left.reshape(b * n_out, p) @ right.reshape(b2 * n_out, p).T
        return prod.view(b, n_out, b2, n_out).permute(0, 2, 1, 3)
    out = left[:, 0] @ right[:, 0].T
    for c in range(1, n_out):  # trace: Σ_c K[:, :, c, c], never forming the off-diagonal class pairs
        out += left[:, c] @ right[:, c].T
    return out


class GradientSource(Protocol):
    """Per-example gradients of each parameter unit, for one batch."""

    def whole(self, u: int) -> torch.Tensor:
        """All examples' gradients of unit ``u``, [N, C', P] in batch order (any float dtype)."""

    def blocks(self, u: int, max_examples: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(example indices [b], gradients [b, C', P] float64) in blocks of at most ``max_examples``."""


def assemble(
    groups: list[str],
    src_x: GradientSource,
    src_y: GradientSource,
    n: int,
    m: int,
    n_out: int,
    output: str,
    kernel: str,
    rows: int,
    whole: bool,
) -> dict[str, torch.Tensor]:
    """Per-group kernels {group: K_group} from per-unit gradients; ``groups[u]`` is unit u's group.

    ``whole``: each unit's gradients are materialized once per batch (``src.whole``) and multiplied in float64
    in row blocks of ``rows`` examples. Otherwise they are streamed in blocks of ``rows`` examples from
    ``src.blocks`` (recomputed per block pair), which bounds memory by the block size alone.
    """
    same = src_y is src_x
    result: dict[str, torch.Tensor] = {}
    shape = kernel_shape(n, m, n_out, output)
    for u, group in enumerate(groups):
        target = result.setdefault(group, torch.zeros(shape, dtype=torch.float64))
        if whole:
            g_x = src_x.whole(u)
            g_y = g_x if same else src_y.whole(u)
            if not g_x.any() or not g_y.any():  # e.g. LoRA A at initialization (B = 0): exactly zero
                continue
            mirror = same and kernel != "asym_signgd"  # symmetric: K[j, i] = K[i, j] (classes swapped)
            for i0 in range(0, n, rows):
                left = g_x[i0 : i0 + rows].to(torch.float64)
                for j0 in range(i0 if mirror else 0, m, rows):
                    right = left if same and i0 == j0 else g_y[j0 : j0 + rows].to(torch.float64)
                    block = pair_block(left, right, output, kernel).cpu()
                    target[i0 : i0 + rows, j0 : j0 + rows] += block
                    if mirror and j0 != i0:
                        block = block.transpose(0, 1)
                        target[j0 : j0 + rows, i0 : i0 + rows] += block.transpose(2, 3) if output == "full" else block
                del left
            del g_x, g_y
            continue
        for idx_x, b_x in src_x.blocks(u, rows):
            if not b_x.any():
                continue
            for idx_y, b_y in src_y.blocks(u, rows):
                if not b_y.any():
                    continue
                target[idx_x[:, None], idx_y[None, :]] += pair_block(b_x, b_y, output, kernel).cpu()
    return result
