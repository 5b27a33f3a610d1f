"""linft.functional.batch_logits: the logits of the padded batch, computed on length-sorted, trimmed chunks."""

import pytest
import torch

from linft import LinftError
from linft.functional import batch_logits


def test_batch_logits_equal_the_padded_forward_in_the_batch_order(tiny_lora, one_thread):
    texts = ["short", "a much longer sentence about a film that goes on and on", "mid length text here", "ok",
             "another rather long review of a movie with many words in it"]
    model, batch = tiny_lora(texts, [0, 1, 0, 1, 0], max_length=24)
    model.train()  # dropout on: batch_logits must switch it off and restore the flag
    with torch.no_grad():
        model.eval()
        plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.double()
        model.train()
    out = batch_logits(model, batch, chunk=2)
    assert out.shape == (5, 2) and out.dtype == torch.float64
    assert torch.allclose(out, plain, atol=1e-5)
    assert model.training
    with pytest.raises(LinftError, match="empty"):
        batch_logits(model, {k: v[:0] for k, v in batch.items()})
