"""The standard MLP VAE for 28x28 images (Kingma & Welling 2014; the pytorch/examples recipe).

    encoder  x (B, 784) -> ReLU(x W1 + b1) (B, 400) -> [mu | logvar] (B, 2 * 20)
    sampler  z = mu + e^{logvar / 2} * eps,   eps from the counter-based stream
    decoder  z -> ReLU(z W3 + b3) (B, 400) -> logits (B, 784), Bernoulli p(x | z)

Loss per example, the negative ELBO:
    -ELBO(x) = sum_pixels BCE(logits, x) + beta * KL(q(z | x) || N(0, I))
with the KL in closed form, computed in the sampling node's own pass.

Other posteriors (``posterior`` = laplace, logistic, gumbel): the second head is log_scale,
z = loc + e^{log_scale} * eps with eps from that family (``reparameterize_family``), and the KL
has no closed form, so it is estimated by one-sample Monte Carlo with the z that is decoded:
    KL ~ sum_latent [log q(z | x) - log p(z)]
The mu and logvar heads are one (400, 40) product split in two: the same model as two
(400, 20) heads with PyTorch's init, at one matrix product instead of two.
"""
import dataclasses

import numpy as np

import minigrad as mg
from minigrad import nn
from minigrad.ops.families import FAMILIES, MOMENTS, log_prob

POSTERIORS = FAMILIES  # gaussian (closed-form KL, fused node) first, then the Monte-Carlo ones


@dataclasses.dataclass
class Loss:
    """Batch means of the loss and its two parts (Tensors; ``total`` is differentiable)."""

    total: mg.Tensor
    reconstruction: mg.Tensor
    kl: mg.Tensor


class VAE(nn.Module):
    """Encoder and decoder MLPs with one hidden ReLU layer each."""

    def __init__(self, input_dim=784, hidden_dim=400, latent_dim=20, rng=None, dtype=np.float32,
                 posterior="gaussian", kernel_backend=None):
        if posterior not in POSTERIORS:
            raise ValueError(f"VAE: unknown posterior {posterior!r}; known posteriors are "
                             f"{', '.join(POSTERIORS)}")
        rng = np.random.default_rng(0) if rng is None else rng
        self.input_dim, self.hidden_dim, self.latent_dim = input_dim, hidden_dim, latent_dim
        self.posterior = posterior
        # the Gaussian sampling node's kernel (kernels.forward's backend; None: by array type)
        self.kernel_backend = kernel_backend
        self.encoder_hidden = nn.Linear(input_dim, hidden_dim, dtype=dtype, rng=rng)
        self.encoder_heads = nn.Linear(hidden_dim, 2 * latent_dim, dtype=dtype, rng=rng)
        self.decoder_hidden = nn.Linear(latent_dim, hidden_dim, dtype=dtype, rng=rng)
        self.decoder_out = nn.Linear(hidden_dim, input_dim, dtype=dtype, rng=rng)

    def architecture(self):
        """The sizes and the posterior family that make two checkpoints compatible."""
        return {"input_dim": self.input_dim, "hidden_dim": self.hidden_dim,
                "latent_dim": self.latent_dim, "posterior": self.posterior}

    def encode(self, x):
        """The two heads of q(z | x), each (B, latent_dim): (mu, logvar) of N(mu, diag e^logvar)
        for the gaussian posterior, (loc, log_scale) of the location-scale family otherwise."""
        heads = self.encoder_heads(mg.relu(self.encoder_hidden(x)))      # (B, 2L)
        return heads[:, :self.latent_dim], heads[:, self.latent_dim:]

    def posterior_mean(self, x):
        """E_q[z | x], (B, latent_dim): loc + e^{log_scale} * (the standard family's mean),
        which is loc for every family here but the Gumbel."""
        loc, second = self.encode(x)
        mean, _ = MOMENTS[self.posterior]
        return loc if mean == 0 else loc + mg.exp(second) * mean

    def decode(self, z):
        """Bernoulli logits of p(x | z), (B, input_dim)."""
        return self.decoder_out(mg.relu(self.decoder_hidden(z)))

    def loss(self, x, stream, beta=1.0):
        """Batch mean of -ELBO with one sample of z drawn from ``stream``.

        Sampling and the KL term are one fused node (``reparameterize_kl``) with two outputs, z
        and the KL summed; the loss weighs the KL beta / batch, which is the cotangent its
        backward receives, so one fused kernel pass computes both gradients.
        """
        if self.posterior != "gaussian":
            return self.monte_carlo_loss(x, stream, beta, self.posterior)
        x = mg.as_tensor(x)
        batch = x.shape[0]
        mu, logvar = self.encode(x)
        z, kl_sum = mg.reparameterize_kl(mu, logvar, stream=stream, backend=self.kernel_backend)
        logits = self.decode(z)
        reconstruction = mg.binary_cross_entropy_with_logits(logits, x, reduction="sum") / batch
        kl = kl_sum / batch
        return Loss(reconstruction + kl * beta, reconstruction, kl)

    def monte_carlo_loss(self, x, stream, beta, family):
        """Batch mean of -ELBO with the second head read as log_scale of ``family`` and the KL
        estimated by one-sample Monte Carlo: sum_latent [log q(z | x) - log p(z)] at the
        decoded z, differentiated through z and q's parameters (unbiased for the KL's gradient).

        The loss of every non-gaussian posterior; with family "gaussian" it is the Gaussian
        model read through log_scale = logvar / 2 (tests compare it with the closed form).
        """
        x = mg.as_tensor(x)
        batch = x.shape[0]
        loc, log_scale = self.encode(x)
        z = mg.reparameterize_family(loc, log_scale, family, stream=stream)       # (B, L)
        logits = self.decode(z)
        reconstruction = mg.binary_cross_entropy_with_logits(logits, x, reduction="sum") / batch
        log_ratio = log_prob(z, loc, log_scale, family) - log_prob(z, 0.0, 0.0, "gaussian")
        kl = log_ratio.sum() / batch
        return Loss(reconstruction + kl * beta, reconstruction, kl)

    def sample_latent(self, x, stream):
        """One z ~ q(z | x) per row of x, drawn from ``stream``."""
        first, second = self.encode(x)
        if self.posterior == "gaussian":
            return mg.reparameterize(first, second, stream=stream, backend=self.kernel_backend)
        return mg.reparameterize_family(first, second, self.posterior, stream=stream)

    def forward(self, x, stream):
        """Reconstruction logits for x through one sampled z."""
        return self.decode(self.sample_latent(x, stream))
