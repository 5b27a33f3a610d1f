"""Slow, obviously-correct Jacobians for the eNTK: the oracles the fast path is tested against.

One job: per-example Jacobians of the model outputs with respect to the selected parameters, one example at a
time on its unpadded tokens (so no attention mask can go wrong, and ``vmap``'s trouble with 2-D masks in
transformers 5 never arises):

- :func:`reference_jacobians` uses ``torch.func.functional_call`` + ``jacrev`` (implementation="reference");
- :func:`explicit_jacobian` uses plain ``torch.autograd.grad``, one output row at a time.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from linft import LinftError
from linft.ntk_params import Selection, check_batch, lengths_of, select


@contextmanager
def _eval(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _example(batch: dict, i: int, device) -> dict:
    length = int(lengths_of(batch)[i])
    return {k: v[i : i + 1, :length].to(device) for k, v in batch.items()}


def _rows(logits: torch.Tensor, output: str) -> torch.Tensor:
    """Output rows of one example: its C logits, or the single logit difference f_1 − f_0."""
    logits = logits[0]
    if not torch.isfinite(logits).all():
        raise LinftError("the model produced non-finite logits: check its weights (NaN/inf) before computing an eNTK")
    return (logits[1] - logits[0])[None] if output == "logit_diff" else logits


def reference_jacobians(model: nn.Module, batch: dict, sel: Selection, output: str) -> dict[str, torch.Tensor]:
    """{param name: J [N, C', numel] float64} by ``torch.func.jacrev`` of ``functional_call``, per example."""
    from torch.func import functional_call, jacrev

    device = next(model.parameters()).device
    params = {n: sel.tensors[n].detach() for n in sel.names}

    def f(p, inputs):
        return _rows(functional_call(model, p, args=(), kwargs=inputs, strict=False).logits, output)

    jac = jacrev(f)
    n = batch["input_ids"].shape[0]
    out: dict[str, list[torch.Tensor]] = {name: [] for name in sel.names}
    with _eval(model):
        for i in range(n):
            j = jac(params, _example(batch, i, device))
            for name in sel.names:
                out[name].append(j[name].detach().reshape(j[name].shape[0], -1).to(torch.float64).cpu())
    return {name: torch.stack(rows) for name, rows in out.items()}


def explicit_jacobian(model: nn.Module, batch, params="lora", output: str = "full") -> tuple[torch.Tensor, list[str]]:
    """Per-example Jacobian [N, C', P] (float64) by a plain autograd loop; returns (J, parameter names).

    C' = C for ``output`` "full" or "trace", 1 for "logit_diff" (the row is ∂(f_1 − f_0)). Columns follow the
    returned names, each parameter flattened row-major. The test oracle of :func:`linft.ntk.empirical_ntk`:
    ``J_x @ J_yᵀ`` (per output pair) is the SGD kernel.
    """
    if output not in ("full", "trace", "logit_diff"):
        raise LinftError(f"unknown output {output!r}: use 'full', 'trace' or 'logit_diff'")
    batch = check_batch(batch)
    sel = select(model, params)
    device = next(model.parameters()).device
    tensors = [sel.tensors[n] for n in sel.names]
    saved = [t.requires_grad for t in tensors]
    rows_all = []
    try:
        for t in tensors:
            t.requires_grad_(True)
        with _eval(model), torch.enable_grad():
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
