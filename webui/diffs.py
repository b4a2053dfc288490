"""Side-by-side differences between two outputs, for the test page."""

import difflib
import json


def as_text(value):
    """A JSON value as lines to compare: strings as they are, anything else pretty-printed."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def side_by_side(left, right):
    """Rows {left, right, kind} pairing the lines of two values; kind is equal, changed,
    removed (only on the left) or added (only on the right)."""
    a, b = as_text(left).splitlines(), as_text(right).splitlines()
    rows = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            rows += [{"left": x, "right": y, "kind": "equal"} for x, y in zip(a[i1:i2], b[j1:j2], strict=True)]
            continue
        olds, news = a[i1:i2], b[j1:j2]
        for index in range(max(len(olds), len(news))):
            old = olds[index] if index < len(olds) else None
            new = news[index] if index < len(news) else None
            kind = "changed" if old is not None and new is not None else "removed" if new is None else "added"
            rows.append({"left": old, "right": new, "kind": kind})
    return rows
