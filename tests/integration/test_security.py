"""Security checks: customer markup stays text, only web links click, secrets stay out, TLS holds.

* Markup in every customer-supplied field (name, channel/page name, last message, message text,
  sender name, agent name, attachment name and URL) is plain text in every widget of the inbox,
  the chat window and the tray menu, and escaped in toast bodies when the server takes markup.
* Only http/https links are clickable.
* Tokens, cookies and passwords never reach a log file (the client at DEBUG through the
  redaction filter, both dialects), the diagnostics report or a crash report (sys.excepthook).
* A TLS verification failure is reported as such and never bypassed: the client never connects.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import ssl
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from PySide6.QtCore import QMimeData, QModelIndex, Qt
from PySide6.QtGui import QFont, QTextDocument
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QApplication,
    QLabel,
    QMenu,
    QPlainTextEdit,
    QTextEdit,
    QWidget,
)

from tests.gui.conftest import FakeNotifier, FakeSound, close_awaitable
from tests.gui.fakes import T0, make_env, page, summary
from tests.gui.test_chat_window import click_link
from tests.helpers.fakes import EventRecorder, FakeSecretStore, SettableClock
from tests.helpers.tls import self_signed_cert
from tray_agent.core.commands import SendReply
from tray_agent.core.effects import Toast, ToastAction, Urgency
from tray_agent.core.events import (
    AgentRef,
    Attachment,
    ConnectionChanged,
    ConnectionState,
    HistoryPage,
    MessageReceived,
    SenderKind,
)
from tray_agent.core.policy import AlertPolicy
from tray_agent.core.ports import SystemClock
from tray_agent.core.protocol.dashboard import DashboardCodec
from tray_agent.core.protocol.org import OrgCodec
from tray_agent.core.redact import install_redaction
from tray_agent.core.settings import AlertSettings, ConnectionSettings
from tray_agent.demo.server import DemoServer
from tray_agent.net.auth import DashboardAuthenticator, OrgAuthenticator
from tray_agent.net.client import Client
from tray_agent.platform.notifier import ToastNotifier
from tray_agent.ui.chat_window import ChatWindow, is_web_link
from tray_agent.ui.customer_service import CustomerServiceWindow
from tray_agent.ui.effects import EffectRunner
from tray_agent.ui.tray import TrayController

pytestmark = pytest.mark.integration


def make_drafts(tmp_path: Path) -> Any:
    """The chat window's draft store (in memory where the UI offers one)."""
    from tray_agent.ui import chat_window

    memory = getattr(chat_window, "MemoryDraftStore", None)
    if memory is not None:
        return memory()
    return chat_window.DraftStore(tmp_path / "drafts.json")  # type: ignore[attr-defined]


# Every tag a rich-text renderer would act on: formatting, a remote image, a script link.
MARKUP = '<b>Bold</b><img src="http://evil.test/x.png"><a href="javascript:alert(1)">click</a> & co'
KEY = "p/a"
WAIT = 20.0


# ------------------------------------------------------------------ markup as plain text


def _rich(text: str) -> bool:
    return "<b>" in text or "<img" in text or "<a " in text


def _model_texts(view: QAbstractItemView) -> Iterator[tuple[str, Any, Any]]:
    model = view.model()
    if model is None:
        return

    def walk(parent: QModelIndex) -> Iterator[tuple[str, Any, Any]]:
        for row in range(model.rowCount(parent)):
            try:
                columns = model.columnCount(parent)
            except TypeError:  # a list model: columnCount is not exposed to Python
                columns = 1
            for col in range(max(1, columns)):
                index = model.index(row, col, parent)
                yield "display", model.data(index, Qt.ItemDataRole.DisplayRole), index
                yield "tooltip", model.data(index, Qt.ItemDataRole.ToolTipRole), index
                if col == 0 and model.rowCount(index) > 0:
                    yield from walk(index)

    yield from walk(QModelIndex())


def rich_fragments(document: QTextDocument) -> list[str]:
    """What a text document renders as more than plain text: images, links, bold, italic ..."""
    found: list[str] = []
    block = document.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            fmt = fragment.charFormat()
            if (
                fmt.isImageFormat()
                or fmt.isAnchor()
                or fmt.fontWeight() > QFont.Weight.Normal
                or fmt.fontItalic()
                or fmt.fontUnderline()
            ):
                found.append(fragment.text())
            it += 1
        block = block.next()
    return found


def assert_plain_everywhere(root: QWidget) -> int:
    """Every visible text under ``root`` shows customer markup literally; returns how many did."""
    literal = 0
    widgets = [root, *root.findChildren(QWidget)]
    for widget in widgets:
        if isinstance(widget, QLabel) and _rich(widget.text()):
            assert widget.textFormat() == Qt.TextFormat.PlainText, (widget.objectName(), widget.text())
            literal += 1
        if isinstance(widget, QTextEdit | QPlainTextEdit):
            # What the document renders, whatever acceptRichText says (it only governs paste).
            assert rich_fragments(widget.document()) == [], widget.objectName()
        if isinstance(widget, QAbstractButton):
            literal += _rich(widget.text())  # buttons never render markup
        tip = widget.toolTip()
        if tip:
            assert not _rich(tip), (widget.objectName(), tip)  # tooltips would render it
        if _rich(widget.windowTitle()):
            literal += 1  # window titles are plain text
        if isinstance(widget, QAbstractItemView):
            for role, value, index in _model_texts(widget):
                if not isinstance(value, str) or not _rich(value):
                    continue
                assert role == "display", (role, value)  # tooltips must arrive escaped
                # None: Qt's built-in QStyledItemDelegate (not wrapped by PySide), plain text.
                delegate = widget.itemDelegateForIndex(index) or widget.itemDelegate()
                assert delegate is None or type(delegate).__name__ in (
                    "QStyledItemDelegate",
                    "BubbleDelegate",
                )
                literal += 1
    return literal


@pytest.mark.gui
def test_customer_markup_is_plain_text_in_inbox_chat_window_and_tray_menu(qtbot, tmp_path: Path) -> None:
    env = make_env()
    env.feed(
        page(
            summary(KEY, f"Alice {MARKUP}", channel=f"Shop {MARKUP}", last=f"last {MARKUP}"),
            summary(
                "p/b",
                f"Bob {MARKUP}",
                assigned=True,
                agent=AgentRef("x", f"Agent {MARKUP}", f"agent{MARKUP}@example.com"),
            ),
        )
    )
    inbox = CustomerServiceWindow(env.bridge, env.sink, "dashboard", clock=env.clock)
    qtbot.addWidget(inbox)
    inbox.show()
    qtbot.waitExposed(inbox)
    opened: list[str] = []
    chat = ChatWindow(
        KEY,
        env.bridge,
        env.store.dispatch,
        env.sink,
        make_drafts(tmp_path),
        url_opener=lambda url: opened.append(url.toString()),
    )
    qtbot.addWidget(chat)
    chat.show()
    qtbot.waitExposed(chat)
    env.feed(
        HistoryPage(
            conversation=KEY,
            messages=(
                MessageReceived(
                    conversation=KEY,
                    sender=SenderKind.CUSTOMER,
                    text=f"hello {MARKUP}",
                    sent_at=T0,
                    sender_name=f"Alice {MARKUP}",
                    attachment=Attachment(url=f"https://cdn.test/{MARKUP}", name=f"file {MARKUP}"),
                ),
            ),
        )
    )
    try:
        assert assert_plain_everywhere(inbox) >= 3  # name, channel, last message at least
        assert assert_plain_everywhere(chat) >= 1
        (record,) = [r for r in chat.model.records if "hello" in r.text]
        assert record.text == f"hello {MARKUP}"  # kept literally, drawn with drawText
        assert chat.windowTitle().startswith("Alice <b>Bold</b><img")  # literal, clipped
        # The tray menu lists waiting customers; QMenu never renders markup, & stays literal.
        settings = AlertSettings()
        clock = SettableClock()
        runner = EffectRunner(
            AlertPolicy(settings), FakeNotifier(), FakeSound(), clock, settings, spawn=close_awaitable
        )
        tray = TrayController(env.bridge, runner, env.sink, clock, tray_available=False)
        tray.refresh_menu()
        texts = [a.text() for m in [tray.menu, *tray.menu.findChildren(QMenu)] for a in m.actions()]
        names = [t for t in texts if "Alice" in t]
        assert names, texts
        assert all("&&" in t and "<b>Bold</b>" in t for t in names)
        assert not _rich(tray.tray_icon.toolTip()) if hasattr(tray, "tray_icon") else True
        tray.hide()
    finally:
        env.close()


@pytest.mark.gui
def test_markup_typed_pasted_or_restored_in_the_reply_box_is_shown_and_sent_literally(
    qtbot, tmp_path: Path
) -> None:
    env = make_env()
    env.feed(page(summary(KEY, "Alice")))
    drafts = make_drafts(tmp_path)
    draft = '<i>draft</i> <a href="javascript:alert(1)">x</a> '
    drafts.set_draft(KEY, draft)  # restored into the box when the window opens
    chat = ChatWindow(KEY, env.bridge, env.store.dispatch, env.sink, drafts, url_opener=lambda url: None)
    qtbot.addWidget(chat)
    chat.show()
    qtbot.waitExposed(chat)
    clipboard = QApplication.clipboard()
    try:
        edit = chat.reply_edit
        edit.moveCursor(edit.textCursor().MoveOperation.End)
        typed = '<b>typed</b> <img src="http://evil.test/t.png"> '
        qtbot.keyClicks(edit, typed)
        mime = QMimeData()
        mime.setHtml(MARKUP)  # a copy from a web page: the rich form and ...
        mime.setText("pasted")  # ... its plain text
        clipboard.setMimeData(mime)
        edit.paste()
        assert edit.toPlainText() == draft + typed + "pasted"
        assert rich_fragments(edit.document()) == []  # nothing bold, italic, linked or an image
        assert_plain_everywhere(chat)  # its checks include the reply box's document
        qtbot.keyClick(edit, Qt.Key.Key_Return)
        assert env.sink.last(SendReply).text == draft + typed + "pasted"  # sent as the agent saw it
    finally:
        clipboard.clear()
        env.close()


@pytest.mark.asyncio
async def test_toast_bodies_escape_customer_markup_when_the_server_takes_markup() -> None:
    sent: list[tuple[str, str]] = []

    class Backend:
        body_markup = True

        async def start(self) -> bool:
            return True

        async def send(self, identifier, title, body, urgency, buttons, on_activated, on_closed) -> None:
            sent.append((title, body))

        async def clear(self, identifier: str) -> None:
            return None

        async def close(self) -> None:
            return None

    notifier = ToastNotifier(Backend())
    await notifier.start()
    await notifier.show(
        Toast(
            key=f"message:{KEY}",
            title=f"Alice {MARKUP}",
            body=f"3 new messages: {MARKUP}",
            urgency=Urgency.NORMAL,
            conversation=KEY,
            actions=(ToastAction.OPEN,),
        )
    )
    ((title, body),) = sent
    assert "<" not in body
    assert ">" not in body
    assert "&lt;b&gt;Bold&lt;/b&gt;" in body
    assert "&amp; co" in body
    assert title == f"Alice {MARKUP}"  # the summary is plain text by the spec: the server escapes it


# ------------------------------------------------------------------ links


@pytest.mark.parametrize(
    ("url", "clickable"),
    [
        ("https://cdn.example.com/a.png", True),
        ("http://example.com/doc.pdf", True),
        ("HTTPS://EXAMPLE.COM/x", True),
        ("javascript:alert(1)", False),
        ("JaVaScRiPt:alert(1)", False),
        ("file:///etc/passwd", False),
        ("data:text/html;base64,PHNjcmlwdD4=", False),
        ("ftp://example.com/x", False),
        ("mailto:a@example.com", False),
        ("smb://server/share", False),
        ("vbscript:msgbox", False),
        ("//example.com/no-scheme", False),
        ("https:///no-host", False),
        ("tel:+621234", False),
        ("", False),
    ],
)
def test_only_http_and_https_links_are_clickable(url: str, clickable: bool) -> None:
    assert is_web_link(url) is clickable


@pytest.mark.gui
def test_attachment_link_with_a_bad_scheme_is_shown_as_text_and_never_opened(qtbot, tmp_path: Path) -> None:
    env = make_env()
    env.feed(page(summary(KEY, "Alice")))
    opened: list[str] = []
    chat = ChatWindow(
        KEY,
        env.bridge,
        env.store.dispatch,
        env.sink,
        make_drafts(tmp_path),
        url_opener=lambda url: opened.append(url.toString()),
    )
    qtbot.addWidget(chat)
    chat.show()
    try:
        bad = ["javascript:alert(1)", "file:///etc/passwd", "data:text/html,<b>x</b>"]
        env.feed(
            HistoryPage(
                conversation=KEY,
                messages=tuple(
                    MessageReceived(
                        conversation=KEY,
                        sender=SenderKind.CUSTOMER,
                        text=f"see {n}",
                        sent_at=T0 + dt.timedelta(seconds=n),
                        message_id=f"m{n}",
                        attachment=Attachment(url=u, name="doc"),
                    )
                    for n, u in enumerate([*bad, "https://cdn.example.com/ok.png"])
                ),
            )
        )
        links = [chat.delegate.link_text(r) for r in chat.model.records if r.attachment is not None]
        assert [clickable for _text, clickable in links] == [False, False, False, True]
        assert all("not a web link" in text for text, _ in links[:3])
        # A click on each attachment line itself (where a link would be) opens the https one,
        # exactly once, through the injected opener; the others never.
        for row in range(chat.model.rowCount()):
            click_link(chat, qtbot, row)
        assert opened == ["https://cdn.example.com/ok.png"]
    finally:
        env.close()


# ------------------------------------------------------------------ secrets


@contextlib.contextmanager
def debug_log(path: Path) -> Iterator[None]:
    """Everything at DEBUG into ``path`` through the app's redaction filter."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    old_level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    redaction = install_redaction(root)
    handler.addFilter(redaction)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        for other in root.handlers:  # install_redaction put it on pytest's handlers too
            other.removeFilter(redaction)
        root.setLevel(old_level)


@pytest.mark.asyncio
async def test_dashboard_cookie_and_password_never_reach_the_debug_log(tmp_path: Path) -> None:
    log = tmp_path / "debug.log"
    async with DemoServer("dashboard", preload=3) as server:
        agent = server.info.agents[0]
        settings = ConnectionSettings(
            dialect="dashboard", server=server.url, company=agent.tenant, email=agent.email
        )
        secrets, events, clock = FakeSecretStore(), EventRecorder(), SystemClock()
        auth = DashboardAuthenticator(
            settings, secrets, clock, password=agent.password, keepalive_interval=3600
        )
        with debug_log(log):
            client = Client(DashboardCodec(), auth, settings, events, clock)
            task = client.start()
            try:
                await events.wait_state(ConnectionState.CONNECTED, within=WAIT)
                await server.control("ask_for_human", text=f"my password is {agent.password}?")
                client.reconnect_now()  # a second handshake with the stored cookie
                await events.wait_state(ConnectionState.CONNECTED, after=events.mark(), within=WAIT)
            finally:
                await client.stop()
                await task
    cookies = [v for v in secrets.values.values() if v]
    text = log.read_text(encoding="utf-8")
    assert "Cookie" in text or "cookie" in text or "handshake" in text or "connected" in text
    assert agent.password not in text.replace(f"my password is {agent.password}?", "")
    assert cookies, "the cookie was never stored: nothing to check"
    for cookie in cookies:
        assert cookie not in text


@pytest.mark.asyncio
async def test_org_jwt_in_the_websocket_url_and_password_never_reach_the_debug_log(tmp_path: Path) -> None:
    log = tmp_path / "debug.log"
    async with DemoServer("org", preload=2) as server:
        info = server.info
        agent = info.agents[0]
        settings = ConnectionSettings(
            dialect="org",
            server=info.url,
            org=info.extra.get("org_id", agent.tenant),
            email=agent.email,
            supabase_url=info.extra.get("supabase_url", info.url),
            supabase_key=info.extra.get("supabase_anon_key", ""),
        )
        secrets, events, clock = FakeSecretStore(), EventRecorder(), SystemClock()
        auth = OrgAuthenticator(settings, secrets, clock, password=agent.password)
        issued: list[str] = []
        sign_in = auth.credentials

        async def recording_credentials(http: Any) -> Any:
            credentials = await sign_in(http)
            issued.append(credentials.token)
            return credentials

        auth.credentials = recording_credentials  # type: ignore[method-assign]
        with debug_log(log):
            client = Client(OrgCodec(org_id=settings.org), auth, settings, events, clock)
            task = client.start()
            try:
                await events.wait_state(ConnectionState.CONNECTED, within=WAIT)
            finally:
                await client.stop()
                await task
    text = log.read_text(encoding="utf-8")
    tokens = [t for t in issued if t] + [v for v in secrets.values.values() if v and len(v) > 20]
    assert tokens, "no token was issued: nothing to check"
    for token in tokens:
        assert token not in text
        for part in token.split(".")[1:]:  # the payload or signature alone is a leak too
            if len(part) > 16:
                assert part not in text
    assert agent.password not in text
    if settings.supabase_key:
        assert settings.supabase_key not in text


def test_secrets_in_an_uncaught_exception_never_reach_the_crash_log(tmp_path: Path) -> None:
    """The app's excepthook logs crashes through the redaction filter (run in a subprocess)."""
    script = f"""
import sys
from pathlib import Path
from tray_agent.platform.logs import setup_logging
setup_logging(Path({str(tmp_path)!r}), verbose=True)
raise RuntimeError(
    "login failed for https://user:hunter2pass@example.com/?token=sekrit-token-123 "
    "Cookie: session=c00kie-value-456; Authorization: Bearer abcdefghijklmnop-secret "
    'payload {{"password": "pa55word-789"}} eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlLXNlY3JldA'
)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    logs = "".join(p.read_text(encoding="utf-8") for p in tmp_path.glob("*.log*"))
    assert "RuntimeError" in logs, (logs, proc.stderr)
    for secret in (
        "hunter2pass",
        "sekrit-token-123",
        "c00kie-value-456",
        "abcdefghijklmnop-secret",
        "pa55word-789",
        "c2lnbmF0dXJlLXNlY3JldA",
    ):
        assert secret not in logs, secret
        assert secret not in proc.stderr, secret


@pytest.mark.asyncio
async def test_diagnostics_report_never_contains_the_password_or_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real zip, from inputs that do hold the secrets: a token in the settings (command line),
    the password in the environment the doctor's checks read, and logs with every kind of
    secret (lines from before redaction existed, a third-party handler ...)."""
    from tray_agent import diagnostics
    from tray_agent.cli import parse_args
    from tray_agent.platform.paths import Paths, load_settings_for, read_policy_sources

    token = (
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZ2VudC0xIiwiZW1haWwiOiJzYW1AeC55In0.ZGlhZy1zaWduYXR1cmUtc2VjcmV0"
    )
    password, cookie, refresh = (
        "doctor-pa55word-never-printed",
        "sess-9e8d7c6b5a4f3e2d1c",
        "rt-4f3e2d1c0b9a8f7e6d",
    )
    secrets = [password, cookie, refresh, token, *token.split(".")[1:]]
    base = tmp_path / "base"
    flags = ["--dialect", "org", "--server", "https://support.example", "--org", "org-1"]
    args = parse_args(["--basedir", str(base), *flags, "--email", "sam@example.com", "--token", token])
    monkeypatch.setenv("TRAY_AGENT_PASSWORD", password)  # what the doctor's checks read
    paths = Paths.from_platform(base, env={})
    paths.ensure_dirs()
    loaded = load_settings_for(paths, {"TRAY_AGENT_PASSWORD": password}, args)
    assert loaded.settings.connection.token.get_secret_value() == token  # the secret is in the input
    raw_log = (
        "2026-03-04 09:00:00 INFO tray_agent.app: Connection: connected\n"
        f'2026-03-04 09:00:01 DEBUG aiohttp.client: POST /auth/v1/token body={{"password": "{password}"}}\n'
        f"2026-03-04 09:00:02 DEBUG websockets.client: > GET /ws?token={token} HTTP/1.1\n"
        f"2026-03-04 09:00:03 DEBUG aiohttp.client: Cookie: session={cookie}; theme=dark\n"
        f"2026-03-04 09:00:04 DEBUG tray_agent.net.auth: Authorization: Bearer {token}\n"
        f'2026-03-04 09:00:05 DEBUG tray_agent.net.auth: refreshed {{"refresh_token": "{refresh}"}}\n'
        f"2026-03-04 09:00:06 WARNING tray_agent.net.client: https://sam:{password}@support.example/ failed\n"
    )
    (paths.log / "tray-agent.log").write_text(raw_log, encoding="utf-8")
    (paths.log / "tray-agent.log.1").write_text(f"old: token={token} password={password}\n", encoding="utf-8")

    target = tmp_path / "support.zip"
    inputs = diagnostics.DiagnosticsInput(
        loaded=loaded,
        log_dir=paths.log,
        policy_sources=[name for name, _source in read_policy_sources(paths)],
        versions=diagnostics.collect_versions("fake"),
        doctor=await diagnostics.local_checks(args),
    )
    names = diagnostics.write_diagnostics_zip(target, inputs)

    with zipfile.ZipFile(target) as archive:
        members = {name: archive.read(name).decode("utf-8") for name in archive.namelist()}
    assert set(names) >= {"logs/tray-agent.log", "logs/tray-agent.log.1", "settings.json", "doctor.json"}
    assert "Connection: connected" in members["logs/tray-agent.log"]  # the logs are in there ...
    assert len(members["logs/tray-agent.log"].splitlines()) == len(raw_log.splitlines())
    assert '"connection.server": "https://support.example"' in members["settings.json"]
    for name, text in members.items():  # ... and no secret is
        for secret in secrets:
            assert secret not in text, (name, secret)


# ------------------------------------------------------------------ TLS


@contextlib.asynccontextmanager
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[str, list[str]]]:
    """A self-signed HTTPS server on 127.0.0.1 port 0 that records every request it gets."""
    cert, key = self_signed_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    seen: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        return web.json_response({"message": "Login successful", "user": {"id": "u1"}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"https://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
@pytest.mark.parametrize("dialect", ["dashboard", "org"])
async def test_tls_verification_failure_is_reported_and_never_bypassed(tmp_path: Path, dialect: str) -> None:
    async with tls_server(tmp_path) as (url, seen):
        if dialect == "dashboard":
            settings = ConnectionSettings(
                dialect="dashboard", server=url, company="acme", email="a@acme.test"
            )
            auth: Any = DashboardAuthenticator(
                settings, FakeSecretStore(), SystemClock(), password="pw-never-sent", keepalive_interval=3600
            )
            codec: Any = DashboardCodec()
        else:
            settings = ConnectionSettings(
                dialect="org", server=url, org="o1", email="a@x.test", supabase_url=url, supabase_key="anon"
            )
            auth = OrgAuthenticator(settings, FakeSecretStore(), SystemClock(), password="pw-never-sent")
            codec = OrgCodec(org_id="o1")
        events = EventRecorder()
        client = Client(codec, auth, settings, events, SystemClock())
        task = client.start()
        try:
            failure = await events.wait_for(
                ConnectionChanged,
                lambda e: (
                    e.state in (ConnectionState.RECONNECTING, ConnectionState.AUTH_REQUIRED)
                    or "TLS" in e.detail
                    or "certificate" in e.detail
                ),
                within=WAIT,
            )
            # Retry once more: it must fail the same way, never fall back to no verification.
            await events.wait_for(
                ConnectionChanged,
                lambda e: e.state is ConnectionState.RECONNECTING,
                after=events.mark(),
                within=WAIT,
            )
        finally:
            await client.stop()
            await task
        details = " ".join(e.detail for e in events.of(ConnectionChanged))
        assert "TLS" in details or "certificate" in details, details
        assert failure.state is not ConnectionState.AUTH_REQUIRED
        states = events.states()
        assert ConnectionState.CONNECTED not in states
        assert ConnectionState.RESYNCING not in states
        assert ConnectionState.LIMITED not in states
        assert seen == []  # no request ever got past the handshake: the password never left
