"""Simulated customers: a pure, seeded plan of visits and a driver that plays it on a backend.

The plan (:func:`plan_visits`) is a deterministic function of the seed: who arrives when, on
which tenant, in which language, what they write, whether they ask for a human and how patient
they are. The driver (:class:`Simulator`) plays it through :class:`~tray_agent.demo.base.DemoBackend`
only, sleeping with an injectable ``sleep`` so tests run it without wall-clock time.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from tray_agent.demo import texts
from tray_agent.demo.base import DemoBackend, DemoCustomer

logger = logging.getLogger(__name__)

ESCALATION_PROBABILITY = 0.4
INDONESIAN_PROBABILITY = 0.45


class StepKind(StrEnum):
    """What a simulated customer (or the bot answering them) does next."""

    WRITE = "write"  # the customer writes ``text``
    BOT = "bot"  # the bot / AI answers with ``text``
    ASK_HUMAN = "ask_human"  # the customer asks for a human (the dialect's escalation sequence)
    AWAIT_AGENT = "await_agent"  # wait up to ``delay`` seconds for a human agent's reply
    ANSWER = "answer"  # answer the agent with ``text`` (only if the agent has replied)
    LEAVE = "leave"  # the conversation ends


@dataclass(frozen=True, slots=True)
class Step:
    """One scripted step; ``delay`` is the pause before it (for AWAIT_AGENT: the patience)."""

    kind: StepKind
    delay: float
    text: str = ""


@dataclass(frozen=True, slots=True)
class Visit:
    """One customer's whole visit, planned up front."""

    index: int
    arrival: float  # seconds after the simulation started
    name: str
    language: str
    tenant: int  # index into the backend's tenants (modulo their number)
    steps: tuple[Step, ...]

    @property
    def escalates(self) -> bool:
        """Whether this customer asks for a human."""
        return any(s.kind is StepKind.ASK_HUMAN for s in self.steps)


def plan_visit(rng: random.Random, index: int, arrival: float) -> Visit:
    """Plan one visit from ``rng`` (pure: the same rng state gives the same visit)."""
    language = "id" if rng.random() < INDONESIAN_PROBABILITY else "en"
    name = f"{rng.choice(texts.FIRST_NAMES[language])} {rng.choice(texts.LAST_NAMES[language])}"
    tenant = 0 if rng.random() < 0.75 else rng.randrange(1, 4)
    steps = [
        Step(StepKind.WRITE, 0.0, rng.choice(texts.OPENERS[language])),
        Step(StepKind.BOT, rng.uniform(1.5, 5.0), rng.choice(texts.BOT_REPLIES[language])),
    ]
    for _ in range(rng.choice((0, 0, 1, 2))):
        steps.append(Step(StepKind.WRITE, rng.uniform(4.0, 25.0), rng.choice(texts.FOLLOW_UPS[language])))
        steps.append(Step(StepKind.BOT, rng.uniform(1.5, 5.0), rng.choice(texts.BOT_REPLIES[language])))
    if rng.random() < ESCALATION_PROBABILITY:
        steps.append(
            Step(StepKind.ASK_HUMAN, rng.uniform(5.0, 30.0), rng.choice(texts.HUMAN_REQUESTS[language]))
        )
        for _ in range(rng.choice((1, 2, 2, 3))):
            steps.append(Step(StepKind.AWAIT_AGENT, rng.uniform(120.0, 600.0)))
            steps.append(
                Step(StepKind.ANSWER, rng.uniform(3.0, 20.0), rng.choice(texts.ANSWERS_TO_AGENT[language]))
            )
        steps.append(Step(StepKind.ANSWER, rng.uniform(5.0, 30.0), rng.choice(texts.GOODBYES[language])))
        steps.append(Step(StepKind.LEAVE, rng.uniform(30.0, 120.0)))
    elif rng.random() < 0.5:
        steps.append(Step(StepKind.WRITE, rng.uniform(5.0, 30.0), rng.choice(texts.GOODBYES[language])))
    return Visit(index, arrival, name, language, tenant, tuple(steps))


def plan_visits(seed: int | None, rate: float) -> Iterator[Visit]:
    """The endless, seeded sequence of visits arriving at ``rate`` customers per minute.

    Arrivals form a Poisson process (exponential gaps, mean ``60 / rate`` seconds).
    """
    if rate <= 0:
        return
    rng = random.Random(seed)
    arrival = 0.0
    index = 0
    while True:
        arrival += rng.expovariate(rate / 60.0)
        yield plan_visit(rng, index, arrival)
        index += 1


class Simulator:
    """Plays :func:`plan_visits` on a backend.

    Args:
        backend: the dialect backend (through :class:`DemoBackend` only).
        rate: customers per minute.
        seed: seed of the plan.
        sleep: ``asyncio.sleep`` or a test's fake.
        poll_interval: how often a waiting customer checks for an agent's reply.
    """

    def __init__(
        self,
        backend: DemoBackend,
        *,
        rate: float,
        seed: int | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        poll_interval: float = 3.0,
    ) -> None:
        self.backend = backend
        self.rate = rate
        self.seed = seed
        self._sleep = sleep
        self.poll_interval = poll_interval
        self._tasks: set[asyncio.Task[None]] = set()

    def _tenants(self) -> list[str]:
        tenants: list[str] = []
        for agent in self.backend.info("").agents:
            if agent.tenant not in tenants:
                tenants.append(agent.tenant)
        return tenants

    async def run(self, limit: int | None = None) -> None:
        """Start visits as they arrive; with ``limit``, return once that many visits are done.

        Cancellation cancels every visit in progress.
        """
        elapsed = 0.0
        try:
            for visit in plan_visits(self.seed, self.rate):
                if limit is not None and visit.index >= limit:
                    break
                gap = visit.arrival - elapsed
                if gap > 0:
                    await self._sleep(gap)
                elapsed = visit.arrival
                task = asyncio.get_running_loop().create_task(self._play_logged(visit))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if self._tasks:
                await asyncio.gather(*self._tasks)
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _play_logged(self, visit: Visit) -> None:
        try:
            await self.play(visit)
        except (KeyError, ValueError) as exc:  # e.g. the customer was removed behind our back
            logger.warning("simulated visit %d ended early: %r", visit.index, exc)

    async def play(self, visit: Visit) -> DemoCustomer:
        """Play one visit to its end; returns the customer it created."""
        tenants = self._tenants()
        tenant = tenants[visit.tenant % len(tenants)] if tenants else None
        customer = await self.backend.new_customer(tenant=tenant, name=visit.name, language=visit.language)
        logger.debug("simulated customer %s (%s) arrives", customer.ref, visit.language)
        last_seq = 0
        agent_replied = False
        for step in visit.steps:
            if step.kind is StepKind.AWAIT_AGENT:
                last_seq, agent_replied = await self._await_agent(customer, last_seq, step.delay)
                continue
            if step.delay > 0:
                await self._sleep(step.delay)
            if step.kind is StepKind.WRITE:
                await self.backend.customer_writes(customer, step.text)
            elif step.kind is StepKind.BOT:
                await self.backend.bot_replies(customer, step.text)
            elif step.kind is StepKind.ASK_HUMAN:
                await self.backend.ask_for_human(customer, step.text)
            elif step.kind is StepKind.ANSWER:
                if agent_replied:
                    await self.backend.customer_writes(customer, step.text)
            elif step.kind is StepKind.LEAVE:
                await self.backend.customer_leaves(customer)
        return customer

    async def _await_agent(self, customer: DemoCustomer, after: int, patience: float) -> tuple[int, bool]:
        """Poll for an agent's reply for up to ``patience`` seconds of (possibly fake) sleep."""
        waited = 0.0
        while True:
            replies = await self.backend.agent_messages_since(customer, after)
            if replies:
                return replies[-1][0], True
            if waited >= patience:
                return after, False
            await self._sleep(self.poll_interval)
            waited += self.poll_interval
