"""The VAE's posterior families: every one trains (finite, decreasing loss), the one-sample
Monte-Carlo KL is unbiased for the KL and its gradient (against closed forms), importance weighting
uses the family's log q, the posterior is saved and a checkpoint of another one is refused."""
import json
import math
import os

import numpy as np
import pytest

import minigrad as mg
from minigrad.ops.families import log_prob
from minigrad.random import Stream
from vae import checkpoint, cli, run_folder, train
from vae import evaluate as ev
from vae.checkpoint import CheckpointError
from vae.model import POSTERIORS, VAE
from vae_fixtures import mnist, silent

EULER_GAMMA = 0.5772156649015329
TINY = dict(train_subset=256, test_subset=128, hidden_dim=16, latent_dim=2, batch_size=64)
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@pytest.fixture(scope="module")
def dataset():
    return mnist()


def tiny_config(out, **overrides):
    return train.Config(**dict(TINY, out=str(out), epochs=1, quiet=True) | overrides)


def float64_vae(posterior, seed=0):
    return VAE(6, 5, 3, rng=np.random.default_rng(seed), dtype=np.float64, posterior=posterior)


# --- training -------------------------------------------------------------------------------------
@pytest.mark.parametrize("posterior", POSTERIORS)
def test_each_posterior_trains_with_finite_decreasing_loss(dataset, tmp_path, posterior):
    config = tiny_config(tmp_path, epochs=3, posterior=posterior)
    train.run(config, dataset=dataset, log=silent)
    metrics = run_folder.read_metrics(config.out)
    losses = [record["train_loss"] for record in metrics]
    tests = [record["test_neg_elbo"] for record in metrics]
    assert all(math.isfinite(value) for value in losses + tests)
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0] - 5, losses
    assert tests[-1] < tests[0], tests
    assert metrics[0]["convention"] == ev.convention("none", posterior=posterior)


def test_conventions_name_the_monte_carlo_kl_and_the_family():
    assert ev.convention("none", posterior="gaussian") == ev.convention("none")
    assert ev.convention("none", posterior="laplace") == (
        "continuous-pixel BCE; one-sample ELBO, KL by one-sample Monte Carlo; laplace posterior")
    assert ev.convention("dynamic", 100, "gumbel") == (
        "dynamically binarized Bernoulli; importance-weighted bound, K=100; gumbel posterior")


def test_gaussian_keeps_the_fused_closed_form_path():
    model = float64_vae("gaussian")
    x = np.random.default_rng(0).random((4, 6))
    loss = model.loss(x, Stream(3))
    mu, logvar = model.encode(x)
    assert loss.kl.item() == pytest.approx(mg.gaussian_kl(mu, logvar).item() / 4, rel=1e-12)
    assert loss.total.op == "add" and "reparameterize_kl" in mg.format_graph(loss.total)


# --- the Monte-Carlo KL ---------------------------------------------------------------------------
def closed_form_kl(family, loc, log_scale):
    """KL(q || N(0, 1)) per element = -H(q) + ln(2 pi) / 2 + E_q[z^2] / 2, from each family's
    entropy and first two moments (b = e^log_scale)."""
    b = np.exp(log_scale)
    entropy, mean, variance = {
        "gaussian": (log_scale + 0.5 + HALF_LOG_2PI, loc, b ** 2),
        "laplace": (1 + np.log(2 * b), loc, 2 * b ** 2),
        "logistic": (log_scale + 2, loc, b ** 2 * math.pi ** 2 / 3),
        "gumbel": (log_scale + EULER_GAMMA + 1, loc + b * EULER_GAMMA, b ** 2 * math.pi ** 2 / 6),
    }[family]
    return -entropy + HALF_LOG_2PI + (mean ** 2 + variance) / 2


def within_five_standard_errors(per_sample, expected):
    """The mean over axis 0 of ``per_sample`` (N, 3) is within 5 of its standard errors."""
    standard_error = per_sample.std(axis=0) / math.sqrt(len(per_sample))
    return np.all(np.abs(per_sample.mean(axis=0) - expected) < 5 * standard_error + 1e-12)


def closed_form_kl_weightients(family, loc, log_scale, step=1e-6):
    """(d/d loc, d/d log_scale) of closed_form_kl per element, by central differences."""
    return [(closed_form_kl(family, loc + step * (i == 0), log_scale + step * (i == 1))
             - closed_form_kl(family, loc - step * (i == 0), log_scale - step * (i == 1)))
            / (2 * step) for i in (0, 1)]


@pytest.mark.parametrize("family", POSTERIORS)
def test_monte_carlo_kl_and_its_gradient_are_unbiased(family):
    samples = 20000
    loc = mg.Tensor(np.array([0.3, -1.2, 0.0]), requires_grad=True)
    log_scale = mg.Tensor(np.array([-0.5, 0.2, 0.0]), requires_grad=True)
    ones = np.ones((samples, 3))
    loc_k, log_scale_k = loc * ones, log_scale * ones                     # (N, 3) each
    loc_k.retain_grad()
    log_scale_k.retain_grad()
    z = mg.reparameterize_family(loc_k, log_scale_k, family, seed=42, offset=1)
    per_sample = log_prob(z, loc_k, log_scale_k, family) - log_prob(z, 0.0, 0.0, "gaussian")
    per_sample.mean(axis=0).sum().backward()
    assert within_five_standard_errors(per_sample.numpy(),
                                       closed_form_kl(family, loc.data, log_scale.data))
    # each sample's own gradient is N times its share of the mean's
    expected_loc, expected_log_scale = closed_form_kl_weightients(family, loc.data, log_scale.data)
    assert within_five_standard_errors(samples * loc_k.grad, expected_loc)
    assert within_five_standard_errors(samples * log_scale_k.grad, expected_log_scale)
    assert np.allclose(loc.grad, loc_k.grad.sum(axis=0))


def test_model_generic_path_for_the_gaussian_matches_the_closed_form_kl():
    """The model's Monte-Carlo loss with family gaussian (second head read as log_scale) averages
    to gaussian_kl(mu, 2 log_scale), and its reconstruction is that of the same z."""
    model = float64_vae("gaussian", seed=1)
    x = np.random.default_rng(1).random((5, 6))
    loc, log_scale = (t.numpy() for t in model.encode(x))
    closed = mg.gaussian_kl(loc, 2 * log_scale).item() / 5
    stream = Stream(9)
    estimates = [model.monte_carlo_loss(x, stream, 1.0, "gaussian").kl.item() for _ in range(2000)]
    standard_error = np.std(estimates) / math.sqrt(len(estimates))
    assert abs(np.mean(estimates) - closed) < 5 * standard_error


@pytest.mark.parametrize("family", POSTERIORS[1:])
def test_family_loss_is_minus_the_log_weight_of_the_same_draw(family):
    """One-sample -ELBO of the training loss = -log w of importance weighting at the same z."""
    model = float64_vae(family, seed=2)
    x = np.random.default_rng(2).random((4, 6))
    loss = model.loss(x, Stream(17, offset=5))
    eps = ev.posterior_noise(model, (1, 4, 3), Stream(17, offset=5))
    log_w = ev.log_importance_weights(model, x, eps)                     # (1, 4)
    assert loss.total.item() == pytest.approx(-log_w.mean(), rel=1e-12)


@pytest.mark.parametrize("family", POSTERIORS[1:])
def test_importance_weights_use_the_familys_density(family):
    from scipy import stats
    scipy_family = {"laplace": stats.laplace, "logistic": stats.logistic,
                    "gumbel": stats.gumbel_r}[family]
    model = float64_vae(family, seed=3)
    x = np.random.default_rng(3).random((2, 6))
    eps = ev.posterior_noise(model, (4, 2, 3), Stream(1))
    loc, log_scale = (t.numpy() for t in model.encode(x))
    z = loc + np.exp(log_scale) * eps                                      # (4, 2, 3)
    logits = model.decode(z.reshape(8, 3)).numpy().reshape(4, 2, 6)
    log_px_z = (x * -np.logaddexp(0, -logits) + (1 - x) * -np.logaddexp(0, logits)).sum(-1)
    log_pz = stats.norm.logpdf(z).sum(-1)
    log_qz = scipy_family.logpdf(z, loc=loc, scale=np.exp(log_scale)).sum(-1)
    np.testing.assert_allclose(ev.log_importance_weights(model, x, eps),
                               log_px_z + log_pz - log_qz, rtol=1e-10)


def test_iw_bound_of_a_family_tightens_with_k():
    model = float64_vae("laplace", seed=4)
    x = np.random.default_rng(4).random((6, 6))
    one = np.mean([ev.importance_weighted_bound(model, x, 1, seed=s) for s in range(200)])
    many = ev.importance_weighted_bound(model, x, 200, seed=0)
    assert many < one


def test_gumbel_posterior_mean_includes_the_scale_times_euler_gamma():
    model = float64_vae("gumbel", seed=5)
    x = np.random.default_rng(5).random((3, 6))
    loc, log_scale = (t.numpy() for t in model.encode(x))
    np.testing.assert_allclose(model.posterior_mean(x).numpy(),
                               loc + np.exp(log_scale) * EULER_GAMMA, rtol=1e-14)
    laplace = float64_vae("laplace", seed=5)
    assert np.array_equal(laplace.posterior_mean(x).numpy(), laplace.encode(x)[0].numpy())


def test_unknown_posterior_is_refused():
    with pytest.raises(ValueError, match="known posteriors are gaussian, laplace, logistic"):
        VAE(4, 3, 2, posterior="student_t")
    with pytest.raises(ValueError, match="posterior must be one of"):
        train.Config(posterior="cauchy").validate()


# --- saved runs -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def laplace_run(dataset, tmp_path_factory):
    config = tiny_config(tmp_path_factory.mktemp("laplace"), posterior="laplace")
    return config, train.run(config, dataset=dataset, log=silent)


def test_posterior_is_in_config_json_and_the_checkpoint(laplace_run):
    config, _ = laplace_run
    with open(os.path.join(config.out, "config.json")) as f:
        assert json.load(f)["posterior"] == "laplace"
    _, metadata = checkpoint.load(os.path.join(config.out, train.CHECKPOINT))
    assert metadata["config"]["posterior"] == "laplace"


@pytest.mark.parametrize("other", ["gaussian", "gumbel"])
def test_checkpoint_of_another_posterior_is_refused(laplace_run, dataset, other):
    config, _ = laplace_run
    trainer = train.Trainer(tiny_config(config.out, posterior=other), dataset)
    with pytest.raises(CheckpointError, match=f"posterior=laplace.*posterior={other}"):
        trainer.restore(os.path.join(config.out, train.CHECKPOINT))


def test_resume_keeps_the_posterior_and_matches_a_straight_run(dataset, tmp_path):
    straight = train.run(tiny_config(tmp_path / "a", epochs=2, posterior="logistic"),
                         dataset=dataset, log=silent)
    train.run(tiny_config(tmp_path / "b", posterior="logistic"), dataset=dataset, log=silent)
    resumed = train.run(tiny_config(tmp_path / "b", epochs=2, posterior="logistic"),
                        resume=True, dataset=dataset, log=silent)
    for name, value in straight.model.state_dict().items():
        assert np.array_equal(value, resumed.model.state_dict()[name]), name


def test_checkpoint_from_before_posteriors_loads_as_gaussian(dataset, tmp_path):
    config = tiny_config(tmp_path)
    train.run(config, dataset=dataset, log=silent)
    path = os.path.join(config.out, train.CHECKPOINT)
    arrays, metadata = checkpoint.load(path)
    del metadata["config"]["posterior"]
    checkpoint.save(path, arrays, metadata)
    train.Trainer(config, dataset).restore(path)
    with pytest.raises(CheckpointError, match="posterior=gaussian.*posterior=laplace"):
        train.Trainer(tiny_config(tmp_path, posterior="laplace"), dataset).restore(path)


def test_cli_trains_a_posterior_and_resume_keeps_it(tmp_path, capsys):
    out = str(tmp_path / "run")
    flags = ["--train-subset", "256", "--test-subset", "128", "--hidden-dim", "16",
             "--latent-dim", "2", "--batch-size", "64", "--no-plots", "--out", out]
    assert cli.main(["train", "--epochs", "1", "--posterior", "gumbel", "--iw", "5",
                     "--iw-subset", "16", *flags]) == 0
    assert cli.main(["train", "--epochs", "2", "--resume", *flags]) == 0
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["posterior"] == "gumbel"
    printed = capsys.readouterr().out
    assert ev.convention("none", posterior="gumbel") in printed
    assert ev.convention("none", 5, "gumbel") in printed
    assert [r["epoch"] for r in run_folder.read_metrics(out)] == [1, 2]
