"""Anchored regularization: keep fine-tuning near its starting point θ0, and measure how far it went.

The anchored objective is

    R(θ) + (λ/2) ‖θ − θ0‖²,

where R is the task loss and θ are the anchored parameters, θ0 their values at the start. Which trained tensors
are anchored is a choice (:func:`anchored_names`): ``"all"`` of them, or only the ``"lora"`` matrices, leaving the
classifier head free (f is linear in the head, so pulling a freshly initialised random head toward its random start
buys no linearity and keeps the classifier near random). :class:`AnchoredStep` takes the anchored names
(``names=``). The penalty can act in two ways:

- ``"loss"``: its gradient λ(θ − θ0) is added to the task gradient before the optimizer step (L2 toward θ0; with
  AdamW it is then rescaled by Adam's preconditioner like any gradient). :func:`anchored_penalty` is the loss
  term; :meth:`AnchoredStep.add_to_grad` adds the same gradient in place.
- ``"decoupled"``: after the optimizer step, θ ← θ − lr·λ(θ − θ0) (weight decay toward θ0 instead of toward 0,
  as AdamW decouples it). :meth:`AnchoredStep.step`.

The *selective* variant pulls a tensor toward θ0 only when the task gradient g = ∇R satisfies g·(θ − θ0) ≥ 0.
In that case the pull −(θ − θ0) changes R by −lr·λ·g·(θ − θ0) ≤ 0 to first order, so it does not work against the
task. When g·(θ − θ0) < 0, the task is moving away from θ0 (g points toward θ0, so descent leads away from it),
and pulling back would fight the task, so the pull is skipped.

The test is done **per parameter tensor** by default (each LoRA A, each LoRA B, head weight, head bias). One
global test would let the head, whose gradients are orders of magnitude larger, decide for every LoRA matrix.
Per-coordinate tests would turn the pull into a sign-masked, non-smooth update with no geometric meaning. Whole
tensors are the natural units of LoRA. ``granularity="layer"`` (the groups of
:func:`linft.models.lora_param_groups`) and ``"global"`` are available for comparison.

:func:`drift` measures ‖θ − θ0‖ in total and per layer group.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn

from linft import LinftError, check_choice
from linft.linearize import trainable_parameters

__all__ = [
    "snapshot",
    "anchored_penalty",
    "anchored_names",
    "AnchoredStep",
    "drift",
    "param_groups",
    "check_lam",
    "GRANULARITIES",
    "ANCHORS",
]

GRANULARITIES = ("tensor", "layer", "global")
#: which trained tensors the anchored pull applies to (:func:`anchored_names`)
ANCHORS = ("lora", "all")


def check_lam(lam) -> float:
    """λ as a float; raise :class:`linft.LinftError` unless it is a finite number >= 0."""
    try:
        lam = float(lam)
    except (TypeError, ValueError):
        raise LinftError(f"λ (lam) must be a number >= 0, got {lam!r}") from None
    if not lam >= 0 or lam == float("inf"):
        raise LinftError(f"λ (lam) must be a finite number >= 0, got {lam}: use lam=0 for no anchoring")
    return lam


def _as_params(params) -> OrderedDict[str, torch.Tensor]:
    if isinstance(params, nn.Module):
        return trainable_parameters(params)
    if isinstance(params, Mapping):
        return OrderedDict(params)
    raise LinftError(f"params must be a model or a name → tensor mapping, got {type(params).__name__}")


def _matched(params, anchor) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    params = _as_params(params)
    if not isinstance(anchor, Mapping):
        raise LinftError(f"anchor must be a name → tensor mapping (see snapshot()), got {type(anchor).__name__}")
    missing = [n for n in params if n not in anchor]
    if missing:
        raise LinftError(
            f"anchor lacks {len(missing)} trainable tensor(s) such as {missing[0]!r}: take it with snapshot(model) "
            "from the same model"
        )
    out = []
    for n, p in params.items():
        a = anchor[n]
        if a.shape != p.shape:
            raise LinftError(f"anchor tensor {n!r} has shape {tuple(a.shape)} but the parameter has {tuple(p.shape)}")
        out.append((n, p, a))
    return out


def snapshot(model: nn.Module) -> OrderedDict[str, torch.Tensor]:
    """θ0: detached copies of ``model``'s trainable tensors by name (for a LinearizedModel, its current θ)."""
    return OrderedDict((n, p.detach().clone()) for n, p in trainable_parameters(model).items())


def anchored_penalty(params, anchor: Mapping[str, torch.Tensor], lam: float) -> torch.Tensor:
    """(λ/2) Σ_tensors ‖θ − θ0‖², a scalar loss term differentiable in θ (gradient λ(θ − θ0)).

    Args:
        params: a model (its trainable tensors, or a LinearizedModel's θ) or a name → tensor mapping.
        anchor: θ0 by name, e.g. ``snapshot(model)`` taken before training or ``lin.theta0``.
        lam: λ ≥ 0, in units of loss per squared parameter distance.
    """
    lam = check_lam(lam)
    pairs = _matched(params, anchor)
    total = sum(((p - a.detach()) ** 2).sum() for _, p, a in pairs)
    return 0.5 * lam * total


def anchored_names(params, anchor: str = "lora") -> list[str]:
    """The names of the trained tensors the anchored pull applies to, in order.

    Args:
        params: a model (its trainable tensors, or a LinearizedModel's θ), a name → tensor mapping, or names.
        anchor: ``"lora"`` (the LoRA matrices only: names containing ``"lora_"``; the head and any other trained
            tensor are left free) or ``"all"`` (every trained tensor).

    Raises :class:`linft.LinftError` for an unknown ``anchor``, and for ``"lora"`` when no trained tensor is a
    LoRA matrix (a toy model, or a model trained without LoRA): pass ``anchor="all"`` there.
    """
    check_choice("anchor", anchor, ANCHORS)
    if isinstance(params, (nn.Module, Mapping)):
        names = list(_as_params(params))
    else:
        names = [str(n) for n in params]
    if anchor == "all":
        return names
    chosen = [n for n in names if "lora_" in n]
    if not chosen:
        example = f" such as {names[0]!r}" if names else ""
        raise LinftError(
            f"anchor='lora' pulls the LoRA matrices (names with 'lora_'), but none of the {len(names)} trained "
            f"tensors{example} is one: pass anchor='all'"
        )
    return chosen


def param_groups(model: nn.Module) -> OrderedDict[str, list[str]]:
    """Trained tensor names grouped as ``{"layer0": [...], ..., "head": [...]}`` (:func:`linft.models.group_names`).

    For a LinearizedModel the names are its θ's (the wrapped model's names of the trained tensors).
    """
    from linft.models import group_names

    return group_names(trainable_parameters(model))


@torch.no_grad()
def drift(model: nn.Module, anchor: Mapping[str, torch.Tensor]) -> OrderedDict[str, float]:
    """‖θ − θ0‖ (Euclidean, parameter units): ``{"total": ..., "layer0": ..., ..., "head": ...}``.

    Groups come from :func:`param_groups`, so the squares of the group values add up to the square of the total.
    """
    pairs = {n: (p, a) for n, p, a in _matched(model, anchor)}
    out: OrderedDict[str, float] = OrderedDict()
    sq = {n: ((p.detach() - a).double() ** 2).sum().item() for n, (p, a) in pairs.items()}
    out["total"] = sum(sq.values()) ** 0.5
    for key, members in param_groups(model).items():
        out[key] = sum(sq[n] for n in members) ** 0.5
    return out


class AnchoredStep:
    """Pull the anchored tensors toward θ0, plainly or selectively.

    Args:
        model: the model being trained (its trainable tensors, or a LinearizedModel's θ).
        anchor: θ0 by name (``snapshot(model)`` before training, or ``lin.theta0``).
        names: the anchored tensors (e.g. :func:`anchored_names`); None: every trainable tensor. Tensors left out
            are never pulled and count in no unit, :meth:`penalty` or :meth:`distance`.
        lam: λ ≥ 0. With λ = 0 both methods do nothing at all, so training is bit-for-bit plain training.
        lr: learning rate of the decoupled step (used by :meth:`step` only).
        selective: pull only the units with ∇R·(θ − θ0) ≥ 0, where ∇R is the task-loss gradient held in each
            tensor's ``.grad`` when the method is called (see the module docstring).
        granularity: unit of the selective test: ``"tensor"`` (default), ``"layer"`` or ``"global"``.

    Use either ``add_to_grad()`` after ``task_loss.backward()`` and before ``optimizer.step()`` (penalty in the
    loss), or ``step()`` after ``optimizer.step()`` (decoupled). Both return the units they pulled
    (``{unit: bool}``) and also store that in ``last_mask``.
    """

    def __init__(
        self,
        model,
        anchor,
        lam: float,
        lr: float = 0.0,
        selective: bool = False,
        granularity: str = "tensor",
        *,
        names=None,
    ):
        self.lam = check_lam(lam)
        check_choice("granularity", granularity, GRANULARITIES)
        lr = float(lr)
        if lr < 0:
            raise LinftError(f"lr must be >= 0, got {lr}")
        self.lr = lr
        self.selective = bool(selective)
        self.granularity = granularity
        self.pairs = _matched(model, anchor)
        if names is not None:
            names = [str(n) for n in names]
            known = {n for n, _, _ in self.pairs}
            unknown = [n for n in names if n not in known]
            if unknown:
                raise LinftError(f"names holds {unknown[0]!r}, which is no trainable tensor of the model")
            if not names:
                raise LinftError("names is empty: pass None to anchor every trainable tensor, or lam=0 for none")
            chosen = set(names)
            self.pairs = [(n, p, a) for n, p, a in self.pairs if n in chosen]
        names = [n for n, _, _ in self.pairs]
        if granularity == "tensor":
            self.units = OrderedDict((n, [n]) for n in names)
        elif granularity == "global":
            self.units = OrderedDict([("all", names)])
        else:
            if not isinstance(model, nn.Module):
                raise LinftError(
                    "granularity='layer' needs the model (to group tensors by layer), not a dict of tensors"
                )
            members = set(names)
            groups = ((u, [n for n in group if n in members]) for u, group in param_groups(model).items())
            self.units = OrderedDict((u, group) for u, group in groups if group)
        self.names = names
        self.last_mask: dict[str, bool] = {}

    @torch.no_grad()
    def mask(self) -> OrderedDict[str, bool]:
        """``{unit: pull?}`` from the current ``.grad`` (∇R) and θ; all True unless ``selective``.

        A unit whose tensors have no gradient yet counts as ∇R = 0, so it is pulled (0 ≥ 0).
        """
        if not self.selective:
            return OrderedDict((u, True) for u in self.units)
        dots = {}
        for n, p, a in self.pairs:
            g = p.grad
            dots[n] = 0.0 if g is None else (g.double() * (p.double() - a.double())).sum().item()
        return OrderedDict((u, sum(dots[n] for n in members) >= 0.0) for u, members in self.units.items())

    def _selected(self):
        mask = self.mask()
        self.last_mask = dict(mask)
        chosen = {n for u, members in self.units.items() if mask[u] for n in members}
        return mask, [(n, p, a) for n, p, a in self.pairs if n in chosen]

    @torch.no_grad()
    def add_to_grad(self) -> dict[str, bool]:
        """Penalty in the loss: ``p.grad += λ(θ − θ0)`` on the pulled units (call before ``optimizer.step()``)."""
        if self.lam == 0.0:
            self.last_mask = {}
            return {}
        mask, chosen = self._selected()
        for _, p, a in chosen:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad.add_(p - a, alpha=self.lam)
        return dict(mask)

    @torch.no_grad()
    def step(self) -> dict[str, bool]:
        """Decoupled pull: θ ← θ − lr·λ(θ − θ0) on the pulled units (call after ``optimizer.step()``)."""
        if self.lam == 0.0:
            self.last_mask = {}
            return {}
        if self.lr * self.lam > 1.0:
            raise LinftError(
                f"decoupled pull lr·λ = {self.lr * self.lam:g} > 1 overshoots the anchor: "
                "lower lr or λ (or use the loss penalty)"
            )
        mask, chosen = self._selected()
        for _, p, a in chosen:
            p.sub_(p - a, alpha=self.lr * self.lam)
        return dict(mask)

    @torch.no_grad()
    def penalty(self) -> float:
        """Current value of (λ/2)‖θ − θ0‖² over the anchored tensors (a float, for logging)."""
        if self.lam == 0.0:
            return 0.0
        return 0.5 * self.lam * sum(((p.detach() - a).double() ** 2).sum().item() for _, p, a in self.pairs)

    @torch.no_grad()
    def distance(self) -> float:
        """‖θ_A − θ_A0‖ over the anchored tensors A (float64 sums; also for λ = 0)."""
        return sum(((p.detach() - a).double() ** 2).sum().item() for _, p, a in self.pairs) ** 0.5
