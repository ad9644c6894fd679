"""The graph behind a tensor, as indented text and as Graphviz DOT source (no graphviz needed)."""
from minigrad.graph import topological_order


def _label(tensor):
    """"name op shape dtype"; an op with several outputs gets the output's index, op[1]."""
    name = f"{tensor.name} " if tensor.name else ""
    kind = tensor.op if tensor.op is not None else "leaf"
    if tensor.node is not None and len(tensor.node.outputs) > 1:
        kind += f"[{tensor.output_index}]"
    return f"{name}{kind} {tensor.shape} {tensor.dtype}"


def saved_bytes_of(tensor):
    """Bytes of the arrays the node that made ``tensor`` keeps for its backward (0 for a leaf)."""
    node = tensor.node
    return 0 if node is None else sum(a.nbytes for a in node.saved_arrays())


def tensors_of(root):
    """The tensors of the graph behind ``root`` that require grad (or ``root`` alone if it does
    not), each after its inputs: per node in topological order, its leaves not listed yet, then
    its outputs that are still alive."""
    if not root.requires_grad:
        return [root]
    order, seen = [], set()
    for node in topological_order(root):   # inputs last first, the order of the walk
        for t in (*reversed(node.inputs), *node.outputs):
            if t is not None and t.requires_grad and id(t) not in seen:
                seen.add(id(t))
                order.append(t)
    return order or [root]


def format_graph(tensor):
    """One line per tensor, inputs first, with the op, shape, dtype, inputs and saved bytes.

        %0 = leaf (128, 784) float32
        %2 = linear (128, 400) float32  <- %0, %1  saves 401,408 B
    """
    order = tensors_of(tensor)
    number = {id(t): i for i, t in enumerate(order)}
    lines = []
    for t in order:
        line = f"%{number[id(t)]} = {_label(t)}"
        if t.node is not None:
            inputs = ", ".join(f"%{number[id(p)]}" if p is not None and id(p) in number
                               else "const" for p in t.node.inputs)
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
    order = tensors_of(tensor)
    number = {id(t): i for i, t in enumerate(order)}
    lines = ["digraph minigrad {", "  rankdir=LR;", "  node [shape=box, fontname=monospace];"]
    for t in order:
        style = ', style=filled, fillcolor="#e8f0fe"' if t.node is None else ""
        label = _label(t).replace("\\", "\\\\").replace('"', '\\"')  # DOT string escapes
        lines.append(f'  n{number[id(t)]} [label="{label}"{style}];')
    for t in order:
        if t.node is not None:
            for p in t.node.inputs:
                if p is not None and id(p) in number:
                    lines.append(f"  n{number[id(p)]} -> n{number[id(t)]};")
    lines.append("}")
    return "\n".join(lines)
