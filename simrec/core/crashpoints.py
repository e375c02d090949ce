"""Named moments in a long write, where the crash test can kill the writer.

``SIMREC_CRASH_AT=NAME`` (or ``NAME@N`` for the N-th time that moment is reached, 1-based)
makes the process kill itself with SIGKILL there, exactly as ``kill -9`` would. It is read
once at import and costs nothing when unset. Only the tests set it.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_TARGET = os.environ.get("SIMREC_CRASH_AT", "")
_NAME, _, _NTH = _TARGET.partition("@")
_WHEN = int(_NTH) if _NTH else 1
_seen: Counter[str] = Counter()


def crash_point(name: str) -> None:
    """Mark a moment; kill this process here if ``SIMREC_CRASH_AT`` names it."""
    if not _NAME or name != _NAME:
        return
    _seen[name] += 1
    if _seen[name] == _WHEN:
        os.kill(os.getpid(), signal.SIGKILL)
