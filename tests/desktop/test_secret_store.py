"""The app's secret store in a real desktop session: the Secret Service (gnome-keyring), found directly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.desktop.session import DesktopSession

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import sys
from tray_agent.platform.secrets import KeyringSecretStore
store = KeyringSecretStore()
store.set("tray_agent-test:store", "s3cr3t")
value = store.get("tray_agent-test:store")
store.delete("tray_agent-test:store")
others = [m for m in ("keyring.backends.kwallet", "keyring.backends.libsecret") if m in sys.modules]
print(store.persistent, store.backend_name, value, store.get("tray_agent-test:store"), others)
"""


def test_secret_store_uses_only_the_secret_service(desktop: DesktopSession) -> None:
    # A fresh process as the app starts one; the session's HOME has no keyringrc.cfg.
    env = {**desktop.env, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    persistent, backend, value, after, others = out.stdout.split(maxsplit=4)
    assert persistent == "True"
    assert backend == "keyring.backends.SecretService.Keyring"
    assert (value, after) == ("s3cr3t", "None")
    assert others.strip() == "[]"  # keyring's other backends were never imported or probed
