"""Confidence categories (engram.v1 ConfidenceCategory) from a confidence value. Apart from
the memory model because a cached `engram recall` labels its results with them.
"""

from __future__ import annotations

from enum import IntEnum


class Category(IntEnum):
    UNSPECIFIED = 0
    NONE = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4
    CERTAIN = 5


# Confidences are shown to 4 places, and judged (categories, the recall cache's bar) as
# shown. Judged to the last bit, a memory sent at a bar falls under it at once: the wire
# carries float32 (0.7 arrives as 0.699999988), and confidence decays from the moment it
# is stored (0.7 is 0.6999993 a second later). As shown, 0.7 stays 0.7 for a minute or
# so with the default forgetting curve, and what is shown is what is judged.
PLACES = 4


def shown(value: float) -> float:
    """`value` as it is shown and judged: rounded to PLACES."""
    return round(value, PLACES)


def category_of(value: float) -> Category:
    """NONE under 0.05, LOW from 0.05, MEDIUM from 0.3, HIGH from 0.7, CERTAIN from 0.99,
    judged as shown."""
    value = shown(value)
    if value < 0.05:
        return Category.NONE
    if value < 0.3:
        return Category.LOW
    if value < 0.7:
        return Category.MEDIUM
    if value < 0.99:
        return Category.HIGH
    return Category.CERTAIN
