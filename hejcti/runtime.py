"""Process-wide tuning of the Python runtime for a long-running server."""

from __future__ import annotations

import gc

# The cyclic garbage collector's first threshold: a young-generation pass after this many more container
# objects were allocated than freed. Python's default of 700 made a server under load run ~550 young passes and
# a few full ones in 20 s, the full ones pausing the event loop 65-140 ms (1,000 sessions, 2,000 calls/s), which
# was most of the pop p99. Nearly all of a request's garbage is freed by reference counting, so passes at
# 50,000 are rare (about 4 in the same run) and still catch cycles within seconds.
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Call once the server is set up: what start-up made (modules, the app) moves to a generation the
    collector no longer scans, and young passes run at ``GC_YOUNG_THRESHOLD``."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
