"""The demo server's shell: aiohttp app, dialect selection, control API, simulator and the CLI.

``tray-agent demo-server`` calls :func:`run`. Tests and ``tray-agent --demo`` use
:class:`DemoServer` in-process (``async with DemoServer("dashboard") as server: ...``) on a free
loopback port. The first line printed by :func:`run` is one JSON object (``url``, ``dialect``,
``agents``, ``extra``, ``control``) so that a parent process can read it and go.

Control API: ``POST /_demo/control`` with ``{"action": ..., ...}``, honoured from loopback only.
Actions: ``info``, ``new_customer``, ``customer_writes``, ``ask_for_human``, ``bot_replies``,
``customer_leaves``, ``drop_sockets``, ``silent``, ``refuse_upgrades``, ``preload``, ``burst``,
``add_agents``, ``fail_sends`` (see :meth:`DemoServer.control`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web

from tray_agent.demo import texts
from tray_agent.demo.base import DemoBackend, DemoCustomer, DemoInfo
from tray_agent.demo.simulator import Simulator

logger = logging.getLogger(__name__)

CONTROL_PATH = "/_demo/control"


class ControlError(Exception):
    """A control request that cannot be honoured (HTTP 400 with ``{"error": ...}``)."""


def make_backend(dialect: str, db_path: Path, **options: Any) -> DemoBackend:
    """Build the dialect's backend on ``db_path`` (the org module is imported lazily).

    Args:
        dialect: ``"dashboard"`` or ``"org"``.
        db_path: SQLite file.
        **options: constructor keywords for the backend (e.g. short ping intervals in tests).
    """
    if dialect == "dashboard":
        from tray_agent.demo.dashboard import DashboardBackend

        return DashboardBackend(db_path, **options)
    if dialect == "org":
        from tray_agent.demo.org import OrgBackend

        return OrgBackend(db_path=db_path, **options)
    raise ValueError(f"unknown dialect {dialect!r}")


def is_loopback(remote: str | None) -> bool:
    """Whether a peer address is a loopback address (the control API answers nobody else)."""
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class DemoServer:
    """One demo backend served over HTTP/WebSocket, with its control API and simulator.

    Args:
        dialect: ``"dashboard"`` or ``"org"``.
        host: interface to bind (loopback by default).
        port: TCP port; 0 picks a free one.
        db_path: SQLite file to keep; ``None`` uses a temporary file removed by :meth:`stop`.
        simulate: simulated customers per minute (0 = off).
        seed: seed of the simulator's randomness.
        preload: customers already waiting at start (created once, on an empty tenant).
        refuse_upgrades: start with WebSocket upgrades refused.
        backend_options: constructor keywords for the backend (ping intervals, queue size ...).
    """

    def __init__(
        self,
        dialect: str = "dashboard",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        db_path: str | Path | None = None,
        simulate: float = 0.0,
        seed: int | None = None,
        preload: int = 0,
        refuse_upgrades: bool = False,
        backend_options: dict[str, Any] | None = None,
    ) -> None:
        self.dialect = dialect
        self.host = host
        self.port = port
        self._db_path = Path(db_path) if db_path is not None else None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._simulate = simulate
        self._seed = seed
        self._preload = preload
        self._refuse_upgrades = refuse_upgrades
        self._backend_options = backend_options or {}
        self._backend: DemoBackend | None = None
        self._runner: web.AppRunner | None = None
        self._simulator: Simulator | None = None
        self._sim_task: asyncio.Task[None] | None = None
        self._load_tasks: set[asyncio.Task[Any]] = set()
        self.url = ""

    @property
    def backend(self) -> DemoBackend:
        """The dialect backend (available after :meth:`start`)."""
        if self._backend is None:
            raise RuntimeError("DemoServer not started")
        return self._backend

    @property
    def db_path(self) -> Path:
        """The SQLite file in use (available after :meth:`start`)."""
        assert self._db_path is not None
        return self._db_path

    @property
    def info(self) -> DemoInfo:
        """What a client needs to sign in."""
        return self.backend.info(self.url)

    async def __aenter__(self) -> DemoServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> DemoInfo:
        """Open the database, bind the port and start serving (and simulating, if asked).

        Returns:
            The :class:`DemoInfo` with the URL actually bound.
        """
        if self._db_path is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="tray-agent-demo-")
            self._db_path = Path(self._tmpdir.name) / "demo.sqlite3"
        self._backend = make_backend(self.dialect, self._db_path, **self._backend_options)
        if self._refuse_upgrades:
            self._backend.set_refuse_upgrades(True)
        app = web.Application(client_max_size=4 * 1024 * 1024)
        self._backend.add_routes(app)
        app.router.add_post(CONTROL_PATH, self._control_handler)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=4096)
        await site.start()
        server = site._server  # WORKAROUND(aiohttp): the bound port of port 0 is not public API
        assert server is not None
        sockname = server.sockets[0].getsockname()  # type: ignore[attr-defined]
        host = sockname[0]
        self.port = sockname[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"
        if self._preload and not self._backend.customers():
            await self._backend.preload(self._preload)
        if self._simulate > 0:
            self._simulator = Simulator(self._backend, rate=self._simulate, seed=self._seed)
            self._sim_task = asyncio.get_running_loop().create_task(self._simulator.run())
        logger.info("demo %s backend listening on %s", self.dialect, self.url)
        return self.info

    async def stop(self) -> None:
        """Stop the simulator and load tasks, close every socket, the server and the database."""
        tasks = [t for t in (self._sim_task, *self._load_tasks) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._sim_task = None
        self._load_tasks.clear()
        if self._backend is not None:
            await self._backend.drop_sockets()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._backend is not None:
            await self._backend.close()
            self._backend = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
            self._db_path = None

    # ------------------------------------------------------------------ control API
    async def _control_handler(self, request: web.Request) -> web.Response:
        if not is_loopback(request.remote):
            return web.json_response({"error": "control API is loopback-only"}, status=403)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "invalid JSON"}, status=400)
        if not isinstance(body, dict) or not isinstance(body.get("action"), str):
            return web.json_response({"error": 'expected {"action": ...}'}, status=400)
        params = {k: v for k, v in body.items() if k != "action"}
        try:
            result = await self.control(body["action"], **params)
        except (ControlError, KeyError, TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(result)

    def _find_customer(self, ref: Any) -> DemoCustomer:
        if not isinstance(ref, str):
            raise ControlError("customer: expected the customer's ref")
        for customer in self.backend.customers():
            if customer.ref == ref:
                return customer
        raise ControlError(f"unknown customer {ref!r}")

    async def _customer_or_new(self, params: dict[str, Any]) -> DemoCustomer:
        if params.get("customer"):
            return self._find_customer(params["customer"])
        return await self.backend.new_customer(
            tenant=params.get("tenant"), name=params.get("name"), language=params.get("language", "en")
        )

    async def control(self, action: str, **params: Any) -> dict[str, Any]:
        """Inject one scripted event now; returns a JSON-able result.

        Args:
            action: ``info``; ``new_customer`` (``tenant?, name?, language?``);
                ``customer_writes`` / ``ask_for_human`` / ``bot_replies`` (``customer?`` ref -- a
                new customer if omitted -- and ``text``); ``customer_leaves`` (``customer``);
                ``drop_sockets``; ``silent`` (``on``); ``refuse_upgrades`` (``on``);
                ``preload`` (``count, tenant?``); ``burst`` (``count, rate`` events/s,
                ``customers?`` how many distinct writers, ``tenant?``, ``wait?``: await the end);
                ``add_agents`` (``count, tenant?``: load-test accounts ``load-<i>@...``, password
                ``load``); ``fail_sends`` (``error`` or null; dashboard only).
            **params: the action's parameters.

        Raises:
            ControlError: unknown action or bad parameters.
        """
        backend = self.backend
        if action == "info":
            info = asdict(self.info)
            info["customers"] = len(backend.customers())
            info["control"] = self.url + CONTROL_PATH
            counter = getattr(backend, "socket_count", None)
            if counter is not None:
                info["sockets"] = counter()
            dropped = getattr(backend, "broadcasts_dropped", None)
            if dropped is not None:
                info["broadcasts_dropped"] = dropped
            return info
        if action == "new_customer":
            customer = await self._customer_or_new({**params, "customer": None})
            return {"customer": asdict(customer)}
        if action in ("customer_writes", "ask_for_human", "bot_replies"):
            customer = await self._customer_or_new(params)
            text = params.get("text", "")
            if action == "customer_writes":
                await backend.customer_writes(customer, text or texts.OPENERS[customer.language][0])
            elif action == "ask_for_human":
                await backend.ask_for_human(customer, text)
            else:
                await backend.bot_replies(customer, text or texts.BOT_REPLIES[customer.language][0])
            return {"customer": asdict(customer)}
        if action == "customer_leaves":
            customer = self._find_customer(params.get("customer"))
            await backend.customer_leaves(customer)
            return {"customer": asdict(customer)}
        if action == "drop_sockets":
            return {"dropped": await backend.drop_sockets()}
        if action == "silent":
            backend.set_silent(bool(params.get("on", True)))
            return {"silent": bool(params.get("on", True))}
        if action == "refuse_upgrades":
            backend.set_refuse_upgrades(bool(params.get("on", True)))
            return {"refuse_upgrades": bool(params.get("on", True))}
        if action == "preload":
            count = int(params.get("count", 0))
            await backend.preload(count, tenant=params.get("tenant"))
            return {"preloaded": count}
        if action == "burst":
            return await self._burst(params)
        if action == "add_agents":
            return self._add_agents(int(params.get("count", 0)), params.get("tenant"))
        if action == "fail_sends":
            if not hasattr(backend, "send_failure"):
                raise ControlError("fail_sends is not supported by this dialect")
            backend.send_failure = params.get("error")
            return {"fail_sends": params.get("error")}
        raise ControlError(f"unknown action {action!r}")

    def _add_agents(self, count: int, tenant: str | None) -> dict[str, Any]:
        adder = getattr(self.backend, "add_agent", None)
        if adder is None:
            raise ControlError("add_agents is not supported by this dialect")
        tenant = tenant or self.backend.info(self.url).agents[0].tenant
        agents = [adder(f"load-{i}@{tenant}.test", "load", tenant) for i in range(count)]
        return {"agents": [asdict(a) for a in agents]}

    async def _burst(self, params: dict[str, Any]) -> dict[str, Any]:
        """Load mode: ``count`` customer messages at ``rate`` per second from a few customers."""
        count = int(params.get("count", 100))
        rate = float(params.get("rate", 100.0))
        if count < 0 or rate <= 0:
            raise ControlError("burst: count >= 0 and rate > 0 required")
        writers = max(1, int(params.get("customers", 10)))
        tenant = params.get("tenant")
        customers = [
            await self.backend.new_customer(tenant=tenant, name=texts.customer_name("en", i), language="en")
            for i in range(writers)
        ]
        task = asyncio.get_running_loop().create_task(self._run_burst(customers, count, rate))
        self._load_tasks.add(task)
        task.add_done_callback(self._load_tasks.discard)
        if params.get("wait"):
            return await task
        return {"started": True, "count": count, "rate": rate, "customers": [c.ref for c in customers]}

    async def _run_burst(self, customers: list[DemoCustomer], count: int, rate: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(count):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            customer = customers[i % len(customers)]
            await self.backend.customer_writes(customer, f"load {i}")
        elapsed = loop.time() - start
        return {
            "sent": count,
            "elapsed": round(elapsed, 3),
            "rate": round(count / elapsed, 1) if elapsed else None,
        }


# ---------------------------------------------------------------------- CLI
def _startup_line(info: DemoInfo) -> str:
    return json.dumps(
        {
            "url": info.url,
            "dialect": info.dialect,
            "agents": [asdict(a) for a in info.agents],
            "extra": info.extra,
            "control": info.url + CONTROL_PATH,
        }
    )


async def _serve(args: argparse.Namespace) -> int:
    server = DemoServer(
        args.dialect,
        host=args.host,
        port=args.port,
        db_path=args.db,
        simulate=args.simulate,
        seed=args.seed,
        preload=args.preload,
        refuse_upgrades=args.refuse_upgrades,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, AttributeError):  # Windows: KeyboardInterrupt
            loop.add_signal_handler(sig, stop.set)
    info = await server.start()
    try:
        print(_startup_line(info), flush=True)
        print(f"tray-agent demo server ({info.dialect}) listening on {info.url}", flush=True)
        for agent in info.agents:
            print(f"  agent {agent.email}  password {agent.password}  tenant {agent.tenant}", flush=True)
        for key, value in info.extra.items():
            print(f"  {key}: {value}", flush=True)
        print(f"  control API: POST {info.url}{CONTROL_PATH}   (Ctrl-C to stop)", flush=True)
        await stop.wait()
    finally:
        started = time.monotonic()
        await server.stop()
        logger.info("demo server stopped in %.2f s", time.monotonic() - started)
    return 0


def run(args: argparse.Namespace) -> int:
    """Entry point of ``tray-agent demo-server``; returns the exit code (0 on Ctrl-C/SIGTERM)."""
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"demo-server: {exc}", file=sys.stderr)
        return 1
