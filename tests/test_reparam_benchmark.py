"""benchmarks/reparam.py's timing loop: no pass is charged for waking what the pause put to sleep.

The script sleeps before each method's turn; Numba's OpenMP workers fall asleep then, and the
first call after it paid their wake-up, so at small N the forward (timed first) looked slower
than forward+backward. Here a stand-in method is slow on its first call after a sleep.
"""
import numpy as np

from benchmarks import reparam

WAKE_UP = 0.02  # seconds the stand-in's first call after a pause takes


class SleepyMethod(reparam.Method):
    """Each pass takes WAKE_UP seconds on its first call after a pause, nothing after."""

    def __init__(self):
        super().__init__("sleepy", np)
        self.asleep = True

    def _pass(self):
        if self.asleep:
            self.asleep = False
            end = reparam.time.perf_counter() + WAKE_UP
            while reparam.time.perf_counter() < end:
                pass

    forward = backward = forward_backward = _pass


def test_the_first_call_after_the_pause_is_not_timed(monkeypatch):
    method = SleepyMethod()
    real_sleep = reparam.time.sleep

    def pause(seconds):
        real_sleep(seconds)
        method.asleep = True
    monkeypatch.setattr(reparam.time, "sleep", pause)
    args = reparam.parse_args(["--min-log2", "4", "--max-log2", "4", "--dtypes", "float32",
                               "--repeats", "3", "--pause", "0", "--out", "unused"])
    rows, _ = reparam.run(args, [method])
    slowest = max(row["seconds"] for row in rows)
    assert slowest < WAKE_UP / 2, {row["pass"]: row["seconds"] for row in rows}
