"""Layered settings: parse, validate and merge defaults < policy < user file < env < CLI; locks; saving.

Layers, lowest first:

1. built-in defaults (:class:`~tray_agent.core.settings.Settings`);
2. machine policy, set by an administrator: TOML files (``policy.toml`` in the site config
   directory) or mappings read by the platform layer (Windows registry policy key, macOS managed
   preferences). A policy can *lock* keys: ``locked = ["connection.server", "alerts.*"]`` and/or
   ``lock_all = true`` (every key the policy sets). Locked keys keep the policy's (or the default)
   value whatever the user file, environment or command line say; each ignored override is
   reported in :attr:`LoadedSettings.problems`;
3. the user's settings file, JSON (``settings.json`` in the user config directory). It is JSON
   because the app writes it; TOML is for hand-edited admin files (``tomllib`` only reads);
4. environment variables ``TRAY_AGENT_<SECTION>__<KEY>`` (any key) and the connection shortcuts
   ``TRAY_AGENT_SERVER``, ``TRAY_AGENT_DIALECT``, ``TRAY_AGENT_ORG``, ``TRAY_AGENT_COMPANY``,
   ``TRAY_AGENT_EMAIL``, ``TRAY_AGENT_TOKEN``, ``TRAY_AGENT_SUPABASE_URL``,
   ``TRAY_AGENT_SUPABASE_KEY``. Empty variables count as unset. ``TRAY_AGENT_PASSWORD`` is a
   secret, not a setting: read it with :func:`password_from_env`;
5. the command line: ``--server`` etc. and ``--set section.key=value`` (the named flags win over
   ``--set`` for the same key).

Broken layers never crash: an unreadable or unparsable file is skipped and an invalid single
value is dropped, each with a plain-words message naming the file or variable. Everything here is
pure apart from reading the user file and the atomic save; the platform layer finds the files.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, get_origin

from pydantic import BaseModel, ValidationError

from tray_agent.core.redact import redact
from tray_agent.core.settings import SETTINGS_VERSION, Settings

logger = logging.getLogger(__name__)

ENV_PREFIX = "TRAY_AGENT_"
PASSWORD_ENV = "TRAY_AGENT_PASSWORD"
"""The agent's password for a non-interactive sign-in (``listen``); never stored."""
POLICY_FILE_ENV = "TRAY_AGENT_POLICY_FILE"
"""Path of an extra machine-policy file, read before the site policy (which wins over it)."""

SECTIONS: tuple[str, ...] = tuple(
    name
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
)
"""The settings sections (``connection``, ``alerts``, ``ui``), read off the model."""

SECRET_KEYS: frozenset[str] = frozenset({"connection.token"})
"""Keys taken only from the environment and the command line: never from or to a file."""

ENV_ALIASES: Mapping[str, str] = {
    f"{ENV_PREFIX}{name.upper()}": f"connection.{name}"
    for name in ("dialect", "server", "org", "company", "email", "token", "supabase_url", "supabase_key")
}
"""Short environment names for the connection keys (``TRAY_AGENT_SERVER`` -> connection.server)."""

CLI_FLAGS: Mapping[str, str] = {
    name: f"connection.{name}"
    for name in ("dialect", "server", "org", "company", "email", "token", "supabase_url", "supabase_key")
}
"""argparse destinations of the connection flags -> setting keys."""

_NOT_SETTINGS_ENV = frozenset({PASSWORD_ENV, POLICY_FILE_ENV})
_POLICY_META = frozenset({"version", "locked", "lock_all"})
_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


class Layer(enum.StrEnum):
    """Where a setting's value came from (lowest precedence first)."""

    DEFAULT = "default"
    POLICY = "policy"
    USER = "user"
    ENV = "env"
    CLI = "cli"


PolicyInput = str | bytes | Mapping[str, Any] | BaseException
"""One policy source: TOML text (or bytes), an already-read mapping (registry, plist), or the
exception met while reading it (reported as a problem, the source is skipped)."""


def _section_models() -> dict[str, type[BaseModel]]:
    models: dict[str, type[BaseModel]] = {}
    for name in SECTIONS:
        annotation = Settings.model_fields[name].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):  # pragma: no cover
            raise TypeError(f"Settings.{name} is not a section model")
        models[name] = annotation
    return models


_SECTION_MODELS = _section_models()

SETTING_KEYS: tuple[str, ...] = tuple(
    f"{section}.{name}" for section, model in _SECTION_MODELS.items() for name in model.model_fields
)
"""Every addressable key, ``section.key``."""

_KEY_SET = frozenset(SETTING_KEYS)

Migration = Callable[[dict[str, Any]], dict[str, Any]]
_MIGRATIONS: dict[int, Migration] = {}
"""``{n: f}``: ``f`` turns a version-``n`` user file (a dict) into a version ``n + 1`` one."""


@dataclass(frozen=True)
class _Value:
    value: Any  # validated
    origin: str  # for messages: a file, a variable or a flag


@dataclass(frozen=True)
class LoadedSettings:
    """The merged settings plus what the UI needs to explain them.

    Attributes:
        settings: The effective, validated settings.
        locked: Keys fixed by the machine policy; the UI shows them read-only.
        sources: For every key in :data:`SETTING_KEYS`, the layer its value came from.
        problems: Plain-words messages (broken files, invalid values, ignored overrides), for the
            UI and ``doctor``; each was also logged as a warning.
        user_file: The user settings file, if any (where :func:`save_user_settings` writes).
        user_values: The user file's valid values (validated), keyed like ``sources``.
        user_unknown: Entries of the user file this version does not know, kept on save.
        base_values: Defaults overlaid with the policy: what applies without the user's values.
        user_file_ok: False when the user file existed but could not be read or parsed.
    """

    settings: Settings
    locked: frozenset[str] = frozenset()
    sources: dict[str, Layer] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    user_file: Path | None = None
    user_values: Mapping[str, Any] = field(default_factory=dict)
    user_unknown: Mapping[str, Any] = field(default_factory=dict)
    base_values: Mapping[str, Any] = field(default_factory=dict)
    user_file_ok: bool = True

    def is_locked(self, key: str) -> bool:
        """True when the machine policy fixes ``key`` (``section.key``)."""
        return key in self.locked


# ---------------------------------------------------------------------------------------------
# Values


def flatten_settings(settings: Settings) -> dict[str, Any]:
    """``{"section.key": value}`` for every key of ``settings``."""
    return {key: get_value(settings, key) for key in SETTING_KEYS}


def get_value(settings: Settings, key: str) -> Any:
    """The value of ``key`` (``section.key``) in ``settings``.

    Raises:
        KeyError: ``key`` names no setting.
    """
    if key not in _KEY_SET:
        raise KeyError(key)
    section, name = key.split(".", 1)
    return getattr(getattr(settings, section), name)


def _build(values: Mapping[str, Any]) -> Settings:
    nested: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for key, value in values.items():
        section, name = key.split(".", 1)
        nested[section][name] = value
    return Settings.model_validate(nested)


def _show(key: str, raw: Any) -> str:
    if key in SECRET_KEYS:
        return "(hidden)"
    text = redact(repr(raw))  # e.g. a proxy URL with a password in it
    return text if len(text) <= 80 else text[:77] + "..."


def _plain_errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"][1:])
        parts.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
    return "; ".join(parts)


def _validate(key: str, raw: Any, origin: str, problems: list[str]) -> _Value | None:
    """The validated value, or None with a problem message when ``raw`` is not valid for ``key``."""
    section, name = key.split(".", 1)
    if isinstance(raw, str) and _is_list_key(key):
        raw = parse_text_value(key, raw)  # a list written as text (registry value, plist string)
    try:
        model = _SECTION_MODELS[section].model_validate({name: raw})
    except ValidationError as exc:
        problems.append(
            f"{origin}: {key} = {_show(key, raw)} is not valid ({_plain_errors(exc)}); it was ignored."
        )
        return None
    return _Value(getattr(model, name), origin)


def _is_list_key(key: str) -> bool:
    section, name = key.split(".", 1)
    return get_origin(_SECTION_MODELS[section].model_fields[name].annotation) is list


def parse_text_value(key: str, text: str) -> Any:
    """Turn a string from the environment or ``--set`` into a raw value for ``key``.

    Scalars stay strings: validation coerces ``"5"`` to 5, ``"0.5"`` to 0.5 and
    ``true/false/yes/no/on/off/1/0`` to booleans. List keys take JSON (``[1, 2]``, also for
    lists of tables such as ``alerts.quiet_hours``) or comma-separated items (``1,2,3``).

    Args:
        key: A key from :data:`SETTING_KEYS`.
        text: The text as given.

    Returns:
        The raw value, still to be validated.
    """
    if not _is_list_key(key):
        return text
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return text  # validation reports it
    return [item.strip() for item in stripped.split(",") if item.strip()]


def _as_bool(raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int):
        return raw != 0
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    return None


# ---------------------------------------------------------------------------------------------
# Layers


def _flatten(data: Mapping[str, Any], skip: frozenset[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a nested or dotted mapping into known keys and the unknown remainder (as found)."""
    flat: dict[str, Any] = {}
    unknown: dict[str, Any] = {}
    for top, value in data.items():
        if top in skip:
            continue
        if top in SECTIONS and isinstance(value, Mapping):
            for name, raw in value.items():
                key = f"{top}.{name}"
                if key in _KEY_SET:
                    flat[key] = raw
                else:
                    unknown.setdefault(top, {})[name] = raw
        elif top in _KEY_SET:
            flat[top] = value
        else:
            unknown[top] = value
    return flat, unknown


def _unknown_keys(unknown: Mapping[str, Any]) -> list[str]:
    keys: list[str] = []
    for top, value in unknown.items():
        if top in SECTIONS and isinstance(value, Mapping):
            keys.extend(f"{top}.{name}" for name in value)
        else:
            keys.append(top)
    return keys


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _parse_locks(raw: Any, name: str, problems: list[str]) -> set[str]:
    if raw is None:
        return set()
    items: list[Any]
    if isinstance(raw, str):
        items = raw.replace(",", " ").split()
    elif isinstance(raw, list | tuple):
        items = list(raw)
    else:
        problems.append(f"Policy {name}: 'locked' should be a list of keys such as \"connection.server\".")
        return set()
    locked: set[str] = set()
    for item in items:
        pattern = str(item).strip()
        if pattern == "*":
            locked.update(SETTING_KEYS)
        elif pattern.endswith(".*") and pattern[:-2] in SECTIONS:
            locked.update(key for key in SETTING_KEYS if key.startswith(pattern[:-1]))
        elif pattern in _KEY_SET:
            locked.add(pattern)
        else:
            problems.append(f"Policy {name}: cannot lock {pattern!r}: there is no such setting.")
    return locked


def _decode_policy(name: str, source: PolicyInput, problems: list[str]) -> Mapping[str, Any] | None:
    if isinstance(source, BaseException):
        problems.append(f"Could not read the policy {name} ({_reason(source)}); it was skipped.")
        return None
    if isinstance(source, Mapping):
        return source
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(f"The policy {name} is not UTF-8 text ({exc}); it was skipped.")
            return None
    import tomllib  # only for a TOML policy: ~0.7 MB that a run without one never needs

    try:
        return tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"The policy {name} is not valid TOML ({exc}); it was skipped.")
        return None


def parse_policy(name: str, source: PolicyInput) -> tuple[dict[str, Any], frozenset[str], list[str]]:
    r"""Parse one machine-policy source.

    Args:
        name: Where it came from, for messages (a file path, ``"registry HKLM\\..."``).
        source: See :data:`PolicyInput`. Besides ``[section]`` tables (or ``"section.key"``
            entries) it may hold ``locked`` (a list, or a comma-separated string, of keys,
            ``"section.*"`` or ``"*"``) and ``lock_all`` (lock every key this policy sets).

    Returns:
        ``(values, locked, problems)``: the valid values by key, the locked keys, and messages.
    """
    problems: list[str] = []
    values, locked = _policy_layer(name, source, problems)
    return {key: v.value for key, v in values.items()}, frozenset(locked), problems


def _policy_layer(name: str, source: PolicyInput, problems: list[str]) -> tuple[dict[str, _Value], set[str]]:
    data = _decode_policy(name, source, problems)
    if data is None:
        return {}, set()
    flat, unknown = _flatten(data, _POLICY_META)
    problems.extend(f"Policy {name}: unknown setting {key!r} was ignored." for key in _unknown_keys(unknown))
    origin = f"Policy {name}"
    values: dict[str, _Value] = {}
    for key, raw in flat.items():
        if key in SECRET_KEYS:
            problems.append(
                f"{origin}: {key} cannot be set by a policy (secrets live in the keyring); ignored."
            )
            continue
        value = _validate(key, raw, origin, problems)
        if value is not None:
            values[key] = value
    locked = _parse_locks(data.get("locked"), name, problems)
    lock_all = _as_bool(data.get("lock_all", False))
    if lock_all is None:
        problems.append(f"{origin}: 'lock_all' should be true or false; treated as false.")
    elif lock_all:
        # Lock what the policy meant to set, even a value that was invalid (it keeps the default).
        locked.update(key for key in flat if key not in SECRET_KEYS)
    return values, locked


@dataclass(frozen=True)
class _UserLayer:
    values: dict[str, _Value]
    unknown: dict[str, Any]
    ok: bool


def _user_layer(path: Path, problems: list[str]) -> _UserLayer:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _UserLayer({}, {}, ok=True)
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"Could not read your settings file {path} ({_reason(exc)}); defaults are used.")
        return _UserLayer({}, {}, ok=False)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(f"Your settings file {path} is not valid JSON ({exc}); defaults are used.")
        return _UserLayer({}, {}, ok=False)
    if not isinstance(data, dict):
        problems.append(f"Your settings file {path} does not hold a JSON object; defaults are used.")
        return _UserLayer({}, {}, ok=False)
    data = _migrate(data, path, problems)
    flat, unknown = _flatten(data, frozenset({"version"}))
    for key in _unknown_keys(unknown):
        # Kept on save: a newer version may have written them.
        logger.info("Settings file %s: unknown setting %r kept but not used", path, key)
    origin = f"Settings file {path}"
    values: dict[str, _Value] = {}
    for key, raw in flat.items():
        if key in SECRET_KEYS:
            problems.append(
                f"{origin}: {key} is never read from a file (secrets live in the keyring); ignored."
            )
            continue
        value = _validate(key, raw, origin, problems)
        if value is not None:
            values[key] = value
    return _UserLayer(values, unknown, ok=True)


def _migrate(data: dict[str, Any], path: Path, problems: list[str]) -> dict[str, Any]:
    version = data.get("version", SETTINGS_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        problems.append(
            f"Settings file {path}: 'version' should be a whole number; assuming {SETTINGS_VERSION}."
        )
        return data
    if version > SETTINGS_VERSION:
        problems.append(
            f"Settings file {path} was written by a newer version of the app (settings version "
            f"{version}); only the settings this version knows are used."
        )
    while version < SETTINGS_VERSION:
        migrate = _MIGRATIONS.get(version)
        if migrate is not None:
            data = migrate(data)
        version += 1
    return data


def _env_layer(env: Mapping[str, str], problems: list[str]) -> dict[str, _Value]:
    values: dict[str, _Value] = {}
    for name in sorted(env):
        upper = name.upper()  # Windows environment names are case-insensitive
        if not upper.startswith(ENV_PREFIX) or upper in _NOT_SETTINGS_ENV:
            continue
        text = env[name]
        rest = upper[len(ENV_PREFIX) :]
        if "__" in rest:
            section, _, field_name = rest.partition("__")
            key = f"{section.lower()}.{field_name.lower()}"
            if key not in _KEY_SET:
                problems.append(f"The environment variable {name} names no setting ({key}); it was ignored.")
                continue
        elif upper in ENV_ALIASES:
            key = ENV_ALIASES[upper]
        else:
            logger.debug("Environment variable %s is not a setting", name)
            continue
        if text == "":
            continue  # an empty variable counts as unset
        value = _validate(key, parse_text_value(key, text), f"Environment variable {name}", problems)
        if value is not None:
            values[key] = value
    return values


def _cli_layer(cli: Mapping[str, Any] | argparse.Namespace | None, problems: list[str]) -> dict[str, _Value]:
    if cli is None:
        return {}
    args: Mapping[str, Any] = cli if isinstance(cli, Mapping) else vars(cli)
    raw: dict[str, tuple[Any, str]] = {}
    for item in args.get("set") or ():
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep:
            problems.append(f"--set {item!r}: expected KEY=VALUE, e.g. --set alerts.sla_minutes=5; ignored.")
            continue
        if key not in _KEY_SET:
            problems.append(
                f"--set {key}: there is no such setting (keys look like alerts.sla_minutes); ignored."
            )
            continue
        raw[key] = (parse_text_value(key, text), f"Command line --set {key}")
    for dest, key in CLI_FLAGS.items():
        given = args.get(dest)
        if given is not None:
            raw[key] = (given, f"Command line --{dest.replace('_', '-')}")
    values: dict[str, _Value] = {}
    for key, (value, origin) in raw.items():
        validated = _validate(key, value, origin, problems)
        if validated is not None:
            values[key] = validated
    return values


# ---------------------------------------------------------------------------------------------
# Loading


def load_settings(
    *,
    policy_sources: Iterable[tuple[str, PolicyInput]] = (),
    user_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    cli: Mapping[str, Any] | argparse.Namespace | None = None,
) -> LoadedSettings:
    """Merge all layers into validated settings. Never raises for bad input.

    Args:
        policy_sources: ``(name, source)`` pairs, lowest precedence first (later ones override
            earlier values; locks add up), e.g. from ``platform.paths.read_policy_sources``.
        user_file: The user's JSON settings file; a missing file is not a problem.
        env: The environment (pass ``os.environ``); ``None`` means no variables.
        cli: Parsed command-line arguments (an ``argparse.Namespace`` or a mapping with the
            destinations ``dialect``, ``server``, ..., ``supabase_key`` and ``set``).

    Returns:
        The settings with their locks, sources and problems.
    """
    problems: list[str] = []
    effective = flatten_settings(Settings())
    sources = dict.fromkeys(SETTING_KEYS, Layer.DEFAULT)

    locked: set[str] = set()
    for name, source in policy_sources:
        values, locks = _policy_layer(name, source, problems)
        for key, value in values.items():
            effective[key] = value.value
            sources[key] = Layer.POLICY
        locked |= locks
    base = dict(effective)
    base_sources = dict(sources)

    user = _user_layer(user_file, problems) if user_file is not None else _UserLayer({}, {}, ok=True)
    layers = (
        (Layer.USER, user.values),
        (Layer.ENV, _env_layer(env or {}, problems)),
        (Layer.CLI, _cli_layer(cli, problems)),
    )
    for layer, layer_values in layers:
        for key, value in layer_values.items():
            if key in locked:
                if value.value != effective[key]:
                    problems.append(
                        f"{key} is locked by your administrator; the value from "
                        f"{value.origin[:1].lower()}{value.origin[1:]} was ignored."
                    )
                continue
            effective[key] = value.value
            sources[key] = layer

    try:
        settings = _build(effective)
    except ValidationError as exc:  # pragma: no cover - only cross-field rules could get here
        problems.append(
            f"The settings do not fit together ({_plain_errors(exc)}); using defaults and policy."
        )
        settings = _build(base)
        sources = base_sources

    for problem in problems:
        logger.warning("Settings: %s", problem)
    return LoadedSettings(
        settings=settings,
        locked=frozenset(locked),
        sources=sources,
        problems=problems,
        user_file=user_file,
        user_values={key: value.value for key, value in user.values.items()},
        user_unknown=user.unknown,
        base_values=base,
        user_file_ok=user.ok,
    )


def password_from_env(env: Mapping[str, str]) -> str | None:
    """The password from ``TRAY_AGENT_PASSWORD``, or None when unset or empty.

    It is a secret, not a setting: never saved, never shown in ``sources`` or problems.
    """
    return env.get(PASSWORD_ENV) or None


# ---------------------------------------------------------------------------------------------
# Saving


def user_values_after_edit(loaded: LoadedSettings, edited: Settings) -> dict[str, Any]:
    """The values the user file should hold after the user edited ``loaded.settings`` to ``edited``.

    A key is kept when the user changed it now or had it in the file before, unless it is locked,
    a secret, or equal to the default/policy value (then it is dropped, so that a later change of
    the default or the policy reaches the user). Values that came from the environment or the
    command line are not written unless the user changed them.

    Args:
        loaded: What :func:`load_settings` returned (or the last save).
        edited: The settings as the user left them (e.g. in the settings dialog).

    Returns:
        Validated values by key.
    """
    before = flatten_settings(loaded.settings)
    after = flatten_settings(edited)
    result: dict[str, Any] = {}
    for key in SETTING_KEYS:
        if key in SECRET_KEYS or key in loaded.locked:
            continue
        if after[key] != before[key]:
            value = after[key]
        elif key in loaded.user_values:
            value = loaded.user_values[key]
        else:
            continue
        if key in loaded.base_values and value == loaded.base_values[key]:
            continue
        result[key] = value
    return result


def _jsonable(key: str, value: Any) -> Any:
    section, name = key.split(".", 1)
    model = _SECTION_MODELS[section].model_validate({name: value})
    return model.model_dump(mode="json", include={name})[name]


def render_user_file(values: Mapping[str, Any], unknown: Mapping[str, Any] | None = None) -> str:
    """The JSON text of a user settings file.

    Args:
        values: Validated values by key (``section.key``).
        unknown: Entries this version does not know; written back unchanged, never overriding
            a known value.

    Returns:
        ``{"version": N, "<section>": {"<key>": value, ...}, ...}`` as indented JSON.
    """
    data: dict[str, Any] = {"version": SETTINGS_VERSION}
    for key in SETTING_KEYS:
        if key in values and key not in SECRET_KEYS:
            section, name = key.split(".", 1)
            data.setdefault(section, {})[name] = _jsonable(key, values[key])
    for top, value in (unknown or {}).items():
        if top in SECTIONS and isinstance(value, Mapping):
            section_data = data.setdefault(top, {})
            for name, raw in value.items():
                section_data.setdefault(name, raw)
        elif top not in data:
            data[top] = value
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file in the same directory, fsync, os.replace).

    The file is created with mode 0600. Readers see either the old or the new content.

    Raises:
        OSError: The directory is not writable, the disk is full, ...
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def save_user_settings(loaded: LoadedSettings, edited: Settings, path: Path | None = None) -> LoadedSettings:
    """Save the user's own values atomically and return the updated :class:`LoadedSettings`.

    Only the values from :func:`user_values_after_edit` are written (never locked keys, secrets,
    or values equal to the default/policy); unknown entries of the old file are kept. A user
    file that could not be parsed is first moved aside to ``<name>.broken``.

    Args:
        loaded: The current loaded settings.
        edited: The settings as the user left them; locked keys are reset to the policy's value.
        path: Where to write; defaults to ``loaded.user_file``.

    Returns:
        The new state: ``settings`` is ``edited`` with locked keys restored, and the user's
        values and sources updated. Use it for the next save.

    Raises:
        ValueError: No path was given and ``loaded`` has no user file.
        OSError: Writing failed (the old file is untouched).
    """
    target = path or loaded.user_file
    if target is None:
        raise ValueError("no settings file to save to")
    values = user_values_after_edit(loaded, edited)
    if not loaded.user_file_ok and target.exists():
        os.replace(target, target.with_name(target.name + ".broken"))
        logger.warning("Moved the unreadable settings file aside to %s.broken", target)
    atomic_write_text(target, render_user_file(values, loaded.user_unknown))

    before = flatten_settings(loaded.settings)
    after = flatten_settings(edited)
    defaults = flatten_settings(Settings())
    sources = dict(loaded.sources)
    for key in SETTING_KEYS:
        if key in loaded.locked:
            after[key] = before[key]
        elif after[key] != before[key]:
            if key in values:
                sources[key] = Layer.USER
            elif loaded.base_values.get(key, defaults[key]) != defaults[key]:
                sources[key] = Layer.POLICY
            else:
                sources[key] = Layer.DEFAULT
    return replace(
        loaded,
        settings=_build(after),
        sources=sources,
        user_file=target,
        user_values=values,
        user_file_ok=True,
    )
