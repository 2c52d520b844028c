"""LangGraph graphs: the ReAct agent (and, later, the supervisor team), their state and prompts."""
