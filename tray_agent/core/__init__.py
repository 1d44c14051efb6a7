"""Pure core: wire models, domain events, state, policy, settings. No Qt, no I/O."""
