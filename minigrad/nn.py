"""Layers: Module (parameter discovery, state, train/eval), Linear, Sequential and activations.

A Module finds its parameters by walking its attributes: Tensors with ``requires_grad=True``,
sub-Modules, and lists or tuples of either.  Names are dotted paths (``"encoder.0.weight"``) and
the order is PyTorch's: a module's own parameters in the order its attributes were first
assigned, then each sub-Module's, depth first.  A tensor or module reached twice is listed once.

    >>> model = Sequential(Linear(4, 8), ReLU(), Linear(8, 2))
    >>> [name for name, _ in model.named_parameters()]
    ['0.weight', '0.bias', '2.weight', '2.bias']
"""
import math

import numpy as np

from minigrad import ops, saved
from minigrad.backend import check_device, is_float_dtype, namespace, to_device
from minigrad.tensor import Tensor, as_tensor


def Parameter(data):
    """A leaf Tensor that requires grad: what a Module registers as a parameter."""
    return Tensor(data, requires_grad=True)


def _is_member(value):
    return isinstance(value, Module) or (isinstance(value, Tensor) and value.requires_grad)


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


class Module:
    """Base class of layers: subclasses assign parameters and sub-Modules, and define forward."""

    training = True  # a class default, so a subclass need not call Module.__init__

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # --- discovery ---------------------------------------------------------------------------
    def _members(self):
        """(name, value) for each parameter and sub-Module held directly, in attribute order."""
        found = []
        for name, value in vars(self).items():
            if isinstance(value, (list, tuple)):
                found.extend((f"{name}.{i}", item) for i, item in enumerate(value)
                             if _is_member(item))
            elif _is_member(value):
                found.append((name, value))
        return found

    def named_children(self):
        """(name, module) for each sub-Module held directly."""
        return [(name, value) for name, value in self._members() if isinstance(value, Module)]

    def named_modules(self):
        """(dotted name, module) for this module (named "") and every sub-Module, depth first."""
        found, seen = [], set()

        def visit(prefix, module):
            if id(module) in seen:  # shared (or cyclic) modules are listed once
                return
            seen.add(id(module))
            found.append((prefix, module))
            for name, child in module.named_children():
                visit(_join(prefix, name), child)
        visit("", self)
        return found

    def named_parameters(self):
        """(dotted name, tensor) for every parameter, each tensor once."""
        found, seen = [], set()
        for prefix, module in self.named_modules():
            for name, value in module._members():
                if isinstance(value, Tensor) and id(value) not in seen:
                    seen.add(id(value))
                    found.append((_join(prefix, name), value))
        return found

    def parameters(self):
        """Every parameter, in the order of ``named_parameters``."""
        return [tensor for _, tensor in self.named_parameters()]

    def zero_grad(self):
        """Drop every parameter's gradient (the next backward starts from None)."""
        for tensor in self.parameters():
            tensor.grad = None

    def to(self, device):
        """Move every parameter to ``device`` ("cpu" or "cuda") in place; returns self.

        Each parameter stays the same Tensor (an optimizer holding it stays valid) and gets new
        ``.data`` (and ``.grad``, if it has one) on the device.  An optimizer's state follows
        its parameters at the next step.
        """
        check_device(device)
        for tensor in self.parameters():
            tensor.data = to_device(tensor.data, device)
            if tensor.grad is not None:
                tensor.grad = to_device(tensor.grad, device)
        return self

    def train(self, mode=True):
        """Set ``training`` on this module and every sub-Module; returns self."""
        for _, module in self.named_modules():
            module.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    # --- state -------------------------------------------------------------------------------
    def state_dict(self):
        """{dotted name: NumPy copy of the parameter's values}."""
        return {name: np.array(tensor.numpy(), copy=True)
                for name, tensor in self.named_parameters()}

    def load_state_dict(self, state):
        """Copy ``state`` (as from ``state_dict``) into the parameters, in place.

        Names, shapes and dtypes must all match; nothing is copied unless everything does.  The
        parameter arrays are written into, not replaced, so optimizers holding them stay valid;
        a live graph that saved one of them refuses a later backward (``minigrad.saved.modify``).
        """
        params = dict(self.named_parameters())
        missing = [name for name in params if name not in state]
        unexpected = [name for name in state if name not in params]
        if missing or unexpected:
            raise ValueError(f"load_state_dict: {type(self).__name__} state does not match: "
                           f"missing keys {missing}, unexpected keys {unexpected}")
        values = {}
        for name, tensor in params.items():
            value = np.asarray(state[name])
            if value.shape != tensor.shape:
                raise ValueError(f"load_state_dict: parameter '{name}' has shape {tensor.shape}, "
                                 f"the state has shape {value.shape}")
            if value.dtype != tensor.dtype:
                raise TypeError(f"load_state_dict: parameter '{name}' has dtype {tensor.dtype}, "
                                f"the state has dtype {value.dtype}")
            values[name] = value
        for name, tensor in params.items():
            # like an optimizer step: a live graph that saved this parameter may not backward
            saved.modify(tensor.data, f"{type(self).__name__}.load_state_dict")
            tensor.data[...] = namespace(tensor.data).asarray(values[name])

    # --- printing ----------------------------------------------------------------------------
    def extra_repr(self):
        """The text between the parentheses of this module's own line."""
        return ""

    def __repr__(self):
        head = f"{type(self).__name__}({self.extra_repr()}"
        children = self.named_children()
        if not children:
            return head + ")"
        lines = [head]
        for name, child in children:
            lines.append(f"  ({name}): " + repr(child).replace("\n", "\n  "))
        return "\n".join(lines) + "\n)"


class Linear(Module):
    """y = x @ W + b with W of shape (in_features, out_features), so forward needs no transpose.

    Initialisation is PyTorch's ``nn.Linear`` default: ``kaiming_uniform_(a=sqrt(5))`` for the
    weight, which works out to W ~ U(-1/sqrt(in), 1/sqrt(in)), and b ~ U(-1/sqrt(in), 1/sqrt(in)).
    ``rng`` is a NumPy Generator (default ``np.random.default_rng()``): pass a seeded one for a
    reproducible model.  Inputs of shape (..., in_features) give (..., out_features).
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, rng=None):
        for label, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Linear: {label} must be a positive int, got {value!r}")
        if not is_float_dtype(dtype):
            raise TypeError(f"Linear: dtype must be floating, got {np.dtype(dtype)}")
        rng = np.random.default_rng() if rng is None else rng
        self.in_features, self.out_features = int(in_features), int(out_features)
        bound = 1 / math.sqrt(in_features)
        weight = rng.uniform(-bound, bound, size=(in_features, out_features))  # (in, out)
        self.weight = Parameter(weight.astype(dtype))
        self.bias = None
        if bias:
            self.bias = Parameter(rng.uniform(-bound, bound, size=out_features).astype(dtype))

    def forward(self, x):
        x = as_tensor(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: input has shape {x.shape}; its last dimension must be "
                             f"in_features={self.in_features}")
        if x.ndim == 2:
            return ops.linear(x, self.weight, self.bias)
        leading = x.shape[:-1]
        flat = ops.reshape(x, (math.prod(leading), self.in_features))   # (B, in)
        out = ops.linear(flat, self.weight, self.bias)                  # (B, out)
        return ops.reshape(out, leading + (self.out_features,))

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Sequential(Module):
    """Modules applied in order; its parameters are named by position ("0.weight", ...)."""

    def __init__(self, *modules):
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential: argument {i} is a {type(module).__name__}, "
                                "expected a Module")
        self.layers = tuple(modules)

    def _members(self):
        return [(str(i), module) for i, module in enumerate(self.layers)]

    def forward(self, x):
        for module in self.layers:
            x = module(x)
        return x

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*self.layers[index])
        return self.layers[index]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)


class ReLU(Module):
    """max(x, 0), elementwise."""

    def forward(self, x):
        return ops.relu(x)


class Sigmoid(Module):
    """1 / (1 + e^-x), elementwise."""

    def forward(self, x):
        return ops.sigmoid(x)


class Tanh(Module):
    """tanh x, elementwise."""

    def forward(self, x):
        return ops.tanh(x)


class Softplus(Module):
    """ln(1 + e^x), elementwise."""

    def forward(self, x):
        return ops.softplus(x)
