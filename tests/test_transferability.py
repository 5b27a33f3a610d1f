"""linft.transferability: LogME of a kernel is LogME of the Jacobian features whose Gram matrix it is."""

import pytest
import torch

from linft import LinftError, ntk
from linft.transferability import logme, logme_from_kernel

TEXTS = ["a fine film", "dull and long", "great fun", "a mess", "moving and wise", "tedious", "sharp", "flat"]
LABELS = [1, 0, 1, 0, 1, 0, 1, 0]


def test_logme_from_kernel_equals_logme_on_explicit_jacobian_features(tiny_lora, one_thread):
    model, batch = tiny_lora(TEXTS, LABELS)
    J, _ = ntk.explicit_jacobian(model, batch, params="lora")  # [N, C, P]
    features = J.reshape(J.shape[0], -1)  # the outputs' gradients side by side: Gram = Σ_c K[:, :, c, c]
    K = ntk.empirical_ntk(model, batch, params="lora", kernel="sgd")
    expected = logme(features, batch["labels"])
    dim = features.shape[1]
    assert logme_from_kernel(K, batch["labels"], n_features=dim) == pytest.approx(expected, rel=1e-6)
    assert logme_from_kernel(K.values, batch["labels"], n_features=dim) == pytest.approx(expected, rel=1e-6)
    # the default is LogME of the kernel's N eigen-features: the estimator on those, and not LogME(J) (D ≠ N)
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.diagonal(K.values, dim1=2, dim2=3).sum(-1))
    own = logme(eigenvectors * eigenvalues.clamp_min(0).sqrt(), batch["labels"])
    assert logme_from_kernel(K, batch["labels"]) == pytest.approx(own, rel=1e-9)
    assert logme_from_kernel(K, batch["labels"]) != pytest.approx(expected, rel=1e-3)


def test_the_svd_form_equals_the_estimator_on_random_features():
    g = torch.Generator().manual_seed(3)
    labels = torch.tensor([0, 1, 2] * 7)
    for dim in (5, 21, 60):  # fewer, as many and more features than examples
        features = torch.randn(21, dim, generator=g, dtype=torch.float64)
        K = features @ features.T
        assert logme_from_kernel(K, labels, n_features=dim) == pytest.approx(logme(features, labels), rel=1e-6)


def test_logme_prefers_features_that_carry_the_labels():
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1] * 20)
    noise = torch.randn(40, 5, generator=g, dtype=torch.float64)
    informative = torch.cat([labels[:, None].double() * 3, noise[:, 1:]], dim=1)
    assert logme(informative, labels) > logme(noise, labels)


def test_bad_inputs_raise():
    with pytest.raises(LinftError, match="two classes"):
        logme(torch.randn(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(LinftError, match="labels for"):
        logme(torch.randn(4, 2), torch.tensor([0, 1]))
    with pytest.raises(LinftError, match="n_features"):
        logme_from_kernel(torch.eye(3), torch.tensor([0, 1, 0]), n_features=0)
    with pytest.raises(LinftError, match="square"):
        logme_from_kernel(torch.randn(3, 4), torch.tensor([0, 1, 0]))
