"""`chimera keys create|list|revoke`: API keys in the Redis key store (`server.key_store: true` accepts them).

A created key's token is printed once; Redis keeps only its SHA-256 and the principal it stands for.
"""

import argparse
import asyncio
import json

from chimera.cli._redis import redis_url
from chimera.config import ChimeraConfig, KeyLimits
from chimera.errors import ChimeraError
from chimera.identity.audit import audit
from chimera.identity.keys import RedisKeyStore
from chimera.identity.principal import NAME


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `chimera keys …` on the top-level subparsers."""
    p = sub.add_parser("keys", help="API keys in the Redis key store (create, list, revoke)")
    keys_sub = p.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="issue a key; its token is printed once")
    create.add_argument("--tenant", required=True, help="whose documents the key sees")
    create.add_argument("--group", action="append", default=[], help="ACL group (repeatable)")
    create.add_argument("--role", choices=["user", "admin"], default="user")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--concurrent", type=int, help="requests in flight at once")
    create.add_argument("--max-tokens", type=int, help="largest max_tokens a request may ask for")
    create.set_defaults(func=_run, action="create")
    keys_sub.add_parser("list", help="the stored keys (ids and principals, never tokens)").set_defaults(
        func=_run, action="list"
    )
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id (servers stop accepting it within seconds)")
    revoke.add_argument("id")
    revoke.set_defaults(func=_run, action="revoke")


def _run(config: ChimeraConfig, args: argparse.Namespace) -> int:
    with redis_url(config) as url:
        return asyncio.run(_act(config, url, args))


async def _act(config: ChimeraConfig, url: str, args: argparse.Namespace) -> int:
    store = RedisKeyStore(url)
    try:
        if args.action == "create":
            for name in (args.tenant, *args.group):
                if not NAME.fullmatch(name):
                    raise ChimeraError(f"tenant and group names are 1-64 of A-Z a-z 0-9 . _ - (got {name!r})")
            limits = _limits(config, args)
            issued = await store.create(tenant=args.tenant, groups=tuple(args.group), role=args.role, limits=limits)
            audit("key_created", None, key=issued.principal.id, tenant=args.tenant, role=args.role)
            print(json.dumps({"token": issued.token, **issued.principal.as_record()}, indent=2))
            if not config.server.key_store:
                print("note: server.key_store is off in this config; servers accept this key once it is on")
        elif args.action == "list":
            for principal in await store.list():
                print(json.dumps(principal.as_record()))
        elif not await store.revoke(args.id):
            raise ChimeraError(f"no key with id {args.id}")
        else:
            audit("key_revoked", None, key=args.id)
            print(f"revoked {args.id}")
    finally:
        await store.close()
    return 0


def _limits(config: ChimeraConfig, args: argparse.Namespace) -> KeyLimits:
    from pydantic import ValidationError

    given = {"requests_per_minute": args.rpm, "tokens_per_minute": args.tpm, "concurrent_requests": args.concurrent,
             "max_tokens": args.max_tokens}  # fmt: skip
    merged = {**config.server.default_limits.model_dump(), **{k: v for k, v in given.items() if v is not None}}
    try:
        return KeyLimits.model_validate(merged)
    except ValidationError as e:
        raise ChimeraError(f"invalid limits: {e.errors(include_url=False)[0]['msg']}") from e
