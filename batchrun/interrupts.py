"""Ctrl-C and SIGTERM at any moment of a `batchrun` command: exit 130 with one line, never a
traceback, and every file closed and the run directory's lock removed on the way out.

Three phases, each with its own handler:
- from the interpreter's first line of ours until a command starts its work (imports, option
  parsing): `batchrun/__main__.py`'s handler prints one line and exits at once; nothing is open yet;
- while a command works (`unwinding`): Ctrl-C raises KeyboardInterrupt, which runs every `finally`
  on its way up, and SIGTERM does what Ctrl-C does; the command prints the one line;
- while rows are sent (`loop_handlers`): the run's own callback stops it gracefully, and the
  handlers of the phase before are back afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from typing import Any, Callable, Iterator, Sequence

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _as_ctrl_c(signum: int, frame: Any) -> None:
    """SIGTERM: whatever Ctrl-C does now (under asyncio.run: cancel the main task, so async
    `finally` blocks run too)."""
    handler = signal.getsignal(signal.SIGINT)
    if not callable(handler):  # SIG_DFL / SIG_IGN: no Python handler to hand it to
        raise KeyboardInterrupt
    handler(signal.SIGINT, frame)


@contextlib.contextmanager
def unwinding() -> Iterator[None]:
    """The body of a command: Ctrl-C and SIGTERM unwind it (KeyboardInterrupt); afterwards the
    handlers from before are back. Only the main thread can set handlers: elsewhere (a test
    invoking the CLI from a thread) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = [(sig, signal.getsignal(sig)) for sig in STOP_SIGNALS]
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _as_ctrl_c)
    try:
        yield
    finally:
        _restore(before)


@contextlib.contextmanager
def loop_handlers(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> Iterator[None]:
    """`callback` on Ctrl-C and SIGTERM while the body runs, in the loop. asyncio's
    remove_signal_handler leaves SIGTERM at its default (the process dies there, no `finally`
    runs), so the Python handlers from before are put back."""
    before = [(sig, signal.getsignal(sig)) for sig in STOP_SIGNALS]
    installed = []
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, callback)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        _restore([(sig, handler) for sig, handler in before if sig in installed])


def _restore(handlers: Sequence[tuple[int, Any]]) -> None:
    for sig, handler in handlers:
        if handler is not None:  # None: set outside Python, cannot be put back
            with contextlib.suppress(ValueError):
                signal.signal(sig, handler)
