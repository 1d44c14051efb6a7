"""TrayController: icon state and badge, tooltip, menu contents and actions, plain-text customer names."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from PySide6.QtGui import QAction, QImage
from PySide6.QtWidgets import QFileDialog, QMenu, QSystemTrayIcon
from pytestqt.qtbot import QtBot

from tests.gui.conftest import (
    NOW,
    FakeCommandSink,
    FakeNotifier,
    FakeSound,
    FakeWindowManager,
    SettableClock,
    close_awaitable,
    connected,
    escalation,
)
from tray_agent.core.commands import TakeOver
from tray_agent.core.events import ConnectionChanged, ConnectionState
from tray_agent.core.policy import AlertPolicy, TrayLevel
from tray_agent.core.settings import AlertSettings
from tray_agent.core.state import Store
from tray_agent.ui.bridge import StoreBridge
from tray_agent.ui.effects import EffectRunner
from tray_agent.ui.tray import (
    MENU_CUSTOMERS,
    IconState,
    TrayController,
    badge_text,
    diagnostics_file_name,
    icon_svg,
    menu_text,
    overlay_svg,
    render_icon_image,
    sla_overlay,
)

pytestmark = pytest.mark.gui


class Rig:
    def __init__(
        self,
        qtbot: QtBot,
        store: Store,
        clock: SettableClock,
        sink: FakeCommandSink,
        windows: FakeWindowManager | None,
        settings: AlertSettings,
    ) -> None:
        self.qtbot = qtbot
        self.store = store
        self.clock = clock
        self.sink = sink
        self.windows = windows
        self.bridge = StoreBridge(store)
        self.notifier = FakeNotifier()
        self.runner = EffectRunner(
            AlertPolicy(settings), self.notifier, FakeSound(), clock, settings, spawn=close_awaitable
        )
        self.bridge.conversations_changed.connect(  # as app.py
            lambda keys: self.runner.update_waiting(keys, self.bridge.state)
        )
        self.tray = TrayController(
            self.bridge, self.runner, sink, clock, windows=windows, tray_available=False
        )

    def dispatch(self, *events: object) -> None:
        with self.qtbot.waitSignal(self.bridge.flushed, timeout=1000):
            for event in events:
                self.runner.run(self.store.dispatch(event))  # type: ignore[arg-type]

    def menu(self) -> QMenu:
        self.tray.refresh_menu()
        return self.tray.menu

    def close(self) -> None:
        self.tray.hide()
        self.bridge.close()


@pytest.fixture
def make_rig(qtbot: QtBot, store: Store, clock: SettableClock, sink: FakeCommandSink) -> Iterator[object]:
    rigs: list[Rig] = []

    def make(windows: FakeWindowManager | None = None, settings: AlertSettings | None = None) -> Rig:
        rig = Rig(qtbot, store, clock, sink, windows, settings or AlertSettings())
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


@pytest.fixture
def rig(make_rig: object, windows: FakeWindowManager) -> Rig:
    return make_rig(windows)  # type: ignore[operator,no-any-return]


def texts(menu: QMenu) -> list[str]:
    return [a.text() for a in menu.actions() if not a.isSeparator()]


def find(menu: QMenu, name: str) -> QAction:
    for action in menu.actions():
        if action.objectName() == name:
            return action
    raise LookupError(f"{name} not in {[a.objectName() for a in menu.actions()]}")


def find_text(menu: QMenu, text: str) -> QAction:
    for action in menu.actions():
        if action.text() == text:
            return action
    raise LookupError(f"{text!r} not in {texts(menu)}")


@pytest.mark.parametrize(
    ("state", "icon"),
    [
        (ConnectionState.CONNECTED, IconState.CONNECTED),
        (ConnectionState.LIMITED, IconState.LIMITED),
        (ConnectionState.CONNECTING, IconState.CONNECTING),
        (ConnectionState.RECONNECTING, IconState.CONNECTING),
        (ConnectionState.RESYNCING, IconState.CONNECTING),
        (ConnectionState.OFFLINE, IconState.OFFLINE),
        (ConnectionState.AUTH_REQUIRED, IconState.AUTH),
    ],
)
def test_tray_icon_state_follows_connection(rig: Rig, state: ConnectionState, icon: IconState) -> None:
    rig.dispatch(connected())
    if state is not ConnectionState.CONNECTED:
        rig.dispatch(ConnectionChanged(state=state, detail="x"))
    assert rig.tray.icon_state is icon


def test_tray_icon_dnd_and_sla(rig: Rig, clock: SettableClock) -> None:
    shown: list[str] = []
    rig.tray.icon_changed.connect(shown.append)
    rig.dispatch(connected())
    rig.runner.set_dnd(clock.now() + timedelta(hours=1))
    assert rig.tray.icon_state is IconState.DND
    assert not rig.tray.sla_warning
    rig.dispatch(escalation("p/1", "Ann", minutes_ago=30))  # beyond the 10-minute SLA
    # Do-not-disturb stays visible; the breach is the warning mark on it (was: the SLA icon).
    assert rig.tray.icon_state is IconState.DND
    assert rig.tray.sla_warning
    assert shown[-1] == "dnd+sla:1"
    rig.runner.set_dnd(None)
    assert rig.tray.icon_state is IconState.SLA
    assert not rig.tray.sla_warning


def test_tray_icon_limited_with_and_without_sla(rig: Rig) -> None:
    rig.dispatch(connected(), ConnectionChanged(state=ConnectionState.LIMITED, detail="polling"))
    assert (rig.tray.icon_state, rig.tray.sla_warning) == (IconState.LIMITED, False)
    rig.dispatch(escalation("p/1", "Ann", minutes_ago=30))
    assert (rig.tray.icon_state, rig.tray.sla_warning) == (IconState.LIMITED, True)
    rig.dispatch(connected())
    assert (rig.tray.icon_state, rig.tray.sla_warning) == (IconState.SLA, False)


def test_tray_badge_counts_customers_waiting(rig: Rig, qtbot: QtBot) -> None:
    shown: list[str] = []
    rig.tray.icon_changed.connect(shown.append)
    rig.dispatch(connected(), escalation("p/1", "Ann"), escalation("p/2", "Bob"))
    assert rig.tray.badge == "2"
    assert shown[-1] == "connected:2"


def test_tray_badge_text_and_pixels(qapp: object) -> None:
    assert [badge_text(n) for n in (0, 1, 9, 10, 42, 100)] == ["", "1", "9", "9+", "9+", "9+"]
    svg = icon_svg(IconState.CONNECTED)
    plain, badged = render_icon_image(svg, 32), render_icon_image(svg, 32, "3")
    top_right = badged.pixelColor(29, 4)
    assert top_right.red() > 150  # the red badge
    assert top_right.green() < 120
    # The bottom-right state emblem is left alone.
    assert all(plain.pixel(x, y) == badged.pixel(x, y) for x in range(20, 32) for y in range(22, 32))


def test_tray_tooltip(rig: Rig, clock: SettableClock) -> None:
    rig.dispatch(connected(NOW), escalation("p/1", "Ann"), escalation("p/2", "Bob"))
    tooltip = rig.tray.tooltip
    assert "Connected" in tooltip
    assert "2 customers waiting" in tooltip
    assert "Last synced " + NOW.astimezone().strftime("%H:%M") in tooltip
    rig.dispatch(
        ConnectionChanged(state=ConnectionState.RECONNECTING, detail="server unreachable", retry_in=4)
    )
    assert "Reconnecting in 4 s (server unreachable)" in rig.tray.tooltip


def test_tray_menu_waiting_customers_oldest_first(rig: Rig) -> None:
    rig.dispatch(
        connected(),
        escalation("p/1", "Ann", minutes_ago=2),
        escalation("p/2", "Bob", minutes_ago=75),
        escalation("p/3", "Cy", minutes_ago=0.2),
    )
    items = [t for t in texts(rig.menu()) if " · " in t and "synced" not in t]
    assert items == [
        "Bob · 1 h 15 min · nobody has them",
        "Ann · 2 min · nobody has them",
        "Cy · <1 min · nobody has them",
    ]
    assert "Waiting customers (3)" in texts(rig.tray.menu)


def test_tray_menu_caps_the_list(rig: Rig, windows: FakeWindowManager) -> None:
    rig.dispatch(
        connected(), *(escalation(f"p/{i}", f"C{i}", minutes_ago=i + 1) for i in range(MENU_CUSTOMERS + 2))
    )
    menu = rig.menu()
    more = find(menu, "more")
    assert more.text() == "2 more…"
    more.trigger()
    assert windows.calls == [("show_inbox",)]


def test_tray_take_over_and_open(rig: Rig, sink: FakeCommandSink, windows: FakeWindowManager) -> None:
    rig.dispatch(connected(), escalation("p/1", "Ann"))
    sub = find(rig.menu(), "customer:p/1").menu()
    find(sub, "take_over").trigger()
    assert isinstance(sink.submitted[0], TakeOver)
    assert sink.submitted[0].conversation == "p/1"
    assert windows.calls == [("open_chat", "p/1")]
    # Re-fetch: the menu is rebuilt from the state on refresh.
    find(find(rig.menu(), "customer:p/1").menu(), "open").trigger()
    assert windows.calls[-1] == ("open_chat", "p/1")


def test_tray_open_inbox_settings_quit_and_left_click(
    rig: Rig, windows: FakeWindowManager, qtbot: QtBot
) -> None:
    rig.dispatch(connected())
    find_text(rig.menu(), "Open inbox").trigger()
    find_text(rig.menu(), "Settings…").trigger()
    rig.tray.tray_icon.activated.emit(QSystemTrayIcon.ActivationReason.Trigger)
    assert windows.calls == [("show_inbox",), ("show_settings",), ("show_inbox",)]
    with qtbot.waitSignal(rig.tray.quit_requested, timeout=1000):
        find_text(rig.menu(), "Quit").trigger()


def test_tray_dnd_entries(rig: Rig, clock: SettableClock) -> None:
    rig.dispatch(connected())
    dnd = find(rig.menu(), "dnd").menu()
    assert texts(dnd) == ["For 30 minutes", "For 1 hour", "Until tomorrow morning", "Off"]
    assert find(dnd, "dnd:off").isChecked()
    find(dnd, "dnd:30min").trigger()
    until = clock.now() + timedelta(minutes=30)
    assert rig.runner.dnd_until == until
    end = until.astimezone().strftime("%H:%M")
    menu = rig.menu()
    assert find(menu, "dnd").text() == f"Do not disturb until {end}"
    dnd = find(menu, "dnd").menu()
    assert find(dnd, "dnd:30min").isChecked()
    assert find(dnd, "dnd:30min").text() == f"For 30 minutes (until {end})"
    find(dnd, "dnd:off").trigger()
    assert rig.runner.dnd_until is None
    assert find(find(rig.menu(), "dnd").menu(), "dnd:off").isChecked()


def test_tray_mute_toggle_and_lock(make_rig: object, qtbot: QtBot, windows: FakeWindowManager) -> None:
    rig = make_rig(windows)  # type: ignore[operator]
    with qtbot.waitSignal(rig.tray.mute_toggled, timeout=1000) as blocker:
        find(rig.menu(), "mute").trigger()
    assert blocker.args == [True]


def test_tray_problems_and_sign_in(rig: Rig, windows: FakeWindowManager) -> None:
    rig.tray.set_problem("notifications", "no notification service on this desktop")
    rig.tray.set_problem("sounds", "no audio player found")
    rig.dispatch(connected(), ConnectionChanged(state=ConnectionState.AUTH_REQUIRED, detail="HTTP 401"))
    menu_texts = texts(rig.menu())
    assert "Notifications unavailable: no notification service on this desktop" in menu_texts
    assert "Sounds unavailable: no audio player found" in menu_texts
    find_text(rig.tray.menu, "Sign in…").trigger()
    assert windows.calls == [("show_sign_in", "HTTP 401")]


def test_tray_signed_in_elsewhere_says_so_and_offers_reconnect(rig: Rig, qtbot: QtBot) -> None:
    rig.dispatch(connected(), ConnectionChanged(state=ConnectionState.SIGNED_IN_ELSEWHERE))
    assert rig.tray.icon_state is IconState.OFFLINE  # no live updates: never the connected icon
    menu = rig.menu()
    assert texts(menu)[0].startswith("Signed in elsewhere (Reconnect now takes the live updates back)")
    with qtbot.waitSignal(rig.tray.reconnect_requested):
        find_text(menu, "Reconnect now").trigger()


def test_tray_without_windows_omits_window_items(make_rig: object) -> None:
    rig = make_rig(None)  # type: ignore[operator]
    rig.dispatch(connected(), escalation("p/1", "Ann"))
    menu_texts = texts(rig.menu())
    assert "Open inbox" not in menu_texts
    assert "Settings…" not in menu_texts
    assert texts(find(rig.tray.menu, "customer:p/1").menu()) == ["Take over"]


def test_tray_customer_name_is_plain_text(rig: Rig) -> None:
    name = "<b>Tom</b> & Jerry"
    rig.dispatch(connected(), escalation("p/1", name, minutes_ago=2))
    action = find(rig.menu(), "customer:p/1")
    assert action.text() == "<b>Tom</b> && Jerry · 2 min · nobody has them"
    assert menu_text("A & B\nC") == "A && B C"


def test_tray_no_tray_shows_status_window_once(
    rig: Rig, qtbot: QtBot, caplog: pytest.LogCaptureFixture
) -> None:
    rig.dispatch(connected(), escalation("p/1", "Ann"))
    rig.tray.show()
    rig.tray.show()
    window = rig.tray.status_window
    assert window is not None
    assert window.isVisible()
    qtbot.addWidget(window)
    assert window.state_text.startswith("Connected")
    assert window.badge_text == "1 customer waiting"
    assert caplog.text.count("No system tray") == 1


def test_tray_sign_out_item_asks_through_a_signal(rig: Rig, qtbot: QtBot) -> None:
    action = find(rig.menu(), "signOut")
    assert action.text() == "Sign out…"
    with qtbot.waitSignal(rig.tray.sign_out_requested):
        action.trigger()


def test_tray_without_windows_offers_no_sign_out(make_rig: object) -> None:
    rig = make_rig(None)  # type: ignore[operator]
    with pytest.raises(LookupError):
        find(rig.menu(), "signOut")
    assert find(rig.menu(), "exportDiagnostics").isEnabled()


def test_tray_export_diagnostics_suggests_a_dated_zip_and_emits_the_choice(
    rig: Rig, qtbot: QtBot, tmp_path: Path
) -> None:
    assert diagnostics_file_name(NOW) == f"tray-agent-diagnostics-{NOW.astimezone().date().isoformat()}.zip"
    find(rig.menu(), "exportDiagnostics").trigger()
    dialog = rig.tray.export_dialog
    assert dialog is not None
    assert dialog.acceptMode() is QFileDialog.AcceptMode.AcceptSave
    assert dialog.accessibleName() == "Export diagnostics"
    assert dialog.directory().absolutePath() == str(Path.home())
    assert [Path(f).name for f in dialog.selectedFiles()] == [diagnostics_file_name(NOW)]
    dialog.reject()
    qtbot.waitUntil(lambda: rig.tray.export_dialog is None)

    dialog = rig.tray.ask_export_diagnostics(tmp_path)
    target = tmp_path / "support.zip"
    with qtbot.waitSignal(rig.tray.diagnostics_export_requested) as blocker:
        dialog.fileSelected.emit(str(target))
    assert blocker.args == [str(target)]
    dialog.reject()


def test_tray_storage_problem_is_named_as_such(rig: Rig) -> None:
    rig.tray.set_problem("storage", "the disk is full")
    assert "Local storage problem: the disk is full" in texts(rig.menu())
    rig.tray.set_problem("storage", "")
    assert not any("storage" in t for t in texts(rig.menu()))


ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _drive_to(rig: Rig, clock: SettableClock, state: IconState) -> None:
    rig.dispatch(connected(), escalation("p/1", "Ann <b>Lee</b>", minutes_ago=2))
    if state is IconState.CONNECTING:
        rig.dispatch(
            ConnectionChanged(state=ConnectionState.RECONNECTING, detail="server unreachable", retry_in=8)
        )
    elif state is IconState.OFFLINE:
        rig.dispatch(ConnectionChanged(state=ConnectionState.OFFLINE, detail="stopped"))
    elif state is IconState.AUTH:
        rig.dispatch(ConnectionChanged(state=ConnectionState.AUTH_REQUIRED, detail="Invalid credentials"))
    elif state is IconState.DND:
        rig.runner.set_dnd(clock.now() + timedelta(hours=1))
    elif state is IconState.LIMITED:
        rig.dispatch(ConnectionChanged(state=ConnectionState.LIMITED, detail="polling"))
    elif state is IconState.SLA:
        rig.dispatch(escalation("p/2", "Budi", minutes_ago=45))  # beyond the 10-minute SLA


@pytest.mark.parametrize(
    "state",
    [
        IconState.CONNECTED,
        IconState.CONNECTING,
        IconState.OFFLINE,
        IconState.AUTH,
        IconState.DND,
        IconState.LIMITED,
        IconState.SLA,
    ],
)
def test_tray_icon_and_menu_screenshot_per_state(rig: Rig, clock: SettableClock, state: IconState) -> None:
    """Saves test-artifacts/tray-state-<state>.png (icon, badge and open menu) for review."""
    from PySide6.QtGui import QColor, QImage, QPainter

    _drive_to(rig, clock, state)
    assert rig.tray.icon_state is state
    menu = rig.menu()
    rig.tray.refresh_menu()
    menu.adjustSize()
    menu_image = menu.grab().toImage()
    icon_image = rig.tray.tray_icon.icon().pixmap(64, 64).toImage()
    assert not menu_image.isNull()
    assert not icon_image.isNull()
    sheet = QImage(
        icon_image.width() + menu_image.width() + 24,
        max(icon_image.height(), menu_image.height()) + 16,
        QImage.Format.Format_ARGB32,
    )
    sheet.fill(QColor("#808080"))  # mid grey: the icon must read on light and dark panels alike
    painter = QPainter(sheet)
    painter.drawImage(8, 8, icon_image)
    painter.drawImage(icon_image.width() + 16, 8, menu_image)
    painter.end()
    ARTIFACTS.mkdir(exist_ok=True)
    assert sheet.save(str(ARTIFACTS / f"tray-state-{state.value}.png"))
    assert any(
        "Ann <b>Lee</b>" in text
        for text in texts(menu) + [a.text() for m in menu.findChildren(QMenu) for a in m.actions()]
    )


def test_tray_offers_sign_in_when_offline_without_an_account(rig: Rig, windows: FakeWindowManager) -> None:
    # No configuration and the sign-in was cancelled: the app is OFFLINE with no client.
    assert rig.bridge.state.connection.state is ConnectionState.OFFLINE
    menu = rig.menu()
    assert "Sign in…" in texts(menu)
    find(menu, "signIn").trigger()
    assert windows.calls == [("show_sign_in", "")]


def test_tray_has_no_sign_in_item_while_connected(rig: Rig) -> None:
    rig.dispatch(connected())
    assert "Sign in…" not in texts(rig.menu())


def _icon_sheet(images: list[QImage], scale: int = 4) -> QImage:
    """The images side by side on a light and a dark panel strip, scaled up for review."""
    from PySide6.QtGui import QColor, QPainter

    cell = max(image.width() for image in images) + 4
    sheet = QImage(cell * len(images) * scale, cell * 2 * scale, QImage.Format.Format_ARGB32)
    sheet.fill(QColor("#f0f0f0"))
    painter = QPainter(sheet)
    painter.fillRect(0, cell * scale, sheet.width(), cell * scale, QColor("#2b2b2b"))
    for row in range(2):
        for index, image in enumerate(images):
            scaled = image.scaled(image.width() * scale, image.height() * scale)
            painter.drawImage(index * cell * scale + 2 * scale, row * cell * scale + 2 * scale, scaled)
    painter.end()
    return sheet


def test_tray_icon_states_with_sla_and_badge_render_at_22_px(qapp: object) -> None:
    """Saves test-artifacts/tray-icons-22px.png: every state, DND/limited with the SLA mark, "9+"."""
    size = 22
    images = {}
    for state in IconState:
        images[f"{state}"] = render_icon_image(icon_svg(state), size, "9+")
    for state in (IconState.DND, IconState.LIMITED):
        images[f"{state}+sla"] = render_icon_image(icon_svg(state), size, "9+", overlay_svg())
    for state in (IconState.DND, IconState.LIMITED):
        assert sla_overlay(state, TrayLevel.SLA_BREACHED)
        # The SLA mark changes the icon, keeps the state's emblem and the badge untouched.
        plain, marked = images[f"{state}"], images[f"{state}+sla"]
        assert any(plain.pixel(x, y) != marked.pixel(x, y) for x in range(0, 8) for y in range(14, 22))
        assert all(plain.pixel(x, y) == marked.pixel(x, y) for x in range(14, 22) for y in range(14, 22))
    assert not sla_overlay(IconState.CONNECTED, TrayLevel.SLA_BREACHED)
    # LIMITED and DND have emblems of their own.
    emblem = {
        name: [image.pixel(x, y) for x in range(14, 22) for y in range(14, 22)]
        for name, image in images.items()
    }
    assert emblem["limited"] != emblem["connected"]
    assert emblem["dnd"] != emblem["connected"]
    assert emblem["limited"] != emblem["dnd"]
    ARTIFACTS.mkdir(exist_ok=True)
    assert _icon_sheet(list(images.values())).save(str(ARTIFACTS / "tray-icons-22px.png"))


def test_tray_badge_over_nine_is_legible_at_22_px(qapp: object) -> None:
    """Saves test-artifacts/tray-badge-22px.png; "9+" stays inside the icon, white on red."""
    from PySide6.QtGui import QColor

    svg = icon_svg(IconState.CONNECTED)
    image = render_icon_image(svg, 22, badge_text(12))
    plain = render_icon_image(svg, 22)
    changed = [(x, y) for x in range(22) for y in range(22) if image.pixel(x, y) != plain.pixel(x, y)]
    xs, ys = [x for x, _ in changed], [y for _, y in changed]
    assert min(ys) == 0
    assert max(ys) <= 13  # the top half: the bottom-right emblem stays visible
    assert max(xs) - min(xs) + 1 >= 11  # wide enough for two glyphs
    white = sum(QColor(image.pixel(x, y)).lightness() > 200 for x, y in changed if 2 < y < 10)
    assert white >= 12  # the glyphs have ink (not a red blob)
    ARTIFACTS.mkdir(exist_ok=True)
    sheet = _icon_sheet([image, render_icon_image(svg, 22, "3"), render_icon_image(svg, 16, "9+")], 8)
    assert sheet.save(str(ARTIFACTS / "tray-badge-22px.png"))


def _tray(rig: Rig, **kwargs: object) -> TrayController:
    tray = TrayController(
        rig.bridge, rig.runner, rig.sink, rig.clock, windows=rig.windows, tray_available=False, **kwargs
    )
    rig.qtbot.addWidget(tray.menu)
    return tray


def test_tray_policy_can_forbid_dnd(make_rig: object) -> None:
    rig = make_rig(FakeWindowManager())  # type: ignore[operator]
    tray = _tray(rig, dnd_allowed=False)
    tray.refresh_menu()
    assert "dnd" not in [a.objectName() for a in tray.menu.actions()]
    assert not any(t.startswith("Do not disturb") for t in texts(tray.menu))
    tray.set_dnd_allowed(True)
    find(find(tray.menu, "dnd").menu(), "dnd:30min").trigger()
    assert rig.runner.dnd_until == rig.clock.now() + timedelta(minutes=30)
    tray.set_dnd_allowed(False)  # the policy arrives later (settings reloaded): DND ends
    assert rig.runner.dnd_until is None
    assert "dnd" not in [a.objectName() for a in tray.menu.actions()]
    tray.hide()
