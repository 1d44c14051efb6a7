"""The app's secret store in a real desktop session: gnome-keyring's Secret Service, via the helper."""

from __future__ import annotations

import json
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


APP_STORE = """
import json, sys
from types import SimpleNamespace
from tray_agent.app import TrayApp
store = TrayApp._make_secrets(SimpleNamespace(args=SimpleNamespace(demo=False)))
op, key = sys.argv[1], sys.argv[2]
if op == "set":
    store.set(key, sys.stdin.read())
elif op == "delete":
    store.delete(key)
value = store.get(key)
getattr(store, "close", lambda: None)()  # ends the helper now
heavy = ("keyring", "secretstorage", "jeepney", "cryptography")
print(json.dumps({"persistent": store.persistent, "backend": store.backend_name, "value": value,
                  "modules": sorted(m for m in sys.modules if m.split(".")[0] in heavy)}))
"""


def _app_store(desktop: DesktopSession, op: str, key: str, value: str = "") -> dict[str, object]:
    env = {**desktop.env, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", APP_STORE, op, key],
        input=value, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_the_apps_store_keeps_secrets_in_gnome_keyring_without_keyring_in_its_process(
    desktop: DesktopSession,
) -> None:
    from keyring.backends import SecretService

    key = "org:https://support.example.com:org-1:helper@example.com:refresh_token"
    stored = _app_store(desktop, "set", key, "rt-through-the-helper")
    assert stored == {
        "persistent": True,
        "backend": "keyring.backends.SecretService.Keyring",
        "value": "rt-through-the-helper",
        "modules": [],  # the helper process did the keyring work, not the app's
    }
    # What gnome-keyring itself holds, read straight from it.
    assert SecretService.Keyring().get_password("tray-agent", key) == "rt-through-the-helper"  # type: ignore[no-untyped-call]
    deleted = _app_store(desktop, "delete", key)
    assert (deleted["persistent"], deleted["value"], deleted["modules"]) == (True, None, [])
    assert SecretService.Keyring().get_password("tray-agent", key) is None  # type: ignore[no-untyped-call]
