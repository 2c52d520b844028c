"""The session seam: the turns of a conversation, keyed by session id."""

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

from chimera.errors import ChimeraError
from chimera.messages import ChatMessage

_SESSION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class SessionError(ChimeraError):
    """A session could not be read or written."""


class InvalidSessionIdError(SessionError):
    """A session id with characters or a length we do not accept."""


class SessionNotFoundError(SessionError):
    """No session of the caller's has this id (it may be another principal's: that is not said)."""


class UnknownCursorError(SessionError):
    """A listing's `after` names no session in the owner's list (expired, deleted, or never theirs)."""


@dataclass(frozen=True)
class SessionInfo:
    """A session as a listing shows it."""

    id: str
    updated_at: float  # Unix time of its last claim or appended turn
    messages: int  # turns stored (at most the store's `max_messages`)


def check_session_id(session_id: str) -> str:
    """Return `session_id` if it is 1–128 characters of `A-Za-z0-9._:-`."""
    if not _SESSION_ID.fullmatch(session_id):
        raise InvalidSessionIdError("session id must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    return session_id


class SessionStore(ABC):
    """Stores the turns of each session, oldest first, and who owns each session."""

    @abstractmethod
    async def claim(self, session_id: str, owner: str, *, ttl_s: int | None = None) -> bool:
        """Make `owner` the session's owner if it has none (for `ttl_s`, None: the store's expiry); True when
        `owner` owns it (now or before)."""

    @abstractmethod
    async def owner(self, session_id: str) -> str | None:
        """Who owns the session; None when nobody does (unknown or expired)."""

    @abstractmethod
    async def load(self, session_id: str) -> list[ChatMessage]:
        """The session's messages; empty for an unknown session."""

    @abstractmethod
    async def append(self, session_id: str, messages: list[ChatMessage], *, ttl_s: int | None = None) -> None:
        """Add turns at the end (atomically) and set the session's expiry (and its owner's) to `ttl_s` from now
        (None: the store's)."""

    @abstractmethod
    async def delete(self, session_id: str) -> None:
        """Forget the session and its owner (and drop it from its owner's list)."""

    @abstractmethod
    async def owned_by(self, owner: str, *, limit: int, after: str | None = None) -> tuple[list[SessionInfo], bool]:
        """`owner`'s live sessions, most recently used first, at most `limit` of them after the session `after`;
        and whether more follow.

        Raises:
            UnknownCursorError: `after` is not in the owner's list.
        """

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""
