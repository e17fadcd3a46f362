"""The one seed-derivation rule of every trainer: sub-seeds from a base seed by stable hashing.

Never Python's `hash` (salted per process for strings). A sub-seed is a pure function of its parts,
e.g. `derive_seed(seed, "shuffle", epoch)`, so an epoch's randomness does not depend on how a run got
there (a resumed run draws what an uninterrupted one draws).
"""

from __future__ import annotations

import hashlib
import operator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omni_msa.data.missing import MissingnessProtocol


def derive_seed(*parts: int | str) -> int:
    """A 31-bit seed that is a pure function of `parts` (ints, numpy ints included, and strings)."""
    text = "\x1f".join(part if isinstance(part, str) else str(operator.index(part)) for part in parts)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def epoch_protocol(protocol: MissingnessProtocol, epoch: int) -> MissingnessProtocol:
    """The training protocol re-seeded for one epoch: masks are re-drawn every epoch, and epoch e's
    masks are a pure function of (protocol, e), whatever the batching, the shuffle seed or a resume.
    A protocol that does not set its seed takes the run's seed (see the family configs), so runs with
    different seeds train on different masks."""
    return protocol.with_seed(derive_seed(protocol.seed, "epoch", epoch))
