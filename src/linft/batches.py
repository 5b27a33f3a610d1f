"""The one input layer: every computation on tokenized examples validates its batch here.

A *batch* is a dict of tensors as :func:`linft.data.as_batch` (or ``tokenizer(..., padding=True,
return_tensors="pt")``) returns it: ``input_ids`` and ``attention_mask`` [N, L], optionally ``token_type_ids``
[N, L] and ``labels`` [N]. :func:`check_batch` returns a plain dict of exactly the keys a model needs, or raises
:class:`linft.LinftError` with one line that says what is wrong and what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from linft import LinftError, check_positive_int

__all__ = ["apply_in_length_chunks", "check_batch", "join_tokens", "lengths_of", "take", "to_device"]


def check_batch(
    batch,
    which: str = "batch",
    *,
    labels: bool = False,
    num_labels: int | None = None,
    right_padded: bool = False,
) -> dict[str, torch.Tensor]:
    """Validate a tokenized batch and return ``{"input_ids", "attention_mask"[, "token_type_ids"][, "labels"]}``.

    Args:
        batch: mapping with ``input_ids`` and ``attention_mask`` [N, L] (N ≥ 1, L ≥ 1, every row with at least one
            unmasked token); ``attention_mask`` is returned as int64 0/1.
        which: the argument's name, used in error messages.
        labels: require ``labels`` [N], integer class ids ≥ 0 (returned as int64).
        num_labels: with ``labels``, the number of outputs of the head (labels must be < num_labels).
        right_padded: require every row's mask to be ones followed by zeros (the NTK's fast path relies on it;
            :func:`linft.models.load` returns tokenizers that pad on the right).
    """
    if batch is None or not isinstance(batch, Mapping):
        raise LinftError(
            f"{which} must be a dict with 'input_ids' and 'attention_mask' (linft.data.as_batch or a tokenizer's "
            f"output), got {type(batch).__name__}"
        )
    if "input_ids" not in batch:
        raise LinftError(
            f"{which} has no 'input_ids' (keys {sorted(batch)}): pass linft.data.as_batch output or what "
            "tokenizer(texts, padding=True, return_tensors='pt') returns"
        )
    if "attention_mask" not in batch or batch["attention_mask"] is None:
        raise LinftError(f"{which} has no 'attention_mask': tokenize with padding=True so the mask comes along")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    if not (torch.is_tensor(ids) and torch.is_tensor(mask)) or ids.dim() != 2 or ids.shape != mask.shape:
        shapes = tuple(getattr(ids, "shape", ())), tuple(getattr(mask, "shape", ()))
        raise LinftError(
            f"{which}: input_ids and attention_mask must be tensors of the same shape [N, L], got {shapes[0]} and "
            f"{shapes[1]}: tokenize with return_tensors='pt' and padding"
        )
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise LinftError(f"{which} is empty (shape {tuple(ids.shape)}): pass at least one example with one token")
    mask = mask.to(torch.long)
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise LinftError(f"{which}: attention_mask must hold only 0 and 1")
    lengths = mask.sum(1)
    if (lengths == 0).any():
        row = int((lengths == 0).nonzero()[0])
        raise LinftError(f"{which} has an example with no unmasked token (row {row}): drop empty texts")
    if right_padded:
        ar = torch.arange(ids.shape[1], device=mask.device)
        if not torch.equal(mask, (ar[None, :] < lengths[:, None]).long()):
            raise LinftError(
                f"{which}: attention_mask must be right-padded: load the tokenizer with linft.models.load or set "
                "tokenizer.padding_side = 'right'"
            )
    out = {"input_ids": ids, "attention_mask": mask}
    if batch.get("token_type_ids") is not None:
        if tuple(batch["token_type_ids"].shape) != tuple(ids.shape):
            raise LinftError(f"{which}: token_type_ids must have the shape of input_ids {tuple(ids.shape)}")
        out["token_type_ids"] = batch["token_type_ids"]
    if labels:
        out["labels"] = _check_labels(batch, which, ids.shape[0], num_labels)
    return out


def _check_labels(batch: Mapping, which: str, n: int, num_labels: int | None) -> torch.Tensor:
    if batch.get("labels") is None:
        raise LinftError(f"{which} has no 'labels': build it with linft.data.as_batch from a labelled split")
    labels = torch.as_tensor(batch["labels"])
    if labels.shape != (n,):
        raise LinftError(f"{which}['labels'] must have shape [{n}] (one per example), got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise LinftError(f"{which}['labels'] must be integer class ids, got dtype {labels.dtype}")
    labels = labels.long()
    if labels.min().item() < 0:
        raise LinftError(f"{which} has negative labels ({labels.min().item()}): labels must be class ids 0..C-1")
    if num_labels is not None and labels.max().item() >= num_labels:
        raise LinftError(
            f"{which} has label {labels.max().item()} but the head has {num_labels} outputs: "
            f"load the model with num_labels >= {labels.max().item() + 1}"
        )
    return labels


def lengths_of(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Unmasked tokens per example, [N] int64."""
    return batch["attention_mask"].sum(1)


#: the keys with a token axis that :func:`trim_padding` cuts
TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def trim_padding(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch without its trailing all-padding columns: ``input_ids``/``attention_mask``/``token_type_ids``
    [N, L] cut to [N, L'] with L' the last position any example attends to (other keys as they are).

    Only columns that every example masks are dropped, so no logit of a masked model changes (up to float
    round-off); a left-padded batch is left as it is.
    """
    mask = batch["attention_mask"]
    used = mask.any(0).nonzero()
    length = int(used.max()) + 1 if used.numel() else mask.shape[1]
    if length == mask.shape[1]:
        return dict(batch)
    return {k: v[:, :length] if k in TOKEN_KEYS else v for k, v in batch.items()}


def length_chunks(batch: Mapping[str, torch.Tensor], chunk: int) -> list[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """The batch in chunks of at most ``chunk`` examples of similar length, each :func:`trim_padding`-ed:
    [(example indices [b] into ``batch``, sub-batch)], shortest examples first; the indices cover every example
    once, so ``out[index] = f(sub_batch)`` puts rows back in the batch's order."""
    order = torch.argsort(lengths_of(batch).cpu(), stable=True)
    if order.numel() == 0:
        return []
    return [(index, trim_padding({k: v[index.to(v.device)] for k, v in batch.items()}))
            for index in order.split(chunk)]


def apply_in_length_chunks(
    fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    batch: Mapping[str, torch.Tensor],
    chunk: int,
    *,
    n: int | None = None,
    which: str = "batch",
) -> torch.Tensor:
    """``fn`` applied to (the first ``n`` examples of) ``batch`` in :func:`length_chunks`, rows in the batch's order.

    Args:
        fn: a sub-batch (the keys of ``batch``: ``attention_mask`` etc. [b, L'] with L' ≤ L the chunk's longest
            example, other tensors [b, ...]) → a tensor [b, ...] with one row per example of the sub-batch.
        batch: a dict of tensors with ``attention_mask`` [N, L] and every other tensor indexed by example on dim 0.
        chunk: at most this many examples per call of ``fn`` (a positive integer).
        n: only the first ``n`` examples (:func:`take`); None for all of them.
        which: the batch's name in error messages.

    Returns:
        [N', ...] with N' = min(n, N) (N without ``n``): row i is ``fn``'s row for example i, whatever chunk it was
        computed in; dtype and device of ``fn``'s first output. Equals ``fn(batch)`` (up to float round-off) when
        ``fn``'s rows do not depend on trailing padding.
    """
    chunk = check_positive_int(chunk, "chunk")
    parts = length_chunks(take(batch, n), chunk)
    if not parts:
        raise LinftError(f"{which} is empty: pass at least one example")
    out: torch.Tensor | None = None
    total = sum(len(index) for index, _ in parts)
    for index, part in parts:
        rows = fn(part)
        if rows.shape[0] != len(index):
            raise LinftError(f"fn returned {rows.shape[0]} rows for a chunk of {len(index)} examples: one row each")
        if out is None:
            out = rows.new_empty((total, *rows.shape[1:]))
        out[index.to(out.device)] = rows
    return out


def join_tokens(first: Mapping[str, torch.Tensor], second: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The token tensors (:data:`TOKEN_KEYS` present in both) of ``first`` [N, L] then ``second`` [M, L] as one
    batch [N + M, L], e.g. training then held-out examples for one kernel call; other keys (``labels``) are dropped.

    Both must have the same padded width L (tokenize them to the same ``max_length``): padding one side here would
    need the model's pad token id, and a wrong one changes where a decoder reads its last token.
    """
    width, width2 = first["input_ids"].shape[1], second["input_ids"].shape[1]
    if width != width2:
        raise LinftError(f"cannot join batches of {width} and {width2} token columns: tokenize both to the same "
                         "max_length")
    keys = [k for k in TOKEN_KEYS if first.get(k) is not None and second.get(k) is not None]
    return {k: torch.cat([first[k], second[k].to(first[k].device)]) for k in keys}


def take(batch: Mapping[str, torch.Tensor], n: int | None) -> dict[str, torch.Tensor]:
    """The first ``n`` examples of a batch (all of them when ``n`` is None)."""
    return {k: v[:n] for k, v in batch.items()} if n is not None else dict(batch)


def to_device(batch: Mapping[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    """Every tensor of the batch on ``device``."""
    return {k: v.to(device) for k, v in batch.items()}
