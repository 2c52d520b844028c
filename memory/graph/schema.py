"""A graph schema as data: node types with a primary key, relationship types between them.

Each store turns it into its own dialect: Ladybug (Kùzu) needs `NODE TABLE`/`REL TABLE` declarations before any write,
Neo4j needs none but gets a uniqueness constraint per node key.
"""

import re
from dataclasses import dataclass
from typing import Literal

PropertyType = Literal["STRING", "INT64", "DOUBLE", "BOOL"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_identifier(name: str) -> None:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain identifier: {name!r}")


@dataclass(frozen=True)
class NodeType:
    """A node label, its properties in declaration order, and the property that identifies a node."""

    label: str
    properties: tuple[tuple[str, PropertyType], ...]
    key: str

    def __post_init__(self) -> None:
        _check_identifier(self.label)
        for name, _ in self.properties:
            _check_identifier(name)
        if self.key not in dict(self.properties):
            raise ValueError(f"key {self.key!r} is not a property of {self.label}")


@dataclass(frozen=True)
class RelType:
    """A relationship type from one node label to another, with its properties."""

    type: str
    source: str
    target: str
    properties: tuple[tuple[str, PropertyType], ...] = ()

    def __post_init__(self) -> None:
        for name in (self.type, self.source, self.target, *(name for name, _ in self.properties)):
            _check_identifier(name)


@dataclass(frozen=True)
class GraphSchema:
    """The node and relationship types a graph needs; relationships may only join declared labels."""

    nodes: tuple[NodeType, ...]
    relationships: tuple[RelType, ...] = ()

    def __post_init__(self) -> None:
        labels = {node.label for node in self.nodes}
        for rel in self.relationships:
            if rel.source not in labels or rel.target not in labels:
                raise ValueError(f"relationship {rel.type} joins undeclared labels {rel.source}, {rel.target}")
