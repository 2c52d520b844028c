"""API keys → principals: the config's keys, and a key store in Redis for real installs (`chimera keys …`).

The store keeps only each key's SHA-256 and its principal: `chimera:apikey:<digest>` holds the principal's JSON,
`chimera:apikey-ids` maps key ids to digests (for `list` and `revoke`). A token is shown once, when created.
"""

import json
import secrets
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from chimera.config import KeyLimits, Role, ServerConfig
from chimera.errors import ChimeraError
from chimera.identity.principal import Principal, configured_principal, key_digest, local_principal

TOKEN_PREFIX = "chm-"
_RECORD = "chimera:apikey:{}"
_IDS = "chimera:apikey-ids"


class KeyStoreError(ChimeraError):
    """The key store could not be read or written."""


class AuthenticationError(ChimeraError):
    """No key, or a key nobody issued (or one since revoked)."""


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: the token (shown once) and whom it makes the caller."""

    token: str
    principal: Principal


class RedisKeyStore:
    """Keys created by an operator, kept hashed in Redis so that every API replica sees the same ones."""

    def __init__(self, url: str) -> None:
        self._redis = aioredis.Redis.from_url(url, decode_responses=True)

    async def create(
        self, *, tenant: str, groups: tuple[str, ...] = (), role: Role = "user", limits: KeyLimits | None = None
    ) -> IssuedKey:
        key_id = f"key-{secrets.token_hex(4)}"
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        principal = Principal(key_id, tenant, groups, role, limits or KeyLimits())
        digest = key_digest(token)
        record = {**principal.as_record(), "created": int(time.time())}
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(_RECORD.format(digest), json.dumps(record))
                pipe.hset(_IDS, key_id, digest)
                await pipe.execute()
        except RedisError as e:
            raise KeyStoreError(f"cannot store the new key: {e}") from e
        return IssuedKey(token, principal)

    async def lookup(self, token: str) -> Principal | None:
        try:
            raw = await self._redis.get(_RECORD.format(key_digest(token)))
        except RedisError as e:
            raise KeyStoreError(f"cannot read the key store: {e}") from e
        return Principal.from_record(json.loads(raw)) if raw else None

    async def list(self) -> list[Principal]:
        try:
            digests = await self._redis.hgetall(_IDS)
            raws = await self._redis.mget([_RECORD.format(d) for d in digests.values()]) if digests else []
        except RedisError as e:
            raise KeyStoreError(f"cannot read the key store: {e}") from e
        return sorted((Principal.from_record(json.loads(r)) for r in raws if r), key=lambda p: p.id)

    async def revoke(self, key_id: str) -> bool:
        """Forget the key; False when no key has this id."""
        try:
            digest = await self._redis.hget(_IDS, key_id)
            if digest is None:
                return False
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(_RECORD.format(digest))
                pipe.hdel(_IDS, key_id)
                await pipe.execute()
        except RedisError as e:
            raise KeyStoreError(f"cannot revoke {key_id}: {e}") from e
        return True

    async def close(self) -> None:
        await self._redis.aclose()


class Authenticator:
    """Bearer token → principal: the config's keys, then the key store (answers cached for `cache_s`, so a
    revoked key stops working within that time)."""

    def __init__(self, server: ServerConfig, store: RedisKeyStore | None = None, *, cache_s: float = 5.0) -> None:
        self._configured = dict(configured_principal(k, server.default_limits) for k in server.api_keys)
        if server.key_store and store is None:
            raise ValueError("server.key_store is on: pass the RedisKeyStore")
        self._store = store
        self._local = None if self.required(server) else local_principal(server.default_limits)
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._cache_s = cache_s

    @staticmethod
    def required(server: ServerConfig) -> bool:
        """Whether requests must carry a key (any key configured, or the key store on)."""
        return bool(server.api_keys) or server.key_store

    def describe(self) -> str:
        """One line for the start-up log: how requests are authenticated."""
        if self._local is not None:
            return "no API keys configured: every request acts as the local admin (tenant default)"
        parts = [f"{len(self._configured)} configured key(s)"] + (["the Redis key store"] if self._store else [])
        return "API keys required: " + " and ".join(parts)

    async def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an `Authorization: Bearer …` header.

        Raises:
            AuthenticationError: missing, malformed or unknown key.
            KeyStoreError: the key store is unreachable (a 503, not a 401: the key may be fine).
        """
        if self._local is not None:
            return self._local
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("missing API key: send `Authorization: Bearer <key>`")
        token = token.strip()
        digest = key_digest(token)
        if (principal := self._configured.get(digest)) is not None:
            return principal
        if self._store is not None:
            now = time.monotonic()
            cached = self._cache.get(digest)
            if cached is None or now - cached[0] > self._cache_s:
                cached = (now, await self._store.lookup(token))
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = cached
            if cached[1] is not None:
                return cached[1]
        raise AuthenticationError("invalid API key")

    async def aclose(self) -> None:
        if self._store is not None:
            await self._store.close()
