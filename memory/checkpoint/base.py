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


def session_config(session_id: str) -> RunnableConfig:
    """The LangGraph run config that checkpoints a graph under a Chimera session.

    Args:
        session_id: The session id (1–128 characters of `A-Za-z0-9._:-`), used as the thread id.

    Returns:
        `{"configurable": {"thread_id": session_id}}`, for `graph.invoke` / `graph.ainvoke`.

    Raises:
        InvalidSessionIdError: The id is not a valid session id.
    """
    return {"configurable": {"thread_id": check_session_id(session_id)}}
