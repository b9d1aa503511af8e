"""The forgetting curve, shared by the server and the client's recall cache.

    confidence(t) = c0 * (floor + (1 - floor) * (1 + t / scale) ** -exponent)

t is the time since the memory was last accessed; `exponent` is the memory's own
decay_rate when above 0, else the server's `forgetting_exponent`. A power law with a
floor: fast early loss, a long tail, and never below floor * c0.
"""

from __future__ import annotations


def decayed(
    confidence: float,
    elapsed_s: float,
    decay_rate: float = 0.0,
    exponent: float = 0.1,
    floor: float = 0.2,
    scale_s: float = 86_400.0,
) -> float:
    if elapsed_s <= 0:
        return confidence
    k = decay_rate if decay_rate > 0 else exponent
    if k <= 0:
        return confidence
    retained = floor + (1.0 - floor) * (1.0 + elapsed_s / scale_s) ** -k
    return confidence * retained
