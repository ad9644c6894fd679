"""Random numbers for minigrad users: the Philox4x32-10 stream of kernels.philox, and a Stream
that hands out non-overlapping stretches of it.

A draw is named by (seed, offset): n normals at (seed, offset) are normals offset .. offset+n-1 of
the stream keyed by seed, the same on every backend and however a draw is split. Stream keeps the
offset so that consecutive draws never reuse a normal; its whole state is two ints. A seed's
stream ends after 2**66 normals (kernels.contract.STREAM_END): no offset past it is accepted, and
take(n) refuses a draw that would run past it.

This module deals in arrays only (no Tensor), so any part of minigrad may import it.
"""
import math

import numpy as np

from kernels.contract import check_float_dtype, check_int, check_offset, check_shape
from kernels.philox import normal, philox4x32

__all__ = ["Stream", "normal", "philox4x32"]


class Stream:
    """A position (seed, offset) in the normal stream; take(n) claims the next n normals."""

    def __init__(self, seed, offset=0):
        self._seed = check_int("Stream", "seed", seed, bits=64)
        self._offset = check_offset("Stream", "offset", offset)

    @property
    def seed(self):
        return self._seed

    @property
    def offset(self):
        return self._offset

    def take(self, n):
        """Return the current (seed, offset) and advance the offset by n; a draw that would run
        past the end of the stream raises and leaves the offset as it was."""
        n = check_int("Stream.take", "n", n)
        check_offset("Stream.take", "offset", self._offset, n)
        position = (self._seed, self._offset)
        self._offset += n
        return position

    def normal(self, shape, dtype=np.float64):
        """Standard normals of the given shape (int or tuple) and dtype: the stream's next ones."""
        shape = check_shape("Stream.normal", shape)
        # checked before take(): a call that raises must not advance the stream
        dtype = check_float_dtype("Stream.normal", "dtype", dtype)
        size = math.prod(shape)
        seed, offset = self.take(size)
        return normal(size, seed, offset, dtype).reshape(shape)

    def state_dict(self):
        """{"seed": int, "offset": int}: plain ints, so the state survives json.dumps."""
        return {"seed": self._seed, "offset": self._offset}

    def load_state_dict(self, state):
        """Restore a state_dict(); nothing changes unless every field is valid."""
        if not isinstance(state, dict) or set(state) != {"seed", "offset"}:
            found = list(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError("Stream.load_state_dict: expected a dict with keys "
                             f"['offset', 'seed'], got {found}")
        seed = check_int("Stream.load_state_dict", "seed", state["seed"], bits=64)
        offset = check_offset("Stream.load_state_dict", "offset", state["offset"])
        self._seed, self._offset = seed, offset

    def __repr__(self):
        return f"Stream(seed={self._seed}, offset={self._offset})"
