"""Optimizers: SGD (with momentum and Nesterov) and Adam, each with PyTorch's update rule.

A step runs in place in each parameter's dtype (Adam: float32 for float16 parameters, see there),
through the array's namespace (NumPy or CuPy), and reuses scratch arrays made once per parameter:
nothing parameter-sized is allocated per step.
State lives on its parameter's device and follows it when ``Module.to`` moves the parameter;
``state_dict`` always returns NumPy arrays, and ``load_state_dict`` puts them on the parameter's
device.  A parameter whose ``.grad`` is None is skipped and its state left alone, as in PyTorch.

``state_dict()`` holds only arrays and plain numbers, so a checkpoint needs no pickle:

    state = optimizer.state_dict()
    np.savez(path, **{k: v for k, v in state.items() if isinstance(v, np.ndarray)})
    json.dump({k: v for k, v in state.items() if not isinstance(v, np.ndarray)}, file)
"""
import numbers
import re

import numpy as np

import kernels
from minigrad import saved
from minigrad.backend import check_same_device, device_of, namespace, to_device
from minigrad.tensor import Tensor


class Optimizer:
    """The parameters, their state and the step count; subclasses define one parameter's update.

    A subclass names its hyperparameters (attributes saved by ``state_dict``), the ints and the
    arrays it keeps per parameter (created on that parameter's first update), checks
    hyperparameters in ``_validated`` and updates one parameter in ``_update(i, param, grad)``.
    """

    hyperparameters = ()
    state_ints = ()
    state_arrays = ()

    def __init__(self, params):
        owner = type(self).__name__
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{owner}: got an empty list of parameters")
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor) or not p.requires_grad:
                what = ("a Tensor with requires_grad=False" if isinstance(p, Tensor)
                        else type(p).__name__)
                raise TypeError(f"{owner}: parameter {i} is {what}; expected a Tensor with "
                                "requires_grad=True")
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError(f"{owner}: a parameter appears more than once in the list")
        self.step_count = 0
        self.state = [{} for _ in self.params]     # per parameter: state_ints and state_arrays
        self._scratch = [[] for _ in self.params]  # per parameter: reusable temporaries
        self._array_types = [None for _ in self.params]  # per parameter: type of its data

    def zero_grad(self):
        """Set every parameter's gradient to None."""
        for p in self.params:
            p.grad = None

    def step(self):
        """Update every parameter that has a gradient."""
        self.step_count += 1
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            # a Tensor after backward(create_graph=True): the step uses its values
            grad = p.grad.data if isinstance(p.grad, Tensor) else p.grad
            if tuple(grad.shape) != p.shape:
                raise ValueError(f"{type(self).__name__}.step: parameter {i} has shape {p.shape}, "
                                 f"its grad has shape {tuple(grad.shape)}")
            check_same_device(f"{type(self).__name__}.step (parameter {i} and its grad)",
                              p.data, grad)
            if type(p.data) is not self._array_types[i]:  # first step, or Module.to moved it
                self._follow(i, p.data)
            # a graph still holding this parameter (retain_graph) must not backward through it
            saved.modify(p.data, f"{type(self).__name__}.step")
            self._update(i, p.data, grad)

    def _follow(self, i, like):
        """Parameter i is new to this array type (first step, or moved by ``Module.to``): move
        its state to its device, drop scratch arrays made for another one."""
        self._array_types[i] = type(like)
        device = device_of(like)
        for key in self.state_arrays:
            if key in self.state[i]:
                self.state[i][key] = to_device(self.state[i][key], device)
        self._scratch[i] = []

    def _scratch_arrays(self, i, like, count, dtype=None):
        """``count`` temporaries shaped like parameter i (in ``dtype``, default like's), made on
        first use and then reused; a parameter's scratch arrays all have one dtype."""
        arrays = self._scratch[i]
        while len(arrays) < count:
            arrays.append(namespace(like).empty_like(like, dtype=dtype))
        return arrays[:count]

    def _state_dtype(self, dtype):
        """The dtype of the state arrays kept for a parameter of ``dtype``: its own."""
        return np.dtype(dtype)

    # --- checkpoints -------------------------------------------------------------------------
    def state_dict(self):
        """{name: number or NumPy array}: hyperparameters, "num_params", "step" (the number of
        step() calls) and "state.<i>.<key>" for each parameter that has state."""
        state = {name: getattr(self, name) for name in self.hyperparameters}
        state["num_params"] = len(self.params)
        state["step"] = self.step_count
        for i, entry in enumerate(self.state):
            for key in self.state_ints:
                if key in entry:
                    state[f"state.{i}.{key}"] = entry[key]
            for key in self.state_arrays:
                if key in entry:
                    array = entry[key]
                    xp = namespace(array)
                    state[f"state.{i}.{key}"] = (array.copy() if xp is np
                                                 else xp.asnumpy(array))
        return state

    def load_state_dict(self, state):
        """Restore a ``state_dict``: the same parameter count, keys, shapes and dtypes, or a
        ValueError/TypeError naming what differs; nothing changes unless everything matches."""
        owner = f"{type(self).__name__}.load_state_dict"
        top = {*self.hyperparameters, "num_params", "step"}
        missing = sorted(top - set(state))
        if missing:
            raise ValueError(f"{owner}: the state lacks {missing}")
        count = _count(owner, "num_params", _scalar(state["num_params"]))
        if count != len(self.params):
            raise ValueError(f"{owner}: the state is for {count} parameters, this optimizer "
                             f"has {len(self.params)}")
        entries, unexpected = {}, []
        for key, value in state.items():
            if key in top:
                continue
            match = re.fullmatch(r"state\.(\d+)\.(\w+)", key)
            if (match is None or int(match[1]) >= count
                    or match[2] not in self.state_ints + self.state_arrays):
                unexpected.append(key)
                continue
            entries.setdefault(int(match[1]), {})[match[2]] = value
        if unexpected:
            raise ValueError(f"{owner}: unexpected keys {unexpected}")

        new_state = [{} for _ in self.params]
        for i, entry in sorted(entries.items()):
            absent = [key for key in self.state_ints + self.state_arrays if key not in entry]
            if absent:
                raise ValueError(f"{owner}: parameter {i} has some state but lacks "
                                 f"{[f'state.{i}.{key}' for key in absent]}")
            param = self.params[i]
            for key in self.state_ints:
                new_state[i][key] = _count(owner, f"state.{i}.{key}", _scalar(entry[key]))
            for key in self.state_arrays:
                value = entry[key]
                if namespace(value) is np:
                    value = np.asarray(value)
                if tuple(value.shape) != param.shape:
                    raise ValueError(f"{owner}: state.{i}.{key} has shape {tuple(value.shape)}, "
                                     f"parameter {i} has shape {param.shape}")
                expected = self._state_dtype(param.dtype)
                if value.dtype != expected:
                    kept = "" if expected == param.dtype else f", whose state is {expected}"
                    raise TypeError(f"{owner}: state.{i}.{key} has dtype {value.dtype}, "
                                    f"parameter {i} has dtype {param.dtype}{kept}")
                new_state[i][key] = namespace(param.data).array(value, copy=True)
        hyper = self._validated({name: _scalar(state[name]) for name in self.hyperparameters})
        step_count = _count(owner, "step", _scalar(state["step"]))

        self.__dict__.update(hyper)
        self.step_count, self.state = step_count, new_state

    def _validated(self, hyper):
        """``hyper`` checked and normalised (floats, bools), or an error naming the bad value."""
        raise NotImplementedError(f"{type(self).__name__} does not define _validated()")

    def _update(self, i, param, grad):
        raise NotImplementedError(f"{type(self).__name__} does not define _update()")


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's rule with dampening 0:

        d = g + weight_decay * p
        buf = momentum * buf + d        (buf = d on a parameter's first update)
        d = d + momentum * buf if nesterov else buf        (when momentum != 0)
        p = p - lr * d
    """

    hyperparameters = ("lr", "momentum", "weight_decay", "nesterov")
    state_arrays = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params)
        self.__dict__.update(self._validated(dict(
            lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)))

    def _validated(self, hyper):
        checked = {name: _real("SGD", name, hyper[name])
                   for name in ("lr", "momentum", "weight_decay")}
        if not isinstance(hyper["nesterov"], (bool, np.bool_)):
            raise TypeError(f"SGD: nesterov must be a bool, got {hyper['nesterov']!r}")
        checked["nesterov"] = bool(hyper["nesterov"])
        if checked["nesterov"] and checked["momentum"] == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        return checked

    def _update(self, i, p, g):
        xp = namespace(p)
        scratch = self._scratch_arrays(i, p, 2 if self.nesterov else 1)
        d = g
        if self.weight_decay:
            d = xp.multiply(p, self.weight_decay, out=scratch[0])
            d += g
        if self.momentum:
            buf = self.state[i].get("momentum_buffer")
            if buf is None:
                buf = self.state[i]["momentum_buffer"] = xp.array(d, copy=True)
            else:
                buf *= self.momentum
                buf += d
            if self.nesterov:
                nesterov_d = xp.multiply(buf, self.momentum, out=scratch[1])
                nesterov_d += d
                d = nesterov_d
            else:
                d = buf
        # d may be scratch[0] itself: an elementwise product may write over its input
        p -= xp.multiply(d, self.lr, out=scratch[0])


class Adam(Optimizer):
    """Adam, PyTorch's default rule (L2 weight decay, no amsgrad), with t the parameter's step:

        g = g + weight_decay * p
        m = b1 m + (1 - b1) g               v = b2 v + (1 - b2) g^2
        step_size = lr / (1 - b1^t)         denom = sqrt(v) / sqrt(1 - b2^t) + eps
        p = p - step_size * m / denom

    The arithmetic is in the parameter's dtype (float32 parameters keep float32 m and v), except
    for float16 parameters: their m and v are float32 (so is ``state_dict``'s copy, and
    ``load_state_dict`` wants float32 there), and each step updates a float32 copy of the
    parameter, rounded to float16 once at the end.

    NOTE: float16 cannot hold Adam's arithmetic: eps = 1e-8 rounds to 0 there, and for |g| below
    about 7.7e-3 so does (1 - b2) g^2, so the first step divides m by 0 and writes -inf (PyTorch
    does the same).  In float32 both are exact enough, and the result is the float64 step rounded
    to float16 (up to a double rounding, within one float16 ulp).  The parameter itself is still
    float16: an update below half its ulp rounds away, which only a float32 master copy avoids.

    NOTE: where gradients vanish, m decays geometrically into the subnormal range, and tiny
    gradients (|g| < 1e-19 in float32) put g^2, so v, there at every step; float32 arithmetic on
    subnormals is many times slower on x86 CPUs (measured: a NumPy Adam step went from about
    1 ms to 4 ms).  Every ``flush_denormals_every`` steps (0 disables), entries of m and v below
    the dtype's smallest normal (``finfo.tiny``) are set to zero; their effect on the update is
    far below eps.  The default, every step, costs nothing in the fused loop (a select per
    element); the array expression pays three passes for it, so pass a larger number with
    ``fused=False``.  The threshold is that of the moments' dtype (float32 for float16 parameters).

    ``fused`` (default) runs the update of NumPy parameters (or their float32 copies) as one Numba
    loop (``kernels.numba.adam``), bit-identical to the array expression used otherwise, and of
    CuPy parameters as one CUDA kernel (``kernels.cuda_c.cupy_adam``, the same bits); the
    implementation is chosen by ``kernels.adam_backend_for`` from ``kernels.ADAM_BACKENDS``.
    """

    hyperparameters = ("lr", "beta1", "beta2", "eps", "weight_decay")
    state_ints = ("step",)
    state_arrays = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 flush_denormals_every=1, fused=True):
        super().__init__(params)
        self.fused = bool(fused)
        if len(betas) != 2:
            raise ValueError(f"Adam: betas must be a pair (beta1, beta2), got {betas!r}")
        self.__dict__.update(self._validated(dict(
            lr=lr, beta1=betas[0], beta2=betas[1], eps=eps, weight_decay=weight_decay)))
        self.flush_denormals_every = _count("Adam", "flush_denormals_every",
                                            flush_denormals_every)

    @property
    def betas(self):
        return self.beta1, self.beta2

    def _validated(self, hyper):
        checked = {name: _real("Adam", name, hyper[name]) for name in self.hyperparameters}
        for name in ("beta1", "beta2"):
            if checked[name] >= 1:
                raise ValueError(f"Adam: {name} must be in [0, 1), got {checked[name]}")
        return checked

    def _state_dtype(self, dtype):
        """float32 for float16 parameters (see the class's note), else the parameter's dtype."""
        dtype = np.dtype(dtype)
        return np.dtype(np.float32) if dtype == np.float16 else dtype

    def _update(self, i, p, g):
        xp = namespace(p)
        dtype = self._state_dtype(p.dtype)
        state = self.state[i]
        if not state:
            state.update(step=0, exp_avg=xp.zeros_like(p, dtype=dtype),
                         exp_avg_sq=xp.zeros_like(p, dtype=dtype))
        state["step"] += 1
        if dtype == p.dtype:
            self._step(i, p, g, state, first_scratch=0)
            return
        # a float16 parameter: the step runs on float32 copies of it and of its gradient
        work, work_grad = self._scratch_arrays(i, p, 2, dtype)
        xp.copyto(work, p)
        xp.copyto(work_grad, g)
        self._step(i, work, work_grad, state, first_scratch=2)
        xp.copyto(p, work)  # the one rounding to float16

    def _step(self, i, p, g, state, first_scratch):
        """One Adam step on p (the parameter, or its float32 copy) in p's dtype, which is the
        moments' dtype; scratch arrays from index ``first_scratch`` on are free to use."""
        xp = namespace(p)
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        step_size = self.lr / (1 - self.beta1 ** t)
        bias_correction2_sqrt = (1 - self.beta2 ** t) ** 0.5
        flush = self.flush_denormals_every and self.step_count % self.flush_denormals_every == 0
        fused = kernels.adam_backend_for(p, g) if self.fused else "expression"
        if fused != "expression":  # one loop or kernel (kernels.ADAM_BACKENDS), imported on use
            dtype = p.dtype.type
            scalars = (dtype(1 - self.beta1), dtype(self.beta2), dtype(1 - self.beta2),
                       dtype(step_size), dtype(bias_correction2_sqrt), dtype(self.eps),
                       dtype(self.weight_decay), np.finfo(p.dtype).tiny if flush else dtype(0))
            kernels.adam_update(fused)(p.reshape(-1), g.reshape(-1), m.reshape(-1),
                                       v.reshape(-1), *scalars)
            return
        count = 2 if self.weight_decay else 1
        scratch = self._scratch_arrays(i, p, first_scratch + count)[first_scratch:]
        s = scratch[0]
        if self.weight_decay:
            decayed = xp.multiply(p, self.weight_decay, out=scratch[1])
            decayed += g
            g = decayed
        # NOTE: PyTorch writes m's average as lerp, m + (1 - b1)(g - m); we round as it does.
        xp.subtract(g, m, out=s)
        s *= 1 - self.beta1
        m += s
        v *= self.beta2
        xp.multiply(g, g, out=s)
        s *= 1 - self.beta2
        v += s
        denom = xp.sqrt(v, out=s)
        denom /= bias_correction2_sqrt
        denom += self.eps
        update = xp.divide(m, denom, out=s)
        update *= step_size
        p -= update
        if flush:
            tiny = np.finfo(p.dtype).tiny
            for moment in (m, v):
                xp.abs(moment, out=s)
                # NOTE: copyto, not moment[mask] = 0, whose CuPy form may synchronise
                xp.copyto(moment, 0, where=s < tiny)


def _scalar(value):
    """A number from a checkpoint: 0-d arrays (as np.savez stores scalars) become Python's."""
    if hasattr(value, "ndim") and value.ndim == 0:
        return value.item()
    return value


def _real(owner, name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a number, got {value!r}")
    if not float(value) >= 0:  # also rejects NaN
        raise ValueError(f"{owner}: {name} must be >= 0, got {value}")
    return float(value)


def _count(owner, name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{owner}: {name} must be >= 0, got {value}")
    return int(value)
