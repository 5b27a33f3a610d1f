"""Per-layer eNTK blocks of every candidate layer, and the exact spectrum or Weyl bounds of any union of them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from linft import LinftError, check_choice
from linft.kernel_spectrum import KernelSpectrum
from linft.layers._weyl import weyl_sum_bounds
from linft.regularize import check_lam
from linft.runspec import HEADS
from linft.spectral import effective_rank, kappa_from_extremes

__all__ = ["HEADS", "LayerKernels", "UnionBounds", "UnionSpectrum"]

#: what happens to the classification head: "frozen" (kernel over LoRA only) or "trained" (head block added to F)
_LAYER = re.compile(r"layer(\d+)")
#: relative slack for :meth:`UnionBounds.contains` (round-off of two eigen-decompositions of float64 matrices)
CONTAINS_RTOL = 1e-9


@dataclass(frozen=True)
class UnionSpectrum:
    """Exact spectrum of K_S = F + Σ_{l∈S} K_l for layers S.

    ``eigenvalues``: ascending ``[P]`` (P = N·C; round-off set to 0 as in :class:`linft.predict.KernelSpectrum`);
    ``kappa`` = λmax/λmin, ``kappa_lambda`` = (λmax + Nλ)/(λmin + Nλ) at ``lam`` (``inf`` when singular), both by
    :func:`linft.spectral.kappa_from_extremes`. Build it from the union's spectrum with :meth:`of`.
    """

    layers: tuple[int, ...]
    eigenvalues: torch.Tensor
    lambda_min: float
    lambda_max: float
    kappa: float
    kappa_lambda: float
    lam: float
    effective_rank: float
    trace: float

    @classmethod
    def of(cls, layers, spectrum: KernelSpectrum, lam: float) -> UnionSpectrum:
        """The record of layers ``layers`` from K_S's :class:`~linft.predict.KernelSpectrum` (N = its examples):
        extremes μmin, μmax, κ and κ_λ = (μmax + Nλ)/(μmin + Nλ) at ``lam``, effective rank and trace Σμ."""
        values = spectrum.eigenvalues
        lmin, lmax = spectrum.mu_min, spectrum.mu_max
        return cls(tuple(layers), values, lmin, lmax, kappa_from_extremes(lmax, lmin),
                   kappa_from_extremes(lmax, lmin, spectrum.n_examples * lam), lam, effective_rank(values),
                   float(values.sum()))

    def as_dict(self) -> dict:
        out = asdict(self)
        out["layers"] = list(self.layers)
        out["eigenvalues"] = self.eigenvalues.tolist()
        return out


@dataclass(frozen=True)
class UnionBounds:
    """Weyl bounds on K_S's spectrum from the per-layer spectra alone: ``lower[k] ≤ λ_k(K_S) ≤ upper[k]``.

    ``lower``/``upper``: ascending ``[P]``; the extreme eigenvalues, κ and κ_λ (at ``lam``) as ``(lo, hi)`` pairs.
    """

    layers: tuple[int, ...]
    lower: torch.Tensor
    upper: torch.Tensor
    lambda_min: tuple[float, float]
    lambda_max: tuple[float, float]
    kappa: tuple[float, float]
    kappa_lambda: tuple[float, float]
    lam: float

    def contains(self, spectrum: UnionSpectrum, rtol: float = CONTAINS_RTOL) -> bool:
        """Whether every exact eigenvalue lies within its bounds (slack ``rtol``·λmax for round-off)."""
        return self.violations(spectrum, rtol) == 0

    def violations(self, spectrum: UnionSpectrum, rtol: float = CONTAINS_RTOL) -> int:
        """How many exact eigenvalues fall outside their bounds (slack ``rtol``·λmax)."""
        if tuple(spectrum.layers) != tuple(self.layers):
            raise LinftError(f"bounds are for layers {list(self.layers)}, the spectrum for {list(spectrum.layers)}: "
                             "compare the same union")
        exact = spectrum.eigenvalues
        slack = rtol * max(float(exact.abs().max()), float(self.upper.abs().max()), 1e-300)
        outside = (exact < self.lower - slack) | (exact > self.upper + slack)
        return int(outside.sum())

    def as_dict(self) -> dict:
        out = asdict(self)
        out["layers"] = list(self.layers)
        out["lower"], out["upper"] = self.lower.tolist(), self.upper.tolist()
        for key in ("lambda_min", "lambda_max", "kappa", "kappa_lambda"):
            out[key] = list(out[key])
        return out


def _matrix(block: torch.Tensor) -> torch.Tensor:
    """[N, N, C, C] → [N·C, N·C] example-major (row i·C + c); a matrix passes through. float64, symmetrized."""
    if block.ndim == 4:
        n, _, c, _ = block.shape
        block = block.permute(0, 2, 1, 3).reshape(n * c, n * c)
    block = block.to(torch.float64)
    return (block + block.T) / 2


class LayerKernels:
    """The eNTK over the trained parameters, split into one block per candidate layer (and the fixed rest).

    K_S = F + Σ_{l∈S} K_l is the kernel of a model that adapts only the layers S (exact when each layer's LoRA init
    does not depend on the other layers, as with :func:`linft.models.add_lora`'s per-module seeding, and B = 0).

    Attributes:
        blocks: {"layer<i>": [P, P]} float64 per-layer kernels, P = N·C (example-major), ordered by layer.
        fixed: [P, P] the trained parameters outside the candidate layers ("head" when trained, "other"); zeros if
            none.
        spectra: {"layer<i>": ascending eigenvalues [P]} of each block.
        n_examples: N; n_outputs: C; kernel: "sgd" or "signgd"; seconds: wall time of the engine pass (0 when
            built from a kernel); params: the parameter set in words.
    """

    def __init__(self, blocks: dict[str, torch.Tensor], fixed: torch.Tensor | None, n_examples: int, n_outputs: int,
                 kernel: str = "sgd", seconds: float = 0.0, params: str = ""):
        if not blocks:
            raise LinftError("no per-layer blocks: adapt the candidate layers with LoRA (add_lora(..., layers=None)) "
                             "and compute the kernel with per_layer=True")
        bad = [name for name in blocks if not _LAYER.fullmatch(name)]
        if bad:
            raise LinftError(f"block {bad[0]!r} is not a layer: per-layer blocks are named 'layer<i>'")
        ordered = sorted(blocks, key=lambda name: int(_LAYER.fullmatch(name).group(1)))
        self.blocks = {name: _matrix(blocks[name]) for name in ordered}
        size = next(iter(self.blocks.values())).shape[0]
        self.fixed = _matrix(fixed) if fixed is not None else torch.zeros(size, size, dtype=torch.float64)
        if any(b.shape != (size, size) for b in [*self.blocks.values(), self.fixed]):
            raise LinftError("per-layer blocks differ in size: build every block from the same batch")
        self.n_examples, self.n_outputs = int(n_examples), int(n_outputs)
        if self.n_examples * self.n_outputs != size:
            raise LinftError(f"blocks are {size}×{size} but N·C = {self.n_examples}·{self.n_outputs}: pass the "
                             "kernel's N and C")
        self.kernel, self.seconds, self.params = kernel, float(seconds), params
        self.spectra = {name: torch.linalg.eigvalsh(block) for name, block in self.blocks.items()}
        self._fixed_spectrum = torch.linalg.eigvalsh(self.fixed) if bool(self.fixed.any()) else None

    # ---------------------------------------------------------------------------------------- construction

    @classmethod
    def from_kernel(cls, K) -> LayerKernels:
        """From a :class:`linft.ntk.Kernel` computed with ``per_layer=True``, output "full" or "trace": its "layer<i>"
        blocks are the candidates, the other groups ("head", "other") the fixed part F."""
        if getattr(K, "kernel", None) == "asym_signgd":
            raise LinftError("the asym_signgd kernel is not symmetric: use kernel='sgd' or 'signgd' for layer spectra")
        if not getattr(K, "per_layer", None):
            raise LinftError("the kernel has no per-layer blocks: compute it with per_layer=True")
        n, m = K.values.shape[:2]
        if n != m:
            raise LinftError(f"layer spectra need the training kernel (square), this one is {n}×{m}: pass batch2=None")
        c = K.values.shape[2] if K.output == "full" else 1
        layers = {g: b for g, b in K.per_layer.items() if _LAYER.fullmatch(g)}
        rest = [b for g, b in K.per_layer.items() if not _LAYER.fullmatch(g)]
        fixed = None
        for block in rest:
            fixed = block.clone() if fixed is None else fixed + block
        return cls(layers, fixed, n, c, kernel=K.kernel, seconds=K.seconds, params=K.params)

    @classmethod
    def compute(cls, model: nn.Module, batch, *, head: str = "frozen", kernel: str = "sgd", progress: bool = False,
                cache=False, memory_budget_gb: float = 4.0) -> LayerKernels:
        """One engine pass over ``model`` (LoRA on every candidate layer, e.g. ``add_lora(m, "qv")``) on ``batch``
        (``{"input_ids", "attention_mask": [N, L]}``): the kernel of the trained parameters, per layer.

        ``head``: "frozen" — the kernel is over the LoRA matrices only (train with the head frozen); "trained" —
        every trainable parameter, the head's block going into the fixed part F. ``kernel``: "sgd" (GD runs) or
        "signgd" (Adam-style runs). Output "full" (all C logits).
        """
        from linft.ntk import empirical_ntk

        check_choice("head", head, HEADS)
        check_choice("kernel", kernel, ("sgd", "signgd"))
        params = "lora" if head == "frozen" else "trainable"
        K = empirical_ntk(model, batch, params=params, output="full", kernel=kernel, per_layer=True,
                          progress=progress, cache=cache, memory_budget_gb=memory_budget_gb)
        return cls.from_kernel(K)

    # ---------------------------------------------------------------------------------------- queries

    @property
    def names(self) -> list[str]:
        """Candidate block names, "layer<i>", in layer order."""
        return list(self.blocks)

    @property
    def layers(self) -> list[int]:
        """Candidate layer indices, ascending."""
        return [int(_LAYER.fullmatch(name).group(1)) for name in self.blocks]

    def _names(self, layers) -> tuple[tuple[int, ...], list[str]]:
        if isinstance(layers, (int, str)) or not isinstance(layers, Iterable):
            layers = [layers]
        chosen = []
        for layer in layers:
            if isinstance(layer, str) and _LAYER.fullmatch(layer):
                layer = int(_LAYER.fullmatch(layer).group(1))
            if isinstance(layer, bool) or not hasattr(layer, "__index__"):
                raise LinftError(f"layer {layer!r} is not a layer index: pass integers from {self.layers}")
            chosen.append(int(layer))
        if not chosen:
            raise LinftError(f"no layers given: pick at least one of {self.layers}")
        unknown = [layer for layer in chosen if f"layer{layer}" not in self.blocks]
        if unknown:
            raise LinftError(f"layer {unknown[0]} is not a candidate: choose from {self.layers}")
        if len(set(chosen)) != len(chosen):
            raise LinftError(f"layers {chosen} repeat a layer: name each layer once")
        chosen.sort()
        return tuple(chosen), [f"layer{layer}" for layer in chosen]

    def matrix(self, layers) -> torch.Tensor:
        """K_S = F + Σ_{l∈S} K_l, ``[P, P]`` float64."""
        _, names = self._names(layers)
        total = self.fixed.clone()
        for name in names:
            total += self.blocks[name]
        return total

    def trace(self, layer) -> float:
        """tr K_l of one layer."""
        _, names = self._names([layer])
        return float(torch.diagonal(self.blocks[names[0]]).sum())

    def exact(self, layers, lam: float = 0.0) -> UnionSpectrum:
        """The exact spectrum of K_S (one eigen-decomposition of the P×P sum)."""
        lam = check_lam(lam)
        chosen, _ = self._names(layers)
        return UnionSpectrum.of(chosen, KernelSpectrum.of(self.matrix(chosen), n_examples=self.n_examples), lam)

    def bounds(self, layers, lam: float = 0.0) -> UnionBounds:
        """Weyl bounds on K_S's eigenvalues, κ and κ_λ, from the per-layer spectra (and F's) alone."""
        lam = check_lam(lam)
        chosen, names = self._names(layers)
        spectra = [self.spectra[name] for name in names]
        if self._fixed_spectrum is not None:
            spectra.append(self._fixed_spectrum)
        lower, upper = weyl_sum_bounds(spectra, psd=True)
        ridge = self.n_examples * lam
        lmin, lmax = (float(lower[0]), float(upper[0])), (float(lower[-1]), float(upper[-1]))
        kappa = (kappa_from_extremes(lmax[0], lmin[1]), kappa_from_extremes(lmax[1], lmin[0]))
        kappa_lam = (kappa_from_extremes(lmax[0], lmin[1], ridge), kappa_from_extremes(lmax[1], lmin[0], ridge))
        return UnionBounds(chosen, lower, upper, lmin, lmax, kappa, kappa_lam, lam)

    def __repr__(self) -> str:
        return (f"LayerKernels({len(self.blocks)} layers {self.layers}, N={self.n_examples}, C={self.n_outputs}, "
                f"kernel={self.kernel!r}, params={self.params!r})")
