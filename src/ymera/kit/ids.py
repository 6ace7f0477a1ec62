"""Time-ordered identifiers (UUIDv7 layout) so ids sort by creation."""

from __future__ import annotations

import random
import time

_MS_MASK = (1 << 48) - 1


def new_id() -> str:
    """A UUIDv7 string: 48 bits of milliseconds, then 74 random bits.

    The random bits come from the process's generator (seeded from the OS, and
    reseeded in a forked child): ids need to be unique, not secret, and one is
    made for every task and event batch (a syscall per id was measurable)."""
    rand = random.getrandbits(74)
    value = (time.time_ns() // 1_000_000 & _MS_MASK) << 80
    value |= 0x7 << 76  # version
    value |= (rand >> 62) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
