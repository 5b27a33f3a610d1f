"""linft.batches: trimming padding drops only the columns every example masks, and length chunks cover every example
once with each chunk cut to its longest example."""

import torch

from linft.batches import length_chunks, trim_padding


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
