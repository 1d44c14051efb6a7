"""The connection state machine without sockets: backoff, heartbeat, auth, limited mode, stop, redirects."""

from __future__ import annotations

import pytest

from tray_agent.core.events import ConnectionState
from tray_agent.net.connection import (
    Backoff,
    Block,
    ConnectionMachine,
    ConnectNow,
    DropSocket,
    EmitState,
    Ended,
    Ending,
    Finish,
    FollowRedirect,
    MachineTimings,
    Phase,
    PollRest,
    ProbeRest,
    RenewCredentials,
    SendPing,
    WaitBackoff,
    WaitForAgent,
)

TIMINGS = MachineTimings(
    heartbeat_interval=25.0,
    heartbeat_timeout=10.0,
    stable_after=60.0,
    early_drop_window=60.0,
    limited_after=3,
)


def _machine(rng: float = 0.5) -> ConnectionMachine:
    return ConnectionMachine(TIMINGS, Backoff(1.0, 60.0, rng=lambda: rng))


def _states(actions: list[object]) -> list[ConnectionState]:
    return [a.state for a in actions if isinstance(a, EmitState)]


def _live(machine: ConnectionMachine, now: float = 0.0) -> None:
    machine.attempt_started()
    machine.opened(now)
    machine.resynced()


# -- the happy path and dedupe ----------------------------------------------------------------------


def test_connection_connects_resyncs_then_is_live() -> None:
    machine = _machine()
    assert _states(machine.attempt_started()) == [ConnectionState.CONNECTING]
    assert machine.phase is Phase.CONNECTING
    assert not machine.live
    assert _states(machine.opened(0.0)) == [ConnectionState.RESYNCING]
    assert not machine.live  # deltas are not trusted before the first resync
    assert _states(machine.resynced()) == [ConnectionState.CONNECTED]
    assert machine.phase is Phase.LIVE
    assert machine.live
    assert machine.resynced() == []  # a periodic resync changes nothing


def test_connection_emits_a_state_only_when_it_changes() -> None:
    machine = _machine()
    machine.attempt_started()
    assert machine.attempt_started() == []
    assert machine.emit(ConnectionState.CONNECTING) == []
    assert machine.emit(ConnectionState.CONNECTING, "why") == [EmitState(ConnectionState.CONNECTING, "why")]


# -- backoff and the early drop ---------------------------------------------------------------------


def test_connection_failures_back_off_with_growing_jitter() -> None:
    machine = _machine(rng=0.5)
    delays = []
    for _ in range(4):
        machine.attempt_started()
        actions = machine.ended(Ended(Ending.FAILED, "server unreachable"))
        (wait,) = [a for a in actions if isinstance(a, WaitBackoff)]
        assert actions[0] == EmitState(ConnectionState.RECONNECTING, "server unreachable", wait.delay)
        assert machine.phase is Phase.BACKOFF
        delays.append(wait.delay)
    assert delays == [0.5, 1.0, 2.0, 4.0]


def test_connection_a_stable_connection_resets_the_backoff() -> None:
    machine = _machine(rng=0.5)
    machine.attempt_started()
    machine.ended(Ended(Ending.FAILED, "x"))
    machine.attempt_started()
    machine.ended(Ended(Ending.FAILED, "x"))
    _live(machine)
    actions = machine.ended(Ended(Ending.FAILED, "connection lost", lived=61.0))
    assert WaitBackoff(0.5) in actions


def test_connection_one_early_drop_after_a_failure_is_retried_at_once() -> None:
    machine = _machine()
    _live(machine)
    first = machine.ended(Ended(Ending.FAILED, "connection lost", lived=120.0))
    assert any(isinstance(a, WaitBackoff) for a in first)
    _live(machine)
    again = machine.ended(Ended(Ending.FAILED, "closed by the server (1000)", lived=2.0))
    assert again == [EmitState(ConnectionState.CONNECTING, "closed by the server (1000)"), ConnectNow()]
    _live(machine)
    third = machine.ended(Ended(Ending.FAILED, "closed by the server (1000)", lived=2.0))
    assert any(isinstance(a, WaitBackoff) for a in third)  # only once


def test_connection_reconnect_request_drops_the_socket_and_connects_without_backoff() -> None:
    machine = _machine()
    machine.attempt_started()
    machine.ended(Ended(Ending.FAILED, "x"))
    assert machine.backoff.attempts == 1
    assert machine.reconnect_requested() == [DropSocket("reconnect requested")]
    assert machine.reconnect_pending
    assert machine.backoff.attempts == 0
    _live(machine)
    assert not machine.reconnect_pending  # the attempt consumed it
    machine.reconnect_requested()
    actions = machine.ended(Ended(Ending.FAILED, "reconnect requested", lived=3.0))
    assert actions == [EmitState(ConnectionState.CONNECTING, "reconnecting now"), ConnectNow()]


# -- heartbeat --------------------------------------------------------------------------------------


def test_connection_heartbeat_pings_and_drops_a_silent_socket() -> None:
    machine = _machine()
    _live(machine, now=100.0)
    assert machine.heartbeat_deadline() == 125.0
    assert machine.tick(110.0) == []
    assert machine.tick(125.0) == [SendPing()]
    assert machine.heartbeat_deadline() == 135.0  # the answer is due before the next ping
    assert machine.tick(134.0) == []
    assert machine.tick(135.0) == [DropSocket("no answer to the heartbeat")]


def test_connection_heartbeat_keeps_a_socket_that_answers() -> None:
    machine = _machine()
    _live(machine, now=0.0)
    assert machine.tick(25.0) == [SendPing()]
    machine.frame_received(27.0)
    assert machine.tick(35.0) == []
    assert machine.ping_sent is None
    assert machine.tick(50.0) == [SendPing()]


# -- credentials --------------------------------------------------------------------------------------


def test_connection_auth_refused_renews_once_then_requires_sign_in() -> None:
    machine = _machine()
    machine.attempt_started()
    assert machine.handshake_refused(500) is None
    first = machine.handshake_refused(403)
    assert first == Ended(Ending.RETRY_NOW, "HTTP 403: signing in again")
    assert machine.auth_retry_started() == [RenewCredentials()]
    assert machine.ended(first) == [
        EmitState(ConnectionState.CONNECTING, "HTTP 403: signing in again"),
        ConnectNow(),
    ]
    machine.attempt_started()
    second = machine.handshake_refused(403)
    assert second is not None
    assert second.end is Ending.AUTH_REQUIRED
    actions = machine.ended(second)
    assert actions == [EmitState(ConnectionState.AUTH_REQUIRED, second.detail), WaitForAgent()]
    assert machine.phase is Phase.BLOCKED
    assert machine.block is Block.AUTH
    machine.reconnect_requested()
    assert not machine.unblocked()  # "Reconnect now" does not retry refused credentials
    machine.reauthenticate()
    assert machine.unblocked()
    assert machine.phase is Phase.CONNECTING
    machine.attempt_started()
    assert machine.handshake_refused(401) == Ended(Ending.RETRY_NOW, "HTTP 401: signing in again")


def test_connection_an_open_socket_restores_the_one_renewal() -> None:
    machine = _machine()
    machine.attempt_started()
    machine.handshake_refused(401)
    machine.opened(0.0)
    assert machine.handshake_refused(401) == Ended(Ending.RETRY_NOW, "HTTP 401: signing in again")


def test_connection_bad_settings_block_offline() -> None:
    machine = _machine()
    machine.attempt_started()
    actions = machine.ended(Ended(Ending.CONFIG, "The organization id is missing in the settings."))
    assert _states(actions) == [ConnectionState.OFFLINE]
    assert machine.block is Block.CONFIG
    assert not machine.unblocked()


# -- limited mode -------------------------------------------------------------------------------------


def test_connection_limited_mode_entry_after_repeated_failures_and_exit_on_a_socket() -> None:
    machine = _machine()
    for _ in range(2):
        machine.attempt_started()
        assert machine.handshake_failed(refused=False) == []
        machine.ended(Ended(Ending.FAILED, "server unreachable"))
    machine.attempt_started()
    assert machine.handshake_failed(refused=False) == [ProbeRest()]
    # REST answers although the socket did not even connect: one more socket try first.
    retry = machine.probe_answered(answers=True, refused=False, detail="timed out")
    assert retry == Ended(Ending.RETRY_NOW, "the server answers again")
    machine.ended(retry)
    machine.attempt_started()
    assert machine.handshake_failed(refused=False) == [ProbeRest()]
    limited = machine.probe_answered(answers=True, refused=False, detail="timed out")
    assert limited == Ended(Ending.LIMITED, "timed out")
    actions = machine.limited_entered("timed out", 10.0)
    assert actions == [
        EmitState(ConnectionState.LIMITED, "WebSocket blocked (timed out); polling every 10 s")
    ]
    assert machine.live
    assert machine.phase is Phase.LIMITED
    # Time to try the socket again: no state change while trying, back to polling on failure.
    machine.limited_left()
    assert machine.ended(Ended(Ending.PROBE_WS)) == [ConnectNow()]
    assert machine.attempt_started() == []
    assert machine.handshake_failed(refused=False) == [ProbeRest()]
    assert machine.probe_answered(answers=True, refused=False, detail="x").end is Ending.LIMITED
    # The socket works again: limited mode ends.
    assert _states(machine.opened(0.0)) == [ConnectionState.RESYNCING]
    assert not machine.limited


def test_connection_an_upgrade_refusal_probes_rest_at_once() -> None:
    machine = _machine()
    machine.attempt_started()
    assert machine.handshake_failed(refused=True) == [ProbeRest()]
    assert machine.probe_answered(answers=True, refused=True, detail="HTTP 426").end is Ending.LIMITED


def test_connection_silent_rest_leaves_limited_mode_for_backoff() -> None:
    machine = _machine()
    machine.limited_entered("x", 10.0)
    machine.limited_left()
    machine.attempt_started()
    machine.handshake_failed(refused=False)
    assert machine.probe_answered(answers=False, refused=False, detail="down") == Ended(Ending.FAILED, "down")
    assert not machine.limited


# -- one socket per user --------------------------------------------------------------------------------


def test_connection_displaced_blocks_as_signed_in_elsewhere_until_reconnect_now() -> None:
    machine = _machine()
    _live(machine)
    actions = machine.ended(Ended(Ending.DISPLACED, "closed by the server (1005)", lived=30.0))
    assert actions == [EmitState(ConnectionState.SIGNED_IN_ELSEWHERE, ""), WaitForAgent()]
    assert machine.block is Block.ELSEWHERE
    assert not machine.unblocked()
    assert machine.reconnect_requested(automatic=True) == []  # a network change leaves it alone
    assert not machine.unblocked()
    machine.reconnect_requested()
    assert machine.unblocked()
    assert _states(machine.attempt_started()) == [ConnectionState.CONNECTING]


def test_connection_displaced_right_after_our_own_drop_is_the_stale_socket_retried_at_once() -> None:
    machine = _machine()
    _live(machine)
    machine.ended(Ended(Ending.FAILED, "connection lost", lived=120.0))
    _live(machine)
    actions = machine.ended(Ended(Ending.DISPLACED, "closed by the server (1005)", lived=1.0))
    assert actions[-1] == ConnectNow()  # G4: our old socket's cleanup, not another client
    _live(machine)
    actions = machine.ended(Ended(Ending.DISPLACED, "closed by the server (1005)", lived=1.0))
    assert _states(actions) == [ConnectionState.SIGNED_IN_ELSEWHERE]


# -- stop ---------------------------------------------------------------------------------------------


def _in_phase(phase: Phase) -> ConnectionMachine:
    machine = _machine()
    if phase is Phase.IDLE:
        return machine
    machine.attempt_started()
    if phase is Phase.RESYNCING:
        machine.opened(0.0)
    elif phase is Phase.LIVE:
        machine.opened(0.0)
        machine.resynced()
    elif phase is Phase.LIMITED:
        machine.limited_entered("x", 10.0)
    elif phase is Phase.BACKOFF:
        machine.ended(Ended(Ending.FAILED, "x"))
    elif phase is Phase.BLOCKED:
        machine.ended(Ended(Ending.AUTH_REQUIRED, "refused"))
    assert machine.phase is phase
    return machine


@pytest.mark.parametrize(
    "phase",
    [Phase.IDLE, Phase.CONNECTING, Phase.RESYNCING, Phase.LIVE, Phase.LIMITED, Phase.BACKOFF, Phase.BLOCKED],
)
def test_connection_stop_in_every_phase_drops_the_socket_and_finishes(phase: Phase) -> None:
    machine = _in_phase(phase)
    assert machine.stop() == [DropSocket("stopping")]
    assert machine.stopping
    for end in Ending:
        assert machine.ended(Ended(end, "whatever", lived=1.0)) == [Finish()]
    assert machine.reconnect_requested() == []
    assert machine.stopped(requested=True) == [EmitState(ConnectionState.OFFLINE, "stopped")]
    assert machine.phase is Phase.STOPPED
    assert not machine.live


# -- redirects ----------------------------------------------------------------------------------------


def test_connection_follows_a_same_host_upgrade_redirect_once() -> None:
    machine = _machine()
    url = "ws://crm.example.com/api/dashboard/ws"
    follow = machine.handshake_redirected(301, url, "https://crm.example.com/api/dashboard/ws")
    assert follow == FollowRedirect("wss://crm.example.com/api/dashboard/ws")
    assert machine.handshake_redirected(301, url, "https://crm.example.com/api/dashboard/ws") is None
    machine.attempt_started()  # the next attempt may follow one again
    assert machine.handshake_redirected(301, url, "https://crm.example.com/api/dashboard/ws") == follow
    machine.attempt_started()
    org = "ws://crm.example.com:8000/ws/o1?token=a.b.c"
    assert machine.handshake_redirected(307, org, "wss://crm.example.com:8443/ws/o1") == FollowRedirect(
        "wss://crm.example.com:8443/ws/o1?token=a.b.c"
    )


@pytest.mark.parametrize(
    ("status", "location"),
    [
        (302, "http://portal.example.net/login"),  # captive portal
        (302, "https://portal.example.net/api/dashboard/ws"),  # another host
        (301, "https://crm.example.com/elsewhere"),  # another path
        (301, "/relative"),
        (301, ""),
        (200, "https://crm.example.com/api/dashboard/ws"),
    ],
)
def test_connection_never_follows_other_redirects(status: int, location: str) -> None:
    machine = _machine()
    assert machine.handshake_redirected(status, "ws://crm.example.com/api/dashboard/ws", location) is None


def test_connection_never_follows_a_redirect_away_from_wss() -> None:
    machine = _machine()
    assert machine.handshake_redirected(301, "wss://h/ws", "https://h/ws") is None


# -- credentials refused over REST ------------------------------------------------------------------


def test_connection_rest_refusal_after_renewal_requires_sign_in_at_once() -> None:
    machine = _machine()
    _live(machine)
    assert machine.credentials_refused("HTTP 401") == [DropSocket("HTTP 401")]
    assert machine.refused
    assert machine.credentials_refused("again") == []  # one is enough
    actions = machine.ended(Ended(Ending.FAILED, "HTTP 401", lived=3.0))
    assert actions == [EmitState(ConnectionState.AUTH_REQUIRED, "HTTP 401"), WaitForAgent()]
    assert machine.block is Block.AUTH
    assert machine.credentials_refused("late answer") == []  # already waiting for the agent
    machine.reauthenticate()
    assert machine.unblocked()
    assert not machine.refused


def test_connection_limited_mode_polls_on_a_rhythm_and_retries_the_socket() -> None:
    machine = _machine()
    machine.limited_entered("blocked", 100.0)
    assert machine.limited_tick(100.0) == PollRest()  # the first poll at once
    assert machine.poll_done(100.5) is None
    assert machine.limited_tick(105.0) is None
    assert machine.limited_deadline() == 110.5
    assert machine.limited_tick(110.5) == PollRest()
    # Failed polls back off (capped), five in a row give up.
    assert machine.poll_done(111.0, "HTTP 502") is None
    assert machine.limited_deadline() == 131.0  # 10 * 2**1
    for _ in range(3):
        assert machine.poll_done(140.0, "HTTP 502") is None
    assert machine.limited_deadline() == 200.0  # capped at backoff_max (60)
    assert machine.poll_done(200.0, "HTTP 502") == Ended(Ending.FAILED, "polling failed: HTTP 502")
    # Every ws_retry_interval the socket is tried again; a failed retry keeps the poll rhythm.
    machine = _machine()
    machine.limited_entered("blocked", 0.0)
    machine.poll_done(0.0)
    assert machine.limited_tick(180.0) == Ended(Ending.PROBE_WS)
    machine.limited_left()
    machine.limited_entered("blocked", 181.0)
    assert machine.limited_tick(181.0) == PollRest()  # next_poll (10.0) already passed
    machine.poll_done(181.0)
    assert machine.limited_deadline() == 191.0
    machine.reconnect_requested()
    assert machine.limited_tick(182.0) == Ended(Ending.PROBE_WS)


def test_connection_an_unusable_client_is_offline_for_good() -> None:
    machine = _machine()
    assert machine.unusable("The CA bundle x cannot be used") == [
        EmitState(ConnectionState.OFFLINE, "The CA bundle x cannot be used")
    ]
    assert machine.phase is Phase.STOPPED


# -- backoff --------------------------------------------------------------------------------------


def test_backoff_full_jitter_doubles_up_to_the_cap() -> None:
    backoff = Backoff(1.0, 60.0, rng=lambda: 0.999999)
    ceilings = [round(backoff.next_delay()) for _ in range(9)]
    assert ceilings == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    backoff.reset()
    assert round(backoff.next_delay()) == 1


def test_backoff_delay_is_uniform_below_the_ceiling() -> None:
    values = iter([0.0, 0.5, 0.25])
    backoff = Backoff(1.0, 60.0, rng=lambda: next(values))
    assert [backoff.next_delay() for _ in range(3)] == [0.0, 1.0, 1.0]


def test_backoff_never_overflows() -> None:
    backoff = Backoff(1.0, 60.0, rng=lambda: 1.0)
    backoff.attempts = 10_000
    assert backoff.next_delay() == 60.0
