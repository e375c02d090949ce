"""Ctrl-C held back around the steps that must not be cut in half (simrec.core.signals).

The real SIGINT is sent in a fresh interpreter: sent to the test process itself, it reached it
at times after the block (other libraries' threads share the process) and stopped the whole run.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading

from simrec.core.signals import deferred_interrupt


def _run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=120, check=False
    )


def test_ctrl_c_inside_the_block_is_raised_once_the_block_is_done():
    run = _run(
        """
        import os, signal, time
        from simrec.core.signals import deferred_interrupt
        done = []
        try:
            with deferred_interrupt():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)  # the signal has arrived, and is held back
                done.append("rest")
        except KeyboardInterrupt:
            print("raised after", done)
        print("handler put back", signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        """
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["raised after ['rest']", "handler put back True"]


def test_a_block_without_ctrl_c_raises_nothing():
    with deferred_interrupt():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_outside_the_main_thread_the_block_runs_as_is():
    seen = []

    def work():
        with deferred_interrupt():
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [signal.default_int_handler]
