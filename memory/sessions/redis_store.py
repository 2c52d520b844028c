"""`SessionStore` on plain Redis (>= 6.2, no modules): one list of JSON messages per session."""

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from chimera.memory.sessions.base import SessionError, SessionStore, check_session_id
from chimera.messages import ChatMessage


class RedisSessionStore(SessionStore):
    """Each session is a Redis list `chimera:session:<id>`, trimmed to `max_messages`, expiring after `ttl_s`;
    its owner is `chimera:session-owner:<id>`, with the same expiry."""

    def __init__(self, url: str, *, ttl_s: int, max_messages: int) -> None:
        self._redis = aioredis.Redis.from_url(url)
        self._ttl_s = ttl_s
        self._max_messages = max_messages

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
                await pipe.execute()
        except RedisError as e:
            raise SessionError(f"cannot write session {session_id}: {e}") from e

    async def delete(self, session_id: str) -> None:
        try:
            await self._redis.delete(self._key(session_id), self._owner_key(session_id))
        except RedisError as e:
            raise SessionError(f"cannot delete session {session_id}: {e}") from e

    async def close(self) -> None:
        await self._redis.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
