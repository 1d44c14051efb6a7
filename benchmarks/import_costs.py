"""Each module's share of the app's idle RSS: what importing it (and what it pulls in) adds.

    .venv/bin/python benchmarks/import_costs.py [--order app|alone]

``app`` (default): one fresh process imports the modules in the order the app's start-up does and
prints the RSS after each step (VmRSS after ``gc.collect()``), so each line is that step's share
given everything before it (with the app's linecache guard on, as in app.py). ``alone``: each
step in a fresh process right after QApplication (what the step would cost if nothing else had
pulled in its dependencies). SSL contexts are
counted too: ``ssl.create_default_context()`` loads the CA store (several MB) each time.
A benchmark: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (label, code run in the measuring process), in the app's start-up order.
STEPS: list[tuple[str, str]] = [
    ("python", "pass"),
    ("Qt: QApplication + QSystemTrayIcon", "from PySide6.QtWidgets import QApplication, QSystemTrayIcon\n"
     "from tray_agent.platform.memory import install_pyside_linecache_guard\n"
     "install_pyside_linecache_guard()\n"
     "app = QApplication([])"),
    ("pydantic", "import pydantic"),
    ("core.settings (pydantic models)", "import tray_agent.core.settings"),
    ("core.state + events + policy", "import tray_agent.core.state, tray_agent.core.policy"),
    ("core.protocol (both codecs)", "import tray_agent.core.protocol.org\n"
     "import tray_agent.core.protocol.dashboard"),
    ("asyncio + qasync", "import asyncio, qasync"),
    ("websockets", "import websockets.asyncio.client"),
    ("aiohttp", "import aiohttp"),
    ("truststore", "import truststore"),
    ("net.client + net.auth", "import tray_agent.net.client, tray_agent.net.auth"),
    ("one SSL context (OS trust store)", "import tray_agent.net.auth as a, tray_agent.core.settings as s\n"
     "ctx = a.make_ssl_context(s.ConnectionSettings())"),
    ("sqlite3 + platform.storage", "import tray_agent.platform.storage"),
    ("secret store (keyring detection as the app does it)",
     "from tray_agent.platform.secrets import KeyringSecretStore\nstore = KeyringSecretStore()"),
    ("desktop_notifier", "import desktop_notifier"),
    ("ui (bridge, tray, models, windows)", "import tray_agent.ui.bridge, tray_agent.ui.tray\n"
     "import tray_agent.ui.models, tray_agent.ui.windows"),
]  # fmt: skip

PROBE = r"""
import gc, json, sys
def rss():
    gc.collect()
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
steps = json.loads(sys.argv[1])
out = []
for label, code in steps:
    try:
        exec(code, globals())
        out.append([label, round(rss(), 1), ""])
    except Exception as exc:  # a missing optional module: say so, go on
        out.append([label, round(rss(), 1), f"{type(exc).__name__}: {exc}"])
print(json.dumps(out))
"""


def run(steps: list[tuple[str, str]]) -> list[list[object]]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)  # keyring detection without the developer's session
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(steps)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--order", choices=("app", "alone"), default="app")
    args = parser.parse_args()
    rows: list[tuple[str, float, float, str]] = []
    if args.order == "app":
        previous = 0.0
        for label, rss, error in run(STEPS):
            rows.append((str(label), float(rss), float(rss) - previous, str(error)))
            previous = float(rss)
    else:
        base = run(STEPS[:2])[-1][1]
        rows.append((STEPS[1][0], float(base), float(base), ""))
        for step in STEPS[2:]:
            label, rss, error = run([*STEPS[:2], step])[-1]
            rows.append((str(label), float(rss), float(rss) - float(base), str(error)))
    width = max(len(r[0]) for r in rows)
    print(f"{'step'.ljust(width)} | RSS after | share")
    print(f"{'-' * width}-+-----------+--------")
    for label, rss, share, error in rows:
        print(f"{label.ljust(width)} | {rss:6.1f} MB | {share:+5.1f} MB {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
