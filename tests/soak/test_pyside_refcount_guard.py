"""Guard against the PySide6 reference-count crash (DESKTOP-TESTING.md §0.1).

PySide6 6.12.0 on CPython 3.11 drops a reference to ``None`` on every void Qt call (and to
``True``/``False`` on connect/disconnect); a qasync app dies within seconds with
``Fatal Python error: none_dealloc`` (exit code 134). pyproject.toml pins ``<6.12`` on 3.11 for
this reason. This test runs the crashing workload in a SUBPROCESS -- 100,000 socket reads on a
qasync loop (each one toggles a QSocketNotifier), 100,000 ``Signal.emit`` calls and 100,000 void
Qt calls -- and requires exit code 0, so a wheel with the same bug can never slip in when the pin
is lifted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

READS = 100_000
CALLS = 100_000

WORKLOAD = textwrap.dedent(
    """
    import asyncio, socket, sys
    from PySide6.QtCore import QObject, Signal
    from PySide6.QtWidgets import QApplication
    import qasync

    READS, CALLS = int(sys.argv[1]), int(sys.argv[2])

    class Emitter(QObject):
        ticked = Signal(int)

    async def reads() -> int:
        # Ping-pong over a socket pair through asyncio streams: every read waits for readiness,
        # so qasync's QSocketNotifier is disabled and re-enabled (void Qt calls) on each one.
        left, right = socket.socketpair()
        a_reader, a_writer = await asyncio.open_connection(sock=left)
        b_reader, b_writer = await asyncio.open_connection(sock=right)
        got = 0
        try:
            for _ in range(READS // 2):
                a_writer.write(b"x")
                got += len(await b_reader.readexactly(1))
                b_writer.write(b"y")
                got += len(await a_reader.readexactly(1))
        finally:
            a_writer.close()
            b_writer.close()
        return got

    def main() -> int:
        app = QApplication.instance() or QApplication([])
        loop = qasync.QEventLoop(app)
        asyncio.set_event_loop(loop)
        with loop:
            got = loop.run_until_complete(reads())
        emitter = Emitter()
        seen = []
        emitter.ticked.connect(seen.append)
        for i in range(CALLS):
            emitter.ticked.emit(i)
            emitter.setObjectName("n%d" % (i & 7))  # a void Qt call
        emitter.ticked.disconnect(seen.append)
        for _ in range(1000):  # connect/disconnect return bools (the True/False variant)
            emitter.ticked.connect(seen.append)
            emitter.ticked.disconnect(seen.append)
        print("reads", got, "emits", len(seen), flush=True)
        return 0 if (got, len(seen)) == (READS, CALLS) else 3

    sys.exit(main())
    """
)


def test_pyside_survives_100k_qasync_reads_and_100k_emits_and_void_calls() -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run(
        [sys.executable, "-c", WORKLOAD, str(READS), str(CALLS)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, (
        f"exit code {proc.returncode} (134 = the PySide6 refcount abort, DESKTOP-TESTING.md §0.1)\\n"
        f"stdout: {proc.stdout[-2000:]}\\nstderr: {proc.stderr[-4000:]}"
    )
    assert f"reads {READS} emits {CALLS}" in proc.stdout
