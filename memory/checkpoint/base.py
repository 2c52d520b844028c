"""The checkpoint seam: LangGraph's `BaseCheckpointSaver` is the interface; here are our errors and the session tie.

A graph run is checkpointed under `thread_id` = the Chimera session id, so a conversation's turns (the session
store) and the state of the graph that produced them (the checkpointer) share one key.
"""

from langchain_core.runnables import RunnableConfig

from chimera.errors import ChimeraError
from chimera.memory.sessions.base import check_session_id


class CheckpointError(ChimeraError):
    """A checkpoint could not be read or written (the store failed, or the saver was misused)."""


class CorruptCheckpointError(CheckpointError):
    """A stored checkpoint, channel value or pending write could not be decoded."""


TTL_KEY = "chimera_ttl_s"  # in a run config's `configurable`: the expiry of the thread's keys, for this run


def session_config(session_id: str, *, ttl_s: int | None = None) -> RunnableConfig:
    """The LangGraph run config that checkpoints a graph under a Chimera session.

    Args:
        session_id: The session id (1–128 characters of `A-Za-z0-9._:-`), used as the thread id.
        ttl_s: The thread's keys expire this many seconds after this run's last write, instead of the saver's
            `ttl_s` (a one-shot request's run: its session expires soon too). None: the saver's.

    Returns:
        `{"configurable": {"thread_id": session_id}}` (and the expiry), for `graph.invoke` / `graph.ainvoke`.

    Raises:
        InvalidSessionIdError: The id is not a valid session id.
    """
    configurable: dict[str, str | int] = {"thread_id": check_session_id(session_id)}
    if ttl_s is not None:
        configurable[TTL_KEY] = ttl_s
    return {"configurable": configurable}
