"""The eNTK implementations, one record each in one registry keyed by name.

One job: say, per implementation, how per-example gradients are produced, where the logits come from, what the
gradient store is expected to hold (for :mod:`linft.ntk._plan`) and whether only ``nn.Linear`` parameters can be
selected. :func:`linft.ntk.empirical_ntks` picks one record by name (:func:`choose`) and calls only its fields, so
adding an implementation means adding one record here:

- "fast": :mod:`linft.ntk._fast`, hooks + one batched backward pass per output; Linear layers only; the logits come
  from its own forward passes;
- "reference": :mod:`linft.ntk._reference`, ``torch.func.jacrev`` per example; any parameter; one extra no-grad
  forward pass for the logits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from linft import check_choice
from linft.batches import lengths_of
from linft.functional import batch_logits
from linft.models import group_of
from linft.ntk._fast import FastGradients, fast_gradients, store_bytes_estimate
from linft.ntk._params import Selection
from linft.ntk._reference import reference_bytes_estimate, reference_gradients


@dataclass(frozen=True)
class Implementation:
    """One way to compute an eNTK's per-example gradients.

    ``gradients(model, bx, by, sel, output, n_out, progress)`` → ``(gx, gy, unit_groups, meta)``: gradient sources
    (:class:`linft.ntk._gram.GradientSource`) of both batches (``gy is gx`` when ``by`` is None), each unit's group
    and extra ``Kernel.meta`` entries. ``outputs(model, grads, batch)`` → logits ``[N, C]`` (float64, CPU) at the
    kernel's weights. ``held_bytes(sel, bx, by, n_held, n_out)`` → ``(held_bytes, unit_bytes)`` for
    :func:`linft.ntk.plan_memory`. ``linear_only``: only ``nn.Linear`` weights/biases may be selected.
    """

    name: str
    gradients: Callable
    outputs: Callable
    held_bytes: Callable
    linear_only: bool


def _fast_gradients(model: nn.Module, bx: dict, by: dict | None, sel: Selection, output: str, n_out: int,
                    progress: bool):
    gx = fast_gradients(model, bx, sel, output, n_out, progress)
    gy = fast_gradients(model, by, sel, output, n_out, progress) if by is not None else gx
    two = by is not None
    meta = {"passes": gx.passes + (gy.passes if two else 0),
            "tokens_processed": gx.tokens + (gy.tokens if two else 0),
            "gradient_store_bytes": gx.unit_bytes() + (gy.unit_bytes() if two else 0)}
    return gx, gy, [u.group for u in sel.units], meta


def _fast_outputs(_model: nn.Module, grads: FastGradients, _batch: dict) -> torch.Tensor:
    """The logits the fast path's forward passes produced."""
    return grads.logits


def _fast_held_bytes(sel: Selection, bx: dict, by: dict | None, n_held: int, n_out: int) -> tuple[int, int]:
    tokens = int(lengths_of(bx).sum()) + (int(lengths_of(by).sum()) if by is not None else 0)
    held = store_bytes_estimate(sel, tokens, n_held, n_out, sel.itemsize)
    unit_bytes = n_held * n_out * sel.max_unit_numel * sel.itemsize  # one unit's gradients, every example
    return held, unit_bytes


def _reference_gradients(model: nn.Module, bx: dict, by: dict | None, sel: Selection, output: str, _n_out: int,
                         _progress: bool):
    gx = reference_gradients(model, bx, sel, output)
    gy = reference_gradients(model, by, sel, output) if by is not None else gx
    return gx, gy, [group_of(name) for name in sel.names], {}


def _reference_outputs(model: nn.Module, _grads, batch: dict) -> torch.Tensor:
    """One no-grad forward pass (the Jacobians carry no logits)."""
    return batch_logits(model, batch)


def _reference_held_bytes(sel: Selection, _bx: dict, _by: dict | None, n_held: int, n_out: int) -> tuple[int, int]:
    return reference_bytes_estimate(sel, n_held, n_out), 0  # the reference already holds every Jacobian


#: every implementation, by name (the order of :data:`linft.ntk.IMPLEMENTATIONS`)
REGISTRY: dict[str, Implementation] = {
    impl.name: impl
    for impl in (
        Implementation("fast", _fast_gradients, _fast_outputs, _fast_held_bytes, linear_only=True),
        Implementation("reference", _reference_gradients, _reference_outputs, _reference_held_bytes,
                       linear_only=False),
    )
}


def choose(name: str) -> Implementation:
    """The implementation called ``name``; raises :class:`linft.LinftError` (one line) for an unknown one."""
    check_choice("implementation", name, tuple(REGISTRY))
    return REGISTRY[name]
