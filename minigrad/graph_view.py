"""The graph behind a tensor, as indented text and as Graphviz DOT source (no graphviz needed)."""
from minigrad.graph import topological_order


def _label(tensor):
    name = f"{tensor.name} " if tensor.name else ""
    kind = tensor.op if tensor.op is not None else "leaf"
    return f"{name}{kind} {tensor.shape} {tensor.dtype}"


def saved_bytes_of(tensor):
    """Bytes of the arrays the node that made ``tensor`` keeps for its backward (0 for a leaf)."""
    node = tensor._node
    return 0 if node is None else sum(a.nbytes for a in node.saved_arrays())


def format_graph(tensor):
    """One line per tensor, inputs first, with the op, shape, dtype, inputs and saved bytes.

        %0 = leaf (128, 784) float32
        %2 = linear (128, 400) float32  <- %0, %1  saves 401,408 B
    """
    order = topological_order(tensor) if tensor.requires_grad else [tensor]
    number = {id(t): i for i, t in enumerate(order)}
    lines = []
    for t in order:
        line = f"%{number[id(t)]} = {_label(t)}"
        if t._node is not None:
            inputs = ", ".join(f"%{number[id(p)]}" if id(p) in number else "const"
                               for p in t._node.parents)
            line += f"  <- {inputs}"
            saved = saved_bytes_of(t)
            if saved:
                line += f"  saves {saved:,} B"
        if t.grad is not None:
            line += "  (has .grad)"
        lines.append(line)
    return "\n".join(lines)


def to_dot(tensor):
    """Graphviz DOT source of the graph: one box per tensor, an edge from each input to its use.

    Render it with any Graphviz (``dot -Tpng``); minigrad itself never calls graphviz.
    """
    order = topological_order(tensor) if tensor.requires_grad else [tensor]
    number = {id(t): i for i, t in enumerate(order)}
    lines = ["digraph minigrad {", "  rankdir=LR;", "  node [shape=box, fontname=monospace];"]
    for t in order:
        style = ', style=filled, fillcolor="#e8f0fe"' if t._node is None else ""
        label = _label(t).replace("\\", "\\\\").replace('"', '\\"')  # DOT string escapes
        lines.append(f'  n{number[id(t)]} [label="{label}"{style}];')
    for t in order:
        if t._node is not None:
            for p in t._node.parents:
                if id(p) in number:
                    lines.append(f"  n{number[id(p)]} -> n{number[id(t)]};")
    lines.append("}")
    return "\n".join(lines)
