"""Number and JSON formatting for the pages."""

import json
import math

from django import template
from django.utils.http import urlencode

from experiments_app.overrides import written

register = template.Library()


@register.filter
def pct(value, digits=0):
    """A fraction 0..1 as a percentage: 0.625 → 62.5% with digits=1."""
    if value is None or value == "":
        return "—"
    return f"{value * 100:.{int(digits)}f}%"


@register.filter
def signed_pct(value, digits=1):
    """A relative change as a signed percentage: 0.145 → +14.5%."""
    if value is None:
        return "—"
    return f"{value * 100:+.{int(digits)}f}%".replace("-", "−")


@register.filter
def pp(value, digits=1):
    """Percentage points, signed: 9 → +9.0 pt."""
    if value is None:
        return "—"
    return f"{value:+.{int(digits)}f} pt".replace("-", "−")


@register.filter
def seconds(value):
    """A wait in seconds as people say it: 41 → "41 s", 300 → "5 min", 5400 → "1 h 30 min"."""
    if value is None:
        return "—"
    value = int(value)
    if value < 90:
        return f"{value} s"
    if value < 3600:
        return f"{round(value / 60)} min"
    hours, minutes = divmod(round(value / 60), 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def by_magnitude(value, signed=False):
    """Three significant digits, never in exponent form: 812.4 → "812", 0.00042 → "0.00042", 12345 → "12,345"."""
    size = abs(value)
    decimals = 0 if size == 0 or size >= 100 else 2 - math.floor(math.log10(size))
    text = f"{value:{'+' if signed else ''},.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.replace("-", "−")


@register.filter
def metric(value, name=""):
    """A metric value formatted by its magnitude; a cost (`…_usd`) in dollars: 0.00042 → $0.00042."""
    if value is None:
        return "—"
    text = by_magnitude(value)
    return ("−$" + text[1:] if text.startswith("−") else "$" + text) if str(name).endswith("_usd") else text


@register.filter
def metric_delta(value, name=""):
    """A change of a metric, signed and formatted like `metric`: +$0.00012, −41."""
    if value is None:
        return "—"
    text = by_magnitude(value, signed=value != 0)
    if not str(name).endswith("_usd"):
        return text
    return text[0] + "$" + text[1:] if value != 0 else "$0"


@register.filter
def pvalue(value):
    if value is None:
        return "—"
    if value < 0.001:
        return "<0.001"
    return f"{value:.3f}"


@register.filter
def pretty_json(value):
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def one_line(value):
    """A value on one line: a number as people write it (1,000,000), a string as is, anything else as JSON."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return written(value)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


@register.filter
def compact_json(value):
    text = one_line(value)
    return text if len(text) <= 80 else text[:77] + "…"


@register.filter
def full_value(value):
    """The whole value compact_json may cut, for a title or a focus outline."""
    return one_line(value)


@register.filter
def dictget(mapping, key):
    return (mapping or {}).get(key) if hasattr(mapping, "get") else None


@register.filter
def humanize_status(value):
    return str(value or "").replace("_", " ")


@register.simple_tag
def next_sort(key, sort_key, descending):
    """The sort a column's header link asks for: descending first, ascending when already descending."""
    return key if sort_key == key and descending else f"-{key}"


@register.simple_tag(takes_context=True)
def query(context, **changes):
    """The current query string with some parameters changed (None or "" removes one)."""
    params = context["request"].GET.copy()
    for key, value in changes.items():
        if value in (None, ""):
            params.pop(key, None)
        else:
            params[key] = value
    encoded = urlencode(sorted((k, v) for k, v in params.items()))
    return f"?{encoded}" if encoded else "?"


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@register.filter
def usd(value):
    """A cost in US dollars, precise enough for fractions of a cent; — when not reported."""
    if not is_number(value):
        return "—"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    if abs(value) >= 0.01:
        return f"${value:.4f}"
    return f"${value:.6f}"


@register.filter
def ms(value):
    """Milliseconds, rounded; — when not reported."""
    if not is_number(value):
        return "—"
    return f"{value:,.0f} ms"


@register.filter
def signed(value, unit=""):
    """A difference with its sign (−/+), in `unit`: usd, ms or a plain count; — when missing."""
    if not is_number(value):
        return "—"
    if unit == "usd":
        text = usd(abs(value))
    elif unit == "ms":
        text = ms(abs(value))
    else:
        text = f"{abs(value):,.0f}" if float(abs(value)).is_integer() or abs(value) >= 10 else f"{abs(value):,.1f}"
    return ("−" if value < 0 else "+") + text


@register.filter
def delta_interval(row):
    """A results row's paired interval on Δ: "+3.1 to +12.9 pt"; "" without one."""
    low, high = (row or {}).get("delta_ci_low"), (row or {}).get("delta_ci_high")
    if not is_number(low) or not is_number(high):
        return ""
    return f"{low:+.1f} to {high:+.1f} pt".replace("-", "−")


@register.filter
def sci(value):
    """A variance or other small figure, three significant digits: 0.0833 → 0.0833; — when missing."""
    if not is_number(value):
        return "—"
    return by_magnitude(value)


@register.filter
def as_pp(value, digits=1):
    """A fraction as unsigned percentage points: 0.069 → 6.9 pt; — when missing."""
    if not is_number(value):
        return "—"
    return f"{value * 100:.{int(digits)}f} pt"
