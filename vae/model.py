"""The standard MLP VAE for 28x28 images (Kingma & Welling 2014; the pytorch/examples recipe).

    encoder  x (B, 784) -> ReLU(x W1 + b1) (B, 400) -> [mu | logvar] (B, 2 * 20)
    sampler  z = mu + e^{logvar / 2} * eps,   eps from the counter-based stream
    decoder  z -> ReLU(z W3 + b3) (B, 400) -> logits (B, 784), Bernoulli p(x | z)

Loss per example, the negative ELBO:
    -ELBO(x) = sum_pixels BCE(logits, x) + beta * KL(q(z | x) || N(0, I))
with the KL in closed form, computed in the sampling node's own pass.
The mu and logvar heads are one (400, 40) product split in two: the same model as two
(400, 20) heads with PyTorch's init, at one matrix product instead of two.
"""
import dataclasses

import numpy as np

import minigrad as mg
from minigrad import nn


@dataclasses.dataclass
class Loss:
    """Batch means of the loss and its two parts (Tensors; ``total`` is differentiable)."""

    total: mg.Tensor
    reconstruction: mg.Tensor
    kl: mg.Tensor


class VAE(nn.Module):
    """Encoder and decoder MLPs with one hidden ReLU layer each."""

    def __init__(self, input_dim=784, hidden_dim=400, latent_dim=20, rng=None, dtype=np.float32):
        rng = np.random.default_rng(0) if rng is None else rng
        self.input_dim, self.hidden_dim, self.latent_dim = input_dim, hidden_dim, latent_dim
        self.encoder_hidden = nn.Linear(input_dim, hidden_dim, dtype=dtype, rng=rng)
        self.encoder_heads = nn.Linear(hidden_dim, 2 * latent_dim, dtype=dtype, rng=rng)
        self.decoder_hidden = nn.Linear(latent_dim, hidden_dim, dtype=dtype, rng=rng)
        self.decoder_out = nn.Linear(hidden_dim, input_dim, dtype=dtype, rng=rng)

    def architecture(self):
        """The sizes that make two checkpoints compatible."""
        return {"input_dim": self.input_dim, "hidden_dim": self.hidden_dim,
                "latent_dim": self.latent_dim}

    def encode(self, x):
        """q(z | x) = N(mu, diag e^logvar): returns (mu, logvar), each (B, latent_dim)."""
        heads = self.encoder_heads(mg.relu(self.encoder_hidden(x)))      # (B, 2L)
        return heads[:, :self.latent_dim], heads[:, self.latent_dim:]

    def decode(self, z):
        """Bernoulli logits of p(x | z), (B, input_dim)."""
        return self.decoder_out(mg.relu(self.decoder_hidden(z)))

    def loss(self, x, stream, beta=1.0):
        """Batch mean of -ELBO with one sample of z drawn from ``stream``.

        Sampling and the KL term are one fused node (``reparameterize_kl``): its backward adds
        the KL's gradient, weighted beta / batch as in the loss, so the KL is added to the loss
        as a value only.
        """
        x = mg.as_tensor(x)
        batch = x.shape[0]
        mu, logvar = self.encode(x)
        z, kl_sum = mg.reparameterize_kl(mu, logvar, beta / batch, stream=stream)
        logits = self.decode(z)
        reconstruction = mg.binary_cross_entropy_with_logits(logits, x, reduction="sum") / batch
        kl = kl_sum / batch
        return Loss(reconstruction + kl * beta, reconstruction, kl)

    def forward(self, x, stream):
        """Reconstruction logits for x through one sampled z."""
        mu, logvar = self.encode(x)
        return self.decode(mg.reparameterize(mu, logvar, stream=stream))
