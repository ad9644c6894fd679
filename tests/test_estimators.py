"""Pathwise and score-function gradient estimators: the hand-written score against autodiff,
unbiasedness, the variance ordering and its 1/K decay, and the experiment's command line."""
import json
import math
import os
import statistics
import subprocess
import sys

import numpy as np
import pytest

import minigrad as mg
from benchmarks import estimators
from benchmarks.estimators import Draw, GaussianObjective, VAEObjective
from minigrad.random import Stream
from vae_fixtures import tiny_vae

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPS = 2000


@pytest.fixture(scope="module")
def gaussian_stats():
    """{K: {estimator: summary}} on the Gaussian objective, 2000 repetitions per K."""
    objective, stream = GaussianObjective(), Stream(11)
    return {k: {name: estimators.summarise(values, objective.exact(), 0.0, objective.latent_dim)
                for name, values in estimators.sample_estimates(objective, k, REPS,
                                                                stream).items()}
            for k in (1, 2, 8, 32, 128)}


@pytest.mark.parametrize("shape", [(), (3,), (2, 3)])
def test_hand_written_score_equals_autodiff_of_the_log_density(shape):
    rng = np.random.default_rng(len(shape))
    z, mu, logvar = (rng.normal(size=shape) for _ in range(3))
    mu_t, logvar_t = mg.Tensor(mu, requires_grad=True), mg.Tensor(logvar, requires_grad=True)
    log_density = estimators.log_normal(mg.Tensor(z), mu_t, logvar_t)
    log_density.sum().backward()
    d_mu, d_logvar = estimators.gaussian_score(z, mu, logvar)
    np.testing.assert_allclose(d_mu, mu_t.grad, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(d_logvar, logvar_t.grad, rtol=1e-12, atol=1e-14)
    # the forward against the standard library's density
    expected = [math.log(statistics.NormalDist(m, math.exp(v / 2)).pdf(x))
                for x, m, v in zip(np.ravel(z), np.ravel(mu), np.ravel(logvar))]
    np.testing.assert_allclose(np.ravel(log_density.numpy()), expected, rtol=1e-12)


def test_exact_gradient_of_the_gaussian_objective_matches_finite_differences():
    objective = GaussianObjective()
    mu, logvar, c = objective.mu[0], objective.logvar[0], objective.target

    def expectation(mu, logvar):  # E (z - c)^2 = (mu - c)^2 + e^logvar, summed
        return float(((mu - c) ** 2 + np.exp(logvar)).sum())
    h, numeric = 1e-6, []
    for which in range(2):
        for d in range(len(c)):
            step = np.zeros((2, len(c)))
            step[which, d] = h
            numeric.append((expectation(mu + step[0], logvar + step[1])
                            - expectation(mu - step[0], logvar - step[1])) / (2 * h))
    np.testing.assert_allclose(objective.exact()[0], numeric, rtol=1e-7)


def test_all_three_estimators_are_unbiased_on_the_gaussian_objective(gaussian_stats):
    for k, stats in gaussian_stats.items():
        assert set(stats) == ({"pathwise", "reinforce"} if k == 1 else set(estimators.ESTIMATORS))
        for name, summary in stats.items():
            assert summary["all"]["max_bias_over_se"] < 5, (k, name, summary)


def test_pathwise_beats_reinforce_and_the_baseline_helps(gaussian_stats):
    for k, stats in gaussian_stats.items():
        for parameter in estimators.PARAMETERS:
            pathwise = stats["pathwise"][parameter]["variance"]
            reinforce = stats["reinforce"][parameter]["variance"]
            assert pathwise < reinforce, (k, parameter)
            if k > 1:
                assert stats["reinforce_loo"][parameter]["variance"] < reinforce, (k, parameter)


def test_pathwise_variance_is_the_closed_form_over_k(gaussian_stats):
    objective = GaussianObjective()
    per_sample = objective.pathwise_variance()[0]                          # (P,)
    for k, stats in gaussian_stats.items():
        for parameter, cols in (("mu", slice(0, 3)), ("logvar", slice(3, 6))):
            expected = per_sample[cols].mean() / k
            # NOTE: 2000 repetitions: the sample variance is within about 10% (3 SE or so)
            assert stats["pathwise"][parameter]["variance"] == pytest.approx(expected, rel=0.15)


@pytest.mark.parametrize("name, ks", [("pathwise", (1, 8, 128)), ("reinforce", (1, 8, 128)),
                                      ("reinforce_loo", (8, 32, 128))])
def test_variance_falls_as_one_over_k(gaussian_stats, name, ks):
    variances = [gaussian_stats[k][name]["all"]["variance"] for k in ks]
    slope = np.polyfit(np.log(ks), np.log(variances), 1)[0]
    assert -1.15 < slope < -0.85, (name, variances)


def test_leave_one_out_baseline_is_the_mean_of_the_other_rewards():
    rng = np.random.default_rng(0)
    reps, k, groups, coords = 2, 4, 3, 5
    draw = Draw(rng.normal(size=(reps * k, groups, coords)), rng.normal(size=(reps * k, groups)),
                rng.normal(size=(reps * k, groups, coords)))
    result = estimators.estimates(draw, k)
    expected = np.zeros((reps, groups, coords))
    for r in range(reps):
        rows = range(r * k, (r + 1) * k)
        for i in rows:
            baseline = np.mean([draw.reward[j] for j in rows if j != i], axis=0)   # (G,)
            expected[r] += (draw.reward[i] - baseline)[:, None] * draw.score[i] / k
    np.testing.assert_allclose(result["reinforce_loo"], expected, rtol=1e-12)
    np.testing.assert_allclose(result["pathwise"], draw.pathwise.reshape(reps, k, groups,
                                                                         coords).mean(axis=1))
    assert estimators.estimates(draw, 1)["reinforce_loo"] is None


def test_vae_score_function_and_pathwise_estimate_the_same_gradient():
    """The ELBO reward and its pathwise gradient agree: REINFORCE with the baseline, averaged
    over many samples, meets the pathwise reference (a sign or term error would not)."""
    model = tiny_vae(input_dim=4, hidden_dim=3, latent_dim=2, seed=1)
    images = np.random.default_rng(2).random((3, 4))
    objective, stream = VAEObjective(model, images), Stream(5)
    reference, reference_se = objective.reference(20_000, stream)
    values = estimators.sample_estimates(objective, 20, 1000, stream)
    for name in ("reinforce", "reinforce_loo"):
        summary = estimators.summarise(values[name], reference, reference_se, 2)
        assert summary["all"]["max_bias_over_se"] < 5, (name, summary)
    # and the gradient is not trivially zero: the reference is many standard errors from it
    assert np.abs(reference / reference_se).max() > 20


def test_vae_reference_is_the_gradient_of_the_elbo_with_closed_form_kl():
    """The Monte Carlo ELBO's pathwise gradient meets the training loss's estimator
    (reconstruction by reparameterization, KL in closed form by minigrad's gaussian_kl)."""
    model = tiny_vae(input_dim=4, hidden_dim=3, latent_dim=2, seed=1)
    images = np.random.default_rng(2).random((3, 4))
    objective = VAEObjective(model, images)
    reference, reference_se = objective.reference(20_000, Stream(5))
    count = 20_000
    mu, logvar = estimators._leaves(objective.mu, objective.logvar, count)   # (count * 3, 2)
    z = mg.reparameterize(mu, logvar, stream=Stream(6))
    x = np.tile(objective.images, (count, 1))
    elbo = (-mg.binary_cross_entropy_with_logits(objective.model.decode(z), x, reduction="sum")
            - mg.gaussian_kl(mu, logvar))
    elbo.backward()
    grads = np.concatenate([mu.grad, logvar.grad], axis=1).reshape(count, 3, 4)
    standard_error = np.sqrt(grads.var(axis=0, ddof=1) / count + reference_se ** 2)
    assert (np.abs(grads.mean(axis=0) - reference) / standard_error).max() < 5


def test_the_command_line_writes_json_markdown_and_png(tmp_path):
    result = subprocess.run([sys.executable, os.path.join("benchmarks", "estimators.py"),
                             "--quick", "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    names = sorted(os.listdir(tmp_path))
    assert names == ["estimators_quick.json", "estimators_quick.md", "estimators_quick.png"]
    with open(tmp_path / "estimators_quick.json") as f:
        report = json.load(f)
    assert {r["estimator"] for r in report["records"]} == set(estimators.ESTIMATORS)
    assert {r["problem"] for r in report["records"]} == {"gaussian", "vae"}
    assert "| reinforce_loo | 2 |" in (tmp_path / "estimators_quick.md").read_text()


def test_the_command_line_refuses_too_few_repetitions(tmp_path, capsys):
    assert estimators.main(["--quick", "--reps", "1", "--out", str(tmp_path)]) == 1
    assert "--reps must be at least 2" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_the_committed_results_are_what_this_script_writes():
    """benchmarks/results/estimators.*: its definitions and settings are this script's, and its
    markdown is what ``markdown`` makes of its JSON."""
    stem = os.path.join(ROOT, "benchmarks", "results", "estimators")
    with open(stem + ".json") as f:
        report = json.load(f)
    assert report["definitions"] == estimators.__doc__.split("\n\n", 2)[2].strip()
    defaults = estimators._settings(estimators.build_parser().parse_args([]))
    assert {k: v for k, v in report["settings"].items() if k != "data"} == \
        {k: v for k, v in defaults.items() if k != "data"}
    with open(stem + ".md") as f:
        assert estimators.markdown(report) == f.read()
    assert os.path.isfile(stem + ".png")
