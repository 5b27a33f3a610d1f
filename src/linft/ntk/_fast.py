"""The fast eNTK path: per-example gradients of Linear layers from one batched backward pass per output.

One job: for a batch, produce every example's gradient of each output with respect to the selected Linear
weights/biases, without a per-example loop. For ``y = W h`` (per token t) the gradient of output c of example i is
``Σ_t δ_{c,i,t} h_{i,t}ᵀ`` with δ = ∂f_c(x_i)/∂y. Examples in a batch are independent, so one backward pass of
``Σ_i f_c(x_i)`` gives every example's δ at once: forward hooks capture each selected module's input h and output
y, and ``torch.autograd.grad`` returns ∂/∂y. For a peft LoRA layer ``y = base(x) + B(A(dropout x))·s`` hooks on
``lora_A`` and ``lora_B`` (plain ``nn.Linear``) see ``u = A x`` and ``v = B u``; δ_v already carries the scaling s,
and δ_u = Bᵀ δ_v, so ∂f/∂B = Σ_t δ_v,t u_tᵀ and ∂f/∂A = Σ_t δ_u,t x_tᵀ come out with no special cases
(dropout is the identity because the model runs in eval mode). A frozen full weight works the same way: only the
selected weights get ``requires_grad`` during the pass, so no autograd graph is built below the lowest selected
module and no parameter gradient is ever formed.

Work saved: examples are bucketed by length (each bucket is cut to its longest example, so almost no work goes to
padding; the remaining padded positions carry δ = 0 exactly because they are masked as keys and never pooled), no
graph below the lowest selected layer, a single backward pass for ``logit_diff``, no Python loop over examples.

Per unit and bucket we keep whichever is smaller: the gradients ``G [b, C', P]`` or the token factors
``(h [b, T, d_in], δ [b, T, C'·d_out])``; full weight matrices keep factors and are expanded to gradients only
block by block when the kernel is formed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from linft import LinftError
from linft.batches import lengths_of
from linft.functional import eval_mode
from linft.ntk._params import Selection, Unit

#: most tokens (examples × padded length) in one forward/backward pass; bounds activation memory
MAX_TOKENS_PER_PASS = 1024
#: fixed cost of one extra pass, in tokens, used to trade padding against the number of passes
PASS_OVERHEAD_TOKENS = 64


def plan_buckets(lengths: torch.Tensor, max_tokens: int = MAX_TOKENS_PER_PASS) -> list[tuple[torch.Tensor, int]]:
    """Split examples into passes of similar length: [(example indices, padded length)].

    Dynamic programming over the distinct lengths minimizes padded tokens + a per-pass overhead; groups larger
    than ``max_tokens`` are split into several passes.
    """
    order = torch.argsort(lengths, stable=True)
    sorted_len = lengths[order].tolist()
    distinct = sorted(set(sorted_len))
    tally: dict[int, int] = {}
    for v in sorted_len:
        tally[v] = tally.get(v, 0) + 1
    counts = [tally[v] for v in distinct]
    k = len(distinct)
    prefix = [0]
    for c in counts:
        prefix.append(prefix[-1] + c)

    def cost(i: int, j: int) -> float:  # lengths distinct[i..j] padded to distinct[j]
        n = prefix[j + 1] - prefix[i]
        per_pass = max(1, max_tokens // distinct[j])
        passes = -(-n // per_pass)
        return n * distinct[j] + PASS_OVERHEAD_TOKENS * passes

    best = [0.0] + [float("inf")] * k
    cut = [0] * (k + 1)
    for j in range(1, k + 1):
        for i in range(max(0, j - 64), j):
            c = best[i] + cost(i, j - 1)
            if c < best[j]:
                best[j], cut[j] = c, i
    spans = []
    j = k
    while j > 0:
        spans.append((cut[j], j - 1))
        j = cut[j]
    spans.reverse()
    buckets = []
    start = 0
    for i, j in spans:
        n = sum(counts[i : j + 1])
        length = distinct[j]
        per_pass = max(1, max_tokens // length)
        members = order[start : start + n]
        for s in range(0, n, per_pass):
            buckets.append((members[s : s + per_pass], length))
        start += n
    return buckets


@dataclass
class _Entry:
    index: torch.Tensor  # example indices (into the batch) of this bucket
    grads: torch.Tensor | None = None  # [b, C', P]
    h: torch.Tensor | None = None  # [b, T, d_in]
    delta: torch.Tensor | None = None  # [b, T, C'·d_out]


@dataclass
class FastGradients:
    """Per-example gradients of every unit, stored per bucket (gradients or token factors)."""

    units: list[Unit]
    n_examples: int
    n_out: int
    entries: list[list[_Entry]] = field(default_factory=list)  # [unit][bucket]
    passes: int = 0
    tokens: int = 0
    logits: torch.Tensor | None = None  # [N, C] float64 outputs of the forward passes, batch order, CPU

    def unit_bytes(self) -> int:
        total = 0
        for per_unit in self.entries:
            for e in per_unit:
                for t in (e.grads, e.h, e.delta):
                    if t is not None:
                        total += t.numel() * t.element_size()
        return total

    def whole(self, u: int) -> torch.Tensor:
        """Gradients [N, C', P] of unit ``u`` in batch order (the model's dtype), filled bucket by bucket."""
        unit = self.units[u]
        first = self.entries[u][0]
        like = first.grads if first.grads is not None else first.h
        out = torch.empty(self.n_examples, self.n_out, unit.numel, dtype=like.dtype, device=like.device)
        for e in self.entries[u]:
            grads = e.grads if e.grads is not None else _grads_from_factors(unit, e.h, e.delta, self.n_out)
            out[e.index.to(like.device)] = grads
        return out

    def blocks(self, u: int, max_examples: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Blocks (example indices, gradients [b, C', P] float64) of unit ``u``, bucket order."""
        unit = self.units[u]
        pieces: list[tuple[torch.Tensor, torch.Tensor]] = []
        count = 0
        for e in self.entries[u]:
            s = 0
            while s < len(e.index):
                take = min(max_examples - count, len(e.index) - s)
                pieces.append((e.index[s : s + take], _expand(unit, e, slice(s, s + take), self.n_out)))
                count += take
                s += take
                if count == max_examples:
                    yield _merge(pieces)
                    pieces, count = [], 0
        if pieces:
            yield _merge(pieces)


def _merge(pieces):
    if len(pieces) == 1:
        return pieces[0]
    return torch.cat([p[0] for p in pieces]), torch.cat([p[1] for p in pieces])


def _expand(unit: Unit, entry: _Entry, rows: slice, n_out: int) -> torch.Tensor:
    if entry.grads is not None:
        return entry.grads[rows].to(torch.float64)
    return _grads_from_factors(unit, entry.h[rows], entry.delta[rows], n_out).to(torch.float64)


def _grads_from_factors(unit: Unit, h: torch.Tensor, delta: torch.Tensor, n_out: int) -> torch.Tensor:
    """G [b, C', P]: weight part Σ_t δ_t h_tᵀ (row-major W[o, i]), then bias part Σ_t δ_t."""
    b = h.shape[0]
    parts = []
    if unit.weight:
        gw = torch.bmm(delta.transpose(1, 2), h)  # [b, C'·d_out, d_in]
        parts.append(gw.reshape(b, n_out, -1))
    if unit.bias:
        parts.append(delta.sum(1).reshape(b, n_out, -1))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)


@contextmanager
def _only_units_require_grad(model: nn.Module, units: list[Unit]):
    saved = {p: p.requires_grad for p in model.parameters()}
    try:
        for p in saved:
            p.requires_grad_(False)
        for unit in units:
            if unit.weight:
                unit.module.weight.requires_grad_(True)
            if unit.bias:
                unit.module.bias.requires_grad_(True)
        with eval_mode(model):
            yield
    finally:
        for p, flag in saved.items():
            p.requires_grad_(flag)


def output_scalars(logits: torch.Tensor, output: str) -> list[torch.Tensor]:
    """The summed outputs to differentiate: Σ_i f_c(x_i) per class, or Σ_i (f_1 − f_0)(x_i)."""
    if output == "logit_diff":
        return [(logits[:, 1] - logits[:, 0]).sum()]
    return [logits[:, c].sum() for c in range(logits.shape[1])]


def fast_gradients(
    model: nn.Module, batch: dict, sel: Selection, output: str, n_out: int, progress: bool = False
) -> FastGradients:
    """Run the bucketed forward + C' backward passes and collect per-example gradients of every unit."""
    units = sel.units
    device = next(model.parameters()).device
    buckets = plan_buckets(lengths_of(batch))
    store = FastGradients(units, batch["input_ids"].shape[0], n_out, [[] for _ in units])
    captured: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def make_hook(u):
        def hook(_module, inputs, out):
            captured.setdefault(u, []).append((inputs[0], out))

        return hook

    iterator = buckets
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(buckets, desc="eNTK passes", unit="pass")
    with _only_units_require_grad(model, units), torch.enable_grad():
        handles = [unit.module.register_forward_hook(make_hook(u)) for u, unit in enumerate(units)]
        try:
            for index, length in iterator:
                captured.clear()
                inputs = slice_examples(batch, index, length, device)
                logits = model(**inputs).logits
                if not torch.isfinite(logits).all():
                    raise LinftError(
                        "the model produced non-finite logits: check its weights (NaN/inf) before computing an eNTK"
                    )
                if store.logits is None:
                    store.logits = torch.empty(store.n_examples, logits.shape[1], dtype=torch.float64)
                store.logits[index.cpu()] = logits.detach().double().cpu()
                missing = [units[u].module_name for u in range(len(units)) if u not in captured]
                if missing:
                    raise LinftError(f"selected module {missing[0]} was not called in the forward pass: select others")
                ys = [y for u in range(len(units)) for _, y in captured[u]]
                scalars = output_scalars(logits, output)
                deltas = []
                for k, scalar in enumerate(scalars):
                    grads = torch.autograd.grad(
                        scalar, ys, retain_graph=k < len(scalars) - 1, allow_unused=True, materialize_grads=True
                    )
                    deltas.append(grads)
                pos = 0
                b = len(index)
                for u, unit in enumerate(units):
                    hs, ds = [], []
                    for h, y in captured[u]:
                        d_in, d_out = h.shape[-1], y.shape[-1]
                        hs.append(h.detach().reshape(b, -1, d_in))
                        per_out = [deltas[k][pos].reshape(b, -1, d_out) for k in range(n_out)]  # 2-D inputs too
                        stacked = torch.stack(per_out, dim=2)  # [b, T, C', d_out]
                        ds.append(stacked.reshape(b, -1, n_out * d_out))
                        pos += 1
                    h = hs[0] if len(hs) == 1 else torch.cat(hs, 1)
                    delta = ds[0] if len(ds) == 1 else torch.cat(ds, 1)
                    if not torch.isfinite(delta).all():
                        raise LinftError(
                            f"non-finite gradients at {unit.module_name}: check the weights and inputs for NaN/inf"
                        )
                    tokens = h.shape[1]
                    if n_out * unit.numel <= tokens * (h.shape[2] + delta.shape[2]):
                        store.entries[u].append(_Entry(index, grads=_grads_from_factors(unit, h, delta, n_out)))
                    else:
                        store.entries[u].append(_Entry(index, h=h.contiguous(), delta=delta.contiguous()))
                store.passes += 1
                store.tokens += len(index) * length
                del ys, deltas, logits, scalars
                captured.clear()
        finally:
            for handle in handles:
                handle.remove()
            captured.clear()
    return store


def slice_examples(batch: dict[str, torch.Tensor], index: torch.Tensor, length: int, device) -> dict:
    """Rows ``index`` of ``batch`` cut to ``length`` tokens, on ``device``."""
    return {k: v[index, :length].to(device) for k, v in batch.items()}


def store_bytes_estimate(sel: Selection, n_tokens: int, n_examples: int, n_out: int, itemsize: int) -> int:
    """Upper bound of what :func:`fast_gradients` keeps (per unit the smaller of gradients and factors)."""
    total = 0
    for unit in sel.units:
        m = unit.module
        factors = n_tokens * (m.in_features + n_out * m.out_features)
        grads = n_examples * n_out * unit.numel
        total += min(factors, grads) * itemsize
    return total
