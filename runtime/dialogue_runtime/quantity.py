"""Kubernetes resource quantities ("500m", "2Gi", "1e3") as exact decimals (pure; shared by operator and node)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?)$")


def parse_quantity(value: str | int | float) -> Decimal:
    """A Kubernetes resource quantity as a Decimal; ValueError naming the value when it is not one."""
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"not a resource quantity: {value!r}")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation as exc:
        raise ValueError(f"not a resource quantity: {value!r}") from exc
    if match.group(2):
        return number * Decimal(10) ** int(match.group(2)[1:])
    return number * SUFFIXES[match.group(3) or ""]
