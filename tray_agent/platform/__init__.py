"""OS seams behind core.ports, each with a Null implementation. No Qt widgets."""
