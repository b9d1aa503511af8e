"""Vectors scaled to length 1, for cosine similarity, safe for any finite float32 vector.

In float32 the squares of a vector's values overflow to infinity from about 1e19 and
vanish below about 1e-23: a valid vector of large or tiny values came out of numpy's norm
as NaN or zero (a cue then matched nothing, or was called "all zeros"). Lengths are taken
in float32, where they are safe (every real embedding), and again in float64 for the rows
whose float32 length left that range.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Between these lengths a float32 sum of squares is a normal number, exact to float32.
_SAFE_LOW, _SAFE_HIGH = 1e-18, 1e18


def lengths(mat: Any) -> Any:
    """The Euclidean length of each row of a 2-D float32 array."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # the odd ones below
        norms = np.sqrt(np.einsum("ij,ij->i", mat, mat))
    odd = ~((norms > _SAFE_LOW) & (norms < _SAFE_HIGH))  # also infinity, NaN and zero
    if odd.any():
        norms = norms.astype(np.float64)
        norms[odd] = np.sqrt(np.einsum("ij,ij->i", mat[odd], mat[odd], dtype=np.float64))
    return norms


def unit_rows(vecs: Any) -> Any:
    """Each row of a 2-D array scaled to length 1, as float32; a zero row stays zero."""
    mat = np.asarray(vecs, dtype=np.float32)
    norms = lengths(mat)
    norms[norms == 0] = 1.0
    return (mat / norms[:, None]).astype(np.float32, copy=False)


def unit(vec: Any) -> tuple[Any, float]:
    """A vector scaled to length 1 (float32, 1-D), and its length (0.0: left as it is)."""
    v = np.asarray(vec, dtype=np.float32).reshape(-1)
    norm = float(lengths(v.reshape(1, -1))[0])
    # In float64: a length past float32's range (values near its limit) is no infinity.
    return ((v / np.float64(norm)).astype(np.float32) if norm else v), norm
