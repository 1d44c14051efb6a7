"""Tolerant value coercions shared by the dialect codecs: timestamps, metadata, nullable lists, strings.

Both backends change their frames without versioning (PROTOCOL.md 0), so every inbound wire field
is declared with one of the ``Annotated`` aliases below. They are pydantic ``PlainValidator`` /
``BeforeValidator`` functions: the JSON is still parsed once, in C, by ``TypeAdapter.validate_json``;
these only normalise a value that is already parsed and never raise (a wrong-typed value becomes
the field's empty value instead of failing the whole frame).
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainValidator, TypeAdapter, ValidationError

from tray_agent.core.events import Ignored

__all__ = [
    "JsonObject",
    "LooseBool",
    "LooseObject",
    "LooseStr",
    "Metadata",
    "NullableList",
    "ObjectOrNone",
    "OptBool",
    "OptInt",
    "Timestamp",
    "TypeHead",
    "clamp",
    "classify_unparsed",
    "parse_timestamp",
    "to_bool",
    "to_json_object",
    "to_metadata",
    "to_object_list",
    "to_opt_bool",
    "to_opt_int",
    "to_str",
    "validate_json_lenient",
]

# Unix seconds accepted as timestamps: 1970 .. 9999 (anything else is garbage, e.g. milliseconds
# from year 50000 or a negative counter).
_MAX_UNIX = 253_402_300_799


def parse_timestamp(value: object) -> datetime | None:
    """Turn any timestamp the backends send into an aware UTC datetime, or None.

    Accepts naive ISO-8601 (taken as UTC, PROTOCOL.md O3), ISO with an offset (``+00:00``),
    RFC 3339 with ``Z`` and up to nanosecond fractions (Go), unix seconds as int, float or a
    digit string (G14). Anything else (bools, objects, unparsable text, out-of-range numbers) is None.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return _from_unix(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    if text.isdigit() or (text[0] == "-" and text[1:].isdigit()):
        return _from_unix(int(text))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _from_unix(value: float) -> datetime | None:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value < 0 or value > _MAX_UNIX:
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def to_str(value: object) -> str:
    """Coerce a scalar to str: None -> "", numbers -> their text, bools -> "true"/"false"; else ""."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return ""


def to_bool(value: object) -> bool:
    """Coerce to bool: real bools, non-zero numbers, "true"/"1"/"yes" strings; everything else False."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0 and not (isinstance(value, float) and math.isnan(value))
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return False


def to_opt_bool(value: object) -> bool | None:
    """Like :func:`to_bool` but keeps "not said" (null or an object) as None."""
    if value is None or isinstance(value, (dict, list)):
        return None
    return to_bool(value)


def to_opt_int(value: object) -> int | None:
    """Coerce to int: ints, finite floats, digit strings; bools and everything else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        if 0 < len(text) <= 20 and (text.isdigit() or (text[0] == "-" and text[1:].isdigit())):
            return int(text)
    return None


def to_json_object(value: object) -> dict[str, Any]:
    """Return ``value`` if it is a JSON object, else an empty dict."""
    return value if isinstance(value, dict) else {}


def to_metadata(value: object) -> dict[str, Any]:
    """Org ``metadata``: an object, null, or a JSON-encoded string of an object (PROTOCOL.md O4)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value[:1] == "{":
        try:
            decoded = json.loads(value)
        except (ValueError, RecursionError):
            return {}
        if isinstance(decoded, dict):
            return decoded
    return {}


def to_object_list(value: object) -> list[dict[str, Any]]:
    """A list that may be null (PROTOCOL.md G13); items that are not objects are dropped."""
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    return []


def _object_or_none(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def clamp(value: int, low: int, high: int) -> int:
    """Clamp ``value`` into ``[low, high]``."""
    return max(low, min(high, value))


_T = TypeVar("_T")

LooseStr = Annotated[str, PlainValidator(to_str)]
"""A string field that accepts null / numbers / bools and never fails."""
LooseBool = Annotated[bool, PlainValidator(to_bool)]
"""A bool field that never fails (garbage is False)."""
OptBool = Annotated[bool | None, PlainValidator(to_opt_bool)]
"""A bool field where null means "not said"."""
OptInt = Annotated[int | None, PlainValidator(to_opt_int)]
"""An int field where garbage is None."""
Timestamp = Annotated[datetime | None, PlainValidator(parse_timestamp)]
"""Any timestamp format of either backend -> aware UTC datetime or None."""
Metadata = Annotated[dict[str, Any], PlainValidator(to_metadata)]
"""Org metadata: object, null or JSON string -> dict."""
JsonObject = Annotated[dict[str, Any], PlainValidator(to_json_object)]
"""Any JSON object, kept as plain values; anything else -> {}."""
NullableList = Annotated[list[_T], BeforeValidator(to_object_list)]
"""A list of models that may be null or hold junk items (dropped)."""
ObjectOrNone = Annotated[_T | None, BeforeValidator(_object_or_none)]
"""A nested model that may be null or of the wrong type (-> None)."""
LooseObject = Annotated[_T, BeforeValidator(to_json_object)]
"""A nested model that must exist: null or a wrong type validates as ``{}`` (all defaults)."""


class TypeHead(BaseModel):
    """Just the ``type`` of a frame: the slow path that names a frame the dialect union refused."""

    model_config = ConfigDict(extra="ignore")

    type: LooseStr = ""


def classify_unparsed(frame: str | bytes, exc: ValidationError, head: TypeAdapter[TypeHead]) -> Ignored:
    """Explain a frame that a dialect's union refused: bad JSON, binary, no ``type``, unknown ``type``.

    Args:
        frame: the raw frame.
        exc: the union's validation error.
        head: a module-level ``TypeAdapter(TypeHead)`` (built once per dialect module).
    """
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    if errors and errors[0]["type"] == "json_invalid":
        if isinstance(frame, bytes):
            return Ignored(kind="binary", why="not a JSON text frame")
        return Ignored(kind="malformed", why="invalid JSON")
    try:
        parsed = head.validate_json(frame)
    except ValidationError:
        return Ignored(kind="malformed", why="not a JSON object")
    if not parsed.type:
        return Ignored(kind="malformed", why="no type")
    return Ignored(kind=parsed.type[:64], why="unknown frame type")


# A JSON ``\uD800``-``\uDFFF`` escape: half of a UTF-16 surrogate pair. Alone it is not a
# character, and pydantic's JSON parser refuses the whole document because of it.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _without_surrogates(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    return value


def _scrub_surrogates(data: str | bytes) -> str | None:
    """The JSON text with lone surrogate escapes replaced by U+FFFD, or None if that is not the fault."""
    try:
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        if _SURROGATE_ESCAPE.search(raw) is None:
            return None
        cleaned = _without_surrogates(json.loads(raw))
        return json.dumps(cleaned, ensure_ascii=False)
    except (ValueError, RecursionError):
        return None


def validate_json_lenient(adapter: TypeAdapter[_T], data: str | bytes) -> _T:
    r"""``adapter.validate_json(data)``, but a lone surrogate escape (``"\ud800"``) costs one character.

    The stdlib parser accepts such escapes and pydantic's refuses the whole document; one bad
    character in a customer's name must not drop the message (or a whole REST page). Only on that
    failure is the JSON parsed a second time (by the stdlib), cleaned and validated again.

    Raises:
        ValidationError: as ``validate_json`` for anything else.
    """
    try:
        return adapter.validate_json(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        if not errors or errors[0]["type"] != "json_invalid":
            raise
        cleaned = _scrub_surrogates(data)
        if cleaned is None:
            raise
        return adapter.validate_json(cleaned)
