"""linft.runspec: one checked spec, one prepare; the kernel points are apart from the fine-tuning set."""

import pytest
import torch

from linft import LinftError
from linft.runspec import LoraSpec, RunSpec, prepare


@pytest.mark.parametrize("build, words", [
    (lambda: RunSpec(head="both"), "head"),
    (lambda: RunSpec(kernel_points="elsewhere"), "kernel_points"),
    (lambda: RunSpec(n_train=0), "n_train must be an integer >= 1"),
    (lambda: RunSpec(n_train=16, n_kernel=32), "cannot be a prefix"),
    (lambda: RunSpec(kernel_points="same", n_train=64, n_kernel=32), "must equal n_train"),
    (lambda: RunSpec(task="nli"), "task 'nli' is unknown"),
    (lambda: LoraSpec(rank=0), "LoRA rank"),
    (lambda: LoraSpec(dropout=1.0), "dropout"),
    (lambda: LoraSpec(targets=()), "targets"),
    (lambda: RunSpec(lora="qv"), "LoraSpec"),
    (lambda: RunSpec(heldout_split="train"), "heldout_split"),
    (lambda: RunSpec(n_heldout=-1), "n_heldout must be an integer >= 0"),
])
def test_bad_specs_raise_one_clear_line(build, words):
    with pytest.raises(LinftError, match=words) as info:
        build()
    assert "\n" not in str(info.value)


def test_spec_round_trips_through_its_row():
    spec = RunSpec(task="subj", lora=LoraSpec(targets=("q", "ffn_in"), layers=(0, 5), rank=4, alpha=4.0),
                   n_train=128, n_kernel=64, n_heldout=100, seed=3, split_seed=1)
    row = spec.as_row()
    assert all(isinstance(v, str) for v in row.values())
    assert RunSpec.from_row(row) == spec
    default = RunSpec()
    assert RunSpec.from_row(default.as_row()) == default
    assert default.as_row()["layers"] == "all" and default.as_row()["alpha"] == ""
    chapter = RunSpec(task="mr", n_train=16, n_kernel=16, kernel_points="same", n_heldout=0, split_seed=3, seed=3,
                      heldout_split="validation", text_col="review", label_col="stars")
    assert RunSpec.from_row(chapter.as_row()) == chapter
    assert default.heldout_split == "test"  # the one held-out split, linft.runspec.HELDOUT_SPLIT
    assert not {"heldout_split", "text_col", "label_col"} & set(default.as_row())  # the study CSV's columns stay


def test_from_row_names_a_missing_field():
    row = RunSpec().as_row()
    del row["n_kernel"]
    with pytest.raises(LinftError, match="n_kernel"):
        RunSpec.from_row(row)


@pytest.fixture(scope="module")
def prepared(one_thread):
    spec = RunSpec(task="mr", lora=LoraSpec(targets=("q", "v"), rank=2), n_train=24, n_kernel=8, n_heldout=20,
                   max_length=16, seed=1)
    return prepare(spec)


def test_kernel_points_are_the_prefix_of_the_fine_tuning_set(prepared):
    assert prepared.kernel["labels"].shape == (8,) and prepared.train["labels"].shape == (24,)
    for name in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(prepared.kernel[name], prepared.train[name][:8])
    assert prepared.heldout["labels"].shape == (20,) and prepared.n_heldout == 20


def test_head_policy_decides_what_trains(prepared):
    trainable = [n for n, p in prepared.model.named_parameters() if p.requires_grad]
    assert any("classifier" in n for n in trainable) and any("lora_" in n for n in trainable)
    assert prepared.spec.kernel_params == "trainable"
    frozen = prepare(RunSpec(task="mr", lora=LoraSpec(rank=2), n_train=8, n_kernel=8, n_heldout=4, max_length=16,
                             head="frozen"))
    assert all("lora_" in n for n, p in frozen.model.named_parameters() if p.requires_grad)
    assert frozen.spec.kernel_params == "lora"


def test_held_out_examples_do_not_move_with_the_seed(prepared):
    other = prepare(RunSpec(task="mr", lora=LoraSpec(targets=("q", "v"), rank=2), n_train=24, n_kernel=8,
                            n_heldout=20, max_length=16, seed=2))
    assert torch.equal(other.heldout["input_ids"], prepared.heldout["input_ids"])
    assert not torch.equal(other.train["input_ids"], prepared.train["input_ids"])  # the seed draws the sample


def test_prepare_refuses_more_examples_than_the_split_has():
    with pytest.raises(LinftError, match="fewer than n_train"):
        prepare(RunSpec(task="vader-amazon", n_train=100_000, n_kernel=32, max_length=16))
