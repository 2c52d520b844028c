"""The principal: what an API key stands for. Sessions, agent runs and memory belong to one; its tenant and groups
decide which documents it sees."""

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field

from chimera.config import ApiKeyConfig, KeyLimits, Role
from chimera.tools.search.types import DEFAULT_TENANT, SearchFilters

NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")  # key ids, tenants and groups


@dataclass(frozen=True)
class Principal:
    """One caller: its key's id, tenant, ACL groups, role and limits."""

    id: str
    tenant: str = DEFAULT_TENANT
    groups: tuple[str, ...] = ()
    role: Role = "user"
    limits: KeyLimits = field(default_factory=KeyLimits)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def search_filters(self) -> SearchFilters:
        """The retrieval filters of everything this principal searches: its tenant, its groups."""
        return SearchFilters(tenant=self.tenant, acl=frozenset(self.groups))

    def as_record(self) -> dict[str, object]:
        """The JSON form a key store keeps (the key itself is never part of it)."""
        return {"id": self.id, "tenant": self.tenant, "groups": list(self.groups), "role": self.role,
                "limits": self.limits.model_dump()}  # fmt: skip

    @classmethod
    def from_record(cls, record: dict[str, object]) -> "Principal":
        groups = record.get("groups")
        return cls(
            id=str(record["id"]),
            tenant=str(record.get("tenant", DEFAULT_TENANT)),
            groups=tuple(str(g) for g in groups) if isinstance(groups, list) else (),
            role="admin" if record.get("role") == "admin" else "user",
            limits=KeyLimits.model_validate(record.get("limits") or {}),
        )


LOCAL = Principal("local", role="admin")  # who every request acts as when no keys are configured


def local_principal(limits: KeyLimits) -> Principal:
    """The local admin of the default tenant, with the server's default limits."""
    return dataclasses.replace(LOCAL, limits=limits)


def key_digest(token: str) -> str:
    """How keys are compared and stored: SHA-256 of the token (keys are random, so no salt is needed)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def configured_principal(entry: str | ApiKeyConfig, default_limits: KeyLimits) -> tuple[str, Principal]:
    """A config key's digest and principal (a bare token: tenant `default`, role user, the default limits)."""
    if isinstance(entry, str):
        digest = key_digest(entry)
        return digest, Principal(f"cfg-{digest[:8]}", limits=default_limits)
    digest = key_digest(entry.key)
    principal = Principal(
        id=entry.id or f"cfg-{digest[:8]}",
        tenant=entry.tenant,
        groups=entry.groups,
        role=entry.role,
        limits=entry.limits or default_limits,
    )
    return digest, principal
