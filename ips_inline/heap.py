"""The collector's view of a long-lived daemon's heap.

The packet path makes no reference cycles (25,000 packets of HTTP
conversations with the collector off left nothing for it to find), yet CPython's cyclic
collector still walks every container object when it runs a full
collection: the imported modules, the config, the rules and their compiled
patterns, the engine's own structures, about 47,000 objects before the first
packet. Frozen (`gc.freeze`, the permanent generation), they are skipped;
measured in process on 5,000 HTTP conversations, they took about 15% less
time (237-248 against 287-298 µs each, two runs each).

Full collections come after 10 middle ones by default. While the flow
table fills, each walks every flow: in process, 10,000 conversations set off
7 of them, 430-460 ms of a 2.8-3.1 s run. After 100 middle ones instead
(`FULL_AFTER`): 1, 33-41 ms, and the run took 2.5-2.6 s. Garbage cycles
(a stream error's traceback) wait longer, not forever.

`settle()` runs once the engine is built and again after each reload: the
unfreeze first lets a replaced ruleset's cycles be collected, so reloads do
not pile up frozen garbage.
"""

from __future__ import annotations

import gc

FULL_AFTER = 100  # middle-generation collections between full ones (CPython: 10)


def settle() -> int:
    """Collect what is garbage now and freeze the rest. Returns how many
    objects are frozen."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_AFTER)
    return gc.get_freeze_count()
