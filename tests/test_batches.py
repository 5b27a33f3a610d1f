"""linft.batches: trimming padding drops only the columns every example masks, and length chunks cover every example
once with each chunk cut to its longest example; apply_in_length_chunks puts fn's rows back in the batch's order."""

import pytest
import torch

from linft import LinftError
from linft.batches import apply_in_length_chunks, join_tokens, length_chunks, trim_padding


def _batch(lengths, width=8, left=False):
    n = len(lengths)
    mask = torch.zeros(n, width, dtype=torch.long)
    for i, k in enumerate(lengths):
        if left:
            mask[i, width - k:] = 1
        else:
            mask[i, :k] = 1
    ids = torch.arange(n * width).reshape(n, width) * mask
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.arange(n)}


def test_trim_padding_cuts_only_all_masked_columns():
    batch = _batch([3, 5, 2])
    out = trim_padding(batch)
    assert out["input_ids"].shape == (3, 5) and out["attention_mask"].shape == (3, 5)
    assert torch.equal(out["input_ids"], batch["input_ids"][:, :5]) and torch.equal(out["labels"], batch["labels"])
    assert out["attention_mask"].sum() == batch["attention_mask"].sum()  # no real token lost
    left = _batch([3, 5, 2], left=True)
    assert trim_padding(left)["input_ids"].shape == (3, 8)  # left padding: nothing to cut at the right
    full = _batch([8, 1])
    assert trim_padding(full)["input_ids"].shape == (2, 8)


def test_length_chunks_cover_every_example_once_shortest_first():
    batch = _batch([7, 1, 4, 4, 2, 8, 3])
    chunks = length_chunks(batch, 3)
    order = torch.cat([index for index, _ in chunks])
    assert sorted(order.tolist()) == list(range(7)) and [len(i) for i, _ in chunks] == [3, 3, 1]
    widths = [part["input_ids"].shape[1] for _, part in chunks]
    assert widths == [3, 7, 8]  # each chunk cut to its longest example: lengths (1, 2, 3), (4, 4, 7), (8,)
    for index, part in chunks:
        assert torch.equal(part["labels"], batch["labels"][index])
        assert torch.equal(part["attention_mask"].sum(1), batch["attention_mask"][index].sum(1))


def test_length_chunks_of_an_empty_batch():
    assert length_chunks({k: v[:0] for k, v in _batch([3]).items()}, 4) == []


def _masked_summary(part):
    """Per example: (sum of unmasked ids, number of unmasked tokens, label) [b, 3] float64: blind to trailing padding,
    so chunked and whole-batch results must agree exactly; the label column pins each row to its example."""
    mask = part["attention_mask"]
    ids = part["input_ids"] * mask
    return torch.stack([ids.sum(1), mask.sum(1), part["labels"]], 1).double()


def test_apply_in_length_chunks_equals_fn_on_the_whole_padded_batch_in_order():
    lengths = [5, 1, 8, 3, 3, 7, 2, 6, 4, 1, 8]
    order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist()
    batch = _batch([lengths[i] for i in order], width=10)  # shuffled lengths, padded wider than the longest
    whole = _masked_summary(batch)
    widths = []

    def fn(part):
        widths.append(part["input_ids"].shape[1])
        return _masked_summary(part)

    for chunk in (1, 3, 4, 11, 50):
        widths.clear()
        out = apply_in_length_chunks(fn, batch, chunk)
        assert out.shape == (11, 3) and out.dtype == torch.float64
        assert torch.equal(out, whole)  # rows in the batch's order, not the length order
        assert torch.equal(out[:, 2], torch.arange(11.0))
        assert max(widths) == 8 and len(widths) == -(-11 // chunk)  # trimmed chunks of at most `chunk` examples
    first = apply_in_length_chunks(_masked_summary, batch, 3, n=4)
    assert torch.equal(first, whole[:4])  # n: only the first n examples, still in order
    assert torch.equal(apply_in_length_chunks(lambda p: p["labels"], batch, 2), batch["labels"])  # 1-d rows


def test_apply_in_length_chunks_rejects_a_bad_chunk_an_empty_batch_and_missing_rows():
    batch = _batch([3, 1, 2])
    for bad in (0, -2, 1.5, True, None):
        with pytest.raises(LinftError, match="chunk must be a positive integer"):
            apply_in_length_chunks(_masked_summary, batch, bad)
    with pytest.raises(LinftError, match="empty"):
        apply_in_length_chunks(_masked_summary, {k: v[:0] for k, v in batch.items()}, 2)
    with pytest.raises(LinftError, match="rows for a chunk"):
        apply_in_length_chunks(lambda p: _masked_summary(p)[:1], batch, 2)


def test_join_tokens_puts_the_first_batch_first_and_drops_labels():
    first = {"input_ids": torch.tensor([[5, 6, 0]]), "attention_mask": torch.tensor([[1, 1, 0]]),
             "labels": torch.tensor([1])}
    second = {"input_ids": torch.tensor([[7, 8, 9], [2, 0, 0]]), "attention_mask": torch.tensor([[1, 1, 1], [1, 0, 0]]),
              "token_type_ids": torch.zeros(2, 3, dtype=torch.long), "labels": torch.tensor([0, 1])}
    joined = join_tokens(first, second)
    assert set(joined) == {"input_ids", "attention_mask"}  # labels dropped; token_type_ids only when both have it
    assert torch.equal(joined["input_ids"], torch.tensor([[5, 6, 0], [7, 8, 9], [2, 0, 0]]))
    assert torch.equal(joined["attention_mask"], torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]]))


def test_join_tokens_refuses_batches_of_different_widths():
    first = {"input_ids": torch.ones(1, 3, dtype=torch.long), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    second = {"input_ids": torch.ones(1, 5, dtype=torch.long), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    with pytest.raises(LinftError, match="3 and 5 token columns: tokenize both to the same max_length"):
        join_tokens(first, second)
