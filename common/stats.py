"""Small statistics every lesson reports with its numbers."""

from __future__ import annotations


def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson interval (95% at z = 1.96) of a rate k/n: stays inside [0, 1] and is sensible at k = 0 or k = n,
    unlike the normal approximation. (0, 1) when n is 0: nothing is known."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * ((p * (1 - p) + z * z / (4 * n)) / n) ** 0.5
    scale = 1 + z * z / n
    return max(0.0, centre - half / scale), min(1.0, centre + half / scale)
