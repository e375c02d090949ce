"""Holding Ctrl-C back around the few steps that must not be cut in half."""

from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def deferred_interrupt():
    """Hold Ctrl-C (SIGINT) back inside the block and raise it once the block is done.

    Only the main thread can install signal handlers; elsewhere the block runs as is.

    Raises:
        KeyboardInterrupt: Ctrl-C was pressed inside the block (raised once it is done).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda *args: received.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt
