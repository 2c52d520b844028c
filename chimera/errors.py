"""The root of Chimera's errors; each package derives its own from it."""


class ChimeraError(Exception):
    """Base class of every error Chimera raises on purpose."""


class ConfigError(ChimeraError):
    """The configuration file is missing, unreadable or invalid."""
