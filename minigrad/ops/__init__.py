"""Every differentiable op of minigrad, each with its forward and VJP side by side."""
from minigrad.ops.arithmetic import add, div, mul, neg, pow, sub
from minigrad.ops.linalg import linear, matmul
from minigrad.ops.losses import binary_cross_entropy_with_logits, gaussian_kl, mse_loss
from minigrad.ops.reduce import log_softmax, logsumexp, max, mean, sum
from minigrad.ops.reparam import reparameterize, reparameterize_kl
from minigrad.ops.shape import concatenate, getitem, reshape, stack, transpose, where
from minigrad.ops.unary import exp, log, relu, sigmoid, softplus, sqrt, tanh

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "matmul", "linear",
    "sum", "mean", "max", "logsumexp", "log_softmax",
    "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "softplus",
    "reshape", "transpose", "getitem", "concatenate", "stack", "where",
    "binary_cross_entropy_with_logits", "mse_loss", "gaussian_kl", "reparameterize",
    "reparameterize_kl",
]
