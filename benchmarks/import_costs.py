"""Each module's share of the app's idle RSS: what importing it (and what it pulls in) adds.

    .venv/bin/python benchmarks/import_costs.py [--order app|alone] [--no-bytecode] [--optimize 2] [--dbus]

``app`` (default): one fresh process imports the modules in the order the app's start-up does and
prints the RSS after each step (VmRSS after ``gc.collect()``), so each line is that step's share
given everything before it (with the app's linecache guard on, as in app.py). ``alone``: each
step in a fresh process right after QApplication (what the step would cost if nothing else had
pulled in its dependencies). SSL contexts are
counted too: ``ssl.create_default_context()`` loads the CA store (several MB) each time.

Bytecode: the installed app (wheel) and the bundle load every module from bytecode. A checkout run
with ``PYTHONDONTWRITEBYTECODE=1`` (as the test and benchmark environment sets it) compiles each of
tray_agent's modules from source on every start instead, and the compiler's peak stays in the RSS:
that made core.state look like 3.5 MB and net.client like 3.6 MB when their bytecode costs 0.6 and
0.7 MB. So by default the measuring process reads bytecode from a throw-away cache
(``PYTHONPYCACHEPREFIX``) that a first, unmeasured run fills; ``--no-bytecode`` measures the old
way. ``--optimize 2`` runs the interpreter with ``-OO`` like the bundle (packaging/tray-agent.spec).
``--dbus`` measures inside a headless desktop session (tests/desktop/session.py: D-Bus,
gnome-keyring, dunst), where the secret store and the notifier really connect; without it there
is no session bus and both do nothing. The secret store's step is the app's: keyring works in the
short-lived ``tray-agent secret-helper`` process, whose own RSS is printed below the table; the
last step shows what keyring would add in process.
A benchmark: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
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
    ("HTTP: net.http (stdlib http.client) + one idle worker thread",
     "import threading, tray_agent.net.http\n_idle = threading.Event()\n"
     "threading.Thread(target=_idle.wait, daemon=True).start()"),
    ("truststore", "import truststore"),
    ("net.client + net.auth", "import tray_agent.net.client, tray_agent.net.auth"),
    ("one SSL context (OS trust store)", "import tray_agent.net.auth as a, tray_agent.core.settings as s\n"
     "ctx = a.make_ssl_context(s.ConnectionSettings())"),
    ("sqlite3 + platform.storage", "import tray_agent.platform.storage"),
    # The app's store: keyring runs in the short-lived helper process (platform.secret_helper);
    # this process keeps only the pipes' client. The helper's own cost is printed below the table.
    ("secret store (helper process: status, one secret stored, read, deleted)",
     "from tray_agent.platform.secret_helper import HelperSecretStore\nstore = HelperSecretStore()\n"
     "store.set('import-costs:probe', 'x'); store.get('import-costs:probe')\n"
     "store.delete('import-costs:probe'); store.close()\n"
     "if not store.persistent: raise RuntimeError(store.problem)  # say so: memory only"),
    ("notifier (create_notifier + one toast)",
     "import asyncio\nfrom tray_agent.core.effects import Toast, Urgency\n"
     "from tray_agent.platform.notifier import create_notifier\n"
     "async def _toast():\n"
     "    notifier = await create_notifier()\n"
     "    await notifier.show(Toast(key='k', title='t', body='b', urgency=Urgency.NORMAL))\n"
     "    await notifier.aclose()\n"
     "asyncio.run(_toast())"),
    ("ui (bridge, tray, models, windows)", "import tray_agent.ui.bridge, tray_agent.ui.tray\n"
     "import tray_agent.ui.models, tray_agent.ui.windows"),
    ("single instance (listening)", "import uuid\nfrom tray_agent.ui.single_instance import SingleInstance\n"
     "instance = SingleInstance('import-costs-' + uuid.uuid4().hex[:12])\n"
     "instance.try_forward('activate', 200); instance.listen()"),
    # Not on the idle path any more (imported where used): what they would add back.
    ("rare paths: html, plistlib, tomllib (not loaded idle)", "import html, plistlib, tomllib"),
    ("aiohttp (the demo server's; the client no longer imports it)", "import aiohttp"),
    # What the helper spares the app: keyring (+ SecretStorage, jeepney, cryptography) in process.
    ("keyring in process (in the helper now; not loaded idle)",
     "from tray_agent.platform.secrets import KeyringSecretStore\nstore = KeyringSecretStore()\n"
     "store.set('import-costs:probe', 'x'); store.get('import-costs:probe')\n"
     "store.delete('import-costs:probe')"),
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


SESSION_ENV: dict[str, str] | None = None
"""With ``--dbus``: the headless desktop session's environment (its own D-Bus, keyring, dunst)."""


def run(steps: list[tuple[str, str]], cache: str | None = None, optimize: int = 0) -> list[list[object]]:
    """Run ``steps`` in one fresh process; ``cache``: the bytecode cache directory (None: compile)."""
    env = {**(SESSION_ENV or os.environ), "QT_QPA_PLATFORM": "offscreen", "PYTHONDONTWRITEBYTECODE": "1"}
    if SESSION_ENV is None:
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)  # never the developer's keyring or notifications
    env["PYTHONPATH"] = str(ROOT)
    if cache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE")
        env["PYTHONPYCACHEPREFIX"] = cache
    flags = ["-" + "O" * optimize] if optimize else []
    out = subprocess.run(
        [sys.executable, *flags, "-c", PROBE, json.dumps(steps)],
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
    parser.add_argument(
        "--no-bytecode", action="store_true", help="compile from source in each run (the old figures)"
    )
    parser.add_argument("--optimize", type=int, choices=(0, 1, 2), default=0, help="-O / -OO as the bundle")
    parser.add_argument(
        "--dbus", action="store_true", help="in a headless desktop session (keyring, notifications: real)"
    )
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.dbus:
            sys.path.insert(0, str(ROOT))
            from tests.desktop.session import DesktopSession, missing_binaries

            if missing_binaries():
                print(f"--dbus: desktop session binaries missing: {missing_binaries()}")
                return 1
            session = stack.enter_context(DesktopSession())
            global SESSION_ENV
            SESSION_ENV = dict(stack.enter_context(session.environ()))
        return report(args)


def report(args: argparse.Namespace) -> int:
    """Measure and print the table."""
    with tempfile.TemporaryDirectory(prefix="import-costs-pyc-") as tmp:
        cache = None if args.no_bytecode else tmp
        if cache is not None:
            run(STEPS, cache, args.optimize)  # fills the cache; not measured
        rows = measure(args.order, cache, args.optimize)
    print(f"bytecode: {'compiled from source in each run' if cache is None else 'cached, as installed'}"
          f"; optimize {args.optimize}; D-Bus session: {'yes' if SESSION_ENV else 'none'}")  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"{'step'.ljust(width)} | RSS after | share")
    print(f"{'-' * width}-+-----------+--------")
    for label, rss, share, error in rows:
        print(f"{label.ljust(width)} | {rss:6.1f} MB | {share:+5.1f} MB {error}")
    print(helper_cost(args.optimize))
    return 0


def helper_cost(optimize: int) -> str:
    """The keyring helper process's own RSS (peak, and once its work is done), as the app runs it."""
    env = {**(SESSION_ENV or os.environ), "PYTHONPATH": str(ROOT)}
    if SESSION_ENV is None:
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    flags = ["-" + "O" * optimize] if optimize else []
    requests = [
        {"id": 1, "op": "status"},
        {"id": 2, "op": "set", "key": "import-costs:probe", "value": "x"},
        {"id": 3, "op": "get", "key": "import-costs:probe"},
        {"id": 4, "op": "delete", "key": "import-costs:probe"},
    ]
    proc = subprocess.Popen(
        [sys.executable, *flags, "-m", "tray_agent", "secret-helper"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        for request in requests:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            reply = json.loads(proc.stdout.readline())
        status = Path(f"/proc/{proc.pid}/status").read_text()
    finally:
        proc.stdin.close()
        code = proc.wait(30)
    mb = {k: int(v.split()[0]) / 1024 for k, v in (line.split(":", 1) for line in status.splitlines())
          if k in ("VmHWM", "VmRSS")}  # fmt: skip
    return (
        f"secret helper process (short-lived, exit code {code}): peak {mb['VmHWM']:.1f} MB, "
        f"{mb['VmRSS']:.1f} MB after its work; backend {reply.get('backend') or 'none'}"
    )


def measure(order: str, cache: str | None, optimize: int) -> list[tuple[str, float, float, str]]:
    """Rows of (label, RSS after, share, error) in ``order`` (see the module docstring)."""
    rows: list[tuple[str, float, float, str]] = []
    if order == "app":
        previous = 0.0
        for label, rss, error in run(STEPS, cache, optimize):
            rows.append((str(label), float(rss), float(rss) - previous, str(error)))
            previous = float(rss)
    else:
        base = run(STEPS[:2], cache, optimize)[-1][1]
        rows.append((STEPS[1][0], float(base), float(base), ""))
        for step in STEPS[2:]:
            label, rss, error = run([*STEPS[:2], step], cache, optimize)[-1]
            rows.append((str(label), float(rss), float(rss) - float(base), str(error)))
    return rows


if __name__ == "__main__":
    sys.exit(main())
