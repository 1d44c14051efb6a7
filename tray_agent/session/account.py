"""AccountSession: one signed-in account (authenticator, client, local store, secrets) and its flows.

Qt-free. The tray app and ``tray-agent listen`` both build it with
:func:`tray_agent.session.build_session`; the app reports its outcomes to the windows and the
tray through :class:`SessionHooks` (small callbacks), ``listen`` leaves them unset.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tray_agent.core.commands import Command, DiscardCommand, ResendCommand
from tray_agent.core.events import (
    CommandFailed,
    CommandQueued,
    ConnectionChanged,
    ConnectionState,
    Event,
    FailureReason,
)
from tray_agent.core.i18n import _
from tray_agent.core.ports import Clock, OutboxStore, SecretStore
from tray_agent.core.settings import ConnectionSettings, Settings
from tray_agent.core.settings_layers import LoadedSettings, save_user_settings
from tray_agent.core.state import SignedOut, Store
from tray_agent.session.dispatcher import Dispatcher

if TYPE_CHECKING:
    from tray_agent.platform.storage import LocalStore

logger = logging.getLogger(__name__)

DRAFTS_FILE = "drafts.json"  # drafts of versions before the local store (migrated once, then deleted)
SIGN_OUT_SECRETS = ("password", "refresh_token", "session")  # keyring kinds of one account
STOP_TIMEOUT = 5.0  # seconds for the client to close cleanly
CREDENTIAL_FIELDS = ("dialect", "server", "company", "org", "email", "supabase_url", "supabase_key")


class SessionClient(Protocol):
    """What the session needs of a network client (``net.client.Client``; fakes in tests)."""

    def start(self) -> asyncio.Task[None]:
        """Connect and keep connected in a task."""
        ...

    async def stop(self) -> None:
        """Close cleanly (in-flight commands are marked unconfirmed)."""
        ...

    def submit(self, command: Command) -> None:
        """Queue a command. Never raises."""
        ...

    def reconnect_now(self, *, automatic: bool = False) -> None:
        """Skip the backoff: try again at once (``automatic``: not asked for by the agent)."""
        ...

    def request_resync(self, why: str = "") -> None:
        """Resync the waiting list soon."""
        ...


class SessionAuthenticator(Protocol):
    """What the session needs of an authenticator (``net.auth``)."""

    def set_password(self, password: str, *, remember: bool = False) -> None:
        """Use (and maybe keep) this password; blocking when ``remember``."""
        ...


AuthenticatorFactory = Callable[..., Any]
"""``(connection, secrets, clock, *, password, token) -> authenticator``; ValueError: a bad token."""


class _EventSink:
    """The client's event sink: ``sink(event)`` for one event, ``sink.many(events)`` for a burst."""

    __slots__ = ("_session",)

    def __init__(self, session: AccountSession) -> None:
        self._session = session

    def __call__(self, event: Event) -> None:
        self._session.emit(event)

    def many(self, events: Sequence[Event]) -> None:
        self._session.emit_many(events)


ClientFactory = Callable[
    [ConnectionSettings, Any, Callable[[Event], None], Clock, OutboxStore], SessionClient
]
"""``(connection, authenticator, emit, clock, outbox) -> client``."""

SaveSettings = Callable[[LoadedSettings, Settings], LoadedSettings]


def _nothing(*_args: object) -> None:
    return None


@dataclasses.dataclass
class SessionHooks:
    """How a session tells its front end what happened (all optional; ``listen`` sets none).

    Attributes:
        problem: ``(area, text)``: a problem of an area ("storage") appeared, or ("") went away.
        sign_in_needed: ask the agent to sign in, saying why.
        local_store_changed: the account's store was opened (or closed: None); the windows keep
            their drafts in it.
        local_store_closing: the store is about to close: save what the reply boxes hold.
        signed_out: the account was forgotten: close its chats.
        settings_changed: new settings are in force (saved or not).
    """

    problem: Callable[[str, str], None] = _nothing
    sign_in_needed: Callable[[str], None] = _nothing
    local_store_changed: Callable[[LocalStore | None], None] = _nothing
    local_store_closing: Callable[[], None] = _nothing
    signed_out: Callable[[], None] = _nothing
    settings_changed: Callable[[LoadedSettings], None] = _nothing


async def _run_in_executor(call: Callable[[], object]) -> None:
    await asyncio.get_running_loop().run_in_executor(None, call)


class AccountSession:
    """One account on this computer: start/stop its client, sign in, sign out, apply settings.

    Implements :class:`~tray_agent.core.ports.CommandSink` for the UI: commands go to the current
    client (rebuilt on sign-in and settings changes); without one they fail at once as OFFLINE.

    Args:
        loaded: the settings in force.
        dispatcher: the only entrance to the store (the client's event sink).
        clock: the clock.
        data_dir: where account stores live (``Paths.data``; a temporary one for the demo).
        state_dir: where the old ``drafts.json`` may be (``Paths.state``), or None.
        secrets: the secret store (may be set later: the keyring opens off the loop).
        hooks: how outcomes reach the front end.
        authenticator_factory: builds the authenticator (``net.auth.authenticator_for``).
        client_factory: builds the client (codec + ``net.client.Client``).
        save_settings: writes the user's settings (``save_user_settings``).
        blocking: runs a blocking call off the loop (keyring writes); default the loop's executor.
    """

    def __init__(
        self,
        loaded: LoadedSettings,
        dispatcher: Dispatcher,
        clock: Clock,
        *,
        data_dir: Path,
        state_dir: Path | None = None,
        secrets: SecretStore | None = None,
        hooks: SessionHooks | None = None,
        authenticator_factory: AuthenticatorFactory,
        client_factory: ClientFactory,
        save_settings: SaveSettings = save_user_settings,
        blocking: Callable[[Callable[[], object]], Awaitable[None]] = _run_in_executor,
    ) -> None:
        self.loaded = loaded
        self.dispatcher = dispatcher
        self.clock = clock
        self.data_dir = data_dir
        self.state_dir = state_dir
        self.secrets = secrets
        self.hooks = hooks if hooks is not None else SessionHooks()
        self._authenticator_factory = authenticator_factory
        self._client_factory = client_factory
        self._save_settings = save_settings
        self._blocking = blocking
        self.authenticator: Any = None
        self.client: SessionClient | None = None
        self.client_task: asyncio.Task[None] | None = None
        self.local: LocalStore | None = None
        self._tasks: set[asyncio.Future[None]] = set()

    # -------------------------------------------------------------- what the UI sees

    @property
    def store(self) -> Store:
        """The store (read-only use)."""
        return self.dispatcher.store

    @property
    def configured(self) -> bool:
        """A server and an account to sign in with are set."""
        connection = self.loaded.settings.connection
        return bool(connection.server and (connection.email or connection.token.get_secret_value()))

    def submit(self, command: Command) -> None:
        """Queue a command on the client, or fail it at once (not signed in). Never raises."""
        if self.client is not None:
            self.client.submit(command)
        else:
            self.fail_offline(command)

    def fail_offline(self, command: Command) -> None:
        """Answer a command with no client to take it: queued, then failed "not signed in"."""
        if isinstance(command, ResendCommand | DiscardCommand):
            # They name an existing command: a CommandQueued here would overwrite its record.
            logger.info("Not signed in: %s of %s ignored", type(command).__name__, command.command_id)
            return
        conversation = command.conversation_key
        self.dispatcher.dispatch(
            CommandQueued(command_id=command.command_id, kind=command.kind, conversation=conversation)
        )
        self.dispatcher.dispatch(
            CommandFailed(
                command_id=command.command_id,
                kind=command.kind,
                conversation=conversation,
                reason=FailureReason.OFFLINE,
                text=_("not signed in"),
            )
        )

    def emit(self, event: Event) -> None:
        """The client's event sink: through the dispatcher (stamped, reduced, effects routed)."""
        self.dispatcher.dispatch(event)

    def emit_many(self, events: Sequence[Event]) -> None:
        """The client's sink for a burst of frames: one reduction batch, effects routed in order."""
        self.dispatcher.dispatch_many(events)

    def reconnect_now(self, *, automatic: bool = False) -> None:
        """Reconnect at once.

        ``automatic``: sleep/resume or a network change; otherwise the tray's Reconnect now, the
        agent's way back after "signed in elsewhere".
        """
        if self.client is not None:
            self.client.reconnect_now(automatic=automatic)

    def request_resync(self, why: str) -> None:
        """The store asked for a full resync (the dispatcher's resync port)."""
        if self.client is not None:
            self.client.request_resync(why)

    def set_offline(self) -> None:
        """No client will connect (no account, or unusable sign-in settings): say so."""
        self.dispatcher.dispatch(ConnectionChanged(state=ConnectionState.OFFLINE))

    # -------------------------------------------------------------- start and stop

    def start(self, password: str | None = None, token: str | None = None) -> str:
        """Build the authenticator and the client, open the local store, connect.

        Returns:
            "" when the client started; else the problem (a pasted token that is not a JWT),
            already reported through ``hooks.sign_in_needed``.
        """
        connection = self.loaded.settings.connection
        token = token or connection.token.get_secret_value() or None
        try:
            self.authenticator = self._authenticator_factory(
                connection, self.secrets, self.clock, password=password, token=token
            )
        except ValueError as exc:
            if self.client is None:
                self.set_offline()
            self.hooks.sign_in_needed(str(exc))
            return str(exc)
        if self.local is None:
            self.local = self.open_local_store()
        self.client = self._client_factory(
            connection, self.authenticator, _EventSink(self), self.clock, self.local
        )
        self.client_task = self.client.start()
        return ""

    async def stop(self) -> None:
        """Stop the client (bounded), then close the local store. Never raises."""
        client, task, local = self.client, self.client_task, self.local
        if local is not None:
            with contextlib.suppress(Exception):
                self.hooks.local_store_closing()  # what the reply boxes hold, before the store closes
                self.hooks.local_store_changed(None)
        self.client, self.client_task, self.local = None, None, None
        if client is not None:
            try:
                await asyncio.wait_for(client.stop(), STOP_TIMEOUT)
            except Exception:
                logger.warning("The client did not stop cleanly", exc_info=True)
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if local is not None:
            local.close()  # after the client: its last outbox writes go in first

    async def restart(self) -> None:
        """Stop, then start again with the settings in force (no password: the saved one)."""
        await self.stop()
        self.start(None)

    # -------------------------------------------------------------- the local store

    def open_local_store(self) -> LocalStore:
        """Open the account's durable store (outbox, drafts, recent history); never raises.

        Drafts of an older version (``drafts.json``) move into it once; the front end keeps
        its drafts in it from now on (``hooks.local_store_changed``).
        """
        from tray_agent.platform.storage import open_account_store  # sqlite3: once an account is used

        local = open_account_store(self.data_dir, self.loaded.settings.connection)
        if local.problem:
            logger.warning("Local store: %s", local.problem)
            self.hooks.problem("storage", local.problem)
        self._migrate_drafts_file(local)
        self.hooks.local_store_changed(local)
        return local

    def local_store_path(self, connection: ConnectionSettings) -> Path:
        """The store file of an account."""
        from tray_agent.platform.storage import store_path

        return store_path(self.data_dir, connection.secret_key("store"))

    def _migrate_drafts_file(self, local: LocalStore) -> None:
        """Move the drafts of an older version (``drafts.json``) into the account's store, once."""
        if self.state_dir is None:
            return
        path = self.state_dir / DRAFTS_FILE
        if local.in_memory or not path.exists():
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            logger.warning("Ignoring the unreadable old drafts file %s: %s", path, exc)
            data = {}
        drafts = data.get("drafts") if isinstance(data, dict) else None
        moved = 0
        if isinstance(drafts, dict):
            for conversation, text in drafts.items():
                usable = isinstance(conversation, str) and isinstance(text, str) and bool(text.strip())
                if usable and not local.draft(conversation):
                    local.set_draft(conversation, text)
                    moved += 1
        if local.problem:
            return  # keep the file: the store could not take them
        try:
            path.unlink()
        except OSError as exc:
            logger.warning("Could not delete the old drafts file %s: %s", path, exc)
        logger.info("Moved %d reply draft(s) from %s into the local store", moved, DRAFTS_FILE)

    # -------------------------------------------------------------- settings

    def keep_settings(self, edited: Settings, *, save: bool = True) -> None:
        """Use ``edited`` from now on; save it when asked (on failure it holds for this run)."""
        if save:
            try:
                self.loaded = self._save_settings(self.loaded, edited)
            except (OSError, ValueError) as exc:
                logger.warning("Could not save the settings: %s", exc)
                self.loaded = dataclasses.replace(self.loaded, settings=edited)
        else:
            self.loaded = dataclasses.replace(self.loaded, settings=edited)
        self.hooks.settings_changed(self.loaded)

    def set_sounds(self, on: bool) -> None:
        """The tray's Mute: sounds ``on`` or off from now on, and saved.

        When a policy locks ``alerts.sounds`` nothing changes (the settings are handed to
        ``settings_changed`` again, so that the tray shows the policy's choice).
        """
        locked = self.loaded.is_locked("alerts.sounds")
        edited = self.loaded.settings.model_copy(deep=True)
        if not locked:
            edited.alerts.sounds = on
        self.keep_settings(edited, save=not locked)

    def remember_dnd(self, until: datetime | None) -> None:
        """Manual do-not-disturb survives a restart: its end is saved as ``alerts.dnd_until``.

        Nothing is written when the value is already saved or a policy locks it.
        """
        value = until.astimezone(UTC).isoformat() if until is not None else ""
        if value == self.loaded.settings.alerts.dnd_until or self.loaded.is_locked("alerts.dnd_until"):
            return
        edited = self.loaded.settings.model_copy(deep=True)
        edited.alerts.dnd_until = value
        problem = self.apply_settings(edited)
        if problem:
            logger.warning("Could not save the do-not-disturb setting: %s", problem)

    def apply_settings(self, edited: Settings) -> str:
        """Save the settings dialog's result; a changed connection restarts the client.

        Returns:
            "" once saved and in force; else why they could not be saved (nothing changed).
        """
        before = self.loaded.settings.connection
        try:
            self.loaded = self._save_settings(self.loaded, edited)
        except (OSError, ValueError) as exc:
            logger.warning("Could not save the settings: %s", exc)
            return str(exc)
        self.store.history_limit = self.loaded.settings.ui.history_limit
        self.hooks.settings_changed(self.loaded)
        if self.loaded.settings.connection != before:
            self.spawn(self.restart())
        return ""

    # -------------------------------------------------------------- sign in, sign out

    async def sign_in(self, credentials: Mapping[str, Any] | object) -> None:
        """New credentials from the sign-in dialog: save the account, restart the client.

        ``credentials`` is a mapping or an object with the fields of
        ``ui.signin_dialog.SignInRequest`` (dialect, server, company, org, email, supabase_url,
        supabase_key, password, token, remember). Locked settings keep their value.
        """

        def field(name: str) -> Any:
            if isinstance(credentials, Mapping):
                return credentials.get(name)
            return getattr(credentials, name, None)

        edited = self.loaded.settings.model_copy(deep=True)
        for name in CREDENTIAL_FIELDS:
            value = field(name)
            if isinstance(value, str) and value and not self.loaded.is_locked(f"connection.{name}"):
                setattr(edited.connection, name, value)
        self.keep_settings(edited)
        password = field("password")
        token = field("token")
        password = password if isinstance(password, str) and password else None
        await self.stop()
        self.start(password, token if isinstance(token, str) and token else None)
        remember = bool(field("remember") or field("remember_password"))
        authenticator = self.authenticator
        if remember and authenticator is not None and password:
            await self._blocking(lambda: authenticator.set_password(password, remember=True))

    async def sign_out(self) -> None:
        """Forget the account on this computer. Never raises.

        Stops the client; deletes the account's local store (conversations, drafts, queued
        replies: the database and its companions) and its secrets (password, refresh token,
        session cookie); tells the front end (``hooks.signed_out``); empties the state
        (``SignedOut``) so every view follows. The caller then asks for a sign-in.
        """
        logger.info("Signing out: deleting this computer's copy of the account")
        connection = self.loaded.settings.connection
        local = self.local
        await self.stop()
        self.authenticator = None
        try:
            if local is None:  # never opened this run: open (no migration) just to delete it
                from tray_agent.platform.storage import LocalStore

                local = LocalStore(self.local_store_path(connection))
            if not local.sign_out():
                logger.error("Sign-out: some local data could not be deleted")
        except Exception:
            logger.exception("Sign-out: deleting the local store failed")
        self.hooks.problem("storage", "")
        secrets = self.secrets
        if secrets is not None:
            keys = [connection.secret_key(kind) for kind in SIGN_OUT_SECRETS]
            try:

                def delete_all() -> None:
                    for key in keys:
                        secrets.delete(key)

                await self._blocking(delete_all)
            except Exception:
                logger.exception("Sign-out: deleting the saved sign-in failed")
        with contextlib.suppress(Exception):
            self.hooks.signed_out()
        self.dispatcher.dispatch(SignedOut(detail=_("signed out")))

    # -------------------------------------------------------------- background tasks

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background (awaited by :meth:`wait_for_tasks`)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_for_tasks(self) -> None:
        """Wait until the background tasks (restarts; the app's sign-in, sign-out, export) end."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
