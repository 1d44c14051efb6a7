"""Helpers shared by the protocol golden-frame tests (loading files, building commands, matching)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tray_agent.core.commands import (
    Command,
    LoadHistory,
    Ping,
    RefreshWaitingList,
    Release,
    SendReply,
    TakeOver,
)
from tray_agent.core.events import Event, event_to_dict
from tray_agent.core.protocol.base import HttpCall, Outbound, Plan, WsFrame

DATA = Path(__file__).resolve().parents[2] / "data"

_COMMANDS: dict[str, type[Command]] = {
    "TakeOver": TakeOver,
    "Release": Release,
    "SendReply": SendReply,
    "RefreshWaitingList": RefreshWaitingList,
    "LoadHistory": LoadHistory,
    "Ping": Ping,
}


def golden_files(dialect: str, prefix: str) -> list[Path]:
    return sorted((DATA / dialect).glob(f"{prefix}*.json"))


def load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def frame_text(golden: dict[str, Any]) -> str:
    if "raw" in golden:
        raw = golden["raw"]
        assert isinstance(raw, str)
        return raw
    return json.dumps(golden["frame"], ensure_ascii=False)


def body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body, ensure_ascii=False).encode()


def command(spec: dict[str, Any]) -> Command:
    args = {k: v for k, v in spec.items() if k != "name"}
    return _COMMANDS[spec["name"]](command_id="t-1", **args)


def outbound_to_plain(out: Outbound | Plan) -> dict[str, Any]:
    if isinstance(out, Plan):
        return {"plan": [outbound_to_plain(step) for step in out.steps]}
    if isinstance(out, WsFrame):
        return {"ws": json.loads(out.text)}
    assert isinstance(out, HttpCall)
    return {
        "http": {
            "method": out.method,
            "path": out.path,
            "query": [list(pair) for pair in out.query],
            "json": out.json,
            "form": None if out.form is None else [list(pair) for pair in out.form],
        }
    }


def assert_subset(actual: Any, expected: Any, where: str = "$") -> None:
    """Every key of ``expected`` is in ``actual`` with an equal value (lists: same length, pairwise)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{where}: missing {key!r} in {actual!r}"
            assert_subset(actual[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: expected a list, got {actual!r}"
        assert len(actual) == len(expected), (
            f"{where}: {len(actual)} items, expected {len(expected)}: {actual!r}"
        )
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_subset(a, e, f"{where}[{i}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def events_plain(events: Any) -> list[dict[str, Any]]:
    assert isinstance(events, (tuple, list))
    out = []
    for event in events:
        assert isinstance(event, Event)
        out.append(event_to_dict(event))
    return out
