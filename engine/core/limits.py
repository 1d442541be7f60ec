"""Bounds a project file and a graph meet, in a module of their own: the graph and the block
expansion (core/blocks.py) both check them, and neither imports the other for it."""


# Nodes of a project's graph, a bound a file and a paste meet (the largest Keras application,
# NASNetLarge, has about 1,000 layers). Graph operations take linear time; the bound keeps a
# shared file from making the editor draw, and the reader list, without end.
MAX_NODES = 10_000


def too_many_nodes(count):
    """The refusal of a graph of `count` nodes, or None."""
    if count <= MAX_NODES:
        return None
    return f"{count:,} nodes, more than the {MAX_NODES:,} a project may hold"
