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
the tests check that the two agree, but it is about 7× slower on CPU.

Measured costs for MiniLM + LoRA(q, v, r=8) + head, batch 16 × 64 tokens, CPU (seconds per call):

==============================================  =====================  ==========================
operation                                       2 threads, light load  1 thread, load ≈ 6
                                                (one run)              (best of 5)
==============================================  =====================  ==========================
real forward (no grad)                          0.17                   0.55
real forward + backward                         0.37                   1.11
linearized forward (no grad: one jvp)           0.54 (3.2×)            1.43 (2.6×)
linearized forward + backward (``"vjp"``)       1.06 (2.9×)            2.31 (2.1×)
linearized forward + backward (``"jvp"``)       7.2 (19×)              not measured
==============================================  =====================  ==========================

Each ratio compares the linearized operation with the same real one (forward with forward, forward + backward
with forward + backward). Other jobs shared the 2 cores during both measurements, so compare ratios within a
column, not seconds across columns. Under heavy contention 2 threads were slower than 1 and very noisy: pin
threads (:func:`linft.device.pin_threads`).

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
from torch.func import functional_call, jvp

from linft import LinftError

__all__ = ["LinearizedModel", "linearization_gap", "logits_of", "trainable_parameters"]

GRAD_MODES = ("vjp", "jvp")


def trainable_parameters(model: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """Trainable tensors by name, in ``named_parameters`` order.

    For a :class:`LinearizedModel` this is its θ under the wrapped model's parameter names. For any other
    module it is every parameter with ``requires_grad``.
    """
    if isinstance(model, LinearizedModel):
        return model.params
    return OrderedDict((n, p) for n, p in model.named_parameters() if p.requires_grad)


def logits_of(output) -> torch.Tensor:
    """Logits tensor [N, C] from a model output (a Hugging Face ``ModelOutput`` or a plain tensor)."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, Mapping):
        logits = output.get("logits")
    if logits is None:
        raise LinftError(f"model output {type(output).__name__} has no logits: wrap a sequence classifier")
    return logits


def _unpack(batch_or_ids, attention_mask=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Accept a batch dict ({"input_ids", "attention_mask", ...}) or tensors; check the shapes."""
    if isinstance(batch_or_ids, Mapping):
        if "input_ids" not in batch_or_ids:
            raise LinftError(f"batch has no 'input_ids' (keys: {sorted(batch_or_ids)}): pass linft.data.as_batch output")
        input_ids = batch_or_ids["input_ids"]
        attention_mask = batch_or_ids.get("attention_mask", attention_mask)
    else:
        input_ids = batch_or_ids
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise LinftError(f"input_ids must be a [N, L] tensor, got {shape}: tokenize with padding to a fixed length")
    if input_ids.shape[0] == 0:
        raise LinftError("the batch is empty (0 examples): pass at least one example")
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise LinftError(
            f"attention_mask shape {tuple(attention_mask.shape)} != input_ids shape {tuple(input_ids.shape)}: "
            "pass the mask the tokenizer returned"
        )
    return input_ids, attention_mask


class _RouteGrad(torch.autograd.Function):
    """Returns ``value``'s numbers but sends the incoming gradient to ``target`` (same shape)."""

    @staticmethod
    def forward(ctx, value, target):  # noqa: ARG004 - target only receives the gradient
        return value.clone()

    @staticmethod
    def backward(ctx, grad):
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
            (reverse-mode through the jvp output; the reference, about 7× slower).

    Attributes:
        model: the wrapped model.
        names: the trainable parameter names (the wrapped model's ``named_parameters`` names), in order.
        theta0: ``OrderedDict`` name → frozen tensor θ0 (the parameters at wrap time).
        params: ``OrderedDict`` name → ``nn.Parameter`` θ (the current parameters; starts equal to θ0).

    Calling ``lin(input_ids, attention_mask)`` or ``lin(**batch)`` returns the logits f_lin, [N, C].
    """

    def __init__(self, model: nn.Module, grad_mode: str = "vjp"):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise LinftError(f"LinearizedModel wraps an nn.Module, got {type(model).__name__}")
        if isinstance(model, LinearizedModel):
            raise LinftError("model is already a LinearizedModel: wrap the real model (lin.model) instead")
        if grad_mode not in GRAD_MODES:
            raise LinftError(f"unknown grad_mode {grad_mode!r}: use one of {GRAD_MODES}")
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
    def theta0(self) -> "OrderedDict[str, torch.Tensor]":
        """θ0 by name: frozen copies of the trainable parameters at wrap time."""
        return OrderedDict((n, getattr(self, f"_theta0_{i}")) for i, n in enumerate(self.names))

    @property
    def params(self) -> "OrderedDict[str, nn.Parameter]":
        """θ by name: the trainable ``nn.Parameter`` tensors (what an optimizer updates)."""
        return OrderedDict(zip(self.names, self._theta))

    def delta(self) -> "OrderedDict[str, torch.Tensor]":
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

    def _resolve_params(self, params) -> "OrderedDict[str, torch.Tensor]":
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

    def _f(self, input_ids, attention_mask):
        def f(p):
            return logits_of(functional_call(self.model, p, (), {"input_ids": input_ids, "attention_mask": attention_mask}))

        return f

    def forward(self, input_ids, attention_mask=None, *, params=None, labels=None) -> torch.Tensor:  # noqa: ARG002
        """Linearized logits f(x; θ0) + J(x)(θ − θ0), shape [N, C].

        Args:
            input_ids: [N, L] token ids (or a batch dict, then ``attention_mask`` is read from it).
            attention_mask: [N, L] 0/1 mask.
            params: evaluate at these parameters instead of the module's own θ (a name → tensor mapping or
                a model holding them, e.g. the real model during its training). Gradients flow to them.
            labels: accepted and ignored, so ``lin(**batch)`` works.
        """
        input_ids, attention_mask = _unpack(input_ids, attention_mask)
        theta = self._resolve_params(params)
        theta0 = self.theta0
        f = self._f(input_ids, attention_mask)
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
        input_ids, attention_mask = _unpack(batch)
        missing = [n for n in self.names if n not in tangents]
        if missing:
            raise LinftError(f"tangents lack {missing[0]!r} (and {len(missing) - 1} more): give one tensor per parameter")
        with torch.no_grad():
            _, out = jvp(self._f(input_ids, attention_mask), (dict(self.theta0),), ({n: tangents[n] for n in self.names},))
        return out

    def real_logits(self, batch, attention_mask=None, *, params=None, grad: bool = False) -> torch.Tensor:
        """Logits of the *real* network f(x; θ) at the linearized model's θ (or at ``params``), [N, C].

        Computed with ``torch.func.functional_call`` on the wrapped model, which is left unchanged. With
        ``grad=False`` (default) no graph is built.
        """
        input_ids, attention_mask = _unpack(batch, attention_mask)
        theta = self._resolve_params(params)
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            return self._f(input_ids, attention_mask)(dict(theta))

    def base_logits(self, batch, attention_mask=None, *, cache: bool = True) -> torch.Tensor:
        """f(x; θ0), [N, C], cached by the batch's token ids and mask (no gradient)."""
        input_ids, attention_mask = _unpack(batch, attention_mask)
        key = None
        if cache:
            digest = hashlib.sha1(input_ids.detach().cpu().numpy().tobytes())
            digest.update(str(tuple(input_ids.shape)).encode())
            if attention_mask is not None:
                digest.update(attention_mask.detach().cpu().numpy().tobytes())
            key = digest.hexdigest()
            if key in self._base_cache:
                return self._base_cache[key]
        with torch.no_grad():
            out = self._f(input_ids, attention_mask)(dict(self.theta0))
        if key is not None:
            self._base_cache[key] = out
        return out

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self._theta)
        return f"tensors={len(self.names)}, parameters={n}, grad_mode={self.grad_mode!r}"


# ---------------------------------------------------------------------------------------------- gap


def _gap_numbers(f: torch.Tensor, f_lin: torch.Tensor) -> dict[str, float]:
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
        batch: dict with ``input_ids`` and ``attention_mask``, [N, L].
        at: which parameters each side uses:

            - ``"lin"``: both at the linearized model's θ (the real one via ``lin_model.real_logits``). This is
              the same-parameters gap the anchored bound controls, while the *linear* model trains.
            - ``"model"``: both at ``model``'s trainable parameters (the linear one via ``params=model``). This is
              the same-parameters gap while the *real* model trains.
            - ``"own"``: each at its own parameters, for two separately trained models.

            Default: ``"lin"`` when ``model`` is None, else ``"own"``.

    Returns:
        ``{"gap": ‖f − f_lin‖_F, "rel_gap": ‖f − f_lin‖_F / ‖f‖_F, "agreement": share of examples whose argmax
        predictions agree, "f_norm": ‖f‖_F, "n": N}``. Norms are Frobenius norms over the [N, C] logits (in logit
        units, summed over the batch rather than averaged).
    """
    if not isinstance(lin_model, LinearizedModel):
        raise LinftError(f"lin_model must be a LinearizedModel, got {type(lin_model).__name__}")
    if at is None:
        at = "lin" if model is None else "own"
    if at not in ("lin", "model", "own"):
        raise LinftError(f"unknown at={at!r}: use 'lin', 'model' or 'own'")
    input_ids, attention_mask = _unpack(batch)
    if at == "lin":
        f = lin_model.real_logits(input_ids, attention_mask)
        f_lin = lin_model(input_ids, attention_mask)
    else:
        if model is None:
            raise LinftError(f"at={at!r} needs the real model: pass it as `model`")
        was_training = model.training
        model.eval()
        f = logits_of(model(input_ids=input_ids, attention_mask=attention_mask))
        model.train(was_training)
        f_lin = lin_model(input_ids, attention_mask, params=model if at == "model" else None)
    return _gap_numbers(f, f_lin)
