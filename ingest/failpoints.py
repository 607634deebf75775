"""Named points where a test can have this process SIGKILL itself, to prove crash safety.

``RAG_FAILPOINT=name`` kills the process the first time ``name`` is reached; ``name:N`` the Nth
time. Unset (always, outside tests), a failpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_hits: Counter[str] = Counter()


def failpoint(name: str) -> None:
    wanted = os.environ.get("RAG_FAILPOINT")
    if not wanted:
        return
    target, _, nth = wanted.rpartition(":")
    if not nth.isdigit():
        target, nth = wanted, "1"
    if target != name:
        return
    _hits[name] += 1
    if _hits[name] == int(nth):
        os.kill(os.getpid(), signal.SIGKILL)
