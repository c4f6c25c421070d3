"""Process-wide tuning of the Python runtime for a long-running server."""

from __future__ import annotations

import gc

# The cyclic garbage collector's first threshold: a young-generation pass after this many more container
# objects were allocated than freed. At Python's default of 700 a server with 1,000 sessions at 2,000 calls/s
# ran about 550 young passes and 4 full ones in 20 s, the full ones pausing the event loop 65-140 ms: most of
# the pop p99. Nearly all of a request's garbage is freed by reference counting, so at 10,000 young passes are
# rare, fewer short-lived objects live through two of them into the old generation (no full pass in a run at
# 2,000-2,800 calls/s), and a young pass stays under about 7 ms even with 10,000 sessions connected. At 50,000
# one took 25-40 ms there, enough to cost the 200 calls/s pop p99 its target.
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Call once the server is set up: what start-up made (modules, the app) moves to a generation the
    collector no longer scans, and young passes run at ``GC_YOUNG_THRESHOLD``."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
