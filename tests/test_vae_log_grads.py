"""Training instrumentation: --log-grads records every parameter's mean gradient norm per epoch
(checked by hand on a one-step run) and plots them through vae.plots; --manifold-frames
writes one frame per epoch for latent_dim 2 and is refused for other latent sizes."""
import math
import os

import numpy as np
import pytest

from minigrad.random import Stream
from vae import cli, run_folder, train
from vae.model import VAE
from vae_fixtures import mnist, silent

TINY = dict(train_subset=256, test_subset=128, hidden_dim=16, latent_dim=2, batch_size=64)
PARAMETERS = {f"{layer}.{kind}" for layer in ("encoder_hidden", "encoder_heads",
                                              "decoder_hidden", "decoder_out")
              for kind in ("weight", "bias")}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def dataset():
    return mnist()


def tiny_config(out, **overrides):
    return train.Config(**dict(TINY, out=str(out), epochs=2, quiet=True) | overrides)


# --- --log-grads ----------------------------------------------------------------------------------
def test_log_grads_records_every_parameter_every_epoch(dataset, tmp_path):
    config = tiny_config(tmp_path, log_grads=True)
    train.run(config, dataset=dataset, log=silent)
    metrics = run_folder.read_metrics(config.out)
    assert [r["epoch"] for r in metrics] == [1, 2]
    for record in metrics:
        assert set(record["grad_norms"]) == PARAMETERS
        assert all(math.isfinite(v) and v > 0 for v in record["grad_norms"].values())


def test_without_log_grads_there_are_no_grad_norms(dataset, tmp_path):
    config = tiny_config(tmp_path, epochs=1)
    train.run(config, dataset=dataset, log=silent)
    assert "grad_norms" not in run_folder.read_metrics(config.out)[0]


@pytest.mark.parametrize("posterior", ["gaussian", "laplace"])
def test_grad_norms_of_a_one_step_run_equal_the_norms_by_hand(dataset, tmp_path, posterior):
    config = tiny_config(tmp_path, epochs=1, train_subset=64, log_grads=True, posterior=posterior)
    train.run(config, dataset=dataset, log=silent)
    recorded = run_folder.read_metrics(config.out)[0]["grad_norms"]
    # the same step by hand: the model's init, the epoch's shuffle, the stream from its start
    model = VAE(784, 16, 2, rng=np.random.default_rng(config.seed), posterior=posterior)
    order = np.random.default_rng([config.seed, 1]).permutation(64)
    model.loss(dataset.train_images[:64][order], Stream(config.seed)).total.backward()
    by_hand = {name: math.sqrt(float((tensor.grad.astype(np.float64) ** 2).sum()))
               for name, tensor in model.named_parameters()}
    assert recorded.keys() == by_hand.keys()
    for name, value in by_hand.items():
        assert recorded[name] == pytest.approx(value, rel=1e-12), name


def test_grad_norms_are_the_mean_over_the_epochs_steps(dataset, tmp_path):
    """Two steps: the record is the mean of the two steps' norms, here taken from the optimizer
    loop itself by running it one step at a time on the same data."""
    config = tiny_config(tmp_path, epochs=1, train_subset=128, log_grads=True)
    trainer = train.Trainer(config, dataset)
    norms = []
    original = trainer.optimizer.step

    def step():
        norms.append({n: float(np.linalg.norm(t.grad.astype(np.float64)))
                      for n, t in trainer.model.named_parameters()})
        original()
    trainer.optimizer.step = step
    trainer.train_epoch()
    assert len(norms) == 2
    for name in PARAMETERS:
        assert trainer.grad_norms[name] == pytest.approx((norms[0][name] + norms[1][name]) / 2,
                                                          rel=1e-12)


def test_cli_log_grads_draws_the_gradient_norms(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(["train", "--epochs", "2", "--log-grads", "--out", out,
                     *flags_for(TINY)]) == 0
    path = os.path.join(out, "grad_norms.png")
    assert f"wrote {path}" in capsys.readouterr().out
    assert is_png(path)
    assert [set(r["grad_norms"]) for r in run_folder.read_metrics(out)] == [PARAMETERS, PARAMETERS]


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG


def flags_for(settings):
    return [arg for key, value in settings.items()
            for arg in (f"--{key.replace('_', '-')}", str(value))]


# --- --manifold-frames ----------------------------------------------------------------------------
def test_manifold_frames_writes_one_png_per_epoch(dataset, tmp_path):
    config = tiny_config(tmp_path, epochs=3, manifold_frames=True)
    train.run(config, dataset=dataset, log=silent)
    folder = os.path.join(config.out, "frames")
    assert sorted(os.listdir(folder)) == ["epoch_001.png", "epoch_002.png", "epoch_003.png"]
    assert all(is_png(os.path.join(folder, name)) for name in os.listdir(folder))


def test_manifold_frames_continue_after_resume(dataset, tmp_path):
    train.run(tiny_config(tmp_path, epochs=1, manifold_frames=True), dataset=dataset, log=silent)
    first = os.path.getmtime(os.path.join(tmp_path, "frames", "epoch_001.png"))
    train.run(tiny_config(tmp_path, epochs=2, manifold_frames=True), resume=True,
              dataset=dataset, log=silent)
    assert sorted(os.listdir(os.path.join(tmp_path, "frames"))) == ["epoch_001.png",
                                                                    "epoch_002.png"]
    assert os.path.getmtime(os.path.join(tmp_path, "frames", "epoch_001.png")) == first


def test_manifold_frames_need_latent_dim_2(dataset, tmp_path):
    with pytest.raises(ValueError, match="latent_dim == 2, got latent_dim=3"):
        train.run(tiny_config(tmp_path, latent_dim=3, manifold_frames=True), dataset=dataset,
                  log=silent)
    assert not os.path.exists(os.path.join(tmp_path, "frames"))
    assert not os.path.exists(os.path.join(tmp_path, "metrics.jsonl"))


def test_cli_manifold_frames_for_latent_dim_3_is_an_error(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(["train", "--manifold-frames", "--out", out,
                     *flags_for(TINY | {"latent_dim": 3})]) == 1
    assert "latent_dim=3" in capsys.readouterr().err


def test_with_the_real_study_plots_frames_and_grad_norms_are_pngs(dataset, tmp_path):
    from vae import plots as real
    config = tiny_config(tmp_path, manifold_frames=True, log_grads=True)
    train.run(config, dataset=dataset, log=silent)
    paths = [os.path.join(config.out, "frames", f"epoch_{e:03d}.png") for e in (1, 2)]
    paths.append(real.grad_norms(run_folder.read_metrics(config.out),
                                 os.path.join(config.out, "grad_norms.png")))
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == PNG, path
