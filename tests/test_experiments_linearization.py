"""linft.experiments at smoke size, chapter 1's protocols: consistent tables and the numbers the chapter quotes."""

import pytest
import torch

from linft.experiments import linearization, setup_task
from linft.scales import get_scale

TASKS = ["mr", "subj"]


@pytest.fixture(scope="module")
def cfg():
    return get_scale("smoke", n_train=8, n_eval=8, ntk_n=8, max_length=16, train_steps=2, batch_size=4,
                     lambdas=(0.0, 50.0))


@pytest.fixture(scope="module")
def setup(cfg, one_thread):
    return setup_task("mr", cfg, seed=0)


def test_real_vs_linearized_starts_together(cfg, setup):
    sweep = linearization.real_vs_linearized(setup, cfg, gap_n=4)
    assert list(sweep.summary.index) == list(cfg.lambdas)
    assert set(sweep.logs["kind"]) == {"real", "linearized"}
    start = sweep.logs[(sweep.logs["step"] == 0) & (sweep.logs["kind"] == "real")]
    assert (start["rel_gap_eval"] < 1e-4).all()  # real and linearized model are the same function at θ0
    assert len(sweep.outputs) == len(cfg.lambdas) * cfg.n_eval
    assert set(sweep.headline) == {f"lam={lam:g}" for lam in cfg.lambdas}
    assert sweep.text["lm_lam_hi"] == "50"


def test_margins():
    two = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    three = torch.tensor([[0.0, 3.0, 1.0]])
    assert torch.equal(linearization.margins(two), torch.tensor([1.0, -3.0]))
    assert torch.equal(linearization.margins(three), torch.tensor([2.0]))
