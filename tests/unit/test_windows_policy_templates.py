"""packaging/windows ADMX/ADML: policies are named after the setting they set; every text they show exists."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from tray_agent.core.settings import Settings

WINDOWS = Path(__file__).resolve().parents[2] / "packaging" / "windows"
NS = "{http://schemas.microsoft.com/GroupPolicy/2006/07/PolicyDefinitions}"
ROOT_KEY = "Software\\Policies\\tray-agent"


def _policies() -> list[ET.Element]:
    return list(ET.parse(WINDOWS / "tray-agent.admx").getroot().iter(f"{NS}policy"))


def _value_names(policy: ET.Element) -> list[str]:
    return [name for e in policy.iter() if (name := e.get("valueName"))]


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def test_each_single_value_policy_is_named_after_its_setting():
    wrong = {}
    for policy in _policies():
        names = _value_names(policy)
        if len(names) == 1 and policy.get("name") != _camel(names[0]):
            wrong[policy.get("name")] = _camel(names[0])
    assert wrong == {}  # e.g. alerts.allow_manual_dnd is AllowManualDnd, not AllowDnd


def test_each_policy_value_is_a_setting_of_its_section():
    sections = {
        name: set(type(getattr(Settings(), name)).model_fields) for name in ("connection", "alerts", "ui")
    }
    unknown = []
    for policy in _policies():
        key = policy.get("key", "")
        section = key.removeprefix(ROOT_KEY).strip("\\")
        if not section:
            continue  # locked / lock_all: the policy's own switches
        unknown += [f"{section}.{v}" for v in _value_names(policy) if v not in sections[section]]
    assert unknown == []


def test_every_text_the_admx_shows_is_in_the_adml():
    admx = (WINDOWS / "tray-agent.admx").read_text(encoding="utf-8")
    adml = ET.parse(WINDOWS / "en-US" / "tray-agent.adml").getroot()
    defined = {e.get("id") for e in adml.iter() if e.tag.endswith("}string")}
    used = set(re.findall(r"\$\(string\.(\w+)\)", admx))
    assert used - defined == set()
    policy_texts = {p.get("name") for p in _policies()} | {f"{p.get('name')}_Help" for p in _policies()}
    assert policy_texts - defined == set()
