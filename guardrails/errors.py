"""The guardrails package's errors."""

from chimera.errors import ChimeraError


class GuardrailsError(ChimeraError):
    """Root of the guardrails' errors."""


class GuardModelError(GuardrailsError):
    """A classifier, its heads file or the model under its features is missing, malformed or mismatched."""


class GuardDataError(GuardrailsError):
    """A labelled `{text, label, source}` file is malformed (the message names `file:line`)."""


class RailsConfigError(GuardrailsError):
    """The NeMo Guardrails configuration could not be built."""
