"""The VAE's loss: the fused sampling+KL node gives the loss and gradients of the plain graph."""
import numpy as np
import pytest

import minigrad as mg
from minigrad.random import Stream
from vae.model import VAE


@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_fused_loss_matches_the_unfused_graph(beta):
    model = VAE(16, 8, 3, rng=np.random.default_rng(0), dtype=np.float64)
    x = np.random.default_rng(1).random((5, 16))
    fused = model.loss(x, Stream(3), beta=beta)
    fused.total.backward()
    fused_grads = [p.grad.copy() for p in model.parameters()]

    model.zero_grad()
    mu, logvar = model.encode(x)
    z = mg.reparameterize(mu, logvar, stream=Stream(3))
    reconstruction = mg.binary_cross_entropy_with_logits(model.decode(z), x, reduction="sum") / 5
    kl = mg.gaussian_kl(mu, logvar) / 5
    plain = reconstruction + beta * kl
    plain.backward()

    np.testing.assert_allclose(fused.total.item(), plain.item(), rtol=1e-14)
    np.testing.assert_allclose(fused.kl.item(), kl.item(), rtol=1e-14)
    np.testing.assert_allclose(fused.reconstruction.item(), reconstruction.item(), rtol=1e-14)
    for (name, p), g in zip(model.named_parameters(), fused_grads):
        np.testing.assert_allclose(g, p.grad, rtol=1e-12, atol=1e-15, err_msg=name)


def test_parameters_are_float32_by_default_and_heads_split_in_two():
    model = VAE()
    assert {p.dtype for p in model.parameters()} == {np.dtype(np.float32)}
    mu, logvar = model.encode(np.zeros((2, 784), np.float32))
    assert mu.shape == logvar.shape == (2, 20)
    assert model.decode(mu).shape == (2, 784)
