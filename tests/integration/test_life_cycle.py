"""A customer's life cycle through `listen` against the demo backend: take over, reply, resolve, hand back.

The demo backend follows PROTOCOL.md (the dashboard refuses ``assign_agent`` for a customer who has
not asked for a human; the org ``assign`` has no conflict check), so these show the client copes with
the servers' real behaviour.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.integration.test_listen import ListenProcess, flags_for, listen_env, start_listen
from tray_agent.demo.server import DemoServer

pytestmark = pytest.mark.integration


async def _outcome(listen: ListenProcess, command_id: str) -> dict[str, Any]:
    return await listen.expect(
        lambda e: e.get("command_id") == command_id and e["event"] in ("command_succeeded", "command_failed")
    )


async def _command(listen: ListenProcess, **fields: Any) -> dict[str, Any]:
    await listen.send(json.dumps(fields))
    return await _outcome(listen, fields["id"])


async def _connected(demo: DemoServer, tmp_path: Any) -> ListenProcess:
    agent = demo.info.agents[0]
    listen = await start_listen(flags_for(demo, str(tmp_path)), listen_env(agent.password))
    await listen.expect(lambda e: e["event"] == "connection" and e["state"] == "connected")
    return listen


async def _dashboard_customer(demo: DemoServer, ref: str) -> dict[str, Any]:
    page_id, customer_id = ref.split("/")
    session = aiohttp.CookieJar(unsafe=True)
    agent = demo.info.agents[0]
    async with aiohttp.ClientSession(cookie_jar=session) as http:
        login = {"email": agent.email, "password": agent.password, "company_id": agent.tenant}
        async with http.post(f"{demo.info.url}/auth/login", json=login) as response:
            assert response.status == 200
        url = f"{demo.info.url}/api/dashboard/customers/{customer_id}"
        async with http.get(url, params={"page_id": page_id}) as response:
            body: dict[str, Any] = await response.json()
            return body["customer"]  # type: ignore[no-any-return]


async def _org_call(demo: DemoServer, agent_index: int, method: str, path: str, body: Any = None) -> Any:
    agent = demo.info.agents[agent_index]
    base = demo.info.url
    headers = {"apikey": demo.info.extra["supabase_anon_key"]}
    async with aiohttp.ClientSession() as http:
        grant = {"email": agent.email, "password": agent.password}
        async with http.post(
            f"{base}/auth/v1/token", params={"grant_type": "password"}, json=grant, headers=headers
        ) as response:
            token = (await response.json())["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        async with http.request(method, f"{base}{path}", json=body, headers=auth) as response:
            assert response.status < 300, await response.text()
            return await response.json()


@pytest.mark.asyncio
async def test_dashboard_take_over_of_an_ai_handled_customer_then_resolve(tmp_path: Any) -> None:
    demo = DemoServer("dashboard", preload=0)
    await demo.start()
    try:
        listen = await _connected(demo, tmp_path)
        customer = await demo.backend.new_customer(name="Budi")
        await demo.backend.customer_writes(customer, "hello bot")  # the AI has them: nobody asked for a human
        await listen.expect(lambda e: e["event"] == "message_received" and e["text"] == "hello bot")
        assert (await _dashboard_customer(demo, customer.ref))["stop"] is False

        taken = await _command(listen, cmd="take_over", conversation=customer.ref, id="t1")
        assert taken["event"] == "command_succeeded", taken
        row = await _dashboard_customer(demo, customer.ref)
        assert row["stop"] is True
        assert row["is_assigned"] is True

        replied = await _command(listen, cmd="reply", conversation=customer.ref, text="Saya bantu", id="r1")
        assert replied["event"] == "command_succeeded", replied

        resolved = await _command(listen, cmd="resolve", conversation=customer.ref, id="x1")
        assert resolved["event"] == "command_succeeded", resolved
        row = await _dashboard_customer(demo, customer.ref)
        assert (row["stop"], row["is_assigned"]) == (False, False)  # released, the bot answers again
        code, stderr = await listen.finish()
        assert code == 0, stderr
    finally:
        await demo.stop()


@pytest.mark.asyncio
async def test_dashboard_hand_back_gives_the_customer_to_the_bot(tmp_path: Any) -> None:
    demo = DemoServer("dashboard", preload=1)
    await demo.start()
    try:
        listen = await _connected(demo, tmp_path)
        (customer,) = demo.backend.customers()
        taken = await _command(listen, cmd="take_over", conversation=customer.ref, id="t1")
        assert taken["event"] == "command_succeeded", taken
        back = await _command(listen, cmd="hand_back", conversation=customer.ref, id="h1")
        assert back["event"] == "command_succeeded", back
        row = await _dashboard_customer(demo, customer.ref)
        assert (row["stop"], row["is_assigned"]) == (False, False)
        await listen.finish()
    finally:
        await demo.stop()


@pytest.mark.asyncio
async def test_org_take_over_does_not_steal_a_colleagues_chat_unless_forced_then_resolve(
    tmp_path: Any,
) -> None:
    demo = DemoServer("org", preload=1)
    await demo.start()
    try:
        me, colleague = demo.info.agents[0], demo.info.agents[1]
        assert me.tenant == colleague.tenant
        listen = await _connected(demo, tmp_path)
        (customer,) = [c for c in demo.backend.customers() if c.tenant == me.tenant]
        await _org_call(demo, 1, "PUT", f"/crm/chats/{customer.ref}/assign", {"assigned_to_me": True})

        theirs = (await _org_call(demo, 0, "GET", f"/crm/chats/{customer.ref}"))["human_agent_id"]
        await listen.send(json.dumps({"cmd": "refresh"}))  # the list names who holds the chat
        await listen.expect(
            lambda e: (
                e["event"] == "waiting_list"
                and any(c["agent"] and c["agent"]["name"] == colleague.name for c in e["customers"])
            )
        )

        refused = await _command(listen, cmd="take_over", conversation=customer.ref, id="t1")
        assert refused["event"] == "command_failed", refused
        assert refused["reason"] == "already_assigned"
        assert refused["text"] == f"{colleague.name} is already handling this customer"
        chat = await _org_call(demo, 0, "GET", f"/crm/chats/{customer.ref}")
        assert chat["human_agent_id"] == theirs  # untouched

        forced = await _command(listen, cmd="take_over", conversation=customer.ref, force=True, id="t2")
        assert forced["event"] == "command_succeeded", forced
        chat = await _org_call(demo, 0, "GET", f"/crm/chats/{customer.ref}")
        assert chat["human_agent_id"] not in ("", None, theirs)
        # Mine now: a take over again is not refused as somebody else's.
        again = await _command(listen, cmd="take_over", conversation=customer.ref, id="t3")
        assert again["event"] == "command_succeeded", again

        resolved = await _command(listen, cmd="resolve", conversation=customer.ref, id="x1")
        assert resolved["event"] == "command_succeeded", resolved
        chat = await _org_call(demo, 0, "GET", f"/crm/chats/{customer.ref}")
        assert chat["status"] == "resolved"
        await listen.finish()
    finally:
        await demo.stop()


@pytest.mark.asyncio
async def test_org_hand_back_assigns_the_ai_agent(tmp_path: Any) -> None:
    demo = DemoServer("org", preload=1)
    await demo.start()
    try:
        listen = await _connected(demo, tmp_path)
        me = demo.info.agents[0]
        (customer,) = [c for c in demo.backend.customers() if c.tenant == me.tenant]
        taken = await _command(listen, cmd="take_over", conversation=customer.ref, id="t1")
        assert taken["event"] == "command_succeeded", taken
        back = await _command(listen, cmd="hand_back", conversation=customer.ref, id="h1")
        assert back["event"] == "command_succeeded", back
        chat = await _org_call(demo, 0, "GET", f"/crm/chats/{customer.ref}")
        assert chat["handled_by"] == "ai"
        await listen.finish()
    finally:
        await demo.stop()
