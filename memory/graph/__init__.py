"""The knowledge-graph store: the `GraphStore` seam, its Ladybug and Neo4j implementations, the document graph."""
