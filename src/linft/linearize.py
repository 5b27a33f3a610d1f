"""The first-order Taylor model of a network in its trainable parameters.

For a classifier f(x; θ) with logits in R^C and trainable parameters θ (the LoRA matrices and the head of a
model from :func:`linft.models.add_lora`, or whatever has ``requires_grad``), the linearized model around the
parameters θ0 it had when wrapped is

    f_lin(x; θ) = f(x; θ0) + J(x) (θ − θ0),        J(x) = ∂f(x; θ)/∂θ at θ0   (C × P per example).

:class:`LinearizedModel` is an ``nn.Module`` whose only parameters are its own copy of θ, so any torch optimizer
trains it. The forward pass computes J(x)(θ − θ0) as a Jacobian-vector product (``torch.func.jvp``) and never forms
J. Frozen weights are shared with the wrapped model (not copied); θ0 is a frozen copy taken at wrap time, so later
training of the wrapped model's trainable tensors does not change the linearization.

Gradients are exact. f_lin is linear in θ, so ∂L/∂θ = J(x)ᵀ ∂L/∂f_lin. The default ``grad_mode="vjp"`` gets this
product from one ordinary backward pass through the network at θ0 (a small autograd function routes it to θ).
``grad_mode="jvp"`` differentiates the jvp output itself (reverse-over-forward). It is the textbook definition, and
the tests check that the two agree, but it is several times slower.

What costs what, per call on the same batch: a linearized forward pass costs one jvp (a forward pass carrying a
tangent, so more than a real forward pass); a linearized update with ``"vjp"`` costs that jvp plus one ordinary
backward pass at θ0 (a vjp), against one forward and one backward pass for the real model; ``"jvp"`` replaces the
backward pass by reverse mode through the jvp, which is much slower. Measured ratios are in ``benchmarks/README.md``
("Linearized training cost (measured earlier)"). Pin threads (:func:`linft.device.pin_threads`) on shared cores.

The wrapped model is not a submodule, so ``lin.to(device)`` moves θ and θ0 but not the network: move the wrapped
model yourself.

:func:`linearization_gap` compares the real and the linear model on a batch: at the same parameters (the quantity
the anchored-regularization bound controls), or each at its own trained parameters.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn
from torch.func import jvp

from linft import LinftError, check_choice
from linft.batches import check_batch
from linft.functional import call, logits_of

__all__ = ["LinearizedModel", "linearization_gap", "gap_numbers", "logits_of", "trainable_parameters", "GAP_AT"]

GRAD_MODES = ("vjp", "jvp")
#: the ``at`` choices of :func:`linearization_gap`
GAP_AT = ("lin", "model", "own")


def trainable_parameters(model: nn.Module) -> OrderedDict[str, torch.Tensor]:
    """Trainable tensors by name, in ``named_parameters`` order.

    For a :class:`LinearizedModel` this is its θ under the wrapped model's parameter names. For any other
    module it is every parameter with ``requires_grad``.
    """
    if isinstance(model, LinearizedModel):
        return model.params
    return OrderedDict((n, p) for n, p in model.named_parameters() if p.requires_grad)


def _as_batch(batch_or_ids, attention_mask=None, token_type_ids=None, labels=None) -> dict[str, torch.Tensor]:
    """The model inputs of ``lin(batch)`` or ``lin(input_ids, attention_mask)``, checked by
    :func:`linft.batches.check_batch`; ``labels`` are accepted (so ``lin(**batch)`` works) and dropped.
    """
    if isinstance(batch_or_ids, Mapping):
        batch = dict(batch_or_ids)
        if batch.get("attention_mask") is None and attention_mask is not None:
            batch["attention_mask"] = attention_mask
    else:
        batch = {"input_ids": batch_or_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
                 "labels": labels}
    return check_batch(batch, "batch")


class _RouteGrad(torch.autograd.Function):
    """Returns ``value``'s numbers but sends the incoming gradient to ``target`` (same shape)."""

    @staticmethod
    def forward(_ctx, value, _target):  # _target is there to receive the gradient
        return value.clone()

    @staticmethod
    def backward(_ctx, grad):
        return None, grad


class LinearizedModel(nn.Module):
    """f_lin(x; θ) = f(x; θ0) + J(x)(θ − θ0) over the trainable parameters of ``model``.

    Args:
        model: a classifier returning logits [N, C], usually ``linft.models.add_lora(load(...).model)``. It is
            put in eval mode (no dropout: the Taylor model is of a deterministic function). It is *not*
            registered as a submodule, so ``lin.parameters()`` yields θ only and an optimizer built on it
            never touches the wrapped model. Keep the wrapped model's frozen weights unchanged while the
            linearization is in use.
        grad_mode: ``"vjp"`` (default, fast: J(x)ᵀ g from one backward pass at θ0) or ``"jvp"``
            (reverse-mode through the jvp output; the reference, several times slower).

    Attributes:
        model: the wrapped model.
        names: the trainable parameter names (the wrapped model's ``named_parameters`` names), in order.

    Calling ``lin(batch)``, ``lin(**batch)`` or ``lin(input_ids, attention_mask)`` returns the logits f_lin, [N, C].
    Every batch is checked by :func:`linft.batches.check_batch` (``attention_mask`` is required).
    """

    def __init__(self, model: nn.Module, grad_mode: str = "vjp"):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise LinftError(f"LinearizedModel wraps an nn.Module, got {type(model).__name__}")
        if isinstance(model, LinearizedModel):
            raise LinftError("model is already a LinearizedModel: wrap the real model (lin.model) instead")
        check_choice("grad_mode", grad_mode, GRAD_MODES)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise LinftError("model has no trainable parameters: attach LoRA (linft.models.add_lora) or unfreeze some")
        model.eval()
        object.__setattr__(self, "model", model)  # not a submodule: its parameters stay out of lin.parameters()
        self.grad_mode = grad_mode
        self.names: list[str] = [n for n, _ in named]
        self._theta = nn.ParameterList([nn.Parameter(p.detach().clone()) for _, p in named])
        for i, (_, p) in enumerate(named):
            self.register_buffer(f"_theta0_{i}", p.detach().clone())
        self._base_cache: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------------------------------ parameters

    @property
    def theta0(self) -> OrderedDict[str, torch.Tensor]:
        """θ0 by name: frozen copies of the trainable parameters at wrap time."""
        return OrderedDict((n, getattr(self, f"_theta0_{i}")) for i, n in enumerate(self.names))

    @property
    def params(self) -> OrderedDict[str, nn.Parameter]:
        """θ by name: the trainable ``nn.Parameter`` tensors (what an optimizer updates)."""
        return OrderedDict(zip(self.names, self._theta))

    def delta(self) -> OrderedDict[str, torch.Tensor]:
        """θ − θ0 by name (detached)."""
        return OrderedDict((n, (p - p0).detach()) for (n, p), p0 in zip(self.params.items(), self.theta0.values()))

    def reset(self) -> None:
        """Set θ back to θ0 (and drop nothing else)."""
        with torch.no_grad():
            for p, p0 in zip(self._theta, self.theta0.values()):
                p.copy_(p0)

    def copy_to(self, model: nn.Module | None = None) -> nn.Module:
        """Write θ into the matching parameters of ``model`` (default: the wrapped model), in place.

        Afterwards ``model`` *is* the real network at the linearized model's parameters. Returns ``model``.
        """
        model = self.model if model is None else model
        target = dict(model.named_parameters())
        missing = [n for n in self.names if n not in target]
        if missing:
            raise LinftError(
                f"model lacks {len(missing)} parameter(s) such as {missing[0]!r}: pass the model that was wrapped"
            )
        with torch.no_grad():
            for n, p in self.params.items():
                target[n].copy_(p)
        return model

    def _resolve_params(self, params) -> OrderedDict[str, torch.Tensor]:
        if params is None:
            return self.params
        if isinstance(params, nn.Module):
            params = trainable_parameters(params)
        missing = [n for n in self.names if n not in params]
        if missing:
            raise LinftError(
                f"params lack {len(missing)} of the {len(self.names)} linearized tensors, e.g. {missing[0]!r}: "
                "pass a model or dict with the wrapped model's trainable parameter names"
            )
        return OrderedDict((n, params[n]) for n in self.names)

    # ------------------------------------------------------------------------------------------ evaluation

    def _f(self, batch: Mapping[str, torch.Tensor]):
        """θ (name → tensor) ↦ the wrapped model's logits on ``batch`` (checked model inputs)."""

        def f(theta):
            return call(self.model, theta, batch)

        return f

    def forward(
        self, input_ids, attention_mask=None, *, params=None, token_type_ids=None, labels=None
    ) -> torch.Tensor:
        """Linearized logits f(x; θ0) + J(x)(θ − θ0), shape [N, C].

        Args:
            input_ids: [N, L] token ids, or a batch dict (then the other inputs are read from it).
            attention_mask: [N, L] 0/1 mask (required, in the dict or here).
            params: evaluate at these parameters instead of the module's own θ (a name → tensor mapping or
                a model holding them, e.g. the real model during its training). Gradients flow to them.
            token_type_ids: optional [N, L], passed on to the model.
            labels: accepted and dropped, so ``lin(**batch)`` works.
        """
        batch = _as_batch(input_ids, attention_mask, token_type_ids, labels)
        theta = self._resolve_params(params)
        theta0 = self.theta0
        f = self._f(batch)
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in theta.values())
        if needs_grad and self.grad_mode == "jvp":
            tangents = {n: theta[n] - theta0[n] for n in self.names}
            base, tangent = jvp(f, (dict(theta0),), (tangents,))
            return base + tangent
        tangents = {n: (theta[n] - theta0[n]).detach() for n in self.names}
        with torch.no_grad():
            base, tangent = jvp(f, (dict(theta0),), (tangents,))
        if not needs_grad:
            return base + tangent
        # Same value f(θ0) + Jδ, with the backward pass of f at θ0 (J(x)ᵀ g) routed to θ.
        routed = {n: _RouteGrad.apply(theta0[n], theta[n]) for n in self.names}
        return f(routed) + tangent

    def jvp(self, batch, tangents: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """J(x) v for a direction ``v`` (name → tensor, same shapes as θ), shape [N, C], no gradient."""
        f = self._f(_as_batch(batch))
        missing = [n for n in self.names if n not in tangents]
        if missing:
            raise LinftError(
                f"tangents lack {missing[0]!r} (and {len(missing) - 1} more): give one tensor per parameter"
            )
        with torch.no_grad():
            _, out = jvp(f, (dict(self.theta0),), ({n: tangents[n] for n in self.names},))
        return out

    def real_logits(self, batch, attention_mask=None, *, params=None, grad: bool = False) -> torch.Tensor:
        """Logits of the *real* network f(x; θ) at the linearized model's θ (or at ``params``), [N, C].

        Computed with :func:`linft.functional.call` on the wrapped model, which is left unchanged. With
        ``grad=False`` (default) no graph is built.
        """
        f = self._f(_as_batch(batch, attention_mask))
        theta = self._resolve_params(params)
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            return f(dict(theta))

    def base_logits(self, batch, attention_mask=None, *, cache: bool = True) -> torch.Tensor:
        """f(x; θ0), [N, C], cached by the batch's inputs (token ids, mask, token types; no gradient)."""
        batch = _as_batch(batch, attention_mask)
        key = None
        if cache:
            digest = hashlib.sha1(str(tuple(batch["input_ids"].shape)).encode())
            for name, tensor in batch.items():
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().numpy().tobytes())
            key = digest.hexdigest()
            if key in self._base_cache:
                return self._base_cache[key]
        with torch.no_grad():
            out = self._f(batch)(dict(self.theta0))
        if key is not None:
            self._base_cache[key] = out
        return out

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self._theta)
        return f"tensors={len(self.names)}, parameters={n}, grad_mode={self.grad_mode!r}"


# ---------------------------------------------------------------------------------------------- gap


def gap_numbers(f: torch.Tensor, f_lin: torch.Tensor) -> dict[str, float]:
    """Compare real logits ``f`` with linearized logits ``f_lin`` (both [N, C]), as :func:`linearization_gap` reports.

    Returns ``{"gap": ‖f − f_lin‖_F, "rel_gap": gap / ‖f‖_F (NaN when f = 0), "agreement": share of rows whose argmax
    agree, "f_norm": ‖f‖_F, "n": N}``, computed in float64.
    """
    if not (torch.is_tensor(f) and torch.is_tensor(f_lin)) or f.shape != f_lin.shape or f.dim() != 2:
        shapes = tuple(getattr(f, "shape", ())), tuple(getattr(f_lin, "shape", ()))
        raise LinftError(
            f"gap_numbers compares two logits tensors of the same shape [N, C], got {shapes[0]} and {shapes[1]}"
        )
    f = f.detach().double()
    f_lin = f_lin.detach().double()
    gap = torch.linalg.vector_norm(f - f_lin).item()
    norm = torch.linalg.vector_norm(f).item()
    agree = (f.argmax(-1) == f_lin.argmax(-1)).double().mean().item()
    rel = gap / norm if norm > 0 else float("nan")
    return {"gap": gap, "rel_gap": rel, "agreement": agree, "f_norm": norm, "n": int(f.shape[0])}


@torch.no_grad()
def linearization_gap(model: nn.Module | None, lin_model: LinearizedModel, batch, *, at: str | None = None) -> dict:
    """How far the real network is from its linearization on ``batch``.

    Args:
        model: the real network, or None for the network ``lin_model`` wraps.
        lin_model: the :class:`LinearizedModel`.
        batch: dict with ``input_ids`` and ``attention_mask``, [N, L] (:func:`linft.batches.check_batch`).
        at: which parameters each side uses:

            - ``"lin"``: both at the linearized model's θ (the real one via ``lin_model.real_logits``). This is
              the same-parameters gap the anchored bound controls, while the *linear* model trains.
            - ``"model"``: both at ``model``'s trainable parameters (the linear one via ``params=model``). This is
              the same-parameters gap while the *real* model trains.
            - ``"own"``: each at its own parameters, for two separately trained models.

            Default: ``"lin"`` when ``model`` is None, else ``"own"``.

    Returns:
        the dict
        ``{"gap": ‖f − f_lin‖_F, "rel_gap": ‖f − f_lin‖_F / ‖f‖_F, "agreement": share of examples whose argmax
        predictions agree, "f_norm": ‖f‖_F, "n": N}``. Norms are Frobenius norms over the [N, C] logits (in logit
        units, summed over the batch rather than averaged).
    """
    if not isinstance(lin_model, LinearizedModel):
        raise LinftError(f"lin_model must be a LinearizedModel, got {type(lin_model).__name__}")
    if at is None:
        at = "lin" if model is None else "own"
    check_choice("at", at, GAP_AT)
    batch = _as_batch(batch)
    if at == "lin":
        f = lin_model.real_logits(batch)
        f_lin = lin_model(batch)
    else:
        if model is None:
            raise LinftError(f"at={at!r} needs the real model: pass it as `model`")
        was_training = model.training
        model.eval()
        f = logits_of(model(**batch))
        model.train(was_training)
        f_lin = lin_model(batch, params=model if at == "model" else None)
    return gap_numbers(f, f_lin)
