"""Tests for the layered settings: precedence, locks, broken layers, env/CLI parsing, saving."""

from __future__ import annotations

import argparse
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tray_agent.core.settings import QuietHoursRule, Settings, secret_key
from tray_agent.core.settings_layers import (
    SETTING_KEYS,
    Layer,
    LoadedSettings,
    atomic_write_text,
    flatten_settings,
    get_value,
    load_settings,
    parse_policy,
    parse_text_value,
    password_from_env,
    render_user_file,
    save_user_settings,
    user_values_after_edit,
)

POLICY = """
version = 1
locked = ["connection.server"]

[connection]
server = "https://policy.example.com"
dialect = "org"

[alerts]
sla_minutes = 5
"""


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    return tmp_path / "config" / "settings.json"


def write_user(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def cli(**kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict.fromkeys(
        ("dialect", "server", "org", "company", "email", "token", "supabase_url", "supabase_key")
    )
    args["set"] = []
    args.update(kwargs)
    return args


# --- defaults and each layer ------------------------------------------------------------------


def test_load_settings_defaults_without_layers() -> None:
    loaded = load_settings()
    assert loaded.settings == Settings()
    assert loaded.problems == []
    assert loaded.locked == frozenset()
    assert set(loaded.sources) == set(SETTING_KEYS)
    assert set(loaded.sources.values()) == {Layer.DEFAULT}


def test_load_settings_policy_layer_applies_and_locks() -> None:
    loaded = load_settings(policy_sources=[("policy.toml", POLICY)])
    assert loaded.settings.connection.server == "https://policy.example.com"
    assert loaded.settings.connection.dialect == "org"
    assert loaded.settings.alerts.sla_minutes == 5
    assert loaded.locked == frozenset({"connection.server"})
    assert loaded.is_locked("connection.server")
    assert not loaded.is_locked("connection.dialect")
    assert loaded.sources["connection.dialect"] is Layer.POLICY
    assert loaded.sources["alerts.volume"] is Layer.DEFAULT


def test_load_settings_user_file_layer(user_file: Path) -> None:
    write_user(user_file, {"version": 1, "alerts": {"volume": 0.3, "sounds": False}, "ui": {"theme": "dark"}})
    loaded = load_settings(user_file=user_file)
    assert loaded.settings.alerts.volume == 0.3
    assert loaded.settings.alerts.sounds is False
    assert loaded.settings.ui.theme == "dark"
    assert loaded.sources["ui.theme"] is Layer.USER
    assert loaded.problems == []


def test_load_settings_missing_user_file_is_no_problem(user_file: Path) -> None:
    loaded = load_settings(user_file=user_file)
    assert loaded.problems == []
    assert loaded.user_file_ok


def test_load_settings_env_shortcuts_map_to_connection() -> None:
    env = {
        "TRAY_AGENT_SERVER": "https://env.example.com",
        "TRAY_AGENT_DIALECT": "org",
        "TRAY_AGENT_ORG": "org-1",
        "TRAY_AGENT_COMPANY": "c-1",
        "TRAY_AGENT_EMAIL": "a@example.com",
        "TRAY_AGENT_TOKEN": "tok-123",
        "TRAY_AGENT_SUPABASE_URL": "https://x.supabase.co",
        "TRAY_AGENT_SUPABASE_KEY": "anon",
        "PATH": "/usr/bin",
    }
    conn = load_settings(env=env).settings.connection
    assert (conn.server, conn.dialect, conn.org, conn.company, conn.email) == (
        "https://env.example.com",
        "org",
        "org-1",
        "c-1",
        "a@example.com",
    )
    assert conn.token.get_secret_value() == "tok-123"
    assert (conn.supabase_url, conn.supabase_key) == ("https://x.supabase.co", "anon")


def test_load_settings_env_nested_keys_with_coercion() -> None:
    env = {
        "TRAY_AGENT_ALERTS__SLA_MINUTES": "7.5",
        "TRAY_AGENT_ALERTS__SOUNDS": "off",
        "TRAY_AGENT_UI__HISTORY_LIMIT": "900",
        "TRAY_AGENT_connection__proxy": "http://proxy:3128",  # names are case-insensitive
    }
    loaded = load_settings(env=env)
    assert loaded.settings.alerts.sla_minutes == 7.5
    assert loaded.settings.alerts.sounds is False
    assert loaded.settings.ui.history_limit == 900
    assert loaded.settings.connection.proxy == "http://proxy:3128"
    assert loaded.sources["ui.history_limit"] is Layer.ENV
    assert loaded.problems == []


def test_load_settings_env_unknown_nested_key_is_reported_other_vars_ignored() -> None:
    loaded = load_settings(
        env={"TRAY_AGENT_ALERTS__NOPE": "1", "TRAY_AGENT_LOG_LEVEL": "debug", "TRAY_AGENT_PASSWORD": "pw"}
    )
    assert len(loaded.problems) == 1
    assert "TRAY_AGENT_ALERTS__NOPE" in loaded.problems[0]
    assert "pw" not in " ".join(loaded.problems)


def test_load_settings_empty_env_var_counts_as_unset() -> None:
    loaded = load_settings(env={"TRAY_AGENT_SERVER": ""})
    assert loaded.sources["connection.server"] is Layer.DEFAULT


def test_password_from_env_is_a_secret_not_a_setting() -> None:
    assert password_from_env({"TRAY_AGENT_PASSWORD": "s3cret"}) == "s3cret"
    assert password_from_env({"TRAY_AGENT_PASSWORD": ""}) is None
    assert password_from_env({}) is None
    loaded = load_settings(env={"TRAY_AGENT_PASSWORD": "s3cret"})
    assert "s3cret" not in repr(loaded.settings)


def test_load_settings_cli_flags_and_set() -> None:
    args = cli(
        server="https://cli.example.com",
        email="b@example.com",
        set=["alerts.volume=0.25", "ui.start_hidden=false", "alerts.summary_threshold=4"],
    )
    loaded = load_settings(cli=args)
    assert loaded.settings.connection.server == "https://cli.example.com"
    assert loaded.settings.connection.email == "b@example.com"
    assert loaded.settings.alerts.volume == 0.25
    assert loaded.settings.ui.start_hidden is False
    assert loaded.settings.alerts.summary_threshold == 4
    assert loaded.sources["alerts.volume"] is Layer.CLI


def test_load_settings_accepts_argparse_namespace() -> None:
    namespace = argparse.Namespace(**cli(dialect="org", set=["ui.theme=light"]))
    loaded = load_settings(cli=namespace)
    assert loaded.settings.connection.dialect == "org"
    assert loaded.settings.ui.theme == "light"


def test_load_settings_named_flag_beats_set_for_same_key() -> None:
    loaded = load_settings(cli=cli(server="https://flag", set=["connection.server=https://set"]))
    assert loaded.settings.connection.server == "https://flag"


@pytest.mark.parametrize(
    ("item", "key", "expected"),
    [
        ("alerts.sounds=yes", "alerts.sounds", True),
        ("alerts.sounds=0", "alerts.sounds", False),
        ("alerts.sounds=On", "alerts.sounds", True),
        ("ui.history_limit=1000", "ui.history_limit", 1000),
        ("alerts.volume=0.5", "alerts.volume", 0.5),
        ("connection.server=https://a/b?x=1", "connection.server", "https://a/b?x=1"),
        ("connection.email=", "connection.email", ""),
    ],
)
def test_set_parsing_coerces_types(item: str, key: str, expected: Any) -> None:
    loaded = load_settings(cli=cli(set=[item]))
    assert loaded.problems == []
    assert get_value(loaded.settings, key) == expected


def test_set_parsing_lists_json_and_comma_separated() -> None:
    rules = '[{"days": [6, 7], "start": "00:00", "end": "23:59"}]'
    loaded = load_settings(cli=cli(set=[f"alerts.quiet_hours={rules}"]))
    assert loaded.settings.alerts.quiet_hours == [QuietHoursRule(days=[6, 7], start="00:00", end="23:59")]
    assert parse_text_value("alerts.quiet_hours", "") == []
    assert parse_text_value("alerts.volume", "0.5") == "0.5"  # scalars are coerced by validation


def test_set_parsing_errors_are_reported_not_raised() -> None:
    loaded = load_settings(cli=cli(set=["alerts.sounds", "alerts.nope=1", "alerts.volume=loud"]))
    assert loaded.settings == Settings()
    text = "\n".join(loaded.problems)
    assert "expected KEY=VALUE" in text
    assert "alerts.nope" in text
    assert "alerts.volume" in text
    assert len(loaded.problems) == 3


# --- precedence and locks -------------------------------------------------------------------


def test_precedence_default_policy_user_env_cli(user_file: Path) -> None:
    policy = "[alerts]\nsla_minutes = 2\nvolume = 0.1\nreminder_after = 3\ntoast_min_interval = 4\n"
    write_user(user_file, {"alerts": {"volume": 0.2, "reminder_after": 6, "toast_min_interval": 7}})
    env = {"TRAY_AGENT_ALERTS__REMINDER_AFTER": "8", "TRAY_AGENT_ALERTS__TOAST_MIN_INTERVAL": "9"}
    args = cli(set=["alerts.toast_min_interval=10"])
    loaded = load_settings(policy_sources=[("p", policy)], user_file=user_file, env=env, cli=args)
    alerts = loaded.settings.alerts
    assert (alerts.sla_minutes, alerts.volume, alerts.reminder_after, alerts.toast_min_interval) == (
        2,
        0.2,
        8,
        10,
    )
    assert loaded.sources["alerts.coalesce_window"] is Layer.DEFAULT
    assert loaded.sources["alerts.sla_minutes"] is Layer.POLICY
    assert loaded.sources["alerts.volume"] is Layer.USER
    assert loaded.sources["alerts.reminder_after"] is Layer.ENV
    assert loaded.sources["alerts.toast_min_interval"] is Layer.CLI


def test_locks_beat_user_env_and_cli(user_file: Path) -> None:
    write_user(user_file, {"connection": {"server": "https://user"}})
    loaded = load_settings(
        policy_sources=[("policy.toml", POLICY)],
        user_file=user_file,
        env={"TRAY_AGENT_SERVER": "https://env"},
        cli=cli(server="https://cli"),
    )
    assert loaded.settings.connection.server == "https://policy.example.com"
    assert loaded.sources["connection.server"] is Layer.POLICY
    ignored = [p for p in loaded.problems if "locked by your administrator" in p]
    assert len(ignored) == 3
    assert any("settings file" in p for p in ignored)
    assert any("TRAY_AGENT_SERVER" in p for p in ignored)
    assert any("--server" in p for p in ignored)


def test_lock_with_same_value_is_silent() -> None:
    loaded = load_settings(policy_sources=[("p", POLICY)], cli=cli(server="https://policy.example.com"))
    assert loaded.problems == []


def test_lock_all_locks_every_key_the_policy_sets() -> None:
    policy = 'lock_all = true\n[ui]\ntheme = "dark"\n[alerts]\nsounds = false\n'
    loaded = load_settings(policy_sources=[("p", policy)], cli=cli(set=["ui.theme=light", "ui.language=en"]))
    assert loaded.locked == frozenset({"ui.theme", "alerts.sounds"})
    assert loaded.settings.ui.theme == "dark"
    assert loaded.settings.ui.language == "en"


def test_lock_wildcards_and_string_list() -> None:
    _, locked, problems = parse_policy("p", 'locked = "alerts.*, ui.theme"')
    assert "alerts.volume" in locked
    assert "ui.theme" in locked
    assert "ui.language" not in locked
    assert problems == []
    _, everything, _ = parse_policy("p", 'locked = ["*"]')
    assert everything == frozenset(SETTING_KEYS)


def test_lock_without_value_keeps_default() -> None:
    loaded = load_settings(
        policy_sources=[("p", 'locked = ["alerts.sounds"]')], env={"TRAY_AGENT_ALERTS__SOUNDS": "0"}
    )
    assert loaded.settings.alerts.sounds is True
    assert len(loaded.problems) == 1


def test_policy_unknown_lock_and_key_reported() -> None:
    values, locked, problems = parse_policy("p", 'locked = ["connection.sever"]\n[connection]\nsever = "x"\n')
    assert values == {}
    assert locked == frozenset()
    assert len(problems) == 2
    assert all("sever" in p for p in problems)


def test_policy_mapping_with_dotted_keys_and_text_values() -> None:
    # As read from the Windows registry (DWORDs, strings) or a plist.
    mapping = {
        "lock_all": 1,
        "alerts.sounds": 0,
        "connection": {"server": "https://reg"},
        "alerts": {"quiet_hours": '[{"days": [1], "start": "22:00", "end": "06:00"}]'},
    }
    values, locked, problems = parse_policy("registry", mapping)
    assert problems == []
    assert values["alerts.sounds"] is False
    assert values["connection.server"] == "https://reg"
    assert values["alerts.quiet_hours"] == [QuietHoursRule(days=[1], start="22:00", end="06:00")]
    assert locked == frozenset({"alerts.sounds", "connection.server", "alerts.quiet_hours"})


def test_later_policy_source_overrides_and_locks_add_up() -> None:
    first = 'locked = ["ui.theme"]\n[ui]\ntheme = "dark"\nlanguage = "id"\n'
    second = 'locked = ["ui.language"]\n[ui]\nlanguage = "en"\n'
    loaded = load_settings(policy_sources=[("a", first), ("b", second)])
    assert loaded.settings.ui.language == "en"
    assert loaded.locked == frozenset({"ui.theme", "ui.language"})


# --- broken layers ----------------------------------------------------------------------------


def test_broken_policy_file_is_skipped_with_message() -> None:
    loaded = load_settings(policy_sources=[("/etc/xdg/tray-agent/policy.toml", "locked = [\n[connection")])
    assert loaded.settings == Settings()
    assert loaded.locked == frozenset()
    assert len(loaded.problems) == 1
    assert "/etc/xdg/tray-agent/policy.toml" in loaded.problems[0]
    assert "not valid TOML" in loaded.problems[0]


def test_unreadable_policy_source_is_reported() -> None:
    error = PermissionError(13, "Permission denied")
    loaded = load_settings(policy_sources=[("file /etc/p.toml", error), ("ok", POLICY)])
    assert loaded.settings.connection.server == "https://policy.example.com"
    assert "Permission denied" in loaded.problems[0]
    assert "/etc/p.toml" in loaded.problems[0]


def test_policy_bytes_not_utf8_is_reported() -> None:
    _, _, problems = parse_policy("p", b"\xff\xfe[ui]")
    assert "not UTF-8" in problems[0]


def test_broken_user_file_is_skipped_with_message(user_file: Path) -> None:
    user_file.parent.mkdir(parents=True)
    user_file.write_text('{"alerts": {"volume": 0.1,}', encoding="utf-8")
    loaded = load_settings(
        policy_sources=[("p", POLICY)], user_file=user_file, env={"TRAY_AGENT_UI__THEME": "dark"}
    )
    assert not loaded.user_file_ok
    assert loaded.settings.alerts.volume == Settings().alerts.volume
    assert loaded.settings.ui.theme == "dark"  # the other layers still apply
    assert str(user_file) in loaded.problems[0]
    assert "not valid JSON" in loaded.problems[0]


def test_user_file_not_an_object_or_unreadable(user_file: Path) -> None:
    write_user(user_file, {})
    user_file.write_text("[1, 2]", encoding="utf-8")
    assert "JSON object" in load_settings(user_file=user_file).problems[0]
    user_file.write_bytes(b"\xff\xfe")
    loaded = load_settings(user_file=user_file)
    assert not loaded.user_file_ok
    assert "Could not read" in loaded.problems[0]


def test_invalid_single_values_dropped_rest_applies(user_file: Path) -> None:
    write_user(
        user_file,
        {
            "alerts": {"volume": 7, "sounds": False, "quiet_hours": [{"start": "25:00"}]},
            "ui": {"theme": "purple", "language": "id"},
            "connection": "not a table",
        },
    )
    loaded = load_settings(user_file=user_file)
    assert loaded.settings.alerts.sounds is False
    assert loaded.settings.ui.language == "id"
    assert loaded.settings.alerts.volume == Settings().alerts.volume
    assert loaded.settings.ui.theme == "system"
    assert loaded.settings.alerts.quiet_hours == []
    text = "\n".join(loaded.problems)
    assert "alerts.volume = 7" in text
    assert "ui.theme = 'purple'" in text
    assert "quiet_hours" in text
    assert len(loaded.problems) == 3


def test_tokens_never_read_from_files(user_file: Path) -> None:
    write_user(user_file, {"connection": {"token": "leaked-in-file"}})
    loaded = load_settings(user_file=user_file, policy_sources=[("p", '[connection]\ntoken = "x"\n')])
    assert loaded.settings.connection.token.get_secret_value() == ""
    assert len(loaded.problems) == 2
    assert "leaked-in-file" not in "\n".join(loaded.problems)


def test_invalid_secret_value_is_not_echoed() -> None:
    loaded = load_settings(cli=cli(token=["not", "a", "string"]))
    assert "(hidden)" in loaded.problems[0]


def test_problems_are_logged_as_warnings(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tray_agent.core.settings_layers"):
        load_settings(cli=cli(set=["alerts.nope=1"]))
    assert "alerts.nope" in caplog.text


def test_newer_user_file_version_is_reported_and_known_keys_apply(user_file: Path) -> None:
    write_user(user_file, {"version": 99, "ui": {"theme": "dark", "future": 1}})
    loaded = load_settings(user_file=user_file)
    assert loaded.settings.ui.theme == "dark"
    assert "newer version" in loaded.problems[0]
    write_user(user_file, {"version": "one"})
    assert "whole number" in load_settings(user_file=user_file).problems[0]


# --- saving -----------------------------------------------------------------------------------


def test_save_round_trip_only_user_non_default_non_locked(user_file: Path) -> None:
    loaded = load_settings(
        policy_sources=[("p", POLICY)],
        user_file=user_file,
        env={"TRAY_AGENT_UI__THEME": "dark", "TRAY_AGENT_TOKEN": "tok"},
    )
    edited = loaded.settings.model_copy(deep=True)
    edited.alerts.volume = 0.4  # user change
    edited.alerts.sla_minutes = 5  # unchanged policy value
    edited.connection.server = "https://sneaky"  # locked: ignored
    saved = save_user_settings(loaded, edited)

    data = json.loads(user_file.read_text(encoding="utf-8"))
    assert data == {"version": 1, "alerts": {"volume": 0.4}}  # no env value, no token, no lock
    assert saved.settings.connection.server == "https://policy.example.com"
    assert saved.settings.alerts.volume == 0.4
    assert saved.sources["alerts.volume"] is Layer.USER

    reloaded = load_settings(policy_sources=[("p", POLICY)], user_file=user_file)
    assert reloaded.settings.alerts.volume == 0.4
    assert reloaded.problems == []


def test_save_drops_values_reset_to_default_and_keeps_untouched_user_values(user_file: Path) -> None:
    write_user(user_file, {"alerts": {"volume": 0.3}, "ui": {"theme": "dark"}})
    loaded = load_settings(user_file=user_file, env={"TRAY_AGENT_UI__THEME": "light"})
    edited = loaded.settings.model_copy(deep=True)
    edited.alerts.volume = Settings().alerts.volume  # back to default
    values = user_values_after_edit(loaded, edited)
    assert values == {"ui.theme": "dark"}  # env's "light" does not replace the user's own value
    saved = save_user_settings(loaded, edited)
    assert saved.sources["alerts.volume"] is Layer.DEFAULT
    assert json.loads(user_file.read_text(encoding="utf-8")) == {"version": 1, "ui": {"theme": "dark"}}


def test_save_preserves_unknown_keys(user_file: Path) -> None:
    write_user(user_file, {"version": 1, "ui": {"theme": "dark", "zoom": 2}, "plugins": {"x": True}})
    loaded = load_settings(user_file=user_file)
    assert loaded.problems == []  # unknown keys are not problems in the user file
    edited = loaded.settings.model_copy(deep=True)
    edited.ui.theme = "light"
    save_user_settings(loaded, edited)
    data = json.loads(user_file.read_text(encoding="utf-8"))
    assert data == {"version": 1, "ui": {"theme": "light", "zoom": 2}, "plugins": {"x": True}}


def test_save_serializes_lists_of_rules(user_file: Path) -> None:
    loaded = load_settings(user_file=user_file)
    edited = loaded.settings.model_copy(deep=True)
    edited.alerts.quiet_hours = [QuietHoursRule(days=[1, 2], start="12:00", end="13:00")]
    save_user_settings(loaded, edited)
    reloaded = load_settings(user_file=user_file)
    assert reloaded.settings.alerts.quiet_hours == edited.alerts.quiet_hours


def test_save_moves_broken_user_file_aside(user_file: Path) -> None:
    user_file.parent.mkdir(parents=True)
    user_file.write_text("{broken", encoding="utf-8")
    loaded = load_settings(user_file=user_file)
    edited = loaded.settings.model_copy(deep=True)
    edited.ui.theme = "dark"
    saved = save_user_settings(loaded, edited)
    assert saved.user_file_ok
    assert (user_file.parent / "settings.json.broken").read_text(encoding="utf-8") == "{broken"
    assert load_settings(user_file=user_file).settings.ui.theme == "dark"


def test_save_without_path_raises() -> None:
    loaded = load_settings()
    with pytest.raises(ValueError, match="no settings file"):
        save_user_settings(loaded, Settings())


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "settings.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text(encoding="utf-8") == "two"
    assert [p.name for p in target.parent.iterdir()] == ["settings.json"]
    if os.name == "posix":
        assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_atomic_write_failure_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "settings.json"
    atomic_write_text(target, "old")

    def fail_replace(src: str, dst: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail_replace)
    with pytest.raises(OSError, match="No space"):
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]


def test_render_user_file_never_writes_secrets() -> None:
    text = render_user_file({"connection.token": SecretStr("tok"), "ui.theme": "dark"})
    assert "tok" not in text
    assert json.loads(text) == {"version": 1, "ui": {"theme": "dark"}}


# --- helpers ----------------------------------------------------------------------------------


def test_flatten_and_get_value() -> None:
    flat = flatten_settings(Settings())
    assert set(flat) == set(SETTING_KEYS)
    assert flat["alerts.sla_minutes"] == 10.0
    with pytest.raises(KeyError):
        get_value(Settings(), "alerts.nope")


def test_token_is_hidden_in_repr() -> None:
    loaded = load_settings(env={"TRAY_AGENT_TOKEN": "very-secret-token"})
    assert "very-secret-token" not in repr(loaded.settings)
    assert "very-secret-token" not in str(loaded)


def test_secret_key_format() -> None:
    assert secret_key("org", "https://s.example.com/", "org-1", " Alice@Example.com", "refresh_token") == (
        "org:https://s.example.com:org-1:alice@example.com:refresh_token"
    )
    conn = Settings().connection.model_copy(update={"server": "https://h", "email": "a@b", "company": "c9"})
    assert conn.secret_key("password") == "dashboard:https://h:c9:a@b:password"
    org = conn.model_copy(update={"dialect": "org", "org": "o1"})
    assert org.secret_key("password") == "org:https://h:o1:a@b:password"


def test_loaded_settings_is_frozen() -> None:
    loaded = LoadedSettings(settings=Settings())
    with pytest.raises(AttributeError):
        loaded.settings = Settings()  # type: ignore[misc]


def test_invalid_value_messages_are_redacted() -> None:
    loaded = load_settings(cli=cli(set=["ui.history_limit=https://bob:pa55word@proxy"]))
    assert "pa55word" not in loaded.problems[0]
    assert "ui.history_limit" in loaded.problems[0]


def test_every_settings_section_is_a_layer_section() -> None:
    loaded = load_settings(env={"TRAY_AGENT_UI__HISTORY_LIMIT": "700"})
    assert loaded.settings.ui.history_limit == 700
    assert not loaded.problems
