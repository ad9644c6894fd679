"""The graph behind a tensor drawn with matplotlib alone (PNG or SVG), and the memory it holds.

    with minigrad.trace() as t:
        loss.backward(retain_graph=True)
    minigrad.viz.draw_graph(loss, "graph.png", trace=t)

Each box is a tensor of the graph (the tensors that require grad, as in ``topological_order``):
its op (or its name, or "leaf"), shape, dtype, and the bytes its node keeps for the backward pass.
Each arrow runs from an input to its use; after a traced backward it carries ||dL/dx||, the norm
of the gradient that flowed along it (``Trace.edge_norms``).

Saved bytes are those of the arrays the op declared with ``ctx.save_for_backward``
(``Node.saved_arrays``): its outputs (exp, sqrt, tanh, sigmoid and div keep theirs), constants
(the noise of ``reparameterize(save_noise=True)``) and its inputs' data (both inputs of a mul,
the weight and input of a linear), each array once.
Backward frees these arrays unless ``retain_graph=True``, so draw before backward or retain it;
a freed node shows "freed".

Layout: longest-path layers from the leaves (layer(t) = 1 + max layer of its inputs, leaves at
0), then each leaf moved to the layer just before its first use, so that a weight stands next to
its op instead of across the whole figure; within a layer, nodes are ordered by the barycentre
(mean position) of their inputs, then of their uses (one sweep each way, which removes many
crossings), and spread evenly about the middle. Layers run left to right while that fits a page
(PAGE_WIDTH inches), else top to bottom, so a deep graph (a whole VAE loss) grows downwards and
its text stays readable at the width a page shows.

Roles: leaves are blue. With ``forward=`` (the output of a forward pass), the nodes of that
forward graph are yellow and the others, those a ``create_graph`` backward recorded, red: a
second-order graph then shows which boxes compute the gradient.

matplotlib is imported only when drawing, and only its object API is used (a Figure on the Agg
canvas, the SVG writer for .svg): no pyplot state, no backend switched for the caller.
"""
import os

from minigrad.graph_view import saved_bytes_of, tensors_of

_FORMATS = {".png", ".svg"}
_FONT = 8                     # points; monospace, so a character is 0.6 em wide
_CHAR = _FONT * 0.6 / 72      # inches per character
_ROW = 0.9                    # inches between the centres of two boxes of one layer
_GAP = 1.1                    # inches of arrow between two layers of boxes, left to right
_GAP_DOWN = 0.6               # the same, top to bottom (the gap holds one line of edge labels)
_LEGEND_WIDTH = 3.9           # inches the legend's three entries take
_MAX_PIXELS = 30000           # the longer side of a PNG; the DPI shrinks for larger graphs
PAGE_WIDTH = 10.0             # inches: wider left-to-right graphs are laid out top to bottom
# (face, edge) colours of a box by its role
_COLOURS = {"leaf": ("#e8f0fe", "#3c5a99"), "forward": ("#fff8e1", "#a0782c"),
            "gradient": ("#fde8e8", "#b03030")}


def saved_bytes(tensor):
    """{node label: bytes its node keeps}, inputs first; labels are "%i op" as in format_graph."""
    order = _graph(tensor)
    return {_key(i, t): saved_bytes_of(t) for i, t in enumerate(order)}


def total_saved_bytes(tensor):
    """Bytes kept for the backward pass by the whole graph, each array counted once (two nodes
    may keep the same array)."""
    arrays = {}
    for t in _graph(tensor):
        if t.node is not None:
            arrays.update((id(a), a.nbytes) for a in t.node.saved_arrays())
    return sum(arrays.values())


def edge_grad_norms(tensor, trace):
    """{(input label, use label): [||gradient|| per use]} for the edges ``trace`` saw.

    The list has one norm per use: x * x sends x two gradients, one along each use."""
    order = _graph(tensor)
    keys = {id(t): _key(i, t) for i, t in enumerate(order)}
    norms = {}
    for t in order:
        for i, norm in trace.edge_norms(t).items():
            norms.setdefault((keys[id(t.node.inputs[i])], keys[id(t)]), []).append(norm)
    return norms


def draw_graph(tensor, path, trace=None, forward=None):
    """Draw the graph behind ``tensor`` to ``path`` (.png or .svg); returns path.

    trace: a ``minigrad.trace()`` that recorded a backward pass through this graph; its gradient
        norms label the edges.
    forward: a tensor (or a list of them) whose graph is the forward pass; the other nodes, made
        by a ``create_graph`` backward, are drawn as the gradient's (red), with a legend.
    """
    extension = os.path.splitext(str(path))[1].lower()
    if extension not in _FORMATS:
        raise ValueError(f"draw_graph: cannot tell the format of {str(path)!r}; "
                         f"give a path ending in {' or '.join(sorted(_FORMATS))}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    order = _graph(tensor)
    labels = [_box_text(i, t) for i, t in enumerate(order)]
    roles = _roles(order, forward)
    layers = _ordered_layers(order)
    width = _CHAR * max(len(line) for text in labels for line in text.split("\n")) + 0.25
    height = 0.62
    across = len(layers) * (width + _GAP)            # the figure's width, left to right
    downwards = across > PAGE_WIDTH
    legend = 0.35 if forward is not None else 0.0    # inches above the graph for the legend
    position = {}  # index in order -> (x, y) centre, in inches
    widest = max(len(layer) for layer in layers)
    for k, layer in enumerate(layers):
        for j, i in enumerate(layer):
            spread = (widest - len(layer)) / 2 + j  # slot within the layer, centred
            if downwards:  # layers are rows, top to bottom; a layer's nodes side by side
                position[i] = ((spread + 0.5) * (width + _GAP / 2),
                               (len(layers) - k - 0.5) * (height + _GAP_DOWN))
            else:          # layers are columns, left to right; a layer's nodes one above another
                position[i] = ((k + 0.5) * (width + _GAP),
                               (widest - 1 - spread) * _ROW + _ROW / 2 + 0.2)
    if downwards:
        fig_size = (widest * (width + _GAP / 2), len(layers) * (height + _GAP_DOWN) + legend)
    else:
        fig_size = (across, widest * _ROW + 0.4 + legend)
    if legend and fig_size[0] < _LEGEND_WIDTH:  # widen a narrow graph for its legend, centred
        shift = (_LEGEND_WIDTH - fig_size[0]) / 2
        position = {i: (x + shift, y) for i, (x, y) in position.items()}
        fig_size = (_LEGEND_WIDTH, fig_size[1])
    dpi = min(100, _MAX_PIXELS / max(fig_size))
    fig = Figure(figsize=fig_size, dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, fig_size[0])
    ax.set_ylim(0, fig_size[1])
    ax.axis("off")
    layer_of = {i: k for k, layer in enumerate(layers) for i in layer}
    _draw_edges(ax, order, position, layer_of, (width, height), downwards, fig_size, trace)
    for i, t in enumerate(order):
        x, y = position[i]
        face, edge = _COLOURS[roles[i]]
        ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                    boxstyle="round,pad=0,rounding_size=0.06",
                                    facecolor=face, edgecolor=edge, zorder=2))
        ax.text(x, y, labels[i], ha="center", va="center", fontsize=_FONT,
                family="monospace", zorder=3)
    if forward is not None:
        for k, role in enumerate(("leaf", "forward", "gradient")):
            face, edge = _COLOURS[role]
            ax.text(0.15 + 1.3 * k, fig_size[1] - legend / 2, role, fontsize=_FONT,
                    va="center", family="monospace",
                    bbox=dict(boxstyle="round,pad=0.25", facecolor=face, edgecolor=edge))
    fig.savefig(path, dpi=dpi)
    return path


def _graph(tensor):
    """The tensors to draw, each after its inputs."""
    return tensors_of(tensor)


def _key(i, t):
    return f"%{i} {t.name or t.op or 'leaf'}"


def _roles(order, forward):
    """"leaf", "forward" or "gradient" per node of ``order``: without ``forward`` every op is
    "forward"; with it, an op outside the graphs behind ``forward`` is "gradient"."""
    if forward is None:
        return ["leaf" if t.node is None else "forward" for t in order]
    outputs = forward if isinstance(forward, (list, tuple)) else [forward]
    seen = {id(t) for output in outputs for t in _graph(output)}
    return ["leaf" if t.node is None else "forward" if id(t) in seen else "gradient"
            for t in order]




def _box_text(i, t):
    """Three lines: "%i name op", shape and dtype, what the node keeps for backward."""
    head = f"%{i} " + " ".join(part for part in (t.name, t.op) if part)
    if t.node is None:
        head = head if t.name else f"%{i} leaf"
        kept = "has .grad" if t.grad is not None else "no .grad"
    elif t.node.freed:
        kept = "freed by backward"
    else:
        kept = f"saves {_human_bytes(saved_bytes_of(t))}"
    shape = "(" + ", ".join(map(str, t.shape)) + ("," if len(t.shape) == 1 else "") + ")"
    return f"{head}\n{shape} {t.dtype}\n{kept}"


def _human_bytes(count):
    """400 B, 1.6 KB, 3.1 MB: powers of 1000, as "saves 400 KB" reads."""
    for unit in ("B", "KB", "MB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.3g} {unit}"
        count /= 1000
    return f"{count:.3g} GB"


def _inputs(order):
    """For each node (by index in order), the indices of its inputs in the graph, with repeats."""
    index = {id(t): i for i, t in enumerate(order)}
    return [[] if t.node is None else [index[id(p)] for p in t.node.inputs
                                       if p is not None and id(p) in index]
            for t in order]


def _ordered_layers(order):
    """Lists of node indices, one per layer, each ordered by barycentre to reduce crossings."""
    inputs = _inputs(order)
    layer = []
    for ins in inputs:  # order is topological: every input's layer is already known
        layer.append(1 + max((layer[p] for p in ins), default=-1))
    uses = [[] for _ in order]
    for i, ins in enumerate(inputs):
        for p in ins:
            uses[p].append(i)
    for i, ins in enumerate(inputs):  # a leaf moves up to just before its first use
        if not ins and uses[i]:
            layer[i] = min(layer[u] for u in uses[i]) - 1
    layers = [[] for _ in range(max(layer) + 1)]
    for i, k in enumerate(layer):
        layers[k].append(i)
    # one sweep left to right by inputs, one right to left by uses
    for sweep, neighbours in ((layers[1:], inputs), (layers[-2::-1], uses)):
        rank = {i: r / max(len(l) - 1, 1) for l in layers for r, i in enumerate(l)}
        for current in sweep:
            current.sort(key=lambda i: (sum(rank[n] for n in neighbours[i]) / len(neighbours[i])
                                        if neighbours[i] else rank[i]))
            rank.update((i, r / max(len(current) - 1, 1)) for r, i in enumerate(current))
    return layers


def _draw_edges(ax, order, position, layer_of, size, downwards, fig_size, trace):
    """An arrow from each input to its use, from box edge to box edge (right to left edge, or
    bottom to top edge when ``downwards``); with a trace, the gradient norm along it.

    An arrow that skips layers bows outwards (a quadratic Bezier, matplotlib's arc3: control
    point = midpoint + rad * (dy, -dx)), around the boxes of the layers between, instead of
    crossing them."""
    width, height = size
    index = {id(t): i for i, t in enumerate(order)}
    for child, t in enumerate(order):
        if t.node is None:
            continue
        norms = {} if trace is None else trace.edge_norms(t)
        drawn = {}  # input index -> the norms of its uses by this op (x * x uses x twice)
        for k, p in enumerate(t.node.inputs):
            if id(p) in index:
                drawn.setdefault(index[id(p)], []).append(norms.get(k))
        for parent, edge_norms in drawn.items():
            (x0, y0), (x1, y1) = position[parent], position[child]
            if downwards:
                start, end = (x0, y0 - height / 2), (x1, y1 + height / 2)
            else:
                start, end = (x0 + width / 2, y0), (x1 - width / 2, y1)
            rad = 0.0
            if layer_of[child] - layer_of[parent] > 1:
                # outwards: away from the figure's middle, on the side the input stands
                outside = x0 < fig_size[0] / 2 if downwards else y0 > fig_size[1] / 2
                rad = 0.3 if outside else -0.3
            ax.annotate("", xy=end, xytext=start, zorder=1,
                        arrowprops=dict(arrowstyle="-|>", color="#555555", lw=0.8,
                                        shrinkA=0, shrinkB=0,
                                        connectionstyle=f"arc3,rad={rad}"))
            known = [n for n in edge_norms if n is not None]
            if known and rad:
                # near the use, on the curve: B(s) = (1-s)^2 start + 2s(1-s) control + s^2 end
                dx, dy = end[0] - start[0], end[1] - start[1]
                control = ((start[0] + end[0]) / 2 + rad * dy, (start[1] + end[1]) / 2 - rad * dx)
                s = 0.85
                lx, ly = ((1 - s) ** 2 * start[axis] + 2 * s * (1 - s) * control[axis]
                          + s * s * end[axis] for axis in (0, 1))
            elif known:
                # in the last gap before the use, where no box stands in the way
                if downwards:
                    ly = end[1] + _GAP_DOWN / 2
                    lx = start[0] + (end[0] - start[0]) * (ly - start[1]) / (end[1] - start[1])
                else:
                    lx = end[0] - _GAP / 2
                    ly = start[1] + (end[1] - start[1]) * (lx - start[0]) / (end[0] - start[0])
            if known:
                ax.text(lx, ly, ", ".join(f"{n:.3g}" for n in known), ha="center",
                        va="center", fontsize=_FONT - 1, color="#b03030", zorder=4,
                        bbox=dict(boxstyle="round,pad=0.1", facecolor="white",
                                  edgecolor="none", alpha=0.85))
