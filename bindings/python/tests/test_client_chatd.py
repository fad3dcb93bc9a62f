"""The asyncio client against a real chatd."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import libchat
from libchat import ReceiptState

from conftest import TIMEOUT, next_event, is_msg, wait_for

FAST = dict(backoff_ms=(200, 1000, 50))


async def test_two_users_chat_with_receipts_history_and_devices(
        chatd_factory: Any, tmp_path: Any) -> None:
    push_log = str(tmp_path / "push.jsonl")
    chatd = chatd_factory(["--push-log", push_log])
    async with libchat.connect(chatd.url, chatd.token("alice", "a1"),
                               store=str(tmp_path / "alice.db")) as a, \
            libchat.connect(chatd.url, chatd.token("bob", "b1"),
                            store=str(tmp_path / "bob.db")) as b:
        await a.wait_ready(TIMEOUT)
        await b.wait_ready(TIMEOUT)
        conv = await a.create_conversation(["bob"])
        assert conv.type == "direct" and set(conv.members) == {"alice", "bob"}
        cid = conv.conversation_id

        ack = await asyncio.wait_for(a.send(cid, "hello bob"), TIMEOUT)
        assert ack.message_id > 0 and not ack.duplicate
        ev = await next_event(b, is_msg("hello bob"))
        assert ev.message.message_id == ack.message_id
        assert ev.message.sender_id == "alice"
        assert ev.origin == libchat.Origin.LIVE

        # delivered comes from bob's core by itself; read is bob's call
        d = await next_event(a, lambda e: isinstance(e, libchat.ReceiptEvent)
                             and e.state == ReceiptState.DELIVERED)
        assert (d.member_id, d.message_id) == ("bob", ack.message_id)
        b.mark_read(cid, ack.message_id)
        r = await next_event(a, lambda e: isinstance(e, libchat.ReceiptEvent)
                             and e.state == ReceiptState.READ)
        assert (r.member_id, r.message_id) == ("bob", ack.message_id)
        mine = a.messages(cid)
        assert [(m.message.body, m.own, m.state) for m in mine] == \
            [("hello bob", True, ReceiptState.READ)]

        # typing, both ways through the cores
        b.typing(cid)
        t = await next_event(a, lambda e: isinstance(e, libchat.TypingEvent))
        assert (t.user_id, t.is_typing) == ("bob", True)

        # a group with counts
        g = await a.create_conversation(["bob", "carol"], name="trio")
        assert g.type == "group" and g.name == "trio"
        ack2 = await a.send(g.conversation_id, "hi all")
        ev2 = await next_event(b, is_msg("hi all"))
        b.mark_read(g.conversation_id, ev2.message.message_id)
        rg = await next_event(a, lambda e: isinstance(e, libchat.ReceiptEvent)
                              and e.state == ReceiptState.READ
                              and e.conversation_id == g.conversation_id)
        assert rg.message_id == ack2.message_id
        assert rg.read_count == 1 and rg.delivered_count is not None

        # conversation list and history paging over REST
        convs = await b.conversations()
        assert {c.conversation_id for c in convs} == {cid, g.conversation_id}
        for i in range(5):
            await a.send(cid, "page-%d" % i)
        await next_event(b, is_msg("page-4"))
        page = await b.load_older(cid, before=0, limit=3)
        assert [m.message.body for m in page] == ["page-2", "page-3", "page-4"]
        older = await b.load_older(cid, before=page[0].message.message_id,
                                   limit=10)
        assert [m.message.body for m in older] == \
            ["hello bob", "page-0", "page-1"]

        # push: bob's device registered, bob offline, alice writes
        await b.register_device("fcm", "bob-push-token")
    async with libchat.connect(chatd.url, chatd.token("alice", "a1"),
                               store=str(tmp_path / "alice.db")) as a:
        await a.send(cid, "while you sleep")

        def pushed() -> bool:
            try:
                with open(push_log) as f:
                    return any(json.loads(l)["user_id"] == "bob" for l in f)
            except OSError:
                return False
        await wait_for(pushed, what="a push line for bob")
        line = [json.loads(l) for l in open(push_log)][-1]
        assert line["conversation_id"] == cid and line["sender_id"] == "alice"
        assert "sleep" not in line["preview"]   # never the body


async def test_outbox_survives_chatd_restart(chatd_factory: Any,
                                             tmp_path: Any) -> None:
    """SIGKILL chatd in the middle of a stream of sends, close the sender's
    client while the server is down, restart both: every message arrives
    exactly once."""
    chatd = chatd_factory(["--rate-per-minute", "100000"])
    port = chatd.port
    ta, tb = chatd.token("alice", "a1"), chatd.token("bob", "b1")
    store = str(tmp_path / "alice.db")
    a = await libchat.connect(chatd.url, ta, store=store, **FAST)
    await a.wait_ready(TIMEOUT)
    cid = (await a.create_conversation(["bob"])).conversation_id
    n = 60
    sends = [asyncio.ensure_future(a.send(cid, "m%02d" % i)) for i in range(40)]
    await wait_for(lambda: sum(s.done() for s in sends) >= 5,
                   what="a few acks")
    chatd.kill()                       # mid-stream: some acked, some not
    # and more while the server is down: certainly not acked
    sends += [asyncio.ensure_future(a.send(cid, "m%02d" % i))
              for i in range(40, n)]
    await asyncio.sleep(0.2)
    assert a.outbox_len >= 20
    await a.close()                    # the outbox is in alice.db
    results = await asyncio.gather(*sends, return_exceptions=True)
    acked = [r for r in results if isinstance(r, libchat.Ack)]
    assert all(isinstance(r, (libchat.Ack, libchat.ConnectionLost))
               for r in results), results
    assert 0 < len(acked) < n
    chatd.start(port=port)
    async with libchat.connect(chatd.url, ta, store=store, **FAST) as a2:
        assert a2.outbox_len == n - len(acked)
        await wait_for(lambda: a2.outbox_len == 0, what="the outbox to drain")
    # bob reads the whole conversation from scratch: each body once, in order
    async with libchat.connect(chatd.url, tb, **FAST) as b:
        await b.wait_ready(TIMEOUT)
        page = await b.load_older(cid, limit=200)
    bodies = [m.message.body for m in page]
    assert bodies == ["m%02d" % i for i in range(n)], bodies
    ids = [m.message.message_id for m in page]
    assert len(set(ids)) == n
    for ack in acked:      # acked before the kill: stored with that id
        assert ack.message_id in ids


async def test_resume_fills_a_gap_and_rest_pages_past_the_cap(
        chatd_factory: Any, tmp_path: Any) -> None:
    chatd = chatd_factory(["--resume-max-messages", "5"])
    ta, tb = chatd.token("alice", "a1"), chatd.token("bob", "b1")
    bstore = str(tmp_path / "bob.db")
    async with libchat.connect(chatd.url, ta, **FAST) as a:
        c1 = (await a.create_conversation(["bob"])).conversation_id
        c2 = (await a.create_conversation(["bob", "carol"], name="g")).conversation_id
        async with libchat.connect(chatd.url, tb, store=bstore, **FAST) as b:
            await b.wait_ready(TIMEOUT)
            await a.send(c1, "before-1")
            await a.send(c2, "before-2")
            await next_event(b, is_msg("before-1"))
            await next_event(b, is_msg("before-2"))
        # bob is away: 3 messages in c1 (within the cap), 8 in c2 (over it)
        for i in range(3):
            await a.send(c1, "gap1-%d" % i)
        for i in range(8):
            await a.send(c2, "gap2-%d" % i)
    got: list[libchat.MessageEvent] = []
    async with libchat.connect(chatd.url, tb, store=bstore, **FAST) as b:
        def collect(ev: Any) -> bool:
            if isinstance(ev, libchat.MessageEvent):
                got.append(ev)
            return isinstance(ev, libchat.ResumeEvent) and ev.complete
        await next_event(b, collect)
        assert b.last_seen(c1) == max(m.message.message_id for m in got
                                      if m.message.conversation_id == c1)
        s1 = [m.message.body for m in b.messages(c1)]
        s2 = [m.message.body for m in b.messages(c2)]
    assert s1 == ["before-1"] + ["gap1-%d" % i for i in range(3)]
    assert s2 == ["before-2"] + ["gap2-%d" % i for i in range(8)]
    origins = {(e.message.conversation_id, e.origin) for e in got}
    assert (c1, libchat.Origin.RESUME) in origins
    assert (c2, libchat.Origin.REST) in origins   # resume_failed -> REST pages
    assert len(got) == 11                         # each new message once


async def test_token_expiry_4001_fresh_token_and_recovery(
        chatd_factory: Any, tmp_path: Any) -> None:
    chatd = chatd_factory()
    asked: list[libchat.AuthReason] = []

    async def provider(why: libchat.AuthReason) -> str:
        asked.append(why)
        await asyncio.sleep(0)
        return str(chatd.token("alice", "a1", ttl=3600))

    short = chatd.token("alice", "a1", ttl=2)
    async with libchat.connect(chatd.url, chatd.token("bob", "b1"), **FAST) as b, \
            libchat.connect(chatd.url, short, token_provider=provider,
                            store=str(tmp_path / "a.db"), **FAST) as a:
        await a.wait_ready(TIMEOUT)
        await b.wait_ready(TIMEOUT)
        cid = (await a.create_conversation(["bob"])).conversation_id
        ev = await next_event(a, lambda e: isinstance(e, libchat.AuthRequiredEvent),
                              timeout=30)
        assert ev.reason == libchat.AuthReason.EXPIRED
        await next_event(a, lambda e: isinstance(e, libchat.ConnectionEvent)
                         and e.state == libchat.State.READY)
        assert asked == [libchat.AuthReason.EXPIRED]
        ack = await asyncio.wait_for(a.send(cid, "after refresh"), TIMEOUT)
        m = await next_event(b, is_msg("after refresh"))
        assert m.message.message_id == ack.message_id


async def test_refused_token_waits_for_the_app(chatd: Any) -> None:
    async with libchat.connect(chatd.url, "not.a-token", **FAST) as a:
        ev = await next_event(a, lambda e: isinstance(e, libchat.AuthRequiredEvent))
        assert ev.reason == libchat.AuthReason.REFUSED
        assert a.state == libchat.State.UNAUTHORIZED
        qid = a.send_nowait("c1", "queued while unauthorized")
        assert qid and a.outbox_len == 1
        await asyncio.sleep(0.5)
        assert a.state == libchat.State.UNAUTHORIZED      # no retry with it
        a.set_token(chatd.token("alice", "a1"))
        await a.wait_ready(TIMEOUT)
        err = await next_event(a, lambda e: isinstance(e, libchat.ErrorEvent)
                               and e.client_msg_id == qid)
        assert err.wire in ("no_such_conversation", "not_member")


async def test_send_refused_for_good_raises(chatd: Any) -> None:
    async with libchat.connect(chatd.url, chatd.token("alice", "a1")) as a:
        with __import__("pytest").raises(libchat.ServerError) as e:
            await asyncio.wait_for(a.send("nope", "x"), TIMEOUT)
        assert e.value.wire in ("no_such_conversation", "not_member")
        with __import__("pytest").raises(libchat.InvalidArgument) as e2:
            a.send_nowait("bad id!", "x")
        assert "conversation" in e2.value.reason


def test_sync_facade(chatd: Any, tmp_path: Any) -> None:
    from libchat.sync import connect
    with connect(chatd.url, chatd.token("alice", "a1"),
                 store=str(tmp_path / "s.db")) as a, \
            connect(chatd.url, chatd.token("bob", "b1")) as b:
        a.wait_ready(TIMEOUT)
        b.wait_ready(TIMEOUT)     # live before the message: not a fresh device
        conv = a.create_conversation(["bob"], timeout=TIMEOUT)
        ack = a.send(conv.conversation_id, "sync hi", timeout=TIMEOUT)
        for ev in b.events(timeout=TIMEOUT):
            if isinstance(ev, libchat.MessageEvent):
                assert ev.message.message_id == ack.message_id
                break
        else:
            raise AssertionError("bob got nothing")
        assert [m.message.body for m in a.messages(conv.conversation_id)] == \
            ["sync hi"]
