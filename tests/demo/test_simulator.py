"""The customer simulator: a seeded, deterministic plan and a driver that needs no wall clock."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from tray_agent.demo import texts
from tray_agent.demo.base import DemoAgent, DemoCustomer, DemoInfo
from tray_agent.demo.dashboard import DashboardBackend
from tray_agent.demo.simulator import Simulator, StepKind, Visit, plan_visits


def first(seed: int, n: int = 40, rate: float = 6.0) -> list[Visit]:
    return list(itertools.islice(plan_visits(seed, rate), n))


def test_plan_same_seed_same_sequence() -> None:
    assert first(7) == first(7)
    assert first(7) != first(8)
    assert list(plan_visits(1, 0)) == []


def test_plan_escalations_languages_and_timing() -> None:
    visits = first(3, 60, rate=12.0)
    assert any(v.escalates for v in visits)
    assert any(not v.escalates for v in visits)
    assert {v.language for v in visits} == {"en", "id"}
    arrivals = [v.arrival for v in visits]
    assert arrivals == sorted(arrivals)
    assert 60 * 60 / 12 * 0.5 < arrivals[-1] < 60 * 60 / 12 * 2  # about `rate` per minute
    for visit in visits:
        lang = visit.language
        assert visit.steps[0].kind is StepKind.WRITE
        assert visit.steps[0].text in texts.OPENERS[lang]
        assert visit.name.split()[0] in texts.FIRST_NAMES[lang]
        for step in visit.steps:
            if step.kind is StepKind.ASK_HUMAN:
                assert step.text in texts.HUMAN_REQUESTS[lang]
            if step.kind is StepKind.BOT:
                assert step.text in texts.BOT_REPLIES[lang]
        if visit.escalates:
            assert visit.steps[-1].kind is StepKind.LEAVE
            assert any(s.kind is StepKind.AWAIT_AGENT for s in visit.steps)


class FakeBackend:
    """Records the simulator's calls; a human agent answers every escalated customer at once."""

    dialect = "fake"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self._customers: list[DemoCustomer] = []
        self._escalated: set[str] = set()

    def info(self, base_url: str) -> DemoInfo:
        agents = (DemoAgent("a@x", "pw", "t1"), DemoAgent("b@x", "pw", "t2"))
        return DemoInfo("fake", base_url, agents)

    async def new_customer(
        self, *, tenant: str | None = None, name: str | None = None, language: str = "en"
    ) -> DemoCustomer:
        customer = DemoCustomer(f"c{len(self._customers)}", name or "", tenant or "t1", "", language)
        self._customers.append(customer)
        self.calls.append(("new", customer.ref, f"{tenant}:{language}:{name}"))
        return customer

    async def customer_writes(self, customer: DemoCustomer, text: str) -> None:
        self.calls.append(("write", customer.ref, text))

    async def bot_replies(self, customer: DemoCustomer, text: str) -> None:
        self.calls.append(("bot", customer.ref, text))

    async def ask_for_human(self, customer: DemoCustomer, text: str = "") -> None:
        self._escalated.add(customer.ref)
        self.calls.append(("human", customer.ref, text))

    async def customer_leaves(self, customer: DemoCustomer) -> None:
        self.calls.append(("leave", customer.ref, ""))

    async def agent_messages_since(self, customer: DemoCustomer, after: int) -> list[tuple[int, str]]:
        if customer.ref in self._escalated:
            return [(after + 1, "Hello, how can I help?")]
        return []

    def customers(self) -> list[DemoCustomer]:
        return list(self._customers)


async def no_sleep(_seconds: float) -> None:
    await asyncio.sleep(0)


async def simulate(seed: int, limit: int) -> list[tuple[str, str, str]]:
    backend = FakeBackend()
    simulator = Simulator(backend, rate=30.0, seed=seed, sleep=no_sleep)  # type: ignore[arg-type]
    await asyncio.wait_for(simulator.run(limit=limit), 30)
    return backend.calls


@pytest.mark.asyncio
async def test_driver_is_deterministic_without_wall_clock() -> None:
    calls = await simulate(11, 25)
    assert calls == await simulate(11, 25)
    kinds = {c[0] for c in calls}
    assert {"new", "write", "bot", "human", "leave"} <= kinds
    assert sum(1 for c in calls if c[0] == "new") == 25
    assert {c[2].split(":")[0] for c in calls if c[0] == "new"} == {"t1", "t2"}
    # Escalated customers answer the agent (answers / goodbyes come from the texts).
    answers = {t for lang in texts.LANGUAGES for t in texts.ANSWERS_TO_AGENT[lang] + texts.GOODBYES[lang]}
    assert any(c[0] == "write" and c[2] in answers for c in calls)
    indonesian = {t for group in (texts.OPENERS, texts.BOT_REPLIES) for t in group["id"]}
    english = {t for group in (texts.OPENERS, texts.BOT_REPLIES) for t in group["en"]}
    assert any(c[2] in indonesian for c in calls)
    assert any(c[2] in english for c in calls)


@pytest.mark.asyncio
async def test_waiting_customer_gives_up_without_agent() -> None:
    backend = FakeBackend()

    async def never(customer: DemoCustomer, after: int) -> list[tuple[int, str]]:
        return []

    backend.agent_messages_since = never  # type: ignore[method-assign]
    simulator = Simulator(backend, rate=30.0, seed=5, sleep=no_sleep, poll_interval=50.0)  # type: ignore[arg-type]
    visit = next(v for v in plan_visits(5, 30.0) if v.escalates)
    await asyncio.wait_for(simulator.play(visit), 10)
    # Without an agent's reply the customer does not "answer" it, but still says goodbye and leaves.
    assert backend.calls[-1][0] == "leave"
    assert not any(c[0] == "write" and c[2] in texts.ANSWERS_TO_AGENT[visit.language] for c in backend.calls)


@pytest.mark.asyncio
async def test_simulator_on_the_dashboard_backend(tmp_path: Path) -> None:
    backend = DashboardBackend(tmp_path / "sim.sqlite3")
    try:
        simulator = Simulator(backend, rate=30.0, seed=2, sleep=no_sleep)
        await asyncio.wait_for(simulator.run(limit=12), 30)
        customers = backend.customers()
        assert len(customers) == 12
        assert {c.language for c in customers} == {"en", "id"}
        assert {c.tenant for c in customers} <= {"acme", "globex"}
        escalated = [v for v in itertools.islice(plan_visits(2, 30.0), 12) if v.escalates]
        assert escalated
    finally:
        await backend.close()
