"""Slow, obviously-correct Jacobians for the eNTK: the oracles the fast path is tested against.

One job: per-example Jacobians of the model outputs with respect to the selected parameters, one example at a
time on its unpadded tokens (so no attention mask can go wrong, and ``vmap``'s trouble with 2-D masks in
transformers 5 never arises):

- :func:`reference_gradients` uses :func:`linft.functional.call` + ``torch.func.jacrev``
  (implementation="reference"), any parameter type;
- :func:`explicit_jacobian` uses plain ``torch.autograd.grad``, one output row at a time.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from linft import LinftError, check_choice
from linft.batches import check_batch, lengths_of
from linft.functional import call, eval_mode
from linft.ntk._gram import OUTPUTS
from linft.ntk._params import Selection, select


def _example(batch: dict, i: int, device) -> dict:
    length = int(lengths_of(batch)[i])
    return {k: v[i : i + 1, :length].to(device) for k, v in batch.items()}


def _rows(logits: torch.Tensor, output: str) -> torch.Tensor:
    """Output rows of one example: its C logits, or the single logit difference f_1 − f_0."""
    logits = logits[0]
    if not torch.isfinite(logits).all():
        raise LinftError("the model produced non-finite logits: check its weights (NaN/inf) before computing an eNTK")
    return (logits[1] - logits[0])[None] if output == "logit_diff" else logits


class ReferenceGradients:
    """Jacobians {name: [N, C', numel] float64} as a gradient source (:mod:`linft.ntk._gram`), one unit per name."""

    def __init__(self, names: list[str], jac: dict[str, torch.Tensor]):
        for name, j in jac.items():
            if not torch.isfinite(j).all():
                raise LinftError(f"non-finite gradients for {name}: check the weights and inputs for NaN/inf")
        self.names, self.jac = names, jac

    def whole(self, u: int) -> torch.Tensor:
        return self.jac[self.names[u]]

    def blocks(self, u: int, max_examples: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        full = self.jac[self.names[u]]
        for s in range(0, full.shape[0], max_examples):
            yield torch.arange(s, min(s + max_examples, full.shape[0])), full[s : s + max_examples]


def reference_gradients(model: nn.Module, batch: dict, sel: Selection, output: str) -> ReferenceGradients:
    """Per-example Jacobians of every selected parameter by ``torch.func.jacrev`` of :func:`linft.functional.call`."""
    from torch.func import jacrev

    device = next(model.parameters()).device
    params = {n: sel.tensors[n].detach() for n in sel.names}

    def f(p, inputs):
        return _rows(call(model, p, inputs), output)

    jac = jacrev(f)
    n = batch["input_ids"].shape[0]
    out: dict[str, list[torch.Tensor]] = {name: [] for name in sel.names}
    with eval_mode(model):
        for i in range(n):
            j = jac(params, _example(batch, i, device))
            for name in sel.names:
                out[name].append(j[name].detach().reshape(j[name].shape[0], -1).to(torch.float64).cpu())
    names = list(sel.names)
    return ReferenceGradients(names, {name: torch.stack(rows) for name, rows in out.items()})


def reference_bytes_estimate(sel: Selection, n_examples: int, n_out: int) -> int:
    """What :func:`reference_gradients` keeps: every float64 Jacobian of ``n_examples`` examples."""
    return n_examples * n_out * sel.n_params * 8


def explicit_jacobian(model: nn.Module, batch, params="lora", output: str = "full") -> tuple[torch.Tensor, list[str]]:
    """Per-example Jacobian [N, C', P] (float64) by a plain autograd loop; returns (J, parameter names).

    C' = C for ``output`` "full" or "trace", 1 for "logit_diff" (the row is ∂(f_1 − f_0)). Columns follow the
    returned names, each parameter flattened row-major. The test oracle of :func:`linft.ntk.empirical_ntk`:
    ``J_x @ J_yᵀ`` (per output pair) is the SGD kernel.
    """
    check_choice("output", output, OUTPUTS)
    batch = check_batch(batch, "batch", right_padded=True)
    sel = select(model, params)
    device = next(model.parameters()).device
    tensors = [sel.tensors[n] for n in sel.names]
    saved = [t.requires_grad for t in tensors]
    rows_all = []
    try:
        for t in tensors:
            t.requires_grad_(True)
        with eval_mode(model), torch.enable_grad():
            for i in range(batch["input_ids"].shape[0]):
                logits = model(**_example(batch, i, device)).logits
                if output == "logit_diff" and logits.shape[1] != 2:
                    raise LinftError(f"output='logit_diff' needs a binary classifier, this one has C={logits.shape[1]}")
                rows = _rows(logits, output)
                grads = []
                for c in range(rows.shape[0]):
                    g = torch.autograd.grad(rows[c], tensors, retain_graph=c < rows.shape[0] - 1, allow_unused=True)
                    grads.append(torch.cat([(x if x is not None else torch.zeros_like(t)).reshape(-1)
                                            for x, t in zip(g, tensors)]).detach().to(torch.float64).cpu())
                rows_all.append(torch.stack(grads))
    finally:
        for t, flag in zip(tensors, saved):
            t.requires_grad_(flag)
    return torch.stack(rows_all), list(sel.names)
