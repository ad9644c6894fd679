"""Every differentiable op of minigrad, each a Function (minigrad/function.py) with its forward and
backward side by side; the functions named here build their inputs and apply it."""
from minigrad.ops.arithmetic import add, div, mul, neg, pow, sub
from minigrad.ops.families import reparameterize_family
from minigrad.ops.linalg import linear, matmul
from minigrad.ops.losses import binary_cross_entropy_with_logits, gaussian_kl, mse_loss
from minigrad.ops.reduce import log_softmax, logsumexp, max, mean, sum
from minigrad.ops.reparam import reparameterize, reparameterize_kl
from minigrad.ops.shape import (broadcast_to, clone, concatenate, getitem, reshape, scatter_add,
                                stack, transpose, where)
from minigrad.ops.unary import exp, expm1, log, relu, sigmoid, softplus, sqrt, tanh

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "matmul", "linear",
    "sum", "mean", "max", "logsumexp", "log_softmax",
    "exp", "expm1", "log", "sqrt", "tanh", "sigmoid", "relu", "softplus",
    "reshape", "transpose", "broadcast_to", "getitem", "scatter_add", "concatenate", "stack",
    "where", "clone",
    "binary_cross_entropy_with_logits", "mse_loss", "gaussian_kl", "reparameterize",
    "reparameterize_kl", "reparameterize_family",
]
