"""client_rtt.py: the Python binding's send -> ack round trip and windowed
throughput, the same measurement as bench/client_rtt.c (see there and
bench/bindings.sh for the output format).

    python client_rtt.py --url ws://127.0.0.1:PORT --token TOKEN --peer USER
                         [--n 1000] [--window 32] [--msgs 5000]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time

import libchat


async def run(url: str, token: str, peer: str, n: int, window: int,
              msgs: int) -> dict[str, object]:
    async with libchat.connect(url, token) as c:
        async def drain() -> None:      # an app reads its events
            async for _ in c.events():
                pass
        reader = asyncio.ensure_future(drain())
        await c.wait_ready(30)
        cid = (await c.create_conversation([peer])).conversation_id
        rtt: list[int] = []
        for i in range(n):
            t = time.perf_counter_ns()
            await c.send(cid, "bench-%d" % i)
            rtt.append(time.perf_counter_ns() - t)
        rtt.sort()
        left = msgs

        async def lane() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await c.send(cid, "bench-%d" % left)
        t0 = time.perf_counter_ns()
        await asyncio.gather(*(lane() for _ in range(min(window, msgs))))
        secs = (time.perf_counter_ns() - t0) / 1e9
        reader.cancel()

    def pct(p: int) -> float:
        i = (n * p + 99) // 100
        return round(rtt[max(i, 1) - 1] / 1e3, 1)
    return {"lang": "python", "n": n, "rtt_p50_us": pct(50),
            "rtt_p99_us": pct(99), "window": window, "msgs": msgs,
            "msgs_per_s": round(msgs / secs)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--msgs", type=int, default=5000)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(run(a.url, a.token, a.peer, a.n, a.window,
                                     a.msgs)), separators=(",", ":")))


if __name__ == "__main__":
    main()
