"""Unit tests for the PySide6 import-scan guard: same answers, nothing left in linecache."""

from __future__ import annotations

import importlib.util
import inspect
import json
import linecache
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from tray_agent.platform.memory import (
    FEATURE_MODULES,
    SCAN_FUNCTION,
    forget_new_linecache_entries,
    install_pyside_linecache_guard,
)


def source_module(directory: Path, name: str, text: str) -> types.ModuleType:
    """A module object whose source file exists (as for an imported module)."""
    path = directory / f"{name}.py"
    path.write_text(text, encoding="utf-8")
    module = types.ModuleType(name)
    module.__file__ = str(path)
    return module


def scan_like_pyside(module: types.ModuleType) -> bool:
    """What PySide6's ``_mod_uses_pyside`` does: read the whole source through inspect."""
    return "PySide6" in inspect.getsource(module)


def fake_feature_module() -> types.ModuleType:
    feature = types.ModuleType("fake_feature")
    setattr(feature, SCAN_FUNCTION, scan_like_pyside)
    return feature


def test_guard_without_pyside_loaded_does_nothing() -> None:
    assert install_pyside_linecache_guard({}) is False


def test_guard_without_the_scan_function_does_nothing() -> None:
    feature = types.ModuleType("fake_feature")
    assert install_pyside_linecache_guard({FEATURE_MODULES[0]: feature}) is False
    assert not hasattr(feature, SCAN_FUNCTION)


@pytest.mark.parametrize("name", FEATURE_MODULES)
def test_guarded_scan_answers_the_same_and_caches_no_source(tmp_path: Path, name: str) -> None:
    feature = fake_feature_module()
    uses = source_module(tmp_path, "uses_qt", "from PySide6 import QtCore\n")
    plain = source_module(tmp_path, "plain", "import json\n")

    assert install_pyside_linecache_guard({name: feature}) is True
    scan = getattr(feature, SCAN_FUNCTION)

    assert scan(uses) is True
    assert scan(plain) is False
    assert uses.__file__ not in linecache.cache
    assert plain.__file__ not in linecache.cache


def test_unguarded_scan_leaves_the_source_in_linecache(tmp_path: Path) -> None:
    # The behaviour the guard exists for (if this stops holding, the workaround can go).
    module = source_module(tmp_path, "kept", "x = 1\n")
    try:
        scan_like_pyside(module)
        assert module.__file__ in linecache.cache
    finally:
        linecache.cache.pop(str(module.__file__), None)


def test_guard_keeps_entries_cached_before_the_scan(tmp_path: Path) -> None:
    shown = tmp_path / "shown.py"
    shown.write_text("y = 2\n", encoding="utf-8")
    linecache.getlines(str(shown))  # e.g. a traceback already showed this file
    new = source_module(tmp_path, "new", "z = 3\n")

    def scan(module: types.ModuleType) -> bool:
        linecache.getlines(str(shown))
        return scan_like_pyside(module)

    try:
        assert forget_new_linecache_entries(scan)(new) is False
        assert str(shown) in linecache.cache
        assert new.__file__ not in linecache.cache
    finally:
        linecache.cache.pop(str(shown), None)


def test_guarded_scan_errors_pass_through_and_leave_nothing(tmp_path: Path) -> None:
    read = source_module(tmp_path, "read", "a = 1\n")

    def failing_scan(module: types.ModuleType) -> bool:
        scan_like_pyside(module)
        raise SyntaxError("as inspect raises for an undecodable file")

    with pytest.raises(SyntaxError):
        forget_new_linecache_entries(failing_scan)(read)
    assert read.__file__ not in linecache.cache


def test_guard_is_installed_once() -> None:
    feature = fake_feature_module()
    modules = {FEATURE_MODULES[0]: feature}

    assert install_pyside_linecache_guard(modules) is True
    first = getattr(feature, SCAN_FUNCTION)
    assert install_pyside_linecache_guard(modules) is True

    assert getattr(feature, SCAN_FUNCTION) is first
    assert first.__wrapped__ is scan_like_pyside


PYSIDE_IMPORT_SCRIPT = textwrap.dedent(
    """
    import json, linecache, sys
    import PySide6.QtCore  # installs the __feature__ import hook
    from tray_agent.platform.memory import install_pyside_linecache_guard

    guarded = install_pyside_linecache_guard() if sys.argv[2] == "guard" else False
    sys.path.insert(0, sys.argv[1])
    import imported_after_qt

    print(json.dumps({"guarded": guarded, "cached": imported_after_qt.__file__ in linecache.cache}))
    """
)


@pytest.mark.parametrize(("mode", "cached"), [("guard", False), ("none", True)])
def test_real_pyside_import_hook_caches_no_source_once_guarded(
    tmp_path: Path, mode: str, cached: bool
) -> None:
    # In a child process: the unit tests themselves never import Qt.
    if importlib.util.find_spec("PySide6") is None:
        pytest.skip("PySide6 is not installed")
    (tmp_path / "imported_after_qt.py").write_text("VALUE = 1\n", encoding="utf-8")
    env_root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-c", PYSIDE_IMPORT_SCRIPT, str(tmp_path), mode],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=env_root,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"guarded": mode == "guard", "cached": cached}
