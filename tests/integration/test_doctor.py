"""`tray-agent doctor` against real servers on 127.0.0.1: demo backend, closed port, TLS, a proxy."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import os
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from tray_agent import doctor
from tray_agent.cli import parse_args
from tray_agent.demo.server import DemoServer

pytestmark = pytest.mark.integration

WAIT = 60.0  # upper bound for a doctor subprocess (it also runs the app's self-test)
SECRET_TOKEN_SIG = "c2VjcmV0LXNpZ25hdHVyZQ"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without proxies, TRAY_AGENT_* and a keyring (memory only)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRAY_AGENT_") and not k.lower().endswith("_proxy")
    }
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
    env.update(extra)
    return env


def args_for(tmp_path: Path, *flags: str) -> Any:
    return parse_args(["doctor", "--basedir", str(tmp_path / "base"), *flags])


def by_check(results: list[doctor.CheckResult]) -> dict[str, doctor.CheckResult]:
    return {r.check: r for r in results}


def unsigned_jwt(**claims: Any) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.{SECRET_TOKEN_SIG}"


@pytest_asyncio.fixture
async def dashboard() -> AsyncIterator[DemoServer]:
    async with DemoServer("dashboard") as server:
        yield server


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------- healthy


@pytest.mark.asyncio
async def test_doctor_network_checks_pass_against_demo_backend(dashboard: DemoServer, tmp_path: Path) -> None:
    tenant = dashboard.info.agents[0].tenant
    args = args_for(tmp_path, "--server", dashboard.url, "--company", tenant)
    results = await doctor.collect(args, clean_env(), groups=("settings", "network"))
    checks = by_check(results)
    assert [
        checks[c].status for c in ("settings", "proxy", "dns", "tcp", "tls", "http", "websocket", "clock")
    ] == [doctor.Status.OK] * 8
    assert "no proxy" in checks["proxy"].message
    assert "plain http://" in checks["tls"].message
    assert "sign-in needed (HTTP 401)" in checks["websocket"].message
    assert doctor.exit_code(results) == 0


@pytest.mark.asyncio
async def test_doctor_org_dialect_reports_sign_in_needed_and_never_prints_the_token(tmp_path: Path) -> None:
    far_future = int(dt.datetime.now(dt.UTC).timestamp()) + 3600
    token = unsigned_jwt(sub="u1", exp=far_future, iat=far_future - 3600, aud="authenticated")
    async with DemoServer("org") as server:
        org = server.info.agents[0].tenant
        args = args_for(tmp_path, "--dialect", "org", "--server", server.url, "--org", org, "--token", token)
        results = await doctor.collect(args, clean_env(), groups=("settings", "network"))
    checks = by_check(results)
    assert checks["websocket"].status is doctor.Status.OK
    assert f"/ws/{org}" in checks["websocket"].message
    assert checks["token"].status is doctor.Status.OK
    report = doctor.format_report(results) + doctor.format_json(results)
    assert SECRET_TOKEN_SIG not in report
    assert "token=" not in report


@pytest.mark.asyncio
async def test_doctor_full_run_as_a_subprocess_exits_0_when_the_server_is_healthy(
    dashboard: DemoServer, tmp_path: Path
) -> None:
    tenant = dashboard.info.agents[0].tenant
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tray_agent", "doctor", "--json", "--basedir", str(tmp_path),
        "--server", dashboard.url, "--company", tenant,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=clean_env(),
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    report = json.loads(out)
    statuses = {c["check"]: c["status"] for c in report["checks"]}
    assert proc.returncode == 0, (report, err.decode())
    assert report["ok"] is True
    for check in ("settings", "dns", "tcp", "http", "websocket", "clock"):
        assert statuses[check] == "OK", report
    # Outside the desktop session these may warn, but they are always reported.
    for check in ("keyring", "tray", "notifications", "audio"):
        assert statuses[check] in ("OK", "WARN"), report


# ------------------------------------------------------------------------------- failures


@pytest.mark.asyncio
async def test_doctor_fails_when_the_server_is_down(tmp_path: Path) -> None:
    port = closed_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tray_agent", "doctor", "--basedir", str(tmp_path),
        "--server", f"http://127.0.0.1:{port}", "--company", "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=clean_env(),
    )  # fmt: skip
    out, _err = await asyncio.wait_for(proc.communicate(), WAIT)
    lines = out.decode().splitlines()
    assert proc.returncode == 1
    tcp = next(line for line in lines if line.split()[1:2] == ["tcp"])
    assert tcp.startswith("FAIL")
    assert f"127.0.0.1:{port}" in tcp
    assert "refused" in tcp
    assert any(line.startswith("SKIP") and "websocket" in line for line in lines)
    assert "FAILED" in lines[-1]


@pytest.mark.asyncio
async def test_doctor_fails_without_a_server_setting(tmp_path: Path) -> None:
    results = await doctor.collect(args_for(tmp_path), clean_env(), groups=("settings", "network"))
    checks = by_check(results)
    settings = [r for r in results if r.check == "settings"]
    assert {r.status for r in settings} == {doctor.Status.FAIL}
    assert any("no server set" in r.message for r in settings)
    assert checks["network"].status is doctor.Status.SKIP
    assert doctor.exit_code(results) == 1


@pytest.mark.asyncio
async def test_doctor_fails_on_clock_skew_and_expired_token(tmp_path: Path) -> None:
    past = int(dt.datetime.now(dt.UTC).timestamp()) - 7200
    token = unsigned_jwt(sub="u1", exp=past + 3600, iat=past)
    async with DemoServer("org") as server:
        org = server.info.agents[0].tenant
        args = args_for(tmp_path, "--dialect", "org", "--server", server.url, "--org", org, "--token", token)
        conn = doctor.load_setup(args, clean_env()).loaded.settings.connection

        def ten_minutes_ahead() -> dt.datetime:
            return dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)

        results = await doctor.check_network(conn, clean_env(), now=ten_minutes_ahead)
    checks = by_check(results)
    assert checks["clock"].status is doctor.Status.FAIL
    assert "ahead of the server" in checks["clock"].message
    assert checks["token"].status is doctor.Status.FAIL
    assert "expired" in checks["token"].message


# ------------------------------------------------------------------------------- TLS


class Pki:
    """A CA and certificates made with `cryptography`, written under tmp_path."""

    def __init__(self, root: Path) -> None:
        x509 = pytest.importorskip("cryptography.x509")
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._x509, self._hashes, self._ser, self._ec, self._oid = x509, hashes, serialization, ec, NameOID
        self.root = root
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_name = self._name("Doctor Test CA")
        now = dt.datetime.now(dt.UTC)
        self.ca = (
            x509.CertificateBuilder()
            .subject_name(self.ca_name)
            .issuer_name(self.ca_name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca_file = root / "ca.pem"
        self.ca_file.write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))

    def _name(self, cn: str) -> Any:
        return self._x509.Name([self._x509.NameAttribute(self._oid.COMMON_NAME, cn)])

    def server_context(
        self, name: str, *, self_signed: bool = False, ip: str | None = "127.0.0.1"
    ) -> ssl.SSLContext:
        x509, ser = self._x509, self._ser
        key = self._ec.generate_private_key(self._ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        sans: list[Any] = [x509.DNSName(name)]
        if ip:
            sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
        subject = self._name(name)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject if self_signed else self.ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(key if self_signed else self.ca_key, self._hashes.SHA256())
        )
        cert_file = self.root / f"{name}-{'self' if self_signed else 'ca'}.pem"
        key_file = cert_file.with_suffix(".key")
        cert_file.write_bytes(cert.public_bytes(ser.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
        return context


@pytest_asyncio.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[Any]:
    """Start aiohttp TLS servers on 127.0.0.1 port 0 with a given context; yields a starter."""
    runners: list[web.AppRunner] = []

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=401 if request.path.endswith("/ws") else 200, text="ok")

    async def start(context: ssl.SSLContext) -> str:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = runner.addresses[0][1]
        return f"https://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_doctor_fails_on_a_self_signed_certificate(tmp_path: Path, tls_server: Any) -> None:
    pki = Pki(tmp_path)
    url = await tls_server(pki.server_context("selfsigned.test", self_signed=True))
    results = await doctor.collect(
        args_for(tmp_path, "--server", url, "--company", "1"), clean_env(), groups=("network",)
    )
    tls = by_check(results)["tls"]
    assert tls.status is doctor.Status.FAIL
    assert "certificate" in tls.message
    assert "self-signed" in tls.message
    assert "selfsigned.test" in tls.message  # the unverified certificate is described
    assert doctor.exit_code(results) == 1


@pytest.mark.asyncio
async def test_doctor_names_an_unknown_ca_and_a_hostname_mismatch(tmp_path: Path, tls_server: Any) -> None:
    pki = Pki(tmp_path)
    url = await tls_server(pki.server_context("server.test"))
    results = await doctor.collect(
        args_for(tmp_path, "--server", url, "--company", "1"), clean_env(), groups=("network",)
    )
    assert "unknown authority" in by_check(results)["tls"].message

    wrong = await tls_server(pki.server_context("other.test", ip=None))
    flags = ("--server", wrong, "--company", "1", "--set", f"connection.ca_bundle={pki.ca_file}")
    results = await doctor.collect(args_for(tmp_path, *flags), clean_env(), groups=("network",))
    tls = by_check(results)["tls"]
    assert tls.status is doctor.Status.FAIL
    assert "not valid for 127.0.0.1" in tls.message


@pytest.mark.asyncio
async def test_doctor_reports_a_trusted_certificate(tmp_path: Path, tls_server: Any) -> None:
    pki = Pki(tmp_path)
    url = await tls_server(pki.server_context("server.test"))
    flags = ("--server", url, "--company", "1", "--set", f"connection.ca_bundle={pki.ca_file}")
    results = await doctor.collect(args_for(tmp_path, *flags), clean_env(), groups=("network",))
    checks = by_check(results)
    assert checks["tls"].status is doctor.Status.OK
    assert "issued by Doctor Test CA" in checks["tls"].message
    assert checks["http"].status is doctor.Status.OK
    assert "sign-in needed (HTTP 401)" in checks["websocket"].message


# ------------------------------------------------------------------------------- proxy


class ConnectProxy:
    """A tiny HTTP CONNECT proxy on 127.0.0.1 port 0 that records the tunnels it opened."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        method, target, _version = head.split("\r\n", 1)[0].split(" ")
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        host, port = target.rsplit(":", 1)
        self.tunnels.append(target)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        for task in (
            asyncio.create_task(pipe(reader, up_writer)),
            asyncio.create_task(pipe(up_reader, writer)),
        ):
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)


@pytest.mark.asyncio
@pytest.mark.parametrize("via", ["environment", "settings"])
async def test_doctor_goes_through_the_proxy(dashboard: DemoServer, tmp_path: Path, via: str) -> None:
    proxy = ConnectProxy()
    proxy_url = await proxy.start()
    try:
        tenant = dashboard.info.agents[0].tenant
        flags = ["--server", dashboard.url, "--company", tenant]
        env = clean_env()
        if via == "environment":
            env["http_proxy"] = proxy_url.replace("http://", "http://user:hunter2@")
        else:
            flags += ["--set", f"connection.proxy={proxy_url}"]
        results = await doctor.collect(args_for(tmp_path, *flags), env, groups=("network",))
    finally:
        await proxy.stop()
    checks = by_check(results)
    assert checks["proxy"].status is doctor.Status.OK
    assert proxy_url in checks["proxy"].message
    assert ("http_proxy" if via == "environment" else "connection.proxy") in checks["proxy"].message
    assert checks["proxy-connect"].status is doctor.Status.OK
    assert checks["websocket"].status is doctor.Status.OK
    assert checks["clock"].status is doctor.Status.OK
    # Every request went through the tunnel: the first (http), and the WebSocket handshake.
    port = dashboard.url.rsplit(":", 1)[1]
    assert proxy.tunnels.count(f"127.0.0.1:{port}") >= 2
    assert "hunter2" not in doctor.format_report(results)


@pytest.mark.asyncio
async def test_doctor_fails_when_the_proxy_is_down(tmp_path: Path) -> None:
    env = clean_env(https_proxy=f"http://127.0.0.1:{closed_port()}")
    args = args_for(tmp_path, "--server", "https://support.invalid", "--company", "1")
    results = await doctor.collect(args, env, groups=("network",))
    checks = by_check(results)
    assert checks["dns"].status is doctor.Status.OK  # the proxy resolves the server's name
    assert checks["tcp"].status is doctor.Status.FAIL


# ------------------------------------------------------------------------------- pure parts


def test_parse_self_test_reads_the_apps_report() -> None:
    ok = "tray-agent self-test\n  icon connected: ok\n  tray: available, icon shown\n"
    ok += "  qt platform: xcb\nresult: ok\n"
    results = by_check(doctor.parse_self_test(0, ok, ""))
    assert results["resources"].status is doctor.Status.OK
    assert results["tray"].status is doctor.Status.OK
    assert "xcb" in results["tray"].message

    missing = (
        "  tray: not available on this desktop\n  qt platform: offscreen\n  MISSING sound message.wav: gone\n"
    )
    results = by_check(doctor.parse_self_test(1, missing, ""))
    assert results["resources"].status is doctor.Status.FAIL
    assert "message.wav" in results["resources"].message
    assert results["tray"].status is doctor.Status.WARN

    no_display = doctor.parse_self_test(134, "", "qt.qpa.xcb: could not connect to display\nAborted\n")
    assert [r.status for r in no_display] == [doctor.Status.WARN]
    assert "could not connect to display" in no_display[0].message


def test_self_test_command_uses_the_frozen_executable() -> None:
    assert doctor.self_test_command(frozen=True, executable="/opt/tray-agent/tray-agent") == [
        "/opt/tray-agent/tray-agent",
        "--self-test",
    ]
    assert doctor.self_test_command(frozen=False, executable="py")[:3] == ["py", "-m", "tray_agent"]


def test_report_speaks_indonesian_with_plural_correct_counts() -> None:
    from tray_agent.core import i18n
    from tray_agent.doctor import CheckResult, Status, summary

    warn = CheckResult("audio", Status.WARN, "x")
    fail = CheckResult("tls", Status.FAIL, "y")
    try:
        assert summary([warn, warn]) == "2 warnings, no failures"
        assert summary([warn, fail]) == "1 check FAILED, 1 warning"
        i18n.set_language("id")
        assert summary([]) == "semua pemeriksaan lulus"
        assert summary([warn, warn]) == "2 peringatan, tanpa kegagalan"
    finally:
        i18n.set_language("en")
