"""``minigrad.grad``: the gradients of some outputs with respect to chosen inputs, returned rather
than accumulated into ``.grad`` (PyTorch's ``torch.autograd.grad``).

    (gx,) = minigrad.grad(y, x, create_graph=True)     # dy/dx, itself differentiable
    (gxx,) = minigrad.grad(gx.sum(), x)                 # the second derivative's row sums

With ``create_graph=True`` the gradients are Tensors of a new graph, so ``grad`` composes with
itself to any order.
"""
from minigrad import graph
from minigrad.tensor import Tensor


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False):
    """The gradients of sum_i <grad_outputs[i], outputs[i]> with respect to each of ``inputs``.

    outputs: a Tensor or a sequence of Tensors that require grad.
    inputs: a Tensor or a sequence of Tensors that require grad (leaves or not).
    grad_outputs: the cotangents, one per output (a Tensor, array, number or None); None, or a
        None entry, stands for 1 and is allowed only for a one-element output.
    retain_graph: keep the graph for another backward (default: ``create_graph``).
    create_graph: record the gradients' own graph, so that they can be differentiated.
    allow_unused: return None for an input that no output depends on, instead of raising.

    Returns a tuple with one gradient (a Tensor) per input.  No ``.grad`` is touched.
    """
    outputs = _tensors("grad", "outputs", outputs)
    inputs = _tensors("grad", "inputs", inputs)
    for i, t in enumerate(outputs):
        if not t.requires_grad:
            raise RuntimeError(f"grad: output {i} (shape {t.shape}) does not require grad: no "
                               "input of it has requires_grad=True, or it was made under "
                               "no_grad()")
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            raise RuntimeError(f"grad: input {i} (shape {t.shape}) does not require grad; "
                               "only tensors with requires_grad=True have a gradient")
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, (list, tuple)):
        grad_outputs = list(grad_outputs)
    else:
        grad_outputs = [grad_outputs]
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad: {len(grad_outputs)} grad_outputs for {len(outputs)} outputs; "
                         "give one per output")
    for i, (t, v) in enumerate(zip(outputs, grad_outputs)):
        if v is None and t.size != 1:
            raise RuntimeError(f"grad: output {i} has shape {t.shape}; a non-scalar output needs "
                               "its cotangent in grad_outputs")
    retain_graph = create_graph if retain_graph is None else retain_graph
    grads = graph.backward(outputs, grad_outputs, retain_graph, create_graph, inputs=inputs)
    for i, (t, g) in enumerate(zip(inputs, grads)):
        if g is None and not allow_unused:
            raise RuntimeError(f"grad: input {i} (shape {t.shape}) is not used to compute the "
                               "outputs; pass allow_unused=True to get None for it")
    return tuple(grads)


def _tensors(name, what, value):
    """``value`` (a Tensor or a sequence of them) as a non-empty list of Tensors."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ValueError(f"{name}: {what} is empty")
    for i, t in enumerate(values):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: {what}[{i}] is {type(t).__name__}; expected a Tensor")
    return values
