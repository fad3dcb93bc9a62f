"""A two-user terminal chat on libchat's Python binding.

    python chat.py URL TOKEN PEER [STORE]     (e.g. ws://127.0.0.1:8080)

Lines you type go to PEER; their messages and read receipts are printed.
"""
import asyncio
import sys

import libchat


async def main(url: str, token: str, peer: str, store: str) -> None:
    async with libchat.connect(url, token, store=store) as c:
        cid = (await c.create_conversation([peer])).conversation_id
        page = await c.load_older(cid, limit=20)     # recent history
        for m in page:
            print(f"{m.message.sender_id}: {m.message.body}", flush=True)
        if page:
            c.mark_read(cid, page[-1].message.message_id)

        async def show() -> None:
            async for ev in c.events():
                if (isinstance(ev, libchat.MessageEvent) and ev.message.conversation_id == cid
                        and ev.origin != libchat.Origin.OLDER):     # not the page above
                    print(f"{ev.message.sender_id}: {ev.message.body}", flush=True)
                    c.mark_read(cid, ev.message.message_id)
                elif isinstance(ev, libchat.ReceiptEvent) and ev.state == libchat.ReceiptState.READ:
                    print(f"  (read by {ev.member_id})", flush=True)
                elif isinstance(ev, libchat.AuthRequiredEvent):
                    print("the token was refused or expired: restart with a fresh one", flush=True)

        shower = asyncio.ensure_future(show())
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if line.strip():
                ack = await c.send(cid, line.strip())     # returns once stored
                print(f"  (sent, id {ack.message_id})", flush=True)
        shower.cancel()


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) not in (3, 4):
        sys.exit(__doc__)
    asyncio.run(main(args[0], args[1], args[2], args[3] if len(args) == 4 else ":memory:"))
