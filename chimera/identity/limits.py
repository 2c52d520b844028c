"""Per-principal limits, counted in Redis so that they hold across API replicas: requests and tokens in the last
60 seconds (sliding logs: sorted sets of admissions and of spent tokens, so a burst cannot straddle a minute
boundary and get twice the limit), and requests in flight (a sorted set of tickets; a ticket older than the
request deadline is stale, so a crashed API process cannot leak a slot for longer than that)."""

import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from chimera.errors import ChimeraError
from chimera.identity.audit import audit
from chimera.identity.principal import Principal

log = logging.getLogger(__name__)

WINDOW_S = 60

# KEYS: request log, token log (members "<ticket>:<tokens>"), in-flight set. ARGV: rpm, tpm, concurrent
# (0 = none), ticket, now, stale-before, window, in-flight expiry. Returns {} when admitted, else {limit, seconds
# until the oldest entry leaves the window}.
_ADMIT = """
local now, window = tonumber(ARGV[5]), tonumber(ARGV[7])
local function retry(key)
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return tostring(math.max(1, math.ceil(tonumber(oldest[2]) + window - now)))
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
if tonumber(ARGV[2]) > 0 then
  local spent = 0
  for _, entry in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    spent = spent + tonumber(string.match(entry, ':(%d+)$'))
  end
  if spent >= tonumber(ARGV[2]) then return {'tokens_per_minute', retry(KEYS[2])} end
end
if tonumber(ARGV[1]) > 0 and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return {'requests_per_minute', retry(KEYS[1])}
end
if tonumber(ARGV[3]) > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[6])
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[3]) then return {'concurrent_requests', '1'} end
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[8])
end
if tonumber(ARGV[1]) > 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('EXPIRE', KEYS[1], window + 1)
end
return {}
"""


class LimitError(ChimeraError):
    """The limits could not be checked (Redis unreachable)."""


class RateLimitedError(ChimeraError):
    """The principal is over one of its limits; `retry_after_s` says when to try again."""

    def __init__(self, message: str, limit: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.limit, self.retry_after_s = limit, retry_after_s


@dataclass(frozen=True)
class Admission:
    """A request let in: release it when it ends, with the tokens it spent."""

    principal: Principal
    ticket: str


class Limiter:
    """Admits a principal's request or raises `RateLimitedError`."""

    def __init__(self, url: str, *, request_timeout_s: float, clock: Callable[[], float] = time.time) -> None:
        self._redis = aioredis.Redis.from_url(url)
        self._admit = self._redis.register_script(_ADMIT)
        self._stale_s = request_timeout_s
        self._clock = clock

    @staticmethod
    def _keys(principal: Principal) -> list[str]:
        base = f"chimera:limit:{principal.id}"
        return [f"{base}:requests", f"{base}:tokens", f"{base}:active"]

    async def admit(self, principal: Principal) -> Admission:
        """Count the request against the principal's limits.

        Raises:
            RateLimitedError: over requests/min, tokens/min or requests in flight.
            LimitError: Redis is unreachable.
        """
        now = self._clock()
        admission = Admission(principal, uuid.uuid4().hex)
        limits = principal.limits
        if not (limits.requests_per_minute or limits.tokens_per_minute or limits.concurrent_requests):
            return admission
        args: list[str | int | float] = [
            limits.requests_per_minute or 0,
            limits.tokens_per_minute or 0,
            limits.concurrent_requests or 0,
            admission.ticket,
            now,
            now - self._stale_s,
            WINDOW_S,
            math.ceil(self._stale_s) + WINDOW_S,
        ]
        try:
            refused = await self._admit(keys=self._keys(principal), args=args)
        except RedisError as e:
            raise LimitError(f"cannot check the limits of {principal.id}: {e}") from e
        if refused:
            limit, retry = refused[0].decode(), int(refused[1])
            audit("rate_limited", principal.id, limit=limit, retry_after_s=retry)
            raise RateLimitedError(f"{principal.id} is over its {limit.replace('_', ' ')} limit", limit, retry)
        return admission

    async def release(self, admission: Admission, tokens: int) -> None:
        """The request ended: free its slot and count its tokens (best effort: a lost release only makes the
        slot stale later)."""
        limits = admission.principal.limits
        _, spent, active = self._keys(admission.principal)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                if limits.concurrent_requests:
                    pipe.zrem(active, admission.ticket)
                if limits.tokens_per_minute and tokens:
                    pipe.zadd(spent, {f"{admission.ticket}:{tokens}": self._clock()})
                    pipe.expire(spent, WINDOW_S + 1)
                await pipe.execute()
        except RedisError as e:
            log.warning("cannot release %s's request slot (it goes stale in %.0f s): %s", admission.principal.id,
                        self._stale_s, e)  # fmt: skip

    async def close(self) -> None:
        await self._redis.aclose()
