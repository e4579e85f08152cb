"""The vote rate limit: a token bucket per player, kept in the cache.

With Redis as the cache (REDIS_URL) the bucket is one Lua script run by redis-py (EVALSHA): atomic
across gunicorn workers, one round trip. A hand-written Redis client once saved ~70 us of CPU per
vote here, about 2% of a vote's server CPU, which is within the noise of the vote benchmark at its
goal load (docs/benchmarks.md, "Redis client for the vote rate limit"), so redis-py it is.
"""
from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache


def refill_bucket(tokens: float, last: float, now: float, *, rate: float, burst: float) -> tuple[bool, float, float]:
    """Pure token-bucket step: (allowed, tokens left, seconds to wait when refused).

    The bucket holds at most `burst` tokens and refills at `rate` per second; a vote takes one.
    """
    tokens = min(burst, tokens + max(0.0, now - last) * rate)
    if tokens >= 1.0:
        return True, tokens - 1.0, 0.0
    return False, tokens, (1.0 - tokens) / rate


# `refill_bucket` inside Redis, so that all gunicorn workers share one atomic bucket per player.
REDIS_BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1]); local burst = tonumber(ARGV[2]); local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local tokens = tonumber(state[1]); local last = tonumber(state[2])
if tokens == nil then tokens = burst; last = now end
if now > last then tokens = math.min(burst, tokens + (now - last) * rate) end
local allowed = 0; local wait = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'last', tostring(math.max(now, last)))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {allowed, tostring(wait)}
"""


def _redis_bucket():
    """(cache backend, the bucket script registered on its redis-py client), or None when the
    cache is not Redis.

    `django.core.cache.cache` is a proxy (an isinstance check on it is always false), so the
    backend is looked up in `caches`. Django's Redis cache builds a new client object on every
    call; the registered script (sent by EVALSHA once loaded) is kept on the backend instance
    instead (one per thread, like the backend).
    """
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    bucket = getattr(backend, "_appareal_vote_bucket", None)
    if bucket is None:
        script = backend._cache.get_client(write=True).register_script(REDIS_BUCKET_SCRIPT)
        bucket = backend._appareal_vote_bucket = (backend, script)
    return bucket


def take_vote_token(user_id: int) -> float | None:
    """Takes one vote token for the player: None when allowed, else the seconds to wait."""
    rate = float(settings.APPAREAL["VOTE_RATE_PER_SECOND"])
    burst = float(settings.APPAREAL["VOTE_RATE_BURST"])
    if rate <= 0:
        return None  # rate limit switched off
    name = f"vote-bucket:{user_id}"
    now = time.time()
    redis_bucket = _redis_bucket()
    if redis_bucket is not None:
        # The Django cache API has no compare-and-set, hence the script.
        backend, script = redis_bucket
        allowed, wait = script(keys=[backend.make_and_validate_key(name)], args=[rate, burst, now])
        return None if int(allowed) else float(wait)
    # Other caches (local memory in development): per process and not atomic, good enough there.
    tokens, last = cache.get(name, (burst, now))
    allowed, tokens, wait = refill_bucket(tokens, last, now, rate=rate, burst=burst)
    cache.set(name, (tokens, max(now, last)), timeout=int(burst / rate) + 1)
    return None if allowed else wait
