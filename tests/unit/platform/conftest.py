"""Fixtures of the platform tests."""

from __future__ import annotations

from collections.abc import Iterator

import keyring
import pytest

from tests.helpers.keyring_backends import FakeKeyring


@pytest.fixture
def fake_keyring() -> Iterator[FakeKeyring]:
    """keyring's backend is an in-memory one for the test (restored after)."""
    original = keyring.get_keyring()
    backend = FakeKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(original)
