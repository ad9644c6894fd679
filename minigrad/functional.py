"""Products with Jacobians and Hessians of a function, built on ``minigrad.grad``, with the
signatures of PyTorch's ``torch.autograd.functional``.

``func`` takes one Tensor per input and returns a Tensor (``vjp``, ``jvp``, ``jacobian``: any
shape; ``vhp``, ``hvp``, ``hessian``: one element).  ``inputs`` is a Tensor or a tuple of them,
and the results come in the same form.  The inputs are not modified: func sees fresh leaves
holding their data (connected to the originals with ``create_graph=True``, so that the results
can be differentiated further).

    vjp(func, x, v)   v^T J          one reverse pass
    jvp(func, x, v)   J v            two reverse passes (the double-VJP trick, below)
    vhp(func, x, v)   v^T H          two reverse passes
    hvp(func, x, v)   H v            the jvp of the gradient
    jacobian(func, x), hessian(func, x): dense, one reverse pass per output element (small x)

Forward-mode products by the double-VJP trick: for y = f(x), the VJP u -> u^T J is linear in
the cotangent u, so differentiating it with respect to u along v gives
    d/du <u^T J, v> = J v,
a Jacobian-vector product from two reverse passes, the first recorded (create_graph) and the
value of u irrelevant (zeros here).  No forward-mode rules are needed, and it works to any order
because every VJP is differentiable.
"""
from minigrad.autograd import grad
from minigrad.backend import namespace
from minigrad.grad_mode import enable_grad
from minigrad.ops.shape import concatenate
from minigrad.tensor import Tensor, as_tensor

_STRATEGY = "reverse-mode"


def vjp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), v^T J): the vector-Jacobian product, J = d func / d inputs.

    ``v`` has func's output shape (it may be omitted for a one-element output)."""
    is_tuple, inputs = _inputs("vjp", inputs, create_graph)
    with enable_grad():
        output = _output("vjp", func, inputs)
        v = _cotangent("vjp", "v", v, output)
        grads = _grad(output, inputs, v, create_graph, strict, "vjp")
    return _result(output, create_graph), _shaped(is_tuple, grads)


def jvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), J v): the Jacobian-vector product, by the double-VJP trick (module
    docstring).  ``v`` has the inputs' shapes (a tuple for tuple inputs; it may be omitted for
    a single one-element input)."""
    is_tuple, inputs = _inputs("jvp", inputs, create_graph)
    v = _tangents("jvp", v, inputs)
    with enable_grad():
        output = _output("jvp", func, inputs)
        # u^T J for a dummy cotangent u: linear in u, so its derivative along v is J v
        u = _zeros(output).requires_grad_()
        grads = _grad(output, inputs, u, True, strict, "jvp")
        used = [(g, t) for g, t in zip(grads, v) if g is not None]
        product = None
        if used:
            (product,) = grad([g for g, _ in used], [u], [t for _, t in used],
                              create_graph=create_graph, allow_unused=True)
        if product is None:  # func is constant in the inputs
            product = _zeros(output)
    return _result(output, create_graph), _result(product, create_graph)


def vhp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), v^T H) for a one-element func: the gradient of <grad func, v>."""
    is_tuple, inputs = _inputs("vhp", inputs, create_graph)
    v = _tangents("vhp", v, inputs)
    with enable_grad():
        output = _scalar_output("vhp", func, inputs)
        first = _grad(output, inputs, None, True, strict, "vhp")
        pairs = [(g, t, x) for g, t, x in zip(first, v, inputs) if g is not None and g.requires_grad]
        products = [None] * len(inputs)
        if pairs:
            found = grad([g for g, _, _ in pairs], list(inputs), [t for _, t, _ in pairs],
                         create_graph=create_graph, allow_unused=True)
            products = list(found)
        products = _filled(products, inputs, strict, "vhp")
    return _result(output, create_graph), _shaped(is_tuple, products)


def hvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), H v) for a one-element func: the jvp of its gradient (H v, exact even
    where H is not symmetric, as PyTorch's hvp)."""
    is_tuple, inputs = _inputs("hvp", inputs, create_graph)
    v = _tangents("hvp", v, inputs)
    with enable_grad():
        output = _scalar_output("hvp", func, inputs)
        first = _grad(output, inputs, None, True, strict, "hvp")
        u = [_zeros(x).requires_grad_() for x in inputs]
        # <u, grad f> is linear in u; its gradient in the inputs is u^T H, whose derivative
        # along v with respect to u is H v (the double-VJP trick on the gradient)
        pairs = [(g, w) for g, w in zip(first, u) if g is not None and g.requires_grad]
        products = [None] * len(inputs)
        if pairs:
            rows = grad([g for g, _ in pairs], list(inputs), [w for _, w in pairs],
                        create_graph=True, allow_unused=True)
            used = [(r, t) for r, t in zip(rows, v) if r is not None and r.requires_grad]
            if used:
                products = list(grad([r for r, _ in used], u, [t for _, t in used],
                                     create_graph=create_graph, allow_unused=True))
        products = _filled(products, inputs, strict, "hvp")
    return _result(output, create_graph), _shaped(is_tuple, products)


def jacobian(func, inputs, create_graph=False, strict=False, vectorize=False,
             strategy=_STRATEGY):
    """d func / d inputs as a dense Tensor of shape output.shape + input.shape (a tuple of them
    for tuple inputs), one reverse pass per output element."""
    _options("jacobian", vectorize, strategy)
    is_tuple, inputs = _inputs("jacobian", inputs, create_graph)
    with enable_grad():
        output = _output("jacobian", func, inputs)
        rows = [[] for _ in inputs]
        for k in range(output.size):
            e = namespace(output.data).zeros(output.size, dtype=output.dtype)
            e[k] = 1.0
            grads = _grad(output, inputs, Tensor(e.reshape(output.shape)), create_graph,
                          strict, "jacobian", retain_graph=True)
            for row, g in zip(rows, grads):
                row.append(g.reshape((1,) + g.shape))
        blocks = [_stacked(row, output.shape, x) for row, x in zip(rows, inputs)]
    return _shaped(is_tuple, [_result(b, create_graph) for b in blocks])


def hessian(func, inputs, create_graph=False, strict=False, vectorize=False,
            outer_jacobian_strategy=_STRATEGY):
    """The matrix of second derivatives of a one-element func, the Jacobian of its gradient:
    shape input.shape + input.shape (a tuple of tuples of blocks for tuple inputs)."""
    _options("hessian", vectorize, outer_jacobian_strategy)
    is_tuple, inputs = _inputs("hessian", inputs, create_graph)

    def gradient(*xs):
        output = _scalar_output("hessian", func, xs)
        grads = _grad(output, xs, None, True, strict, "hessian")
        return grads

    with enable_grad():
        first = gradient(*inputs)
        blocks = []
        for g_i in first:
            row = []
            flat = g_i.reshape((g_i.size,))
            for k in range(g_i.size):
                if flat.requires_grad:
                    parts = grad(flat[k], list(inputs), retain_graph=True,
                                 create_graph=create_graph, allow_unused=True)
                else:
                    parts = [None] * len(inputs)
                row.append(_filled(list(parts), inputs, strict, "hessian"))
            blocks.append([_stacked([r[j].reshape((1,) + inputs[j].shape) for r in row],
                                    g_i.shape, inputs[j]) for j in range(len(inputs))])
    blocks = [[_result(b, create_graph) for b in row] for row in blocks]
    if not is_tuple:
        return blocks[0][0]
    return tuple(tuple(row) for row in blocks)


# --- helpers -----------------------------------------------------------------------------------
def _inputs(name, inputs, create_graph):
    """(whether inputs was a tuple, fresh leaves of them): a leaf sharing the data, or, with
    create_graph and an input that requires grad, an identity of it (so results connect)."""
    is_tuple = isinstance(inputs, (tuple, list))
    values = list(inputs) if is_tuple else [inputs]
    if not values:
        raise ValueError(f"{name}: inputs is empty")
    leaves = []
    for i, x in enumerate(values):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: inputs[{i}] is {type(x).__name__}; expected a Tensor")
        if x.dtype.kind != "f":
            raise TypeError(f"{name}: inputs[{i}] has dtype {x.dtype}; differentiation needs a "
                            "float dtype")
        if create_graph and x.requires_grad:
            with enable_grad():
                leaves.append(x.reshape(x.shape))
        else:
            leaves.append(Tensor(x.data, requires_grad=True))
    return is_tuple, leaves


def _output(name, func, inputs):
    output = func(*inputs)
    if not isinstance(output, Tensor):
        raise TypeError(f"{name}: func returned {type(output).__name__}; it must return a "
                        "minigrad Tensor")
    return output


def _scalar_output(name, func, inputs):
    output = _output(name, func, inputs)
    if output.size != 1:
        raise ValueError(f"{name}: func returned shape {output.shape}; it must return one "
                         "element (a Hessian is of a scalar function)")
    return output


def _cotangent(name, what, v, output):
    """``v`` as a Tensor of the output's shape (None for a one-element output)."""
    if v is None:
        if output.size != 1:
            raise ValueError(f"{name}: {what} is needed for an output of shape {output.shape}")
        return None
    v = as_tensor(v, like=output)
    if v.shape != output.shape:
        raise ValueError(f"{name}: {what} has shape {v.shape}, the output has shape "
                         f"{output.shape}")
    return v


def _tangents(name, v, inputs):
    """``v`` as one Tensor per input, each of that input's shape."""
    if v is None:
        if len(inputs) != 1 or inputs[0].size != 1:
            raise ValueError(f"{name}: v is needed unless the input is a single element")
        return [_zeros(inputs[0]) + 1.0]
    values = list(v) if isinstance(v, (tuple, list)) else [v]
    if len(values) != len(inputs):
        raise ValueError(f"{name}: v has {len(values)} entries for {len(inputs)} inputs")
    tangents = []
    for i, (t, x) in enumerate(zip(values, inputs)):
        t = as_tensor(t, like=x)
        if t.shape != x.shape:
            raise ValueError(f"{name}: v[{i}] has shape {t.shape}, inputs[{i}] has shape "
                             f"{x.shape}")
        tangents.append(t)
    return tangents


def _grad(output, inputs, v, create_graph, strict, name, retain_graph=None):
    """grad of output along v for each input; zeros (or, with strict, an error) for an input
    the output does not depend on."""
    if not output.requires_grad:
        grads = [None] * len(inputs)
    else:
        grads = list(grad(output, list(inputs), v, retain_graph=retain_graph,
                          create_graph=create_graph, allow_unused=True))
    return _filled(grads, inputs, strict, name)


def _filled(grads, inputs, strict, name):
    """None entries replaced by zeros of their input's shape, or refused with ``strict``."""
    filled = []
    for i, (g, x) in enumerate(zip(grads, inputs)):
        if g is None:
            if strict:
                raise RuntimeError(f"{name}: the output does not depend on inputs[{i}] "
                                   "(strict=True)")
            g = _zeros(x)
        filled.append(g)
    return filled


def _stacked(rows, shape, x):
    """Rows (1,) + x.shape, one per element of ``shape``, as one Tensor shape + x.shape."""
    return concatenate(rows, axis=0).reshape(tuple(shape) + x.shape)


def _zeros(like):
    """Zeros of ``like``'s shape and dtype, on its device (a Tensor without grad)."""
    return Tensor(namespace(like.data).zeros(like.shape, dtype=like.dtype))


def _result(t, create_graph):
    return t if create_graph else t.detach()


def _shaped(is_tuple, values):
    return tuple(values) if is_tuple else values[0]


def _options(name, vectorize, strategy):
    if vectorize:
        raise NotImplementedError(f"{name}: vectorize=True needs a vmap, which minigrad does "
                                  "not have; the products are computed one row at a time")
    if strategy != _STRATEGY:
        raise ValueError(f"{name}: strategy {strategy!r} is not supported; only "
                         f"{_STRATEGY!r} (forward mode is the double-VJP trick of jvp)")
