"""linft.experiments at smoke size, the shared task set-up and chapter 0: consistent tables and numbers."""

import torch

from linft import data, models
from linft.experiments import models_tasks, setup_task

TASKS = ["mr", "subj"]


def test_setup_task_is_seeded_and_sized(cfg, setup):
    again = setup_task("mr", cfg, seed=0)
    assert setup.train["input_ids"].shape == (8, 16) and setup.eval["labels"].shape == (8,)
    assert setup.num_labels == len(data.get_task("mr").label_names)
    for key in setup.train:
        assert torch.equal(setup.train[key], again.train[key])
    a, b = dict(setup.model.named_parameters()), dict(again.model.named_parameters())
    assert all(torch.equal(a[n], b[n]) for n in a)
    counts = models.count_parameters(setup.model)
    assert counts["lora"] > 0 and counts["head"] > 0


def test_lora_sizes_and_examples(cfg):
    table = models_tasks.lora_sizes(cfg.model, rank=2)
    assert list(table.index) == list(models_tasks.LORA_TARGET_CHOICES)
    qv, all_ = table.loc["query, value", "LoRA params"], table.loc["all of the above", "LoRA params"]
    assert 0 < qv < all_
    rows = models_tasks.example_rows(TASKS, n=2)
    assert len(rows) == 4 and rows["text"].str.len().max() <= 161


def test_sanity_run_reports_what_it_ran(cfg, one_thread):
    run = models_tasks.sanity_run("mr", cfg)
    assert run.headline["steps"] == cfg.train_steps and run.headline["n_eval"] == cfg.n_eval
    assert run.log["step"].iloc[-1] == cfg.train_steps
    assert 0 <= run.majority <= 1 and ("beats" in run.verdict)


def test_setup_task_keeps_the_chapters_draws(cfg, setup):
    """Through linft.runspec.prepare the chapters keep their samples: split, train, validation drawn with the seed."""
    splits = data.load_task("mr", seed=0)
    for name, split, n in (("train", "train", cfg.n_train), ("eval", "validation", cfg.n_eval)):
        expected = data.as_batch(data.tokenize(data.subsample(splits[split], n, seed=0), setup.tokenizer,
                                               cfg.max_length))
        for key in expected:
            assert torch.equal(getattr(setup, name)[key], expected[key]), (name, key)
