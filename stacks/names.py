"""Construct ids made from lane names: one function, used by the stacks and their tests alike.

A lane's name may hold ``-`` (``cpu-large``); CDK keeps only letters and digits of a construct id when it makes
a logical id, so ``"cpu-large".capitalize()`` would give ``Cpularge...`` and ``cpu-large`` and ``cpularge`` could
not be told apart by eye. :func:`construct_id` makes ``CpuLarge`` instead, and the same for ``cpu``, ``gpu`` and
``batch`` as before (``Cpu``, ``Gpu``, ``Batch``), so the logical ids of the existing lanes do not change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_PARTS = re.compile(r"[^A-Za-z0-9]+")


def construct_id(name: str) -> str:
    """``cpu`` -> ``Cpu``, ``cpu-large`` -> ``CpuLarge``: each part between separators capitalized, joined."""
    parts = [part for part in _PARTS.split(name) if part]
    if not parts:
        raise ValueError(f"{name!r} has no letters or digits to make a construct id of")
    return "".join(part[:1].upper() + part[1:] for part in parts)


def clashing_ids(names: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs of names that would get the same :func:`construct_id` (``cpu-1`` and ``cpu1``): each would take the
    other's resources' logical ids, which CDK refuses only later and less clearly."""
    seen: dict[str, str] = {}
    clashes = []
    for name in names:
        made = construct_id(name)
        if made in seen:
            clashes.append((seen[made], name))
        else:
            seen[made] = name
    return clashes
