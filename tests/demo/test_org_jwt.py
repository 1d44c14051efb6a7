"""HS256 encode/verify of the demo servers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from tray_agent.demo import jwt

SECRET = "s3cret-with-enough-length-for-hs256"


def test_jwt_roundtrip_returns_claims():
    token = jwt.encode_hs256({"sub": "u1", "aud": "authenticated", "exp": 2000}, SECRET)
    claims = jwt.decode_hs256(token, SECRET, audience="authenticated", now=1000)
    assert claims == {"sub": "u1", "aud": "authenticated", "exp": 2000}


def test_jwt_signature_is_standard_hs256():
    token = jwt.encode_hs256({"sub": "u1"}, SECRET)
    header_b64, payload_b64, sig_b64 = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(header_b64 + "==")) == {"alg": "HS256", "typ": "JWT"}
    expected = hmac.new(SECRET.encode(), f"{header_b64}.{payload_b64}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(expected).rstrip(b"=").decode() == sig_b64
    assert "=" not in token


def test_jwt_wrong_secret_fails_signature():
    token = jwt.encode_hs256({"sub": "u1"}, SECRET)
    with pytest.raises(jwt.InvalidSignatureError, match="Signature verification failed"):
        jwt.decode_hs256(token, "other-secret")


def test_jwt_tampered_payload_fails_signature():
    token = jwt.encode_hs256({"sub": "u1"}, SECRET)
    header, _, sig = token.split(".")
    forged = base64.urlsafe_b64encode(b'{"sub":"admin"}').rstrip(b"=").decode()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode_hs256(f"{header}.{forged}.{sig}", SECRET)


def test_jwt_expired_token_fails():
    token = jwt.encode_hs256({"exp": 1000}, SECRET)
    with pytest.raises(jwt.ExpiredSignatureError, match="Signature has expired"):
        jwt.decode_hs256(token, SECRET, now=1000)
    assert jwt.decode_hs256(token, SECRET, now=999) == {"exp": 1000}
    assert jwt.decode_hs256(token, SECRET, now=1005, leeway=10) == {"exp": 1000}


def test_jwt_nbf_in_future_fails():
    token = jwt.encode_hs256({"nbf": 2000}, SECRET)
    with pytest.raises(jwt.ImmatureSignatureError):
        jwt.decode_hs256(token, SECRET, now=1000)


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"aud": "anon"}, "Audience doesn't match"),
        ({}, 'Token is missing the "aud" claim'),
        ({"aud": 5}, "Invalid claim format in token"),
    ],
)
def test_jwt_audience_mismatch_fails(claims, message):
    token = jwt.encode_hs256(claims, SECRET)
    with pytest.raises(jwt.InvalidAudienceError, match=message):
        jwt.decode_hs256(token, SECRET, audience="authenticated")


def test_jwt_audience_list_is_accepted():
    token = jwt.encode_hs256({"aud": ["x", "authenticated"]}, SECRET)
    assert jwt.decode_hs256(token, SECRET, audience="authenticated")["aud"] == ["x", "authenticated"]


def test_jwt_unexpected_audience_fails_without_expected_one():
    token = jwt.encode_hs256({"aud": "authenticated"}, SECRET)
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode_hs256(token, SECRET)


@pytest.mark.parametrize("alg", ["none", "HS512", "RS256", "ES256"])
def test_jwt_other_algorithms_are_refused(alg):
    token = jwt.encode_hs256({"sub": "u1"}, SECRET, headers={"alg": alg})
    with pytest.raises(jwt.InvalidAlgorithmError, match="alg value is not allowed"):
        jwt.decode_hs256(token, SECRET)


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "!!!.###.$$$", "e30.e30"])
def test_jwt_malformed_tokens_raise_decode_error(token):
    with pytest.raises(jwt.DecodeError):
        jwt.decode_hs256(token, SECRET)


def test_jwt_non_object_payload_is_rejected():
    header = base64.urlsafe_b64encode(b'{"alg":"HS256"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(b"[1,2]").rstrip(b"=").decode()
    sig = hmac.new(SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"
    with pytest.raises(jwt.DecodeError, match="must be a json object"):
        jwt.decode_hs256(token, SECRET)


def test_jwt_errors_share_a_base_class():
    for cls in (
        jwt.DecodeError,
        jwt.InvalidSignatureError,
        jwt.ExpiredSignatureError,
        jwt.InvalidAudienceError,
        jwt.InvalidAlgorithmError,
    ):
        assert issubclass(cls, jwt.InvalidTokenError)
