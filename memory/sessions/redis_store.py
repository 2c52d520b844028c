"""`SessionStore` on plain Redis (>= 6.2, no modules): one list of JSON messages per session, and per owner a
sorted set of their sessions by last use."""

import time
from typing import cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from chimera.memory.sessions.base import (
    SessionError,
    SessionInfo,
    SessionStore,
    UnknownCursorError,
    check_session_id,
)
from chimera.messages import ChatMessage

OWNED_PREFIX = "chimera:sessions-of:"
MAX_LISTED = 10_000  # sessions an owner's list keeps (the most recently used); older ones still work, unlisted

# KEYS[1] the session's owner key; ARGV: owned-list prefix, session id, now, lifetime of a list entry, cap.
# The owner's list gets the session at `now`, forgets entries older than the longest session expiry, keeps the
# newest `cap`, and lives as long as its newest entry may.
_TOUCH = """
local owner = redis.call('GET', KEYS[1])
if not owner then return 0 end
local owned = ARGV[1] .. owner
redis.call('ZADD', owned, ARGV[3], ARGV[2])
redis.call('ZREMRANGEBYSCORE', owned, '-inf', tonumber(ARGV[3]) - tonumber(ARGV[4]))
redis.call('ZREMRANGEBYRANK', owned, 0, -(tonumber(ARGV[5]) + 1))
redis.call('EXPIRE', owned, ARGV[4])
return 1
"""
# KEYS: the session's list and owner keys; ARGV: owned-list prefix, session id.
_DELETE = """
local owner = redis.call('GET', KEYS[2])
if owner then redis.call('ZREM', ARGV[1] .. owner, ARGV[2]) end
return redis.call('DEL', KEYS[1], KEYS[2])
"""


class RedisSessionStore(SessionStore):
    """Each session is a Redis list `chimera:session:<id>`, trimmed to `max_messages`, expiring after `ttl_s`;
    its owner is `chimera:session-owner:<id>`, with the same expiry. `chimera:sessions-of:<owner>` lists the
    owner's sessions of the store's expiry by last use: a session with a shorter one (a one-shot request's) is
    listed once a turn gives it the full expiry. The list keeps at most `MAX_LISTED` entries, forgets those older
    than `ttl_s` whenever it is touched, and drops the entries of sessions gone early (deleted) when a listing
    meets them."""

    def __init__(self, url: str, *, ttl_s: int, max_messages: int) -> None:
        self._redis = aioredis.Redis.from_url(url)
        self._ttl_s = ttl_s
        self._max_messages = max_messages
        self._touch = self._redis.register_script(_TOUCH)
        self._delete = self._redis.register_script(_DELETE)

    @staticmethod
    def _key(session_id: str) -> str:
        return f"chimera:session:{check_session_id(session_id)}"

    @staticmethod
    def _owner_key(session_id: str) -> str:
        return f"chimera:session-owner:{check_session_id(session_id)}"

    async def claim(self, session_id: str, owner: str, *, ttl_s: int | None = None) -> bool:
        key = self._owner_key(session_id)
        try:
            if await self._redis.set(key, owner, nx=True, ex=ttl_s or self._ttl_s):
                if ttl_s is None:  # listed; a short-lived (one-shot) session only once it is continued
                    await self._touch(keys=[key], args=self._touch_args(session_id))
                return True
            current = await self._redis.get(key)
        except RedisError as e:
            raise SessionError(f"cannot read the owner of session {session_id}: {e}") from e
        return current is not None and _text(current) == owner

    async def owner(self, session_id: str) -> str | None:
        try:
            current = await self._redis.get(self._owner_key(session_id))
        except RedisError as e:
            raise SessionError(f"cannot read the owner of session {session_id}: {e}") from e
        return _text(current) if current is not None else None

    async def load(self, session_id: str) -> list[ChatMessage]:
        try:
            raw = await self._redis.lrange(self._key(session_id), 0, -1)
        except RedisError as e:
            raise SessionError(f"cannot read session {session_id}: {e}") from e
        return [ChatMessage.model_validate_json(item) for item in raw]

    async def append(self, session_id: str, messages: list[ChatMessage], *, ttl_s: int | None = None) -> None:
        key = self._key(session_id)
        if not messages:
            return
        ttl = ttl_s or self._ttl_s
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, *(m.model_dump_json() for m in messages))
                pipe.ltrim(key, -self._max_messages, -1)
                pipe.expire(key, ttl)
                pipe.expire(self._owner_key(session_id), ttl)
                if ttl_s is None:
                    owner_key = self._owner_key(session_id)
                    await self._touch(keys=[owner_key], args=self._touch_args(session_id), client=pipe)
                await pipe.execute()
        except RedisError as e:
            raise SessionError(f"cannot write session {session_id}: {e}") from e

    async def delete(self, session_id: str) -> None:
        try:
            await self._delete(
                keys=[self._key(session_id), self._owner_key(session_id)], args=[OWNED_PREFIX, session_id]
            )
        except RedisError as e:
            raise SessionError(f"cannot delete session {session_id}: {e}") from e

    async def owned_by(self, owner: str, *, limit: int, after: str | None = None) -> tuple[list[SessionInfo], bool]:
        owned = OWNED_PREFIX + owner
        found: list[SessionInfo] = []
        try:
            start = 0
            if after is not None:
                rank = cast(int | None, await self._redis.zrevrank(owned, after))
                if rank is None:
                    raise UnknownCursorError(f"after: no session {after} in the list")
                start = rank + 1
            while len(found) <= limit:  # one more than asked: whether more follow
                page = cast(
                    list[tuple[bytes, float]], await self._redis.zrevrange(owned, start, start + limit, withscores=True)
                )
                if not page:
                    break
                start += len(page)
                async with self._redis.pipeline(transaction=False) as pipe:
                    for member, _ in page:
                        pipe.get(self._owner_key(_text(member)))
                        pipe.llen(self._key(_text(member)))
                    replies = await pipe.execute()
                for (member, score), current, length in zip(page, replies[::2], replies[1::2], strict=True):
                    if current is None or _text(current) != owner:  # expired (or deleted and claimed again)
                        await self._redis.zrem(owned, member)
                        start -= 1
                        continue
                    found.append(SessionInfo(id=_text(member), updated_at=score, messages=int(length)))
        except RedisError as e:
            raise SessionError(f"cannot list the sessions of {owner}: {e}") from e
        return found[:limit], len(found) > limit

    def _touch_args(self, session_id: str) -> list[str | int | float]:
        return [OWNED_PREFIX, session_id, time.time(), self._ttl_s, MAX_LISTED]

    async def close(self) -> None:
        await self._redis.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
