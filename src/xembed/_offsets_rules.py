"""The errors of the offsets rules, stated once for every path that checks them (eager checks in
:mod:`._validate`, per-block graph tasks on dask): ERR-OFFSETS-FIRST, ERR-OFFSETS-DECREASING, ERR-OFFSETS-END,
BAG-LAST-OFFSET, and for offsets derived from ``lengths`` (``source="lengths"``) the EXT-LENGTHS errors."""

from __future__ import annotations


def first_offset_error(first: int) -> ValueError | None:
    return None if first == 0 else ValueError(f"`offsets`[0] must be 0, got {first}")


def decrease_error(pos: int, value: int, before: int, source: str) -> ValueError:
    """``offsets[pos] = value < offsets[pos - 1] = before``."""
    if source == "lengths":  # a running sum wrapped around its dtype
        return ValueError(f"the running sum of `lengths` overflows its integer dtype at lengths[{pos - 1}]")
    return ValueError(f"`offsets` must be non-decreasing, but offsets[{pos}] = {value} < offsets[{pos - 1}] = "
                      f"{before}")


def last_offset_error(last: int, n: int, include_last_offset: bool, source: str) -> ValueError | None:
    """The last offset against ``n``, the number of indices in ``input``."""
    if source == "lengths" and last != n:
        return ValueError(f"`lengths` must sum to the number of indices in `input` ({n}), got sum(lengths) = {last}")
    if last > n:
        return ValueError(f"`offsets`[-1] = {last} is greater than the number of indices in `input` ({n})")
    if include_last_offset and last != n:
        return ValueError(f"with `include_last_offset`=True, `offsets`[-1] must equal the number of indices in "
                          f"`input` ({n}), got {last}")
    return None
