"""A model's logits as a function of (some of) its parameters: the one ``torch.func.functional_call`` wrapper.

Linearization (jvp), the reference eNTK (jacrev), the Jacobian-Lipschitz estimates and the toy kernels all
evaluate ``f(θ)`` with θ replaced by a dict of tensors; they all go through :func:`call`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call

from linft import LinftError
from linft.batches import apply_in_length_chunks

__all__ = ["batch_logits", "call", "eval_mode", "logits_of"]


def logits_of(output) -> torch.Tensor:
    """Logits tensor [N, C] from a model output (a Hugging Face ``ModelOutput``, a dict, or a plain tensor)."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, Mapping):
        logits = output.get("logits")
    if logits is None:
        raise LinftError(f"model output {type(output).__name__} has no logits: wrap a sequence classifier")
    return logits


def call(model: nn.Module, params: Mapping[str, torch.Tensor], *args, **kwargs) -> torch.Tensor:
    """``model(*args, **kwargs)`` with the named tensors of ``params`` substituted; returns the logits.

    ``params`` may name any subset of ``model.named_parameters()``; the rest keep their values. A single
    positional batch dict is unpacked into keyword arguments (its ``labels`` are dropped), so
    ``call(model, theta, batch)`` and ``call(model, theta, input_ids=..., attention_mask=...)`` are the same.
    """
    if len(args) == 1 and isinstance(args[0], Mapping) and not kwargs:
        kwargs = {k: v for k, v in args[0].items() if k != "labels"}
        args = ()
    return logits_of(functional_call(model, dict(params), args, kwargs, strict=False))


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode (dropout off) inside the block; restore each module's own flag after.

    Restoring module by module matters: a peft wrapper is created in training mode around a model in eval mode, and
    ``model.train(model.training)`` would switch dropout on in every layer.
    """
    saved = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, flag in saved:
            module.training = flag


@torch.no_grad()
def batch_logits(model: nn.Module, batch: Mapping[str, torch.Tensor], chunk: int = 64) -> torch.Tensor:
    """Logits ``[N, C]`` (float64, CPU) of ``model`` on a right-padded ``batch`` (``input_ids``/``attention_mask``
    ``[N, L]``), dropout off, no autograd graph.

    Examples are taken in order of length, ``chunk`` at a time, each chunk cut to its longest example
    (``linft.batches.apply_in_length_chunks``), so padding costs nothing; rows come back in the batch's order.
    """
    device = next(model.parameters()).device
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}

    def logits(part: dict[str, torch.Tensor]) -> torch.Tensor:
        return logits_of(model(**{k: v.to(device) for k, v in part.items()})).double().cpu()

    with eval_mode(model):
        return apply_in_length_chunks(logits, inputs, chunk, which="batch_logits' batch")
