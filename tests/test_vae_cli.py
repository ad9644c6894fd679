"""python -m vae: help texts, train / eval / plot / sample on a tiny run, errors that exit 1 with
a message naming what is missing, and the figures' helpers (vae.plots) on a tiny model."""
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import types

import numpy as np
import pytest

from vae import cli, data, plots
from vae.evaluate import convention
from vae_fixtures import mnist, tiny_vae

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--epochs", "2", "--train-subset", "512", "--test-subset", "256", "--hidden-dim", "32",
        "--latent-dim", "2", "--batch-size", "64", "--quiet"]
RUN_PNGS = ["loss_curves.png", "reconstructions.png", "samples.png", "latent.png",
            "interpolation.png", "traversals.png", "manifold.png"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FLAGS = {
    "train": ["--data", "--out", "--epochs", "--batch-size", "--lr", "--hidden-dim",
              "--latent-dim", "--beta", "--warmup-epochs", "--seed", "--binarize",
              "--train-subset", "--test-subset", "--iw", "--iw-subset", "--resume",
              "--no-plots", "--quiet"],
    "eval": ["run", "--iw", "--iw-subset"],
    "sample": ["run", "--count", "--seed", "--output"],
    "plot": ["run"],
}


@pytest.fixture(scope="module", autouse=True)
def read_mnist_once():
    """Every command reads its data folder; serve the carried MNIST from memory."""
    real_load, carried = data.load, mnist()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data, "load", lambda folder=data.DEFAULT_DIR: (
            carried if os.path.abspath(folder) == os.path.abspath(data.DEFAULT_DIR)
            else real_load(folder)))
        yield


def run_main(argv):
    """(exit code, stdout, stderr) of ``cli.main(argv)`` in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG_MAGIC


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-epoch run with a 2-D latent space, and what `train` printed."""
    folder = str(tmp_path_factory.mktemp("cli") / "run")
    code, out, err = run_main(["train", "--out", folder, "--iw", "5", "--iw-subset", "50",
                               *TINY])
    assert code == 0, err
    return folder, out


# --- help -------------------------------------------------------------------------------------
def test_module_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "vae", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in FLAGS:
        assert command in result.stdout
    # the module docstring's examples, as written
    assert "examples:\n  python -m vae train --epochs 10 --out runs/mnist" in result.stdout
    assert "python -m vae eval runs/mnist --iw 1000" in result.stdout


def test_plot_help_lists_every_figure(capsys):
    from vae import run_folder
    with pytest.raises(SystemExit):
        cli.main(["plot", "--help"])
    text = " ".join(capsys.readouterr().out.split())   # argparse wraps the description
    for name in run_folder.FIGURES:
        assert name in text, name


@pytest.mark.parametrize("command", sorted(FLAGS))
def test_command_help_mentions_its_flags(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in FLAGS[command]:
        assert flag in text, flag


# --- the commands on a run --------------------------------------------------------------------
def test_train_writes_the_run_folder_and_pngs(trained):
    folder, out = trained
    for name in ["config.json", "metrics.jsonl", "checkpoint.npz", *RUN_PNGS]:
        assert os.path.isfile(os.path.join(folder, name)), name
    for name in RUN_PNGS:
        assert is_png(os.path.join(folder, name)), name
        assert f"wrote {os.path.join(folder, name)}" in out
    assert convention("none") in out


def test_train_iw_prints_the_bound_and_its_convention(trained):
    _, out = trained
    lines = [line for line in out.splitlines() if "-log p(x)" in line]
    assert len(lines) == 1
    assert "on 50 test images" in lines[0]
    assert convention("none", 5) in lines[0]


def test_eval_reports_elbo_and_iwae(trained):
    folder, _ = trained
    code, out, err = run_main(["eval", folder, "--iw", "5", "--iw-subset", "20"])
    assert code == 0, err
    assert "epoch 2: test -ELBO" in out and "active units" in out
    assert convention("none") in out
    bound = [line for line in out.splitlines() if line.startswith("-log p(x) <=")]
    assert len(bound) == 1 and convention("none", 5) in bound[0] and "20 test images" in bound[0]


def copy_of(trained, tmp_path):
    """A copy of the trained run folder, for tests that change it."""
    return shutil.copytree(trained[0], str(tmp_path / "copy"))


def test_plot_redraws_every_figure(trained, tmp_path):
    folder = copy_of(trained, tmp_path)
    for name in RUN_PNGS:
        os.remove(os.path.join(folder, name))
    code, out, err = run_main(["plot", folder])
    assert code == 0, err
    for name in RUN_PNGS:
        assert is_png(os.path.join(folder, name)), name
        assert f"wrote {os.path.join(folder, name)}" in out


def test_sample_writes_a_png(trained, tmp_path):
    folder, _ = trained
    path = str(tmp_path / "grid.png")
    code, out, err = run_main(["sample", folder, "--count", "9", "--seed", "3", "--output", path])
    assert code == 0, err
    assert is_png(path) and out.strip() == f"wrote {path}"


def test_resume_of_a_run_continues_it(trained, tmp_path):
    folder = copy_of(trained, tmp_path)
    code, out, err = run_main(["train", "--out", folder, "--resume", "--epochs", "3", "--quiet",
                               "--no-plots"])
    assert code == 0, err
    assert "after epoch 2" in out
    code, out, _ = run_main(["eval", folder])
    assert out.startswith("epoch 3:")


# --- errors -----------------------------------------------------------------------------------
def test_eval_of_a_folder_without_a_run_exits_1(tmp_path):
    code, out, err = run_main(["eval", str(tmp_path)])
    assert code == 1 and out == ""
    assert err.startswith("error: ")
    assert os.path.join(str(tmp_path), "config.json") in err and "run folder" in err


def test_eval_without_a_checkpoint_exits_1(trained, tmp_path):
    folder, _ = trained
    with open(os.path.join(folder, "config.json")) as f:
        (tmp_path / "config.json").write_text(f.read())
    code, _, err = run_main(["eval", str(tmp_path)])
    assert code == 1
    assert "no such checkpoint" in err and os.path.join(str(tmp_path), "checkpoint.npz") in err


def test_plot_of_a_run_without_metrics_exits_1_naming_the_file(trained, tmp_path):
    folder = copy_of(trained, tmp_path)
    os.remove(os.path.join(folder, "metrics.jsonl"))
    code, _, err = run_main(["plot", folder])
    assert code == 1
    assert err.startswith("error: ") and os.path.join(folder, "metrics.jsonl") in err


def test_missing_data_folder_exits_1_naming_it(tmp_path):
    missing = str(tmp_path / "no-data-here")
    code, _, err = run_main(["train", "--data", missing, "--out", str(tmp_path / "run"), *TINY])
    assert code == 1
    assert missing in err and "no such data folder" in err


def test_resume_without_a_run_exits_1(tmp_path):
    code, _, err = run_main(["train", "--resume", "--out", str(tmp_path), "--quiet"])
    assert code == 1 and "--resume needs an earlier run" in err


def test_resume_with_another_latent_dim_exits_1(trained, tmp_path):
    folder = copy_of(trained, tmp_path)
    code, _, err = run_main(["train", "--out", folder, "--resume", "--latent-dim", "3",
                             "--quiet", "--no-plots"])
    assert code == 1 and "latent_dim=2" in err and "latent_dim=3" in err


# --- the figures ------------------------------------------------------------------------------
def test_pca_2d_keeps_a_plane_exactly():
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.standard_normal((5, 2)))                      # (5, 2) orthonormal
    plane = rng.standard_normal((200, 2)) * [3.0, 1.0]
    points = plane @ basis.T + 7.0                                            # (200, 5)
    projected, explained = plots.pca_2d(points)
    assert projected.shape == (200, 2) and explained == pytest.approx(1.0)
    centred = points - points.mean(axis=0)
    np.testing.assert_allclose(np.linalg.norm(projected, axis=1),
                               np.linalg.norm(centred, axis=1), rtol=1e-10)
    assert projected[:, 0].var() > projected[:, 1].var()                    # largest first


def test_manifold_latents_are_normal_quantiles():
    z = plots.manifold_latents(3)
    edge = statistics.NormalDist().inv_cdf(0.95)                             # 1.6449
    expected = [[-edge, edge], [0, edge], [edge, edge],
                [-edge, 0], [0, 0], [edge, 0],
                [-edge, -edge], [0, -edge], [edge, -edge]]
    np.testing.assert_allclose(z, expected, atol=1e-12)
    assert plots.manifold_latents(20).shape == (400, 2)


def test_manifold_needs_two_latent_dims(tmp_path):
    with pytest.raises(ValueError, match="latent_dim=3"):
        plots.manifold(tiny_vae(latent_dim=3), str(tmp_path / "m.png"))
    assert not os.path.exists(tmp_path / "m.png")


def test_figures_need_square_images(tmp_path):
    with pytest.raises(ValueError, match="input_dim 5 is not a square"):
        plots.prior_samples(tiny_vae(input_dim=5), str(tmp_path / "s.png"))


def test_loss_curves_need_an_epoch(tmp_path):
    with pytest.raises(ValueError, match="metrics is empty"):
        plots.loss_curves([], str(tmp_path / "loss.png"))


def test_decoded_means_are_probabilities():
    model = tiny_vae(latent_dim=3)
    means = plots.decode_means(model, np.random.default_rng(0).standard_normal((6, 3)) * 10)
    assert means.shape == (6, 4) and np.all((means >= 0) & (means <= 1))


def test_plot_run_skips_the_manifold_above_two_latent_dims(tmp_path):
    rng = np.random.default_rng(0)
    record = {"epoch": 1, "train_loss": 3.0, "test_neg_elbo": 2.5, "convention": convention("none")}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    trainer = types.SimpleNamespace(model=tiny_vae(latent_dim=3), test_images=rng.random((30, 4)),
                                    test_labels=rng.integers(0, 10, 30), epoch=1)
    paths = plots.plot_run(str(tmp_path), trainer)
    assert [os.path.basename(path) for path in paths] == [name for name in RUN_PNGS
                                                           if name != "manifold.png"]
    assert all(is_png(path) for path in paths)
    assert not os.path.exists(tmp_path / "manifold.png")


def test_plot_run_assembles_the_manifold_frames_into_a_gif(tmp_path):
    rng = np.random.default_rng(0)
    record = {"epoch": 1, "train_loss": 3.0, "test_neg_elbo": 2.5, "convention": convention("none")}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    model = tiny_vae(latent_dim=2)
    for epoch in (1, 2):
        plots.manifold_frame(model, str(tmp_path / "frames" / f"epoch_{epoch:03d}.png"),
                                   epoch, grid=3)
    trainer = types.SimpleNamespace(model=model, test_images=rng.random((30, 4)),
                                    test_labels=rng.integers(0, 10, 30), epoch=1)
    paths = plots.plot_run(str(tmp_path), trainer)
    assert os.path.basename(paths[-1]) == "manifold.gif"
    with open(paths[-1], "rb") as f:
        assert f.read(6) in (b"GIF87a", b"GIF89a")


# --- eval, sample and plot read the checkpoint's config -----------------------------------------
def edit_config(folder, change):
    path = os.path.join(folder, "config.json")
    with open(path) as f:
        values = json.load(f)
    with open(path, "w") as f:
        json.dump(change(values), f)
    return path


@pytest.mark.parametrize("field, value", [("binarize", "dynamic"), ("test_subset", 1),
                                          ("seed", 2)])
@pytest.mark.parametrize("command", ["eval", "plot", "sample"])
def test_a_config_json_that_disagrees_with_the_checkpoint_is_refused(trained, tmp_path, field,
                                                                     value, command):
    folder = copy_of(trained, tmp_path)
    path = edit_config(folder, lambda values: dict(values, **{field: value}))
    code, out, err = run_main([command, folder])
    assert code == 1 and out == ""
    assert path in err and f"{field} {value!r} there" in err and "in the checkpoint" in err


def test_a_moved_run_folder_still_evaluates(trained, tmp_path):
    folder = copy_of(trained, tmp_path)              # config.json still names the old --out
    code, out, err = run_main(["eval", folder])
    assert code == 0, err
    assert out.startswith("epoch 2: test -ELBO")


@pytest.mark.parametrize("change, message", [
    (lambda values: dict(values, epochs="10"), "epochs must be an integer, got '10'"),
    (lambda values: dict(values, lr=None), "lr must be a number, got None"),
    (lambda values: dict(values, warmup_epochs=float("nan")), "warmup_epochs must be a finite"),
    (lambda values: [1, 2, 3], "the config is a JSON array, expected an object"),
    (lambda values: "x", "the config is a JSON string, expected an object"),
    (lambda values: dict(values, colour="red"), "unknown config fields ['colour']"),
])
def test_a_config_json_of_the_wrong_type_is_refused_naming_the_field(trained, tmp_path, change,
                                                                     message):
    folder = copy_of(trained, tmp_path)
    path = edit_config(folder, change)
    code, _, err = run_main(["eval", folder])
    assert code == 1 and path in err and message in err
    assert len(err.splitlines()) == 1


# --- every numeric flag checked at parse time ---------------------------------------------------
@pytest.mark.parametrize("argv, flag, message", [
    (["train", "--warmup-epochs", "nan"], "--warmup-epochs", "must be a finite number, got nan"),
    (["train", "--beta", "nan"], "--beta", "must be a finite number"),
    (["train", "--lr", "inf"], "--lr", "must be a finite number, got inf"),
    (["train", "--lr", "-0.001"], "--lr", "must be > 0"),
    (["train", "--epochs", "1.5"], "--epochs", "expected an integer, got '1.5'"),
    (["train", "--epochs", "0"], "--epochs", "must be at least 1"),
    (["train", "--batch-size", "0"], "--batch-size", "must be at least 1"),
    (["train", "--hidden-dim", "100000000"], "--hidden-dim", "must be at most 65536"),
    (["train", "--seed", "-1"], "--seed", "must be at least 0"),
    (["train", "--train-subset", "-1"], "--train-subset", "must be >= 0"),
    (["train", "--iw", "-5"], "--iw", "must be an integer in [0, "),
    (["train", "--iw-subset", "0"], "--iw-subset", "must be an integer in [1, "),
    (["train", "--iw-subset", "-1"], "--iw-subset", "must be an integer in [1, "),
    (["eval", "run", "--iw", "-5"], "--iw", "must be an integer in [0, "),
    (["sample", "run", "--count", "0"], "--count", "must be an integer in [1, "),
    (["sample", "run", "--seed", "-1"], "--seed", "must be an integer in [0, "),
])
def test_a_bad_numeric_flag_is_refused_naming_it(argv, flag, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert f"argument {flag}: {message}" in err


def test_a_train_subset_larger_than_the_data_is_refused(tmp_path):
    code, _, err = run_main(["train", "--out", str(tmp_path / "run"), "--train-subset",
                             "10000000", "--quiet", "--no-plots"])
    assert code == 1
    assert "train_subset is 10000000" in err and "has only 60000 train images" in err


def test_an_iw_subset_larger_than_the_test_images_is_refused(trained):
    folder, _ = trained
    code, _, err = run_main(["eval", folder, "--iw", "2", "--iw-subset", "100000"])
    assert code == 1 and "--iw-subset 100000: the run has only 256 test images" in err
