"""Secret redaction for any text, and the logging filter that keeps secrets out of every log line.

What is removed (the value becomes ``[REDACTED]``, the name stays so logs remain readable):

* ``token=``, ``access_token=``, ``refresh_token=``, ``id_token=``, ``password=``, ``secret=``,
  ``api_key=``, ``apikey=``, ``session=``, ``session_id=`` ... in query strings, form bodies
  and ``key=value`` log text (quoted values too: ``token='...'``);
* the same names as JSON or Python-repr members: ``"password": "..."``, ``'token': '...'``,
  plus ``"authorization"``, ``"cookie"``, ``"set-cookie"``, ``"apikey"``, ``"x-api-key"``;
* ``Authorization: Bearer|Basic|Token ...`` headers and any bare ``Bearer <token>``;
* ``Cookie:`` (every value) and ``Set-Cookie:`` (the cookie's value) headers;
* ``apikey:`` / ``x-api-key:`` / ``api-key:`` headers;
* JWT-looking strings (``eyJ...`` in three base64url segments) wherever they are;
* the password in URLs such as ``https://user:password@host/``.
"""

from __future__ import annotations

import logging
import re
import traceback

REDACTED = "[REDACTED]"

# Names whose value is a secret when they appear as key=value, "key": "value" or 'key': 'value'.
_SECRET_NAMES = (
    r"access_token|refresh_token|id_token|auth_token|session_token|token|"
    r"password|passwd|pwd|secret|client_secret|"
    r"api[_-]?key|apikey|x-api-key|"
    r"session|session_?id|sessionid|sid"
)
_HEADER_NAMES = r"authorization|proxy-authorization|cookie|set-cookie"

# "password": "x"  /  'token': 'x'  /  "authorization": "Bearer x" (JSON and Python reprs).
_QUOTED_MEMBER = re.compile(
    rf"""(?ix)
    (?P<key>(?P<q>["'])(?:{_SECRET_NAMES}|{_HEADER_NAMES})(?P=q)\s*:\s*)
    (?P<vq>["'])(?P<value>(?:\\.|(?!(?P=vq)).)*)(?P=vq)
    """
)
# "token": 12345 (unquoted JSON numbers).
_NUMERIC_MEMBER = re.compile(rf"""(?i)(["'](?:{_SECRET_NAMES})["']\s*:\s*)(-?\d+)""")
# Authorization: Bearer x / Proxy-Authorization: Basic x / authorization=Token x.
_AUTH_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization\s*[:=]\s*)(?:(bearer|basic|token|digest)\s+)?([^\s,;'\"]+)"
)
# A bare "Bearer <token>" (as in headers dumped as text); case-sensitive, so that prose such as
# "token_type=bearer expires_in=3600" keeps its words.
_BEARER = re.compile(r"\b((?:Bearer|BEARER)\s+)([A-Za-z0-9\-._~+/]{8,}=*)")
# Cookie: a=1; b=2   and   Set-Cookie: session=abc; Path=/; HttpOnly
_COOKIE_HEADER = re.compile(r"(?im)\b(cookie\s*:\s*)([^\r\n]*)")
_SET_COOKIE_HEADER = re.compile(r"(?im)\b(set-cookie\s*:\s*[^=;\s]+=)(?!\[REDACTED\])([^;\r\n]*)")
_COOKIE_PAIR = re.compile(r"([^=;\s]+=)(?!\[REDACTED\])([^;]*)")
# apikey: x / x-api-key: x / api-key: x (headers).
_APIKEY_HEADER = re.compile(r"(?i)\b((?:x-)?api[-_]?key\s*:\s*)([^\s,;'\"]+)")
# token=x, ?access_token=x&..., password=x (query strings, forms, key=value log text).
_KEY_VALUE = re.compile(
    rf"""(?i)(?<![\w-])((?:{_SECRET_NAMES})\s*=\s*)(?!\[REDACTED\])("[^"]*"|'[^']*'|[^\s&;,'"<>)\]}}]+)"""
)
# password: hunter2 (YAML-ish / prose); only for password-like names to spare "Token: expired".
_PASSWORD_COLON = re.compile(r"(?i)(?<![\w-])((?:password|passwd|client_secret)\s*:\s*)([^\s,;'\"]+)")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@]+:)([^\s/@]+)(@)")

_TRIGGERS = (
    "token",
    "pass",
    "pwd",
    "secret",
    "key",
    "session",
    "sid",
    "auth",
    "bearer",
    "cookie",
    "eyj",
    "@",
)


def _redact_cookies(match: re.Match[str]) -> str:
    return match.group(1) + _COOKIE_PAIR.sub(lambda pair: pair.group(1) + REDACTED, match.group(2))


def _redact_key_value(match: re.Match[str]) -> str:
    quote = match.group(2)[0]
    if quote in "'\"":
        return f"{match.group(1)}{quote}{REDACTED}{quote}"
    return match.group(1) + REDACTED


def _redact_auth(match: re.Match[str]) -> str:
    scheme = match.group(2)
    return match.group(1) + (f"{scheme} " if scheme else "") + REDACTED


def redact(text: str) -> str:
    """Return ``text`` with every secret it recognizably holds replaced by ``[REDACTED]``.

    Idempotent, and cheap for text without any trigger word. It errs on the side of removing
    too much (e.g. any ``code=`` value) rather than too little.

    Args:
        text: Any text: a log message, a URL, a JSON body, HTTP headers, a traceback.

    Returns:
        The redacted text.
    """
    lower = text.lower()
    if not any(trigger in lower for trigger in _TRIGGERS):
        return text
    text = _QUOTED_MEMBER.sub(lambda m: f"{m.group('key')}{m.group('vq')}{REDACTED}{m.group('vq')}", text)
    text = _NUMERIC_MEMBER.sub(lambda m: f'{m.group(1)}"{REDACTED}"', text)
    text = _AUTH_HEADER.sub(_redact_auth, text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    text = _SET_COOKIE_HEADER.sub(lambda m: m.group(1) + REDACTED, text)
    text = _COOKIE_HEADER.sub(lambda m: m.group(0) if _is_set_cookie(m) else _redact_cookies(m), text)
    text = _APIKEY_HEADER.sub(lambda m: m.group(1) + REDACTED, text)
    text = _KEY_VALUE.sub(_redact_key_value, text)
    text = _PASSWORD_COLON.sub(lambda m: m.group(1) + REDACTED, text)
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED + m.group(3), text)
    return _JWT.sub(REDACTED, text)


def _is_set_cookie(match: re.Match[str]) -> bool:
    start = match.start()
    return match.string[max(0, start - 4) : start].lower() == "set-"


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message, arguments, traceback and stack.

    The message is formatted first (``msg % args``), redacted, and stored back with ``args``
    cleared; an exception's traceback is rendered, redacted into ``exc_text`` and ``exc_info``
    cleared, so no handler or formatter can see the original. It never drops a record.

    Install it on every *handler* (filters on a logger do not see records propagated from child
    loggers)::

        handler.addFilter(RedactingFilter())

    or call :func:`install_redaction` after configuring logging.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; always keep it."""
        if getattr(record, "_tray_agent_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format: where the secrets sit is unknown, so drop the args
            message = f"{record.msg!s} [{len(record.args or ())} log argument(s) withheld: bad format]"
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            exc_text = record.exc_text or "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = exc_text
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record.__dict__["_tray_agent_redacted"] = True
        return True


def install_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Add one :class:`RedactingFilter` to every handler of ``logger`` (default: the root logger).

    Call it after all handlers are added; a handler added later needs ``addFilter`` itself.

    Args:
        logger: Whose handlers to cover.

    Returns:
        The filter now on every handler (one already installed is reused, never doubled).
    """
    target = logger or logging.getLogger()
    installed = [f for h in target.handlers for f in h.filters if isinstance(f, RedactingFilter)]
    redacting = installed[0] if installed else RedactingFilter()
    for handler in target.handlers:
        if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
            handler.addFilter(redacting)
    return redacting
