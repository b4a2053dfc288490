"""What JSON the product accepts and stores, decided here once.

Every stored JSON value (a task's input and expected, a step's config, evaluators, the
baseline config, a test's output) is nested at most MAX_DEPTH levels, holds only finite
numbers, and only strings PostgreSQL can store. Every entry point (the API parser and
serializers, the domain validators, the application's synchronous answers, uploads)
checks through `loads` and `problem`, so nothing reaches the ORM that the database or
the JSON encoder would refuse with a server error.

The walk is iterative: a document nested 100,000 levels deep costs a loop, not the stack.
"""

import json
import math
import re
import secrets

import orjson

# Containers inside containers: `{}` is depth 1, `{"a": [1]}` depth 2.
MAX_DEPTH = 64


# Deeper than this the decoder itself is not asked to go: the excess becomes TOO_DEEP.
CUT_DEPTH = MAX_DEPTH + 4
TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class TooDeep:
    """Stands where a document nested deeper than CUT_DEPTH was cut off; never stored:
    `problem` refuses it, and the JSON encoder would too."""

    def __repr__(self):
        return "<too deep>"


TOO_DEEP = TooDeep()


class InvalidJSON(ValueError):
    """The text is not JSON this product accepts; str() says why, in a few words."""


def compact(value):
    """`value` as compact UTF-8 JSON bytes (no spaces, non-ASCII as it is), by orjson; the json
    module's encoder for what orjson refuses (an integer beyond 64 bits)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def reject_constant(name):
    raise InvalidJSON(name)


def finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJSON(f"the number {text[:40]} is out of range")
    return value


def loads(text, *, max_depth=None):
    """Decode JSON strictly: no NaN/Infinity, no number that overflows a float, nesting
    the decoder can handle, storable strings, and at most `max_depth` levels when given.

    Documents are decoded without a depth limit of their own (beyond the decoder's stack),
    so that the fields stored from them are refused by name (`field_errors`).
    Raises InvalidJSON ("NaN", "nested deeper than 64 levels", …); never RecursionError.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidJSON("the body is not UTF-8 text") from None
    marker = None
    try:
        try:
            value = decode(text)
        except RecursionError:
            # Too deep for the decoder's stack: cut the excess off and decode again, so
            # that the field holding it is still refused by name.
            text, marker = cut_deep(text)
            value = decode(text)
    except InvalidJSON:
        raise
    except RecursionError:
        raise InvalidJSON(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as error:
        # JSONDecodeError, and int() refusing an integer of thousands of digits
        raise InvalidJSON(getattr(error, "msg", None) or str(error)[:200]) from None
    if marker:
        value = put_too_deep(value, marker)
    reason = problem(value, max_depth=max_depth, allow_too_deep=max_depth is None)
    if reason:
        raise InvalidJSON(reason)
    return value


def decode(text):
    return json.loads(text, parse_float=finite_float, parse_constant=reject_constant)


def cut_deep(text):
    """Replace every container opened deeper than CUT_DEPTH by a marker string, so that the
    decoder never recurses far and the field holding it can still be named. Returns
    (text, marker or None). Linear: strings and brackets are found by one regular expression."""
    marker = "jsonlimits-too-deep-" + secrets.token_hex(8)
    pieces, depth, kept_until, cut_at = [], 0, 0, None
    for token in TOKENS.finditer(text):
        char = token.group()[0]
        if char == '"':
            continue
        if char in "[{":
            depth += 1
            if depth == CUT_DEPTH + 1 and cut_at is None:
                cut_at = token.start()
        elif depth > 0:
            depth -= 1
            if depth == CUT_DEPTH and cut_at is not None:
                pieces += [text[kept_until:cut_at], f'"{marker}"']
                kept_until, cut_at = token.end(), None
    if not pieces:
        return text, None
    pieces.append(text[kept_until:] if cut_at is None else text[kept_until:cut_at] + f'"{marker}"')
    return "".join(pieces), marker


def put_too_deep(value, marker):
    """The decoded value with each marker string replaced by TOO_DEEP (iteratively)."""
    if value == marker:
        return TOO_DEEP
    stack = [value]
    while stack:
        item = stack.pop()
        pairs = item.items() if isinstance(item, dict) else enumerate(item) if isinstance(item, list) else ()
        for key, child in list(pairs):
            if child == marker:
                item[key] = TOO_DEEP
            elif isinstance(child, (dict, list)):
                stack.append(child)
    return value


def string_problem(text):
    if "\x00" in text:
        return "strings may not contain NUL (\\u0000) characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "strings must be valid Unicode (no lone surrogates)"
    return None


def problem(value, *, max_depth=MAX_DEPTH, allow_too_deep=False):
    """Why `value` (decoded JSON) cannot be stored, or None: deeper than `max_depth` (None:
    no limit), a non-finite float, a string with NUL or a lone surrogate."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if item is TOO_DEEP and not allow_too_deep:
            return f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, (dict, list)):
            depth += 1
            if max_depth is not None and depth > max_depth:
                return f"nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                for key, child in item.items():
                    stack.append((key, depth))
                    stack.append((child, depth))
            else:
                stack.extend((child, depth) for child in item)
        elif isinstance(item, str):
            reason = string_problem(item)
            if reason:
                return reason
        elif isinstance(item, float) and not math.isfinite(item):
            return "numbers must be finite"
    return None


def field_errors(field, value):
    """{field: message} when `value` cannot be stored, else {}: for validators that collect errors."""
    reason = problem(value)
    return {field: f"Cannot be stored: {reason}."} if reason else {}


def finite_number(value):
    """`value` as a float when it is a JSON number a float can hold (not a bool); else None.

    An integer of hundreds of digits overflows a float: that is None, not an OverflowError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
