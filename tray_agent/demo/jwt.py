"""HS256 JSON Web Tokens for the demo servers: encode and verify, stdlib only (no PyJWT).

Only what the org dialect needs: compact JWS with ``alg`` HS256, verification of the signature,
``exp`` / ``nbf`` and ``aud``, with error classes and messages modelled on PyJWT (the real org
server decodes with PyJWT on the WebSocket and python-jose on REST).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "DecodeError",
    "ExpiredSignatureError",
    "InvalidAlgorithmError",
    "InvalidAudienceError",
    "InvalidSignatureError",
    "InvalidTokenError",
    "decode_hs256",
    "encode_hs256",
]


class InvalidTokenError(Exception):
    """Base class of every verification failure."""


class DecodeError(InvalidTokenError):
    """The token is not a well-formed compact JWS."""


class InvalidSignatureError(DecodeError):
    """The HMAC does not match."""


class InvalidAlgorithmError(InvalidTokenError):
    """The header names an algorithm other than HS256."""


class ExpiredSignatureError(InvalidTokenError):
    """``exp`` is in the past."""


class ImmatureSignatureError(InvalidTokenError):
    """``nbf`` is in the future."""


class InvalidAudienceError(InvalidTokenError):
    """``aud`` is missing or does not contain the expected audience."""


def _b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    try:
        data = text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise DecodeError("Invalid token encoding") from exc
    try:
        return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError) as exc:
        raise DecodeError("Invalid crypto padding") from exc


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def _json(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode("utf-8")


def encode_hs256(
    claims: Mapping[str, Any], secret: str | bytes, *, headers: Mapping[str, Any] | None = None
) -> str:
    """Sign ``claims`` with HMAC-SHA256.

    Args:
        claims: the payload (must be JSON-serialisable).
        secret: the shared key.
        headers: extra header fields; ``alg`` and ``typ`` are always ``HS256`` / ``JWT`` unless
            overridden here (tests use that to forge tokens with another ``alg``).

    Returns:
        The compact serialisation ``header.payload.signature``.
    """
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if headers:
        header.update(headers)
    signing_input = f"{_b64url_encode(_json(header))}.{_b64url_encode(_json(claims))}"
    signature = hmac.new(_key(secret), signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url_encode(signature)}"


def decode_hs256(
    token: str,
    secret: str | bytes,
    *,
    audience: str | None = None,
    now: float | None = None,
    leeway: float = 0.0,
    verify_exp: bool = True,
) -> dict[str, Any]:
    """Verify a token and return its claims.

    Args:
        token: the compact JWS.
        secret: the shared key.
        audience: when given, ``aud`` (a string or a list of strings) must contain it; a token
            without ``aud`` is rejected. When ``None``, a token *with* ``aud`` is rejected, as
            PyJWT does.
        now: the current Unix time (default: ``time.time()``).
        leeway: seconds of tolerance on ``exp`` and ``nbf``.
        verify_exp: check ``exp`` when present.

    Returns:
        The claims.

    Raises:
        DecodeError: malformed token (segments, base64, JSON).
        InvalidAlgorithmError: ``alg`` is not HS256 (so ``none`` and asymmetric algorithms fail).
        InvalidSignatureError: bad HMAC.
        ExpiredSignatureError: ``exp`` passed.
        ImmatureSignatureError: ``nbf`` in the future.
        InvalidAudienceError: audience check failed.
    """
    if not isinstance(token, str):
        raise DecodeError("Invalid token type")
    parts = token.split(".")
    if len(parts) != 3:
        raise DecodeError("Not enough segments")
    header_b64, payload_b64, signature_b64 = parts
    try:
        header = json.loads(_b64url_decode(header_b64))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError("Invalid header string") from exc
    if not isinstance(header, dict):
        raise DecodeError("Invalid header string: must be a json object")
    if header.get("alg") != "HS256":
        raise InvalidAlgorithmError("The specified alg value is not allowed")
    signature = _b64url_decode(signature_b64)
    signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
    expected = hmac.new(_key(secret), signing_input, hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise InvalidSignatureError("Signature verification failed")
    try:
        claims = json.loads(_b64url_decode(payload_b64))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError("Invalid payload string") from exc
    if not isinstance(claims, dict):
        raise DecodeError("Invalid payload string: must be a json object")
    current = time.time() if now is None else now
    if verify_exp and "exp" in claims:
        exp = claims["exp"]
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise DecodeError("Expiration Time claim (exp) must be an integer.")
        if exp <= current - leeway:
            raise ExpiredSignatureError("Signature has expired")
    if "nbf" in claims:
        nbf = claims["nbf"]
        if not isinstance(nbf, int | float) or isinstance(nbf, bool):
            raise DecodeError("Not Before claim (nbf) must be an integer.")
        if nbf > current + leeway:
            raise ImmatureSignatureError("The token is not yet valid (nbf)")
    _check_audience(claims, audience)
    return claims


def _check_audience(claims: Mapping[str, Any], audience: str | None) -> None:
    if audience is None:
        if "aud" in claims:
            raise InvalidAudienceError("Invalid audience")
        return
    if "aud" not in claims:
        raise InvalidAudienceError('Token is missing the "aud" claim')
    aud = claims["aud"]
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise InvalidAudienceError("Invalid claim format in token")
    if audience not in audiences:
        raise InvalidAudienceError("Audience doesn't match")
