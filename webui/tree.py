"""Shapes the experiment page draws: the variant tree and the sortable results table.

Pure functions over loaded variants and results rows; no queries here.
"""

from datetime import datetime

from webui.charts import tone

SORT_KEYS = (
    "name",
    "pass_rate",
    "delta_pp",
    "pass_rate_vs_baseline",
    "p_value",
    "p_value_adjusted",
    "total",
    "cost_per_passed",
    "completed_at",
)
DEFAULT_SORT = "-pass_rate"


def variant_tree(variants, results):
    """Depth-first nodes from the baseline down: {variant, row, depth, tone, significant, guides}.

    `guides` is one flag per ancestor level telling whether a vertical line continues
    there, so the template can draw ├─ └─ │ without logic.
    """
    rows = {row["variant"]: row for row in [results.get("baseline"), *results.get("variants", [])] if row}
    children = {}
    for variant in variants:
        children.setdefault(variant.parent_id, []).append(variant)
    nodes = []

    def visit(variant, depth, guides, is_last):
        row = rows.get(str(variant.pk), {})
        nodes.append(
            {
                "variant": variant,
                "row": row,
                "depth": depth,
                "tone": tone(row) if row else "noise",
                "significant": bool(row.get("significant")),
                "guides": guides,
                "is_last": is_last,
                "has_children": bool(children.get(variant.pk)),
            }
        )
        kids = children.get(variant.pk, [])
        for index, child in enumerate(kids):
            visit(child, depth + 1, [*guides, not is_last] if depth else [], index == len(kids) - 1)

    for root in children.get(None, []):
        visit(root, 0, [], True)
    return nodes


def parse_sort(value):
    """An allow-listed sort key with its direction; anything else gives the default."""
    value = value or DEFAULT_SORT
    key = value.lstrip("-")
    if key not in SORT_KEYS:
        return DEFAULT_SORT.lstrip("-"), True
    return key, value.startswith("-")


def sort_rows(rows, key, descending):
    """Sort results rows by `key`; rows without a value go last either way."""
    present = [row for row in rows if row.get(key) is not None]
    missing = [row for row in rows if row.get(key) is None]

    def sort_value(row):
        value = row[key]
        if isinstance(value, str):
            return value.lower()
        if isinstance(value, datetime):
            return value.timestamp()
        return value

    return sorted(present, key=sort_value, reverse=descending) + missing


def table_rows(results, sort=None):
    key, descending = parse_sort(sort)
    rows = [row for row in [results.get("baseline"), *results.get("variants", [])] if row]
    for row in rows:
        row["tone"] = tone(row)
    return sort_rows(rows, key, descending), key, descending
