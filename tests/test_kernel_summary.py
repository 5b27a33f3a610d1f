"""linft.kernel_summary against explicit linear algebra and autograd."""

import math

import pytest
import torch

from linft import ntk
from linft.kernel_summary import gradient_norm, summarize


def test_summary_numbers_are_those_of_the_eigenvalues():
    g = torch.Generator().manual_seed(0)
    J = torch.randn(6, 2, 20, generator=g, dtype=torch.float64)  # [N, C, P], P > N·C: full rank
    K = torch.einsum("icp,jdp->ijcd", J, J)
    summary = summarize(K, lam=0.1)
    mu = torch.linalg.eigvalsh(J.reshape(12, 20) @ J.reshape(12, 20).T)
    assert summary.lambda_max == pytest.approx(float(mu[-1]), rel=1e-10)
    assert summary.lambda_min == pytest.approx(float(mu[0]), rel=1e-8)
    assert summary.kappa == pytest.approx(float(mu[-1] / mu[0]), rel=1e-8)
    assert summary.kappa_lambda == pytest.approx(float((mu[-1] + 0.6) / (mu[0] + 0.6)), rel=1e-8)
    assert summary.trace == pytest.approx(float(mu.sum()), rel=1e-10)
    assert math.isnan(summary.kr_acc) and summary.n_examples == 6


def test_singular_kernel_has_infinite_kappa():
    J = torch.randn(5, 1, 3, dtype=torch.float64)
    K = torch.einsum("icp,jdp->ijcd", J, J)  # rank 3 < 5
    assert summarize(K).kappa == math.inf


def test_gradient_norm_equals_autograd(tiny_lora, one_thread):
    model, batch = tiny_lora(["a fine film", "dull and long", "great fun", "a mess"], [1, 0, 1, 0])
    K = ntk.empirical_ntk(model, batch, params="trainable", kernel="sgd")
    model.zero_grad()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.nn.functional.cross_entropy(logits, batch["labels"]).backward()
    explicit = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters() if p.requires_grad))
    assert gradient_norm(K, K.outputs, batch["labels"]) == pytest.approx(float(explicit), rel=1e-5)


def test_kernel_regression_accuracy_of_a_kernel_that_separates_the_classes():
    X = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    eye = torch.eye(2, dtype=torch.float64)
    K = (X @ X.T)[:, :, None, None] * eye  # [N, N, C, C], the same kernel for both outputs
    test = torch.tensor([[1.0, 0.05], [0.05, 1.0]], dtype=torch.float64)
    K_test = (test @ X.T)[:, :, None, None] * eye
    summary = summarize(K, K_test=K_test, f0=torch.zeros(4, 2), f0_test=torch.zeros(2, 2), labels=labels,
                        labels_test=torch.tensor([0, 1]), lam=1e-3)
    assert summary.kr_acc == 1.0
    wrong = summarize(K, K_test=K_test, f0=torch.zeros(4, 2), f0_test=torch.zeros(2, 2), labels=labels,
                      labels_test=torch.tensor([1, 0]), lam=1e-3)
    assert wrong.kr_acc == 0.0


def test_asymmetric_kernel_kappa_is_the_singular_condition_number():
    import numpy as np

    g = torch.Generator().manual_seed(1)
    J = torch.randn(5, 2, 30, generator=g, dtype=torch.float64)
    K = torch.einsum("icp,jdp->ijcd", J, torch.sign(J))  # ⟨∇f, sign ∇f'⟩: not symmetric
    matrix = K.permute(0, 2, 1, 3).reshape(10, 10)
    summary = summarize(K, asymmetric=True)
    assert summary.kappa == pytest.approx(float(np.linalg.cond(matrix.numpy())), rel=1e-8)
    sym = torch.linalg.eigvalsh((matrix + matrix.T) / 2)
    assert summary.lambda_min == pytest.approx(float(sym[0])) and summary.lambda_max == pytest.approx(float(sym[-1]))
    assert summary.trace == pytest.approx(float(torch.trace(matrix)))
    with pytest.raises(Exception, match="not symmetric"):
        summarize(K)  # a symmetric summary refuses it
