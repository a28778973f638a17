"""How deeply a JSON value from a peer nests, counted without recursion: a value nested
thousands deep must be refused, not overflow the stack of whoever measures it."""

from __future__ import annotations


def json_depth(value: object, stop_above: int, *, scalars_count: bool = True) -> int:
    """The deepest level in value (the value itself is level 1), counting scalars as a level
    of their own or only the objects and arrays; counting stops once past stop_above (the
    value is refused then, however much deeper it goes)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None or scalars_count:
            deepest = max(deepest, level)
            if deepest > stop_above:
                return deepest
        if children is not None:
            stack.extend((child, level + 1) for child in children)
    return deepest
