"""The client's REST side: its HTTP session, authenticated calls, and commands carried out over HTTP.

:class:`Rest` owns the HTTP client (:class:`~tray_agent.net.http.HttpClient`) of one client. It
performs calls with the current credentials (renewed once on a 401), starts the HTTP commands the
send loop hands it (a reply over REST, the HTTP steps of a
:class:`~tray_agent.core.protocol.base.Plan`, every command in limited mode) and settles them
through the client when their answer comes.

Decisions:

* **REST refusals**: a REST call still refused after renewing the credentials once (401, or the
  re-login refused) ends the connection in AUTH_REQUIRED at once (``credentials_refused``).
* **HTTP calls in flight at a disconnect** are left to finish (their answer is still valid);
  internal resync calls are abandoned (:meth:`Rest.cancel_internal`).
* **Limited mode**: take-overs and releases the dialect cannot express over REST fail OFFLINE with
  words saying why; a reply assigns the customer anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Sequence

from tray_agent.core.commands import Command, failed
from tray_agent.core.events import (
    CommandFailed,
    CommandKind,
    CommandSucceeded,
    Event,
    FailureReason,
    ServerAcked,
    ServerRejected,
    WaitingListPage,
)
from tray_agent.core.ports import Clock
from tray_agent.core.protocol.base import DialectCodec, EncodeError, HttpCall, Outbound, Plan
from tray_agent.core.settings import ConnectionSettings
from tray_agent.net.auth import (
    Authenticator,
    AuthError,
    AuthRefused,
    Credentials,
    TlsError,
    classify_network_error,
)
from tray_agent.net.config import Timings, http_base
from tray_agent.net.http import ConnectError, FormField, HttpClient, HttpError
from tray_agent.net.outbox import HELD, Held, Outbox
from tray_agent.net.polling import PollError, rest_call
from tray_agent.net.resync import LiveChanges, stamped
from tray_agent.net.tracker import Outcome, PendingCommand, Transport

logger = logging.getLogger(__name__)


class Rest:
    """The REST side of one client.

    Args:
        codec: the dialect codec (REST forms of commands, parsing of answers).
        authenticator: credentials for each call; renewed once on a 401.
        settings: server, proxy.
        timings: ``http_timeout`` bounds each request.
        outbox: the commands (tracker) and their rows in the store.
        clock: monotonic time, when a command is marked sent.
        settle: the client's settling of an outcome (emits it, or advances the resync).
        emit: the client's emit, for the other events of an answer.
        wake: wakes the client's send loop.
        credentials_refused: the server refused the renewed credentials (AUTH_REQUIRED); gets
            the words why.
    """

    def __init__(
        self,
        codec: DialectCodec,
        authenticator: Authenticator,
        settings: ConnectionSettings,
        timings: Timings,
        outbox: Outbox,
        clock: Clock,
        *,
        settle: Callable[[Outcome], None],
        emit: Callable[[Event], None],
        wake: Callable[[], None],
        credentials_refused: Callable[[str], None],
        live: LiveChanges,
    ) -> None:
        self._codec = codec
        self._auth = authenticator
        self._settings = settings
        self._t = timings
        self._outbox = outbox
        self._tracker = outbox.tracker
        self._clock = clock
        self._settle = settle
        self._emit = emit
        self._wake = wake
        self._credentials_refused = credentials_refused
        self._live = live
        self.session: HttpClient | None = None
        """The HTTP client (sign-in, keepalive, every call); set between :meth:`open` and :meth:`close`."""
        self.tasks: dict[asyncio.Task[None], PendingCommand] = {}
        """The HTTP commands running, with their command."""

    def open(self, ssl_context: ssl.SSLContext) -> HttpClient:
        """Create the HTTP client (no cookie jar; the environment's proxy unless one is set)."""
        self.session = HttpClient(ssl_context, trust_env=not self._settings.proxy)
        return self.session

    async def close(self) -> None:
        """Close the HTTP client: its kept-alive connections, requests in flight (errors are ignored)."""
        if self.session is not None:
            with contextlib.suppress(Exception):
                await self.session.close()
            self.session = None

    def cancel_internal(self) -> None:
        """The socket dropped: abandon the internal (resync) calls; the agent's may finish."""
        for task, pending in list(self.tasks.items()):
            if pending.internal:
                task.cancel()

    # -- sending ---------------------------------------------------------------------------------

    def flush(self) -> None:
        """Send what the outbox allows, each command as its REST call (limited mode)."""
        now = self._clock.monotonic()
        self._outbox.retry_store(now)
        batch = self._tracker.take_sendable(live=True, now=now)
        for index, pending in enumerate(batch):
            try:
                call = self.due_step(pending, self.form(pending.command))
                if call is None:
                    continue
                if isinstance(call, Held):
                    self._outbox.hold(pending, batch[index + 1 :])
                    return
                if not isinstance(call, HttpCall):
                    raise EncodeError(
                        FailureReason.INVALID, f"no REST form for {type(pending.command).__name__}"
                    )
            except EncodeError as exc:
                if pending.kind in (CommandKind.TAKE_OVER, CommandKind.RELEASE):
                    text = (
                        "not possible in limited mode (this network blocks the live connection); "
                        "a reply assigns the customer to you"
                    )
                    self._settle(self._tracker.fail(pending, FailureReason.OFFLINE, text))
                else:
                    self._settle(self._tracker.fail(pending, exc.reason, exc.text))
                continue
            if not self._outbox.mark_sent(pending.command):
                self._outbox.hold(pending, batch[index + 1 :])
                return
            self.start(pending, call)
            self._outbox.announce_sent(pending)

    def form(self, command: Command) -> HttpCall | Plan:
        """``command`` without a WebSocket: its REST call, or a Plan made only of HTTP steps.

        Raises:
            EncodeError: the dialect has no REST form for it.
        """
        try:
            return rest_call(self._codec, command)
        except EncodeError:
            out = self._codec.encode(command)
            if isinstance(out, Plan) and all(isinstance(step, HttpCall) for step in out.steps):
                return out
            raise

    def due_step(self, pending: PendingCommand, outbound: Outbound | Plan) -> Outbound | Held | None:
        """The step of ``outbound`` to carry out now, or None when a Plan's HTTP step was started.

        :data:`~tray_agent.net.outbox.HELD` when the store could not record that the command goes
        out (see :meth:`Outbox.hold`).

        A Plan's steps run one at a time: a preparatory step's answer puts the command back at
        the front of the outbox with ``step`` advanced (see :meth:`_command`).

        Raises:
            EncodeError: a Plan whose preparatory step is not an HTTP call.
        """
        if not isinstance(outbound, Plan):
            return outbound
        steps = outbound.steps
        index = min(pending.step, len(steps) - 1)
        step = steps[index]
        if index == len(steps) - 1:
            return step
        if not isinstance(step, HttpCall):
            raise EncodeError(FailureReason.INVALID, "only the last step of a plan may be a socket frame")
        first = pending.step == 0
        if first and not self._outbox.mark_sent(pending.command):
            return HELD  # the store cannot record it: not one step goes out
        self.start(pending, step, index)
        if first:
            self._outbox.announce_sent(pending)
        return None

    def start(self, pending: PendingCommand, call: HttpCall, step: int | None = None) -> None:
        """Mark a command sent (in memory; the store already says so) and start its HTTP call.

        ``step``: the index of a Plan's preparatory step this call is (None: the command's call).
        """
        self._tracker.mark_sent(pending, Transport.HTTP, self._clock.monotonic())
        task = asyncio.ensure_future(self._command(pending, call, step))
        self.tasks[task] = pending
        task.add_done_callback(self.tasks.pop)

    # -- answers ---------------------------------------------------------------------------------

    async def _command(self, pending: PendingCommand, call: HttpCall, step: int | None = None) -> None:
        """Carry out one HTTP command (or a Plan's step) and settle it. Cancellation: UNCONFIRMED."""
        command = pending.command
        try:
            (status, body), changed = await self._live.read(self.call(call))
        except asyncio.CancelledError:
            if not pending.internal and pending in self._tracker.outstanding:
                self._settle(self._tracker.fail(pending, FailureReason.UNCONFIRMED, "cancelled"))
            raise
        except AuthRefused as exc:
            self._settle(self._tracker.fail(pending, FailureReason.ACCESS_DENIED, exc.text))
            self._credentials_refused(exc.text)
            return
        except (AuthError, HttpError, OSError, TimeoutError) as exc:
            self._settle(self._failure(pending, exc))
            return
        if status == 401:  # even after renewing the credentials (see call)
            logger.warning("%s %s: the server refused the renewed credentials", call.method, call.path)
            self._credentials_refused("the server refused the credentials (HTTP 401)")
        if step is not None:
            self._step_answered(pending, step, status, body)
            return
        events = stamped(self._codec.parse_response(command, status, body), changed)
        outcome = self._tracker.answered(pending, events, status)
        for event in events:
            if isinstance(event, WaitingListPage):
                pending.page = event  # before the outcome: the resync step reads it
        for event in events:
            if event is outcome.event:
                self._settle(outcome)
            elif isinstance(event, ServerAcked | ServerRejected):
                continue
            else:
                self._emit(event)
        if outcome.event not in events:
            self._settle(outcome)
        self._wake()

    def _step_answered(self, pending: PendingCommand, step: int, status: int, body: bytes) -> None:
        """A Plan's preparatory step answered: end the command on failure, else queue the next step."""
        command = pending.command
        events = self._codec.parse_step(command, step, status, body)
        refusal = next(
            (e for e in events if isinstance(e, CommandFailed) and e.command_id == command.command_id), None
        )
        if refusal is None and not 200 <= status < 300:
            refusal = failed(command, FailureReason.SERVER_ERROR, f"HTTP {status}")
        if refusal is not None:
            self._settle(self._tracker.answered(pending, (refusal,), status))
        for event in events:
            if event is not refusal and not isinstance(event, CommandSucceeded | CommandFailed):
                self._emit(event)
        if refusal is None:
            self._tracker.unsend(pending)  # back to the front of the outbox for its next step
            pending.step = step + 1
        self._wake()

    def _failure(self, pending: PendingCommand, exc: BaseException) -> Outcome:
        if isinstance(exc, TimeoutError):
            return self._tracker.fail(
                pending, FailureReason.TIMEOUT, f"no answer from the server within {self._t.http_timeout:g} s"
            )
        error = exc if isinstance(exc, AuthError) else classify_network_error(exc, "request")
        logger.info(
            "%s %s failed: %s", type(pending.command).__name__, pending.command.command_id, error.text
        )
        if isinstance(exc, ConnectError) or isinstance(error, TlsError):
            return self._tracker.fail(pending, FailureReason.OFFLINE, error.text)
        if pending.kind is CommandKind.REPLY:
            return self._tracker.fail(pending, FailureReason.UNCONFIRMED, error.text)
        return self._tracker.fail(pending, FailureReason.SERVER_ERROR, error.text)

    # -- calls -----------------------------------------------------------------------------------

    async def poll_call(self, command: Command) -> Sequence[Event]:
        """One internal REST call of the poller. Raises PollError, AuthRefused, AuthError."""
        try:
            call = rest_call(self._codec, command)
            (status, body), changed = await self._live.read(self.call(call))
        except EncodeError as exc:
            raise PollError(exc.text) from None
        except (HttpError, OSError, TimeoutError) as exc:
            raise PollError(classify_network_error(exc, "request").text) from None
        return stamped(self._codec.parse_response(command, status, body), changed)

    async def call(self, call: HttpCall) -> tuple[int, bytes]:
        """Perform ``call`` with credentials; on 401 renew them once and retry once.

        Raises:
            AuthError, HttpError, OSError, TimeoutError. Bounded by ``http_timeout``
            per request; cancellation propagates.
        """
        assert self.session is not None
        credentials = await self._auth.credentials(self.session)
        status, body = await self._once(call, credentials)
        if status == 401:
            logger.info("%s %s: HTTP 401; renewing the credentials once", call.method, call.path)
            self._auth.invalidate()
            credentials = await self._auth.credentials(self.session)
            status, body = await self._once(call, credentials)
        return status, body

    async def _once(self, call: HttpCall, credentials: Credentials) -> tuple[int, bytes]:
        assert self.session is not None
        url = http_base(self._settings) + call.path
        form: list[FormField] | None = None
        if call.form is not None:
            form = [FormField(name, value) for name, value in call.form]
            form.extend(
                FormField(part.name, part.content, filename=part.filename, content_type=part.content_type)
                for part in call.files
            )
        response = await self.session.request(
            call.method,
            url,
            query=call.query,
            headers={"Accept": "application/json", **credentials.http_headers()},
            json=call.json if form is None else None,
            form=form,
            proxy=self._settings.proxy or None,
            timeout=self._t.http_timeout,
        )
        return response.status, response.body
