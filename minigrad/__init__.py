"""minigrad: reverse-mode automatic differentiation on NumPy, written to be read.

    >>> import minigrad as mg
    >>> x = mg.Tensor([1.0, 2.0], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad
    array([2., 4.])
    >>> (g,) = mg.grad((x ** 3).sum(), x, create_graph=True)    # 3 x^2, differentiable
    >>> mg.grad(g.sum(), x)[0].data                              # 6 x
    array([ 6., 12.])
"""
from minigrad.grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from minigrad.tensor import Tensor, as_tensor
from minigrad.function import Function
from minigrad.ops import *  # noqa: F401,F403  (the op functions are the public API)
from minigrad.ops import __all__ as _op_names
from minigrad.graph_view import format_graph, to_dot
from minigrad import nn, optim, random, viz
from minigrad.trace import trace
from minigrad.anomaly import detect_anomaly
from minigrad.autograd import grad
from minigrad import functional

__all__ = ["Tensor", "as_tensor", "Function", "grad", "functional", "no_grad", "enable_grad",
           "set_grad_enabled", "is_grad_enabled", "format_graph", "to_dot", "nn", "optim",
           "random", "viz", "trace", "detect_anomaly", *_op_names]
