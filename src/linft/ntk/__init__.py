"""Empirical neural tangent kernels (eNTK) of a (LoRA-adapted) classifier.

``empirical_ntk(model, batch)`` returns a :class:`Kernel` with ``values[i, j, c, c'] = ⟨φ(∇θ f_c(x_i)),
ψ(∇θ f_c'(x_j))⟩`` over a chosen parameter set θ, split per transformer block (``per_layer``). Kernel variants
(Malladi et al. 2023, "A Kernel-Based View of Language Model Fine-Tuning"): ``sgd`` ⟨∇f(x), ∇f(x')⟩, ``signgd``
⟨sign ∇f(x), sign ∇f(x')⟩, ``asym_signgd`` ⟨∇f(x), sign ∇f(x')⟩ (their asymmetric SignGD kernel;
sign(0) = 0).
Outputs: ``full`` (all C logits), ``trace`` (Σ_c K[:, :, c, c]), ``logit_diff`` (the kernel of f_1 − f_0,
binary classifiers only, one backward pass instead of C).

Public: :func:`empirical_ntk`, :func:`empirical_ntks` (several variants from one set of gradients), :class:`Kernel`,
:class:`FullWeights`, :func:`explicit_jacobian`,
:func:`plan_memory` / :class:`MemoryPlan`, and the choices :data:`IMPLEMENTATIONS`, :data:`KERNELS`,
:data:`OUTPUTS`. Private pieces, one job each:

- ``_implementations``: the registry of implementations, one record each (gradients, logits, memory estimate,
  Linear-only), chosen once by name;
- ``_params``: which parameters (``params=``) → a selection grouped "layer0", …, "other", "head";
- ``_fast``: implementation "fast", hooks + one batched backward pass per output, Linear layers only;
- ``_reference``: implementation "reference" (``torch.func.jacrev`` per example) and the
  :func:`explicit_jacobian` oracle, tested equal to the fast path;
- ``_gram``: the kernel variants, formed in float64 per parameter unit;
- ``_plan``: the memory plan (whole or streamed blocks of examples within ``memory_budget_gb``);
- ``_cache``: the disk cache (key, atomic save, load).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, fields, replace

import torch
from torch import nn

from linft import LinftError, check_choice
from linft.batches import check_batch
from linft.ntk import _cache
from linft.ntk._gram import KERNELS, OUTPUTS, assemble, kernel_shape
from linft.ntk._implementations import REGISTRY, Implementation, choose
from linft.ntk._params import FullWeights, Selection, check_linear_only, select
from linft.ntk._plan import MemoryPlan, plan_memory
from linft.ntk._reference import explicit_jacobian

__all__ = [
    "Kernel",
    "FullWeights",
    "MemoryPlan",
    "empirical_ntk",
    "empirical_ntks",
    "explicit_jacobian",
    "plan_memory",
    "IMPLEMENTATIONS",
    "KERNELS",
    "OUTPUTS",
]

IMPLEMENTATIONS = tuple(REGISTRY)
_GROUP = re.compile(r"layer\d+|other|head")


@dataclass
class Kernel:
    """An empirical NTK and how it was computed.

    ``values``: float64, [N, M, C, C] for output "full", [N, M] for "trace" and "logit_diff".
    ``per_layer``: {"layer0": ..., "other": ..., "head": ...} blocks of the same shape summing to ``values`` (empty
    when computed with ``per_layer=False``). ``params`` describes the parameter set in words (e.g.
    "LoRA (no head), 73,728 params"); ``seconds`` is the wall time (0 when loaded from the cache); ``meta`` holds
    sizes, the memory plan and cache details. ``outputs`` [N, C] / ``outputs2`` [M, C] (``None`` without
    ``batch2``): the model's logits on ``batch`` / ``batch2`` at the weights the kernel was taken at, from the same
    forward passes (no extra cost; float64, on the CPU), e.g. f(θ0) for kernel regression.
    """

    values: torch.Tensor
    per_layer: dict[str, torch.Tensor]
    output: str
    kernel: str
    params: str
    n_params: int
    seconds: float
    implementation: str
    meta: dict = field(default_factory=dict)
    outputs: torch.Tensor | None = None
    outputs2: torch.Tensor | None = None

    def matrix(self) -> torch.Tensor:
        """Square matrix: [N·C, N·C] for "full" (example-major: row i·C + c), else [N, N]. Needs M == N."""
        n, m = self.values.shape[:2]
        if n != m:
            raise LinftError(
                f"Kernel.matrix() needs a square kernel, this one is {n}×{m}: compute it with batch2=None"
            )
        if self.output == "full":
            c = self.values.shape[2]
            return self.values.permute(0, 2, 1, 3).reshape(n * c, n * c)
        return self.values

    def first(self, n: int) -> Kernel:
        """The kernel of the first ``n`` examples of a square kernel (one batch, e.g. training then held-out
        examples joined): ``values``, ``per_layer`` [n, n, ...] and ``outputs`` [n, C] cut from this one, equal to the
        kernel of those ``n`` examples alone (each entry pairs two examples' own gradients); ``meta["N"]`` and
        ``["M"]`` become ``n``, ``meta["joint_examples"]`` keeps the full size. Raises :class:`LinftError` for a
        two-batch kernel or ``n`` outside 1..N.
        """
        size, size2 = self.values.shape[:2]
        if self.outputs2 is not None or size != size2:
            raise LinftError(f"Kernel.first() needs a one-batch kernel, this one is {size}×{size2}: compute it with "
                             "batch2=None")
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= size:
            raise LinftError(f"Kernel.first(n): n must be an integer in 1..{size}, got {n!r}")
        meta = {**self.meta, "N": n, "M": n, "joint_examples": self.meta.get("N", size)}
        return replace(self, values=self.values[:n, :n], per_layer={g: v[:n, :n] for g, v in self.per_layer.items()},
                       outputs=None if self.outputs is None else self.outputs[:n], meta=meta)

    def blocks(self, exclude=()) -> torch.Tensor:
        """The sum of the per-layer blocks not named in ``exclude``, shaped like ``values``.

        E.g. ``K.blocks(exclude=("head",))`` of a ``params="trainable"`` kernel is the LoRA-only kernel
        [N, M, C, C] (for output "full"; [N, M] otherwise). ``exclude``: group names ("head", "other",
        "layer<i>"), absent ones allowed. Raises :class:`LinftError` when the kernel has no per-layer blocks
        (computed with ``per_layer=False``) or when nothing is left.
        """
        exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude)
        bad = [g for g in exclude if not isinstance(g, str) or not _GROUP.fullmatch(g)]
        if bad:
            raise LinftError(f"Kernel.blocks(exclude={exclude}): {bad[0]!r} is no group name: use 'head', 'other' "
                             "or 'layer<i>'")
        if not self.per_layer:
            raise LinftError("Kernel.blocks() needs per-layer blocks: compute the kernel with per_layer=True")
        kept = [block for group, block in self.per_layer.items() if group not in exclude]
        if not kept:
            raise LinftError(
                f"Kernel.blocks(exclude={exclude}) leaves no block: this kernel has {list(self.per_layer)}"
            )
        total = kept[0].clone()
        for block in kept[1:]:
            total += block
        return total


def empirical_ntk(
    model: nn.Module,
    batch,
    batch2=None,
    *,
    params="lora",
    output: str = "full",
    kernel: str = "sgd",
    per_layer: bool = True,
    implementation: str = "fast",
    memory_budget_gb: float = 4.0,
    cache=False,
    progress: bool = False,
) -> Kernel:
    """The empirical NTK between ``batch`` (N examples) and ``batch2`` (M examples; None = the same N).

    ``batch``/``batch2``: dicts with right-padded ``input_ids`` and ``attention_mask`` [N, L] (a tokenizer's
    output with ``padding=True``); padding never changes the result. ``params``: "lora" (LoRA matrices only, no
    head; default), "trainable" (every requires_grad parameter, head included), "head", a list of name
    substrings/regexes of trainable parameters, or :class:`FullWeights` (full weight matrices of chosen Linear
    modules, trainable or not). ``output``: "full" | "trace" | "logit_diff"; ``kernel``: "sgd" | "signgd" |
    "asym_signgd" (see the module docstring). ``implementation``: "fast" (Linear-layer parameters only) or
    "reference". ``memory_budget_gb`` bounds the kernel plus the per-example gradients held at once
    (:func:`plan_memory`); ``cache``: True (``cache_dir("ntk")``) or a folder to reuse results keyed by model
    weights, parameter set, both batches, output and kernel. Raises :class:`LinftError` for bad input.
    Several variants from one set of gradients: :func:`empirical_ntks`.
    """
    return empirical_ntks(model, batch, batch2, params=params, output=output, kernels=(kernel,), per_layer=per_layer,
                          implementation=implementation, memory_budget_gb=memory_budget_gb, cache=cache,
                          progress=progress)[kernel]


def empirical_ntks(
    model: nn.Module,
    batch,
    batch2=None,
    *,
    params="lora",
    output: str = "full",
    kernels=("sgd",),
    per_layer: bool = True,
    implementation: str = "fast",
    memory_budget_gb: float = 4.0,
    cache=False,
    progress: bool = False,
) -> dict[str, Kernel]:
    """{variant: :class:`Kernel`} for each of ``kernels`` ("sgd", "signgd", "asym_signgd"), all formed from **one**
    set of per-example gradients (the backward passes are the cost; each extra variant adds only its Gram
    products). Every other argument as :func:`empirical_ntk`; each Kernel equals ``empirical_ntk(..., kernel=v)``.
    ``seconds`` of each Kernel is the wall time of the whole call (shared gradients included)."""
    if isinstance(kernels, str) or not kernels:
        raise LinftError(f"kernels must be a non-empty tuple of variants from {KERNELS}, got {kernels!r}")
    kernels = tuple(dict.fromkeys(kernels))
    for kernel in kernels:
        check_choice("kernel", kernel, KERNELS)
    bx, by, c, n_out, impl = _check_inputs(model, batch, batch2, output, kernels[0], implementation)
    sel = select(model, params)
    if impl.linear_only:
        check_linear_only(model, sel)
    plan = _memory_plan(sel, bx, by, n_out, output, per_layer, impl, memory_budget_gb)

    results: dict[str, Kernel] = {}
    paths: dict[str, object] = {}
    keys: dict[str, object] = {}
    for kernel in kernels:
        if cache is not False and cache is not None:
            keys[kernel] = _cache.cache_key(model, bx, by, spec=sel.spec, names=sel.names, output=output,
                                            kernel=kernel, per_layer=per_layer)
            paths[kernel] = _cache.cache_file(cache, keys[kernel])
            saved = _cache.load(paths[kernel], [f.name for f in fields(Kernel)])
            if saved is not None:
                meta = {**saved["meta"], "cache": "hit", "cache_file": str(paths[kernel])}
                results[kernel] = Kernel(**{**saved, "seconds": 0.0, "meta": meta})
    missing = [k for k in kernels if k not in results]
    if not missing:
        return results

    start = time.perf_counter()
    n = bx["input_ids"].shape[0]
    m = by["input_ids"].shape[0] if by is not None else n
    meta: dict = {"N": n, "M": m, "C": c, "outputs_differentiated": n_out, "max_tokens": int(bx["input_ids"].shape[1]),
                  "parameter_names": list(sel.names), "groups": list(sel.groups), **plan.meta()}
    gx, gy, unit_groups, gradient_meta = impl.gradients(model, bx, by, sel, output, n_out, progress)
    meta.update(gradient_meta)
    if not per_layer:
        unit_groups = ["all"] * len(unit_groups)
    outputs = impl.outputs(model, gx, bx)
    outputs2 = impl.outputs(model, gy, by) if by is not None else None
    assembled = {kernel: assemble(unit_groups, gx, gy, n, m, n_out, output, kernel, plan.block_examples, plan.whole)
                 for kernel in missing}
    seconds = time.perf_counter() - start
    for kernel, parts in assembled.items():
        result = Kernel(
            values=_total(parts, kernel_shape(n, m, n_out, output)),
            per_layer={g: parts[g] for g in sel.groups if g in parts} if per_layer else {},
            output=output,
            kernel=kernel,
            params=sel.description,
            n_params=sel.n_params,
            seconds=seconds,
            implementation=impl.name,
            meta={**meta, "cache_key": keys.get(kernel)},
            outputs=outputs,
            outputs2=outputs2,
        )
        if kernel in paths:
            _cache.save(paths[kernel], {f.name: getattr(result, f.name) for f in fields(Kernel)})
            result.meta.update(cache="written", cache_file=str(paths[kernel]))
        results[kernel] = result
    return {kernel: results[kernel] for kernel in kernels}


def _check_inputs(model: nn.Module, batch, batch2, output: str, kernel: str, implementation: str):
    """Validated batches (plain dicts; ``by`` None without ``batch2``), the outputs C, those differentiated, C', and
    the chosen :class:`~linft.ntk._implementations.Implementation` (the one place it is picked by name)."""
    check_choice("kernel", kernel, KERNELS)
    check_choice("output", output, OUTPUTS)
    impl = choose(implementation)
    bx = check_batch(batch, "batch", right_padded=True)
    by = check_batch(batch2, "batch2", right_padded=True) if batch2 is not None else None
    c = _num_outputs(model)
    if output == "logit_diff" and c != 2:
        raise LinftError(
            f"output='logit_diff' needs a binary classifier, this one has C={c}: use output='full' or 'trace'"
        )
    return bx, by, c, 1 if output == "logit_diff" else c, impl


def _total(parts: dict[str, torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
    """The kernel: the one block "all" (per_layer=False), else the sum of the per-layer blocks; checked finite."""
    if set(parts) == {"all"}:
        values = parts["all"]
    else:
        values = torch.zeros(shape, dtype=torch.float64)
        for block in parts.values():
            values += block
    if not torch.isfinite(values).all():
        raise LinftError("the eNTK has non-finite entries: check the model weights and inputs for NaN/inf")
    return values


def _num_outputs(model: nn.Module) -> int:
    c = getattr(getattr(model, "config", None), "num_labels", None)
    if not isinstance(c, int) or c < 1:
        raise LinftError("cannot tell the number of outputs: the model config has no num_labels")
    return c


def _memory_plan(
    sel: Selection, bx: dict, by: dict | None, n_out: int, output: str, per_layer: bool, impl: Implementation,
    budget_gb: float,
) -> MemoryPlan:
    """The memory plan for this selection, these batches and this implementation's gradient store."""
    n = bx["input_ids"].shape[0]
    m = by["input_ids"].shape[0] if by is not None else n
    n_held = n + (m if by is not None else 0)
    held, unit_bytes = impl.held_bytes(sel, bx, by, n_held, n_out)
    return plan_memory(n=n, m=m, n_out=n_out, output=output, n_groups=len(sel.groups), per_layer=per_layer,
                       max_unit_numel=sel.max_unit_numel, held_bytes=held, unit_bytes=unit_bytes, budget_gb=budget_gb)
