"""The customers I hold, read from the store's State (the Quit / Sign out warning counts them)."""

from __future__ import annotations

from tray_agent.core.state import State

__all__ = ["held_customers"]

_CLOSED = frozenset({"resolved", "closed"})


def held_customers(state: State) -> tuple[str, ...]:
    """Keys of the conversations assigned to me and still open (mine, not resolved), sorted.

    A take-over still in flight counts: the server may be assigning them to me right now.
    """
    held = []
    for key in state.mine_keys:
        conv = state.conversation(key)
        if conv is not None and conv.assigned_to_me and conv.status not in _CLOSED:
            held.append(key)
    return tuple(sorted(held))
