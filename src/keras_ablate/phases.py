"""Time by phase (summary.json's `timing`, summed over runs) in words, for `status` and the report."""

from __future__ import annotations


def format_phases(phases: dict) -> str:
    """'build 1.2 s, compile 20.3 s, ...' from {'build_s': 1.2, ...} (summed run timings)."""
    return ", ".join(
        f"{name.removesuffix('_s').replace('_', ' ')} {seconds:.1f} s"
        for name, seconds in phases.items()
    )
