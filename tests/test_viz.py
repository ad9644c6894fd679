"""minigrad.viz: PNG and SVG of a small graph and of the VAE loss; labels; saved bytes counted by
hand; edge gradient norms against norms computed by hand; the layout's layers."""
import numpy as np
import pytest

import minigrad as mg
from minigrad import Tensor, viz
from vae.model import VAE

rng = np.random.default_rng(0)


def small_graph():
    """y = sum(exp(x * w)), x and w of shape (3,), float64."""
    x = Tensor(rng.normal(size=3), requires_grad=True, name="x")
    w = Tensor(rng.normal(size=3), requires_grad=True, name="w")
    product = x * w
    z = mg.exp(product)
    return x, w, product, z, z.sum()


def vae_loss():
    model = VAE(16, 8, 3, rng=np.random.default_rng(0), dtype=np.float64)
    x = np.random.default_rng(1).random((4, 16))
    return model.loss(x, mg.random.Stream(0)).total


def test_saved_bytes_of_a_tiny_graph_by_hand():
    x, w, product, z, y = small_graph()
    # mul keeps both inputs (2 x 3 float64 = 48 B), exp its output z (24 B); sum keeps only a
    # shape; leaves keep nothing
    assert viz.saved_bytes(y) == {"%0 w": 0, "%1 x": 0, "%2 mul": 48, "%3 exp": 24, "%4 sum": 0}
    assert viz.total_saved_bytes(y) == x.data.nbytes + w.data.nbytes + z.data.nbytes == 72


def test_total_counts_an_array_kept_by_two_nodes_once():
    x = Tensor(rng.normal(size=(2, 5)).astype(np.float32), requires_grad=True)
    z = mg.tanh(x)
    y = (z / 3.0).sum()  # tanh keeps z; div keeps z / 3 and its divisor (a 4 B scalar)
    kept = {id(a): a.nbytes for t in (z, y.node.inputs[0]) for a in t.node.saved_arrays()}
    assert viz.total_saved_bytes(y) == sum(kept.values()) == 2 * 40 + 4
    assert sum(viz.saved_bytes(y).values()) == 2 * 40 + 4


def test_saved_bytes_are_freed_by_backward():
    *_, y = small_graph()
    y.backward()
    assert viz.total_saved_bytes(y) == 0


def test_edge_grad_norms_by_hand():
    x, w, product, z, y = small_graph()
    with mg.trace() as t:
        y.backward(retain_graph=True)
    gz = np.ones(3)                # d sum / dz
    gp = gz * z.data               # d / d(x*w) through exp
    expected = {
        ("%3 exp", "%4 sum"): [np.linalg.norm(gz)],
        ("%2 mul", "%3 exp"): [np.linalg.norm(gp)],
        ("%1 x", "%2 mul"): [np.linalg.norm(gp * w.data)],
        ("%0 w", "%2 mul"): [np.linalg.norm(gp * x.data)],
    }
    norms = viz.edge_grad_norms(y, t)
    assert norms.keys() == expected.keys()
    for edge, values in expected.items():  # pytest.approx takes no nested containers
        assert norms[edge] == pytest.approx(values, rel=1e-14), edge


def test_an_input_used_twice_has_a_norm_per_use():
    x = Tensor(rng.normal(size=4), requires_grad=True)
    y = (x * x).sum()
    with mg.trace() as t:
        y.backward()
    assert viz.edge_grad_norms(y, t)[("%0 leaf", "%1 mul")] == pytest.approx(
        [np.linalg.norm(x.data)] * 2, rel=1e-15)


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_small_graph_files(tmp_path, suffix):
    *_, y = small_graph()
    with mg.trace() as t:
        y.backward(retain_graph=True)
    path = viz.draw_graph(y, tmp_path / f"small.{suffix}", trace=t)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") if suffix == "png" else b"<svg" in data
    if suffix == "svg":
        text = data.decode()
        for label in ("mul", "exp", "sum", "saves 24 B"):
            assert label in text


def test_vae_loss_graph_files(tmp_path):
    loss = vae_loss()
    with mg.trace() as t:
        loss.backward(retain_graph=True)
    png = viz.draw_graph(loss, tmp_path / "vae.png", trace=t)
    svg = viz.draw_graph(loss, tmp_path / "vae.svg")
    assert png.stat().st_size > 10_000
    text = svg.read_text()
    for op in ("linear", "relu", "getitem", "reparameterize_kl",
               "binary_cross_entropy_with_logits"):
        assert op in text
    assert viz.total_saved_bytes(loss) > 0


def test_a_tensor_without_a_graph_is_one_box(tmp_path):
    path = viz.draw_graph(Tensor(np.zeros((2, 2))), tmp_path / "one.svg")
    assert "(2, 2) float64" in path.read_text()


def test_unknown_extension_is_named():
    *_, y = small_graph()
    with pytest.raises(ValueError, match=r"graph\.pdf.*\.png or \.svg"):
        viz.draw_graph(y, "graph.pdf")


def test_layers_put_each_leaf_just_before_its_first_use():
    x, w, product, z, y = small_graph()
    b = Tensor(rng.normal(size=3), requires_grad=True)
    y = (z + b).sum()  # b is first used by add, two layers after x and w
    order = mg.graph_view.tensors_of(y)
    layers = viz._ordered_layers(order)
    names = [sorted(order[i].op or order[i].name or "b" for i in layer) for layer in layers]
    assert names == [["w", "x"], ["mul"], ["b", "exp"], ["add"], ["sum"]]


def test_a_deep_graph_is_laid_out_to_fit_a_page(tmp_path):
    """The VAE's loss (20 nodes deep) grows downwards, at most a page wide, never in a long row."""
    from PIL import Image
    path = viz.draw_graph(vae_loss(), tmp_path / "vae.png")
    with Image.open(path) as image:
        width, height = image.size
    assert width <= viz.PAGE_WIDTH * 100 and height > width, (width, height)


def test_second_order_nodes_are_told_from_the_forward(tmp_path):
    from PIL import Image
    x = Tensor(np.array([0.5, -1.0]), requires_grad=True, name="x")
    y = mg.tanh(x).sum()
    (g,) = mg.grad(y, x, create_graph=True)
    order = mg.graph_view.tensors_of(g.sum())
    roles = dict(zip((t.op or t.name for t in order), viz._roles(order, y)))
    assert roles == {"x": "leaf", "tanh": "forward", "mul": "gradient", "sub": "gradient",
                     "sum": "gradient"}
    assert set(viz._roles(order, None)) == {"leaf", "forward"}
    path = viz.draw_graph(g.sum(), tmp_path / "second.png", forward=y)
    with Image.open(path) as image:
        colours = {colour for _, colour in image.convert("RGB").getcolors(1 << 20)}
    face = viz._COLOURS["gradient"][0]
    assert tuple(int(face[i:i + 2], 16) for i in (1, 3, 5)) in colours
