"""Per-frame cost of each stage of the client pipeline, measured in isolation (no sockets, no Qt).

``.venv/bin/python benchmarks/stage_costs.py [--frames N]`` prints microseconds per frame for the
stages benchmark 1 chains together, on the same ``new_message`` frames the benchmark server sends
(20 customers, 500-message bounded histories once warm):

* parse: ``DashboardCodec.parse_frame`` (its ``new_message`` fast path, else pydantic
  ``validate_json``, + translation to a domain event);
* reduce: ``Store.dispatch_many`` of bursts of :data:`BURST` frames' events, as the client hands
  a burst of buffered frames to the dispatcher (one reducer transaction per run of messages, one
  new ``State`` per burst); "reduce, one at a time" (informative, not in the sum) is
  ``Store.dispatch`` of each event (one new ``State`` per frame), as before batching;
* alert policy: ``AlertPolicy.on_alert`` of each alert plus what the alert engine asks once per
  dispatch (``next_deadline``, ``tray_level``, ``dnd_active``), per burst as ``AlertEngine.run``
  gets them (one clock reading per dispatch);
* keepalive (informative, not in the sum): ``Store.dispatch`` of a ``KeepaliveReceived``, a frame
  that changes nothing (the same state comes back: no snapshot, no subscriber call);
* "alert policy, waiting customers" (informative, not in the sum): the same alerts as if the
  customers waited for a human (``Handler.NOBODY``): each message joins its customer's coalesced
  toast (the alerts above are of bot-handled customers, quiet by default).

``benchmarks/run_all.py`` imports :func:`measure` and prints the same budget beside benchmark 1.

It explains benchmark 1: the bare loop spends about 5 us per frame in ``recv()``, so 0.4 of it
leaves about 7.5 us per frame for everything after ``recv()``; compare with the sum printed here
(the bridge flush, the models and the paint come on top, amortised per 16 ms flush).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tray_agent.core.effects import Alert, Handler
from tray_agent.core.events import KeepaliveReceived
from tray_agent.core.policy import AlertPolicy
from tray_agent.core.protocol.dashboard import DashboardCodec
from tray_agent.core.settings import AlertSettings
from tray_agent.core.state import Store

PAGE = "101000000000001"


def frame(i: int, now: int) -> str:
    """The benchmark server's ``new_message`` frame (benchmarks/bench_server.py)."""
    customer = f"9{i % 20:015d}"
    data = {
        "chat_id": customer,
        "sender_id": customer,
        "sender_name": f"Customer {customer[-4:]}",
        "recipient_id": PAGE,
        "message": f"load {i} " + "x" * 40,
        "is_bot": False,
        "timestamp": now,
    }
    return json.dumps(
        {"type": "new_message", "page_id": PAGE, "data": data, "timestamp": now}, separators=(",", ":")
    )


def per_frame_us(started: float, count: int) -> float:
    return (time.perf_counter() - started) / count * 1e6


BURST = 150
"""Frames per batch in the reduce stage: the read loop delivers a batch after 3 ms of parsing
(``net.client.BATCH_SLICE``), about 150 frames (benchmark 1's ``frames_per_batch``)."""

STAGES = ("parse", "reduce", "alert policy + runner queries")
"""The stages summed into the per-frame cost after ``recv()`` (keys of :func:`measure`)."""


def measure(n: int = 50_000) -> dict[str, float]:
    """Microseconds per frame of each stage over ``n`` frames: the keys of :data:`STAGES`, "sum"
    (of those), "keepalive" and "reduce_single" (informative). Runs in this process (no sockets,
    no Qt)."""
    now = int(time.time())
    codec = DashboardCodec()
    warm = [frame(i, now) for i in range(20 * 500)]
    frames = [frame(i, now) for i in range(20 * 500, 20 * 500 + n)]
    store, single = Store(), Store()
    for text in warm:  # 20 conversations with full (bounded) histories, as after a while
        events = codec.parse_frame(text)
        store.dispatch_many(events)
        single.dispatch_many(events)
    gc.collect()
    gc.freeze()
    try:
        return _timed(codec, store, single, frames, n)
    finally:
        gc.unfreeze()


def _timed(codec: DashboardCodec, store: Store, single: Store, frames: list[str], n: int) -> dict[str, float]:

    started = time.perf_counter()
    parsed = [codec.parse_frame(text) for text in frames]
    parse = per_frame_us(started, n)

    bursts = [[e for events in parsed[i : i + BURST] for e in events] for i in range(0, n, BURST)]
    started = time.perf_counter()
    alerts: list[list[Alert]] = []  # per burst: the alert engine takes one dispatch's effects at once
    for burst in bursts:
        alerts.append([e for e in store.dispatch_many(burst) if isinstance(e, Alert)])
    reduce = per_frame_us(started, n)

    started = time.perf_counter()
    for events in parsed:
        for event in events:
            single.dispatch(event)
    reduce_single = per_frame_us(started, n)

    alerting = _policy(alerts, n)
    waiting = [[replace(alert, handler=Handler.NOBODY) for alert in batch] for batch in alerts]
    alerting_waiting = _policy(waiting, n)

    keepalive = KeepaliveReceived(kind="pong")
    started = time.perf_counter()
    for _ in range(n):
        store.dispatch(keepalive)
    keepalives = per_frame_us(started, n)

    costs = dict(zip(STAGES, (parse, reduce, alerting), strict=True))
    return {
        **costs,
        "sum": sum(costs.values()),
        "keepalive": keepalives,
        "reduce_single": reduce_single,
        "policy_waiting": alerting_waiting,
    }


def _policy(alerts: list[list[Alert]], n: int) -> float:
    policy = AlertPolicy(AlertSettings(), UTC)
    moment = datetime.now(UTC)
    started = time.perf_counter()
    for i, batch in enumerate(alerts):  # as AlertEngine.run: one clock reading, queries once
        at = moment + timedelta(microseconds=20 * BURST * i)
        for alert in batch:
            policy.on_alert(alert, at)
        policy.next_deadline()
        policy.tray_level(at)
        policy.dnd_active(at)
    return per_frame_us(started, n)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=50_000)
    args = parser.parse_args()
    costs = measure(args.frames)
    for name in STAGES:
        print(f"{name:32s} {costs[name]:6.2f} us/frame")
    print(f"{'sum after recv()':32s} {costs['sum']:6.2f} us/frame")
    print(f"{'(keepalive, reduce only)':32s} {costs['keepalive']:6.2f} us/frame")
    print(f"{'(reduce, one at a time)':32s} {costs['reduce_single']:6.2f} us/frame")
    print(f"{'(alert policy, waiting)':32s} {costs['policy_waiting']:6.2f} us/frame")
    print(json.dumps({name: round(cost, 2) for name, cost in costs.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
