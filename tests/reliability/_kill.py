"""kill -9 at a chosen point of a step, in a forked child of the test process.

A fork starts in milliseconds with every module already imported (a fresh interpreter takes
5-20 s to import the stack on a loaded CI box), and SIGKILL gives the step no chance to clean
up: no `finally`, no `except`, no atexit, exactly like `kill -9` or the OOM killer.

The point is named by a function of the step (`module`, `name`): the child replaces it with a
wrapper that SIGKILLs the child just before or just after the real call. The test process is
never touched. Steps must not use OpenMP thread pools the parent started (xgboost models here
use nthread=1).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from types import ModuleType
from typing import Any


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _child(step: Callable[[], Any], module: ModuleType, name: str, when: str, nth: int) -> None:
    real = getattr(module, name)
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls < nth:
            return real(*args, **kwargs)
        if when == "before":
            _die()
        if when == "during":  # a write cut short: half the data, then the kill
            data, *rest = args[1:] if args else (None,)
            if isinstance(data, (str, bytes)):
                real(args[0], data[: len(data) // 2], *rest, **kwargs)
            _die()
        out = real(*args, **kwargs)
        _die()
        return out

    setattr(module, name, wrapper)
    step()
    os._exit(0)  # the point was never reached: the parent reports it


def kill_at(step: Callable[[], Any], module: ModuleType, name: str, when: str = "after",
            timeout: float = 120.0, nth: int = 1) -> None:
    """Run `step` in a forked child and kill -9 it at the `nth` call of `module.name`:
    before it, after it, or "during" it (for a write method `(self, data, ...)`: the first
    half of `data` is written, then the kill, as when a process dies mid-write).

    Raises:
        AssertionError: the child was not killed there (it finished, failed, or hung).
    """
    if when not in ("before", "after", "during"):
        raise ValueError(f"when must be 'before', 'after' or 'during', not {when!r}")
    proc = multiprocessing.get_context("fork").Process(
        target=_child, args=(step, module, name, when, nth), daemon=True)
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
        raise AssertionError(f"the step hung before reaching {name}")
    assert proc.exitcode == -signal.SIGKILL, (
        f"the step was not killed at {when} call {nth} of {module.__name__}.{name} "
        f"(exit code {proc.exitcode}: it never called it, or failed first)")
