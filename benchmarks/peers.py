"""tray-agent beside the native Qt tray apps an IT department compares it with, in one run.

    .venv/bin/python benchmarks/peers.py [--quick] [--json out.json]

Programs, each started in one headless desktop session (Xvfb, D-Bus, StatusNotifierWatcher:
tests/desktop/session.py) with its own throw-away HOME and XDG directories (first-run screen):

- ``bare``: a PySide6 program that shows one QSystemTrayIcon and nothing else (the limit);
- ``tray-agent (packaged)``: the PyInstaller bundle ``dist/tray-agent/tray-agent`` (build it with
  ``packaging/build.sh``) against ``tray-agent demo-server`` in its own process, configured through
  ``TRAY_AGENT_*`` variables as an installed app is;
- ``tray-agent (venv --demo)``: ``python -m tray_agent --demo`` (demo server in-process);
- ``telegram-desktop`` and ``nextcloud`` (Debian's ``telegram-desktop`` and ``nextcloud-desktop``):
  "not installed" when absent; this script installs nothing
  (``sudo apt-get install --no-install-recommends telegram-desktop nextcloud-desktop``).

Per program: start-up (``Popen`` to the first tray icon registered with the watcher or the first
viewable top-level window, whichever comes first), RSS of the process (VmRSS) and of its process
tree 15 s and 60 s after start, and CPU (user + system, process tree) from 15 s to 75 s after start,
as a percentage of one core. The programs are started one after the other (each once the previous
one has shown itself) and then idle side by side, each sampled on its own clock. Ratios are to the
bare program of the same run. The packaged target of the performance issue: RSS at 60 s
<= 1.25 x bare. This is a benchmark: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from run_all import BARE_TRAY, PACKAGED_DEMO_SERVER, PY  # noqa: E402

from tests.desktop.session import DesktopSession, missing_binaries  # noqa: E402

PACKAGED = ROOT / "dist" / "tray-agent" / "tray-agent"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PACKAGED_RSS_TARGET = 1.25


@dataclass
class Program:
    """One measured program and what was measured of it."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    missing: str = ""
    proc: subprocess.Popen[bytes] | None = None
    helper: subprocess.Popen[str] | None = None  # the packaged app's separate demo server
    started: float = 0.0
    startup_ms: float | None = None
    shown_by: str = ""
    samples: dict[str, Any] = field(default_factory=dict)


def _children(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def _tree(fn: Any, pid: int) -> float:
    total = 0.0
    for child in _children(pid):
        with contextlib.suppress(OSError, ValueError):  # ended meanwhile
            total += fn(child)
    return total


def _viewable_windows(env: dict[str, str]) -> set[str]:
    """Top-level windows that are mapped and larger than 1x1 (no window manager: root's children)."""
    out = subprocess.run(
        ["xwininfo", "-root", "-children"], env=env, capture_output=True, text=True, check=False
    ).stdout
    shown = set()
    for wid in re.findall(r"^\s+(0x[0-9a-f]+)", out, flags=re.MULTILINE):
        info = subprocess.run(
            ["xwininfo", "-id", wid], env=env, capture_output=True, text=True, check=False
        ).stdout
        size = re.search(r"Width: (\d+).*?Height: (\d+)", info, flags=re.DOTALL)
        if "IsViewable" in info and size and int(size.group(1)) > 1 and int(size.group(2)) > 1:
            shown.add(wid)
    return shown


def _home_env(base: dict[str, str], home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {
        **base,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_STATE_HOME": str(home / ".local/state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "QT_QPA_PLATFORM": "xcb",
    }


def _programs(tmp: Path, session_env: dict[str, str]) -> list[Program]:
    programs = [
        Program("bare PySide6 tray", [PY, "-c", BARE_TRAY], _home_env(session_env, tmp / "bare")),
        Program("tray-agent (packaged)", [str(PACKAGED), "--basedir", str(tmp / "pkg" / "base")]),
        Program(
            "tray-agent (venv --demo)",
            [PY, "-m", "tray_agent", "--demo"],
            _home_env(session_env, tmp / "venv"),
        ),
    ]
    packaged = programs[1]
    packaged.env = _home_env(session_env, tmp / "pkg")
    if not PACKAGED.exists():
        packaged.missing = "not built: run packaging/build.sh"
    for name, binary in (("telegram-desktop", "telegram-desktop"), ("nextcloud", "nextcloud")):
        path = shutil.which(binary)
        program = Program(name, [path or binary], _home_env(session_env, tmp / binary))
        if path is None:
            program.missing = "not installed (sudo apt-get install telegram-desktop nextcloud-desktop)"
        programs.append(program)
    return programs


def _start_packaged_server(program: Program) -> None:
    """The packaged app's backend: the bundle's own demo-server, as benchmark 8 runs it."""
    server = subprocess.Popen(
        [str(PACKAGED), *PACKAGED_DEMO_SERVER],
        env=program.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    program.helper = server
    assert server.stdout is not None
    timer = threading.Timer(60.0, server.kill)
    timer.start()
    try:
        info = json.loads(server.stdout.readline())
    finally:
        timer.cancel()
    agent = info["agents"][0]
    program.env.update(
        {
            "TRAY_AGENT_DIALECT": info["dialect"],
            "TRAY_AGENT_SERVER": info["url"],
            "TRAY_AGENT_COMPANY": agent["tenant"],
            "TRAY_AGENT_EMAIL": agent["email"],
            "TRAY_AGENT_PASSWORD": agent["password"],
        }
    )


def _start(program: Program, session: DesktopSession, timeout: float) -> None:
    """Start ``program`` and wait until its tray icon or first window shows (or ``timeout``)."""
    if program.helper is None and program.name == "tray-agent (packaged)":
        _start_packaged_server(program)
    icons = set(session.sni_items())
    windows = _viewable_windows(program.env)
    program.started = time.monotonic()
    program.proc = subprocess.Popen(
        program.argv, env=program.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    deadline = program.started + timeout
    while time.monotonic() < deadline and program.proc.poll() is None:
        if set(session.sni_items()) - icons:
            program.shown_by = "tray icon"
        elif _viewable_windows(program.env) - windows:
            program.shown_by = "window"
        if program.shown_by:
            program.startup_ms = round((time.monotonic() - program.started) * 1000)
            return
        time.sleep(0.01)  # polling D-Bus and X: a benchmark, not a test


def _sample(program: Program, label: str) -> None:
    proc = program.proc
    if proc is None or proc.poll() is not None:
        program.samples[label] = None
        return
    program.samples[label] = {
        "rss_mb": round(_rss_mb(proc.pid), 1),
        "tree_rss_mb": round(_tree(_rss_mb, proc.pid), 1),
        "cpu_ticks": _tree(_cpu_ticks, proc.pid),
        "at": time.monotonic(),
    }


def _stop(program: Program) -> None:
    for proc in (program.proc, program.helper):
        if proc is None or proc.poll() is not None:
            continue
        for child in reversed(_children(proc.pid)[1:]):
            with contextlib.suppress(OSError):
                os.kill(child, 15)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(first: float, second: float, cpu_window: float) -> dict[str, Any]:
    """Run every program side by side; sample each at ``first`` and ``second`` s after its start."""
    missing = missing_binaries()
    if missing or not shutil.which("xwininfo"):
        return {"skipped": f"desktop session binaries missing: {missing or ['xwininfo']}"}
    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="tray-bench-peers-") as tmp,
        DesktopSession() as session,
        session.environ() as session_env,
    ):
        programs = _programs(Path(tmp), dict(session_env))
        running = [p for p in programs if not p.missing]
        try:
            for program in running:
                print(f"starting {program.name} ...", file=sys.stderr, flush=True)
                _start(program, session, timeout=30.0)
            # Each program on its own clock: samples at +first, +second and +first+cpu_window.
            plan = sorted(
                (p.started + offset, label, p)
                for p in running
                for offset, label in (
                    (first, "first"),
                    (second, "second"),
                    (first + cpu_window, "cpu_end"),
                )
            )
            for when, label, program in plan:
                time.sleep(max(0.0, when - time.monotonic()))
                _sample(program, label)
        finally:
            for program in running:
                _stop(program)
        for program in programs:
            results[program.name] = _summary(program, first, second)
    bare = results.get("bare PySide6 tray", {})
    for summary in results.values():
        for key in ("rss_first_mb", "rss_second_mb"):
            if summary.get(key) and bare.get(key):
                summary[f"{key.removesuffix('_mb')}_x_bare"] = round(summary[key] / bare[key], 2)
        if summary.get("startup_ms") and bare.get("startup_ms"):
            summary["startup_x_bare"] = round(summary["startup_ms"] / bare["startup_ms"], 2)
    return results


def _summary(program: Program, first: float, second: float) -> dict[str, Any]:
    if program.missing:
        return {"missing": program.missing}
    one, two, end = (program.samples.get(k) for k in ("first", "second", "cpu_end"))
    summary: dict[str, Any] = {
        "startup_ms": program.startup_ms,
        "shown_by": program.shown_by or "nothing within 30 s",
        "alive": end is not None,
        "rss_first_mb": one and one["rss_mb"],
        "rss_second_mb": two and two["rss_mb"],
        "tree_rss_second_mb": two and two["tree_rss_mb"],
        "at": {"first_s": first, "second_s": second},
    }
    if one and end:
        seconds = end["at"] - one["at"]
        summary["idle_cpu_pct"] = round(100 * (end["cpu_ticks"] - one["cpu_ticks"]) / CLK_TCK / seconds, 3)
        summary["cpu_window_s"] = round(seconds, 1)
    return summary


def table(results: dict[str, Any]) -> str:
    head = ("program", "start-up", "RSS +15 s", "RSS +60 s", "tree +60 s", "idle CPU", "RSS x bare")
    rows = [head]
    for name, s in results.items():
        if "missing" in s:
            rows.append((name, s["missing"], "", "", "", "", ""))
            continue

        def mb(v: Any) -> str:
            return "—" if v is None else f"{v:.1f} MB"

        rows.append(
            (
                name,
                "—" if s["startup_ms"] is None else f"{s['startup_ms']} ms ({s['shown_by']})",
                mb(s["rss_first_mb"]),
                mb(s["rss_second_mb"]),
                mb(s["tree_rss_second_mb"]),
                "—" if "idle_cpu_pct" not in s else f"{s['idle_cpu_pct']:.3f} %",
                str(s.get("rss_second_x_bare", "—")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(results: dict[str, Any]) -> list[str]:
    """The ratios the performance issue names, in words."""
    lines = []
    packaged = results.get("tray-agent (packaged)", {})
    ratio = packaged.get("rss_second_x_bare")
    if ratio is not None:
        met = "met" if ratio <= PACKAGED_RSS_TARGET else "MISSED"
        lines.append(f"packaged idle RSS at +60 s = {ratio} x bare (target <= {PACKAGED_RSS_TARGET}): {met}")
    ours = packaged.get("rss_second_mb") or results.get("tray-agent (venv --demo)", {}).get("rss_second_mb")
    for peer in ("telegram-desktop", "nextcloud"):
        theirs = results.get(peer, {}).get("rss_second_mb")
        if ours and theirs:
            lines.append(f"tray-agent RSS = {ours / theirs:.2f} x {peer}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="samples at +5 s and +15 s, CPU over 10 s")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    first, second, window = (5.0, 15.0, 10.0) if args.quick else (15.0, 60.0, 60.0)
    started = time.monotonic()
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg": os.getloadavg(),
        },
        "quick": args.quick,
        "programs": measure(first, second, window),
    }
    results["seconds"] = round(time.monotonic() - started, 1)
    programs = results["programs"]
    if "skipped" in programs:
        print(programs["skipped"])
    else:
        print(table(programs))
        for line in verdict(programs):
            print(line)
    print(json.dumps(results, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
