"""The writer lock: one writer at a time, and nobody but the writer holds it (simrec.storage.locking)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from simrec import IndexLockedError
from simrec.storage.locking import writer_lock


def test_a_second_writer_in_the_same_process_is_refused(tmp_path):
    import threading

    refused = []
    with writer_lock(tmp_path):
        thread = threading.Thread(target=lambda: refused.append(_try(tmp_path)))
        thread.start()
        thread.join()
    assert refused == ["refused"]
    with writer_lock(tmp_path):  # free again once the writer is done
        pass


def _try(index_dir) -> str:
    try:
        with writer_lock(index_dir):
            return "locked"
    except IndexLockedError:
        return "refused"


def test_a_child_forked_while_writing_does_not_keep_the_lock(tmp_path):
    """A library that forks while simrec writes (OpenVINO's usage statistics do) must not hold the folder."""
    ready, started = os.pipe()
    with writer_lock(tmp_path):
        child = os.fork()
        if child == 0:  # the child outlives the writer's block
            os.write(started, b"1")  # it runs from here on: the fork is complete
            time.sleep(30)
            os._exit(0)
    os.read(ready, 1)
    try:
        with writer_lock(tmp_path):  # the writer is done: the next one gets the lock at once
            pass
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        os.close(ready)
        os.close(started)


@pytest.mark.parametrize("depth", [2, 3])
def test_the_writing_thread_may_take_the_lock_again(tmp_path, depth):
    def nest(level: int) -> None:
        with writer_lock(tmp_path):
            if level > 1:
                nest(level - 1)

    nest(depth)
    assert _try(tmp_path) == "locked"
