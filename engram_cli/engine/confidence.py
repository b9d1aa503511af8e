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


def category_of(value: float) -> Category:
    if value < 0.05:
        return Category.NONE
    if value < 0.3:
        return Category.LOW
    if value < 0.7:
        return Category.MEDIUM
    if value < 0.99:
        return Category.HIGH
    return Category.CERTAIN
