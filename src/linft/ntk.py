"""Empirical neural tangent kernels (eNTK) of a (LoRA-adapted) classifier: the public API.

``empirical_ntk(model, batch)`` returns a :class:`Kernel` with ``values[i, j, c, c'] = ⟨φ(∇θ f_c(x_i)),
ψ(∇θ f_c'(x_j))⟩`` over a chosen parameter set θ, split per transformer block (``per_layer``). Kernel variants
(Malladi et al. 2023, "A Kernel-Based View of Language Model Fine-Tuning"): ``sgd`` ⟨∇f(x), ∇f(x')⟩, ``signgd``
⟨sign ∇f(x), sign ∇f(x')⟩, ``asym_signgd`` ⟨∇f(x), sign ∇f(x')⟩ (their asymmetric SignGD kernel;
sign(0) = 0).
Outputs: ``full`` (all C logits), ``trace`` (Σ_c K[:, :, c, c]), ``logit_diff`` (the kernel of f_1 − f_0,
binary classifiers only, one backward pass instead of C).

Two implementations, tested equal: ``fast`` (:mod:`linft.ntk_fast`, hooks + one batched backward pass per output,
Linear layers only) and ``reference`` (:mod:`linft.ntk_reference`, ``torch.func.jacrev`` per example).
:func:`explicit_jacobian` is a third, plain-autograd oracle. Kernels are formed in float64 per parameter unit
(:mod:`linft.ntk_gram`), blocked over examples so that the per-example gradients held at once fit
``memory_budget_gb``; results can be cached on disk.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from linft import LinftError, check_choice
from linft.ntk_gram import KERNELS, OUTPUTS, assemble, kernel_shape
from linft.ntk_params import FullWeights, Selection, check_batch, lengths_of, select
from linft.ntk_reference import explicit_jacobian, reference_jacobians

__all__ = ["Kernel", "FullWeights", "empirical_ntk", "explicit_jacobian", "IMPLEMENTATIONS", "KERNELS", "OUTPUTS"]

IMPLEMENTATIONS = ("fast", "reference")
_GB = 1024**3
#: largest float64 block pair (plus sign copies) multiplied at once when forming a kernel
GRAM_BLOCK_BYTES = 512 * 1024**2


@dataclass
class Kernel:
    """An empirical NTK and how it was computed.

    ``values``: float64, [N, M, C, C] for output "full", [N, M] for "trace" and "logit_diff".
    ``per_layer``: {"layer0": ..., "head": ...} blocks of the same shape summing to ``values`` (empty when
    computed with ``per_layer=False``). ``params`` describes the parameter set in words (e.g.
    "LoRA (no head), 73,728 params"); ``seconds`` is the wall time (0 when loaded from the cache).
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


def _num_outputs(model: nn.Module) -> int:
    c = getattr(getattr(model, "config", None), "num_labels", None)
    if not isinstance(c, int) or c < 1:
        raise LinftError("cannot tell the number of outputs: the model config has no num_labels")
    return c


def _cache_key(
    model: nn.Module, sel: Selection, bx: dict, by: dict | None, output: str, kernel: str, per_layer: bool
) -> str:
    """Hash of the model config and weights, the parameter set, both batches, output and kernel variant."""
    h = hashlib.blake2b(digest_size=16)
    config = getattr(model, "config", None)
    h.update((config.to_json_string() if hasattr(config, "to_json_string") else type(model).__name__).encode())
    for name, p in model.named_parameters():  # every weight: frozen ones shape the kernel as much as trainable ones
        t = p.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}:{p.requires_grad}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(json.dumps([sel.spec, sel.names, output, kernel, per_layer]).encode())
    for b in (bx, by):
        if b is None:
            h.update(b"same")
            continue
        for key in sorted(b):
            h.update(key.encode())
            h.update(b[key].to(torch.int64).contiguous().numpy().tobytes())
            h.update(str(tuple(b[key].shape)).encode())
    return h.hexdigest()


def _cache_file(cache, key: str) -> Path | None:
    if cache is False or cache is None:
        return None
    if cache is True:
        from linft.paths import cache_dir

        folder = cache_dir("ntk")
    else:
        folder = Path(cache).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
    return folder / f"entk-{key}.pt"


def _budget_error(what: str, need: float, budget: float) -> LinftError:
    return LinftError(
        f"the eNTK needs {need / _GB:.3f} GB for {what} but memory_budget_gb={budget:g}: raise memory_budget_gb, "
        "or use fewer examples, output='trace' or 'logit_diff', or per_layer=False"
    )


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
    "reference". ``memory_budget_gb`` bounds the kernel plus the per-example gradients held at once;
    ``cache``: True (``cache_dir("ntk")``) or a folder to reuse results keyed by model weights, parameter set,
    both batches, output and kernel. Raises :class:`LinftError` for bad input.
    """
    check_choice("kernel", kernel, KERNELS)
    check_choice("output", output, OUTPUTS)
    check_choice("implementation", implementation, IMPLEMENTATIONS)
    if not memory_budget_gb or memory_budget_gb <= 0:
        raise LinftError(f"memory_budget_gb must be positive, got {memory_budget_gb!r}")
    bx = check_batch(batch, "batch")
    by = check_batch(batch2, "batch2") if batch2 is not None else None
    c = _num_outputs(model)
    if output == "logit_diff" and c != 2:
        raise LinftError(
            f"output='logit_diff' needs a binary classifier, this one has C={c}: use output='full' or 'trace'"
        )
    n_out = 1 if output == "logit_diff" else c
    sel = select(model, params)
    if implementation == "fast" and sel.units is None:
        modules = dict(model.named_modules())
        bad = next(n for n in sel.names if not isinstance(modules.get(n.rpartition(".")[0]), nn.Linear))
        raise LinftError(
            f"the fast path handles Linear-layer weights and biases only, and the parameter set includes others "
            f"(e.g. {bad}): use implementation='reference'"
        )
    n = bx["input_ids"].shape[0]
    m = by["input_ids"].shape[0] if by is not None else n
    groups = list(sel.groups) if per_layer else ["all"]

    key = _cache_key(model, sel, bx, by, output, kernel, per_layer) if cache not in (False, None) else None
    path = _cache_file(cache, key) if key else None
    if path is not None and path.exists():
        saved = torch.load(path, weights_only=False)
        return Kernel(**{**saved, "seconds": 0.0, "meta": {**saved["meta"], "cache": "hit", "cache_file": str(path)}})

    # ---------------------------------------------------------------- memory plan
    budget = memory_budget_gb * _GB
    shape = kernel_shape(n, m, n_out, output)
    numel = 1
    for s in shape:
        numel *= s
    result_bytes = numel * 8 * (1 + len(groups) if per_layer else 1)
    if result_bytes > budget:
        what = f"the {list(shape)} kernel{' and its per-layer blocks' if per_layer else ''}"
        raise _budget_error(what, result_bytes, budget)
    if sel.units:
        max_unit = max(u.numel for u in sel.units)
    else:
        max_unit = max(t.numel() for t in sel.tensors.values())
    per_row = 4 * n_out * max_unit * 8  # one example's row in the left and right float64 blocks, plus sign copies
    itemsize = next(iter(sel.tensors.values())).element_size()
    n_held = n + (m if by is not None else 0)
    if implementation == "fast":
        from linft.ntk_fast import store_bytes_estimate

        tokens = int(lengths_of(bx).sum()) + (int(lengths_of(by).sum()) if by is not None else 0)
        held = store_bytes_estimate(sel, tokens, n_held, n_out, itemsize)
        whole_bytes = n_held * n_out * max_unit * itemsize  # one unit's gradients for every example
    else:
        held = n_held * n_out * sel.n_params * 8  # the reference holds every Jacobian
        whole_bytes = 0
    free = budget - result_bytes - held
    if free >= whole_bytes + per_row:  # materialize each unit's gradients once, multiply in row blocks
        whole = True
        rows = min(max(n, m), int((free - whole_bytes) // per_row), max(1, GRAM_BLOCK_BYTES // per_row))
    elif free >= per_row:  # stream blocks of examples, recomputing gradients from token factors per block pair
        whole = False
        rows = int(free // per_row)
    else:
        raise _budget_error(
            f"the kernel ({result_bytes / _GB:.3f} GB), the per-example gradients ({held / _GB:.3f} GB) and one "
            f"example's gradient block ({per_row / _GB:.3f} GB)",
            result_bytes + held + per_row,
            budget,
        )

    # ---------------------------------------------------------------- compute
    start = time.perf_counter()
    meta: dict = {"N": n, "M": m, "C": c, "outputs_differentiated": n_out, "max_tokens": int(bx["input_ids"].shape[1]),
                  "parameter_names": list(sel.names), "groups": list(sel.groups),
                  "gram_mode": "whole" if whole else "stream", "block_examples": rows,
                  "result_bytes": int(result_bytes), "gradient_bytes": int(held), "unit_bytes": int(whole_bytes),
                  "block_bytes_per_example": int(per_row),
                  "estimated_bytes": int(result_bytes + held + (whole_bytes if whole else 0) + rows * per_row)}
    if implementation == "fast":
        from linft.ntk_fast import fast_gradients

        gx = fast_gradients(model, bx, sel, output, n_out, progress)
        gy = fast_gradients(model, by, sel, output, n_out, progress) if by is not None else gx
        unit_groups = [u.group if per_layer else "all" for u in sel.units]
        meta.update(passes=gx.passes + (gy.passes if by is not None else 0),
                    tokens_processed=gx.tokens + (gy.tokens if by is not None else 0),
                    gradient_store_bytes=gx.unit_bytes() + (gy.unit_bytes() if by is not None else 0))
    else:
        names = list(sel.names)
        gx = _Jacobians(names, reference_jacobians(model, bx, sel, output))
        gy = _Jacobians(names, reference_jacobians(model, by, sel, output)) if by is not None else gx
        unit_groups = [_group(name, sel) if per_layer else "all" for name in names]
    parts = assemble(unit_groups, gx, gy, n, m, n_out, output, kernel, rows, whole)
    if per_layer:
        values = torch.zeros(shape, dtype=torch.float64)
        for block in parts.values():
            values += block
    else:
        values = parts.get("all", torch.zeros(shape, dtype=torch.float64))
    if not torch.isfinite(values).all():
        raise LinftError("the eNTK has non-finite entries: check the model weights and inputs for NaN/inf")
    seconds = time.perf_counter() - start
    meta["cache_key"] = key
    result = Kernel(
        values=values,
        per_layer={g: parts[g] for g in groups if g in parts} if per_layer else {},
        output=output,
        kernel=kernel,
        params=sel.description,
        n_params=sel.n_params,
        seconds=seconds,
        implementation=implementation,
        meta=meta,
    )
    if path is not None:
        tmp = path.with_suffix(".partial")
        torch.save({k: getattr(result, k) for k in result.__dataclass_fields__}, tmp)
        tmp.replace(path)
        result.meta["cache"] = "written"
        result.meta["cache_file"] = str(path)
    return result


def _group(name: str, sel: Selection) -> str:
    for group, names in sel.groups.items():
        if name in names:
            return group
    return "other"


class _Jacobians:
    """Reference Jacobians {name: [N, C', numel] float64} as a gradient source, one unit per parameter."""

    def __init__(self, names: list[str], jac: dict[str, torch.Tensor]):
        for name, j in jac.items():
            if not torch.isfinite(j).all():
                raise LinftError(f"non-finite gradients for {name}: check the weights and inputs for NaN/inf")
        self.names, self.jac = names, jac

    def whole(self, u: int) -> torch.Tensor:
        return self.jac[self.names[u]]

    def blocks(self, u: int, max_examples: int):
        full = self.jac[self.names[u]]
        for s in range(0, full.shape[0], max_examples):
            yield torch.arange(s, min(s + max_examples, full.shape[0])), full[s : s + max_examples]
