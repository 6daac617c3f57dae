"""Settings dataclasses read from plain values (a form, stored JSON), tolerantly: unknown keys
are ignored, a value of the wrong type keeps the field's default. Pure."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

TRUE = (True, 1, "1", "true", "on")


def tolerant_values(cls: type, data: dict[str, Any] | None, *, int_max: int, str_max: int) -> dict[str, Any]:
    """The fields of ``cls`` found in ``data``, each turned into its default's type: a flag is
    true only for true/1/"1"/"true"/"on", a number is bounded to 0..int_max, text cut at
    str_max."""
    values: dict[str, Any] = {}
    for f in fields(cls):
        if not data or f.name not in data:
            continue
        default, raw = getattr(cls, f.name), data[f.name]
        if isinstance(default, bool):
            values[f.name] = raw in TRUE
        elif isinstance(default, int):
            try:
                values[f.name] = max(0, min(int(raw), int_max))
            except (TypeError, ValueError):
                pass
        else:
            values[f.name] = str(raw)[:str_max]
    return values
