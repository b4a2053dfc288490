"""Rate limits (a window opened by a key's first request) kept in Django's cache: Redis when configured, so every web process
shares one count, in one round trip (a script of SET NX, INCR and TTL on the cache's server: results
are the busiest route, and Django's cache API took three; the MULTI pipeline that did it before
parsed five replies in Python, the script answers one); otherwise a file cache in VAR_DIR, shared
by the processes of one machine (its increments are not atomic, so under heavy concurrency it may
count a few requests short).

A limit is "N/S": at most N requests per S seconds for one key.
"""

import hashlib
import math
import threading
import time

import redis
from django.conf import settings
from django.core.cache import cache

REDIS_CACHE = "django.core.cache.backends.redis.RedisCache"


local = threading.local()


def redis_client(location):
    """This thread's client of the cache's Redis. One per thread: with one client shared by a
    gunicorn worker's threads, redis-py 8.1 now and then read a connection's handshake from a
    socket another thread had closed (a 500 under 16 concurrent posters)."""
    clients = local.__dict__.setdefault("clients", {})
    if location not in clients:
        clients[location] = redis.Redis.from_url(location)
    return clients[location]


# Opens the window (SET NX with its expiry), counts the request and says how long the window has
# left: atomic on the server, as the MULTI … EXEC it replaced was.
COUNT_SCRIPT = """
redis.call('SET', KEYS[1], 0, 'EX', ARGV[1], 'NX')
return {redis.call('INCR', KEYS[1]), redis.call('TTL', KEYS[1])}
"""


def count_script(location):
    """The script registered on this thread's client of `location` (redis-py sends EVALSHA,
    loading the script again when the server lost it)."""
    scripts = local.__dict__.setdefault("scripts", {})
    if location not in scripts:
        scripts[location] = redis_client(location).register_script(COUNT_SCRIPT)
    return scripts[location]


def parse(limit):
    count, _, seconds = str(limit).partition("/")
    return int(count), int(seconds or 60)


def hit(scope, key, limit):
    """Count one request of `key` under `scope`; return the seconds to wait (Retry-After) when it
    is over `limit`, else None. The window opens at the key's first request and lasts S seconds."""
    allowed, window = parse(limit)
    digest = hashlib.sha256(str(key).encode()).hexdigest()[:32]
    count_key, opened_key = f"ratelimit:{scope}:{digest}", f"ratelimit:{scope}:{digest}:opened"
    config = settings.CACHES["default"]
    if config["BACKEND"] == REDIS_CACHE:
        count, left = count_script(config["LOCATION"])(keys=[cache.make_key(count_key)], args=[window])
        return max(1, left) if count > allowed else None
    now = time.time()
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
