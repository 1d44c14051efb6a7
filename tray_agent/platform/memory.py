"""Process memory: keep PySide6's per-import source scan from holding every module's source.

Once ``PySide6`` is imported, every later import goes through its ``__feature__`` import hook
(PYSIDE-2029), which decides whether the new module uses PySide6 by reading the module's whole
source with :func:`inspect.getsource`. That goes through :mod:`linecache`, which keeps the
lines for good: for the app run from a wheel or a checkout (the sources are on disk) that is
the source text of every module imported after Qt, about 15 MB of Python strings. Freeing them
later does not give the memory back (the strings were allocated between the code objects of the
same imports, so the allocator's arenas stay in use); not keeping them does: the app's RSS is
about 15 MB lower (benchmark 4: 121.8 -> 106.8 MB).

:func:`install_pyside_linecache_guard` wraps the scan so that it still reads the source and
answers the same, but the lines it added to :mod:`linecache` are dropped at once. Entries that
were cached before (a traceback already shown) stay. A frozen build has no sources, so there the
scan caches nothing and the guard changes nothing.

This module imports neither Qt nor PySide6: it finds the hook's module in ``sys.modules``.
"""

from __future__ import annotations

import functools
import linecache
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

logger = logging.getLogger(__name__)

FEATURE_MODULES = ("PySide6.support.feature", "shibokensupport.feature")
"""Where PySide6 publishes its ``__feature__`` support module (one module, two names)."""
SCAN_FUNCTION = "_mod_uses_pyside"
"""The function of that module that reads a newly imported module's source."""
_GUARDED = "_tray_agent_linecache_guard"

P = ParamSpec("P")
R = TypeVar("R")


def install_pyside_linecache_guard(modules: Mapping[str, Any] | None = None) -> bool:
    """Keep PySide6's per-import source scan out of :mod:`linecache`; call right after importing Qt.

    WORKAROUND(PYSIDE-2029): the ``__feature__`` hook reads each imported module's source through
    :func:`inspect.getsource`, which leaves it in :mod:`linecache` for the life of the process.

    Args:
        modules: the loaded modules (default :data:`sys.modules`).

    Returns:
        True when the scan is guarded (now or already), False when PySide6 is not loaded or its
        support module no longer has the scan (then there is nothing to guard).
    """
    loaded = sys.modules if modules is None else modules
    feature = next((loaded[name] for name in FEATURE_MODULES if name in loaded), None)
    if feature is None:
        return False
    scan = getattr(feature, SCAN_FUNCTION, None)
    if not callable(scan):
        logger.debug("PySide6's feature module has no %s: nothing to guard", SCAN_FUNCTION)
        return False
    if not getattr(scan, _GUARDED, False):
        setattr(feature, SCAN_FUNCTION, forget_new_linecache_entries(scan))
    return True


def forget_new_linecache_entries(function: Callable[P, R]) -> Callable[P, R]:
    """``function``, dropping the :mod:`linecache` entries it adds (result and errors unchanged)."""

    @functools.wraps(function)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        before = set(linecache.cache)  # one C call: atomic against imports on other threads
        try:
            return function(*args, **kwargs)
        finally:
            cache = linecache.cache
            for key in [key for key in list(cache) if key not in before]:
                cache.pop(key, None)

    setattr(guarded, _GUARDED, True)
    return guarded
