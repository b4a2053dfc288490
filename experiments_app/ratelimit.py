"""Rate limits (a window opened by a key's first request) kept in Django's cache: Redis when configured, so every web process
shares one count; otherwise a file cache in VAR_DIR, shared by the processes of one machine
(its increments are not atomic, so under heavy concurrency it may count a few requests short).

A limit is "N/S": at most N requests per S seconds for one key.
"""

import hashlib
import math
import time

from django.core.cache import cache


def parse(limit):
    count, _, seconds = str(limit).partition("/")
    return int(count), int(seconds or 60)


def hit(scope, key, limit):
    """Count one request of `key` under `scope`; return the seconds to wait (Retry-After) when it
    is over `limit`, else None. The window opens at the key's first request and lasts S seconds."""
    allowed, window = parse(limit)
    now = time.time()
    digest = hashlib.sha256(str(key).encode()).hexdigest()[:32]
    count_key, opened_key = f"ratelimit:{scope}:{digest}", f"ratelimit:{scope}:{digest}:opened"
    if cache.add(opened_key, now, timeout=window):
        cache.set(count_key, 0, timeout=window)
    try:
        count = cache.incr(count_key)
    except ValueError:  # expired meanwhile: a new window
        cache.set(opened_key, now, timeout=window)
        cache.set(count_key, 1, timeout=window)
        count = 1
    if count > allowed:
        opened = cache.get(opened_key) or now
        return max(1, math.ceil(opened + window - now))
    return None
