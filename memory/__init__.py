"""Memory: Redis sessions (and checkpoints), the long-context memory model, the knowledge-graph store."""
