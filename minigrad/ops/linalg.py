"""Matrix products: matmul (NumPy's 1-D, 2-D and batched rules) and the fused affine map."""
from minigrad.backend import check_same_device, namespace
from minigrad.graph import make_node, unbroadcast
from minigrad.tensor import as_tensor


def matmul(x, y):
    """z = x @ y with NumPy's rules: a 1-D x is a row, a 1-D y a column (then dropped),
    leading dimensions broadcast as batches.

    VJP, on the 2-D-or-more forms X, Y: gX = G @ Y^T, gY = X^T @ G, each summed over broadcast
    batch dimensions and reshaped back to its operand's shape.
    """
    x = as_tensor(x)
    y = as_tensor(y, like=x)
    check_same_device("matmul", x.data, y.data)
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"matmul: operands must have at least 1 dimension, got shapes {x.shape} and {y.shape}")
    inner_y = y.shape[0] if y.ndim == 1 else y.shape[-2]
    if x.shape[-1] != inner_y:
        raise ValueError(f"matmul: shapes {x.shape} and {y.shape} do not align "
                         f"({x.shape[-1]} != {inner_y})")
    z = x.data @ y.data

    def vjp(g):
        xp = namespace(g)
        x2 = x.data[None, :] if x.ndim == 1 else x.data            # (..., m, k)
        y2 = y.data[:, None] if y.ndim == 1 else y.data            # (..., k, n)
        g2 = g
        if x.ndim == 1:
            g2 = xp.expand_dims(g2, -2 if y.ndim > 1 else 0)
        if y.ndim == 1:
            g2 = xp.expand_dims(g2, -1)                             # (..., m, n)
        gx = gy = None
        if x.requires_grad:
            gx = unbroadcast(g2 @ xp.swapaxes(y2, -1, -2), x2.shape).reshape(x.shape)
        if y.requires_grad:
            gy = unbroadcast(xp.swapaxes(x2, -1, -2) @ g2, y2.shape).reshape(y.shape)
        return gx, gy
    return make_node(z, (x, y), vjp, "matmul")


def linear(x, weight, bias=None):
    """z = x @ W + b for x (B, in), W (in, out), b (out,): one node for the affine map.

    VJP: gx = G @ W^T, gW = x^T @ G, gb = sum_B G.  One node instead of two saves a
    temporary and a graph step per layer.
    """
    x = as_tensor(x)
    weight = as_tensor(weight, like=x)
    bias = None if bias is None else as_tensor(bias, like=x)
    check_same_device("linear", x.data, weight.data)
    if bias is not None:
        check_same_device("linear", x.data, bias.data)
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[0]:
        raise ValueError(f"linear: input {x.shape} and weight {weight.shape} do not fit: "
                         "expected (batch, in) and (in, out)")
    if bias is not None and bias.shape != (weight.shape[1],):
        raise ValueError(f"linear: bias has shape {bias.shape}, expected ({weight.shape[1]},)")
    z = x.data @ weight.data
    if bias is not None:
        # in place into the product's buffer when no dtype promotion is involved
        z = z + bias.data if bias.dtype != z.dtype else namespace(z).add(z, bias.data, out=z)
    parents = (x, weight) if bias is None else (x, weight, bias)
    # keep only what the VJP will read: x for gW, W for gx (a first layer never needs gx)
    kept_input = x.data if weight.requires_grad else None
    kept_weight = weight.data if x.requires_grad else None
    has_bias, bias_grad = bias is not None, bias is not None and bias.requires_grad

    def vjp(g):
        gx = g @ kept_weight.T if kept_weight is not None else None
        gw = kept_input.T @ g if kept_input is not None else None
        if not has_bias:
            return gx, gw
        return gx, gw, g.sum(axis=0) if bias_grad else None
    return make_node(z, parents, vjp, "linear")
