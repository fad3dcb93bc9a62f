#!/usr/bin/env python3
"""HAProxy smoke check: three real chatd gateways behind svc.sh's HAProxy.

Usage: haproxy-smoke.py --chatd build/chatd/chatd

Starts three `chatd serve` on free loopback ports (one token key shared, so
a token works on any gateway) and HAProxy in front with svc.sh, then checks
what the scale-out deployment relies on:
  1. every gateway passes the /healthz check, and /healthz answers 200
     through the proxy;
  2. six WebSocket sessions (chat.v1) open through the proxy, get `hello`,
     and spread two per gateway (leastconn);
  3. SIGTERM to one gateway (its drain): HAProxy marks it DOWN within 5 s,
     its sessions are closed with 1001, and six new sessions all land on
     the other two;
  4. svc.sh stop (SIGUSR1, graceful): the port is released at once while
     established WebSockets keep working, and the stop completes within
     the drain (hard-stop-after, 3 s here) plus a margin.
Everything it started is stopped at the end, also on failure. Needs the
`websockets` package (13 or newer), as the integration suite does.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from websockets.sync.client import connect

HERE = os.path.dirname(os.path.abspath(__file__))
SVC = os.path.join(HERE, "svc.sh")

failures = 0
count = 0


def check(cond, what):
    global failures, count
    count += 1
    print("%s %d - %s" % ("ok" if cond else "not ok", count, what), flush=True)
    if not cond:
        failures += 1


def start_chatd(chatd, data_dir, machine_id):
    log = open(os.path.join(data_dir, "chatd.log"), "w")
    p = subprocess.Popen([chatd, "serve", "--listen", "127.0.0.1:0",
                          "--data-dir", data_dir, "--machine-id", str(machine_id)],
                         stdout=subprocess.PIPE, stderr=log, text=True)
    deadline = time.time() + 30
    line = ""
    while time.time() < deadline:
        line = p.stdout.readline()
        m = re.match(r"listening on (\S+)", line)
        if m:
            return p, m.group(1)
        if p.poll() is not None:
            break
    raise RuntimeError("chatd did not start: %r" % line)


def stat(hadir):
    out = subprocess.check_output([SVC, "cmd", "haproxy", "--dir", hadir, "show stat"],
                                  text=True)
    res = {}
    for line in out.splitlines():
        f = line.split(",")
        if len(f) > 17 and f[0] == "gateways" and f[1].startswith("gw"):
            res[f[1]] = (int(f[4] or 0), f[17])
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chatd", required=True)
    args = ap.parse_args()
    chatd = os.path.abspath(args.chatd)
    tmp = tempfile.mkdtemp(prefix="libchat-haproxy-smoke.")
    hadir = os.path.join(tmp, "haproxy")
    gws = []
    sessions = []
    try:
        dirs = [os.path.join(tmp, "gw%d" % i) for i in (1, 2, 3)]
        for d in dirs:
            os.makedirs(d)
        p, addr = start_chatd(chatd, dirs[0], 1)
        gws.append((p, addr))
        for i in (1, 2):
            shutil.copy(os.path.join(dirs[0], "token.key"), dirs[i])
            gws.append(start_chatd(chatd, dirs[i], i + 1))
        backends = ",".join(a for _, a in gws)
        env_out = subprocess.check_output(
            [SVC, "start", "haproxy", "--port", "auto", "--dir", hadir,
             "--backends", backends, "--drain", "3s"], text=True)
        env = dict(re.findall(r"export (\w+)='([^']*)'", env_out))
        ws_url = env["CHAT_HAPROXY_WS"]
        host, port = env["CHAT_HAPROXY_ADDR"].split(":")

        def token(user):
            return subprocess.check_output(
                [chatd, "token", "--data-dir", dirs[0], "--user", user,
                 "--device", "d"], text=True).strip()

        def open_session(user):
            ws = connect(ws_url, subprotocols=["chat.v1"], open_timeout=10,
                         close_timeout=5, ping_interval=None, proxy=None,
                         compression=None,
                         additional_headers={"Authorization": "Bearer " + token(user)})
            # Entering marks the connection as managed (websockets >= 17.1
            # warns otherwise); close() ends it.
            ws.__enter__()
            hello = json.loads(ws.recv(timeout=10))
            return ws, hello

        t0 = time.time()
        while time.time() - t0 < 15:
            s = stat(hadir)
            if len(s) == 3 and all(v[1] == "UP" for v in s.values()):
                break
            time.sleep(0.2)
        check(all(v[1] == "UP" for v in s.values()),
              "three gateways UP by their /healthz checks (%s)" % s)
        with socket.create_connection((host, int(port)), timeout=5) as c:
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = c.recv(4096).decode(errors="replace")
        check(reply.startswith("HTTP/1.1 200"), "GET /healthz through HAProxy: 200")

        first = []
        hellos = 0
        for i in range(6):
            ws, hello = open_session("u%d" % i)
            hellos += hello.get("type") == "hello"
            first.append(ws)
            sessions.append(ws)
        s = stat(hadir)
        check(hellos == 6, "each got its hello (%d/6)" % hellos)
        check(sorted(v[0] for v in s.values()) == [2, 2, 2],
              "six WebSocket sessions through HAProxy, two per gateway (%s)" % s)

        # Drain one gateway.
        victim = gws[1][0]
        t1 = time.time()
        victim.send_signal(signal.SIGTERM)
        down_after = None
        while time.time() - t1 < 10:
            s = stat(hadir)
            if s["gw2"][1].startswith("DOWN"):
                down_after = time.time() - t1
                break
            time.sleep(0.1)
        check(down_after is not None and down_after < 5,
              "SIGTERM to gateway 2: marked DOWN after %s s" %
              ("%.2f" % down_after if down_after is not None else "never"))
        closed_1001 = 0
        for ws in first:
            try:
                ws.recv(timeout=0.5)
            except Exception as e:  # ConnectionClosed or TimeoutError
                if getattr(getattr(e, "rcvd", None), "code", None) == 1001:
                    closed_1001 += 1
        check(closed_1001 == 2, "its two sessions were closed with 1001 (%d)" % closed_1001)
        for i in range(6):
            ws, _ = open_session("n%d" % i)
            sessions.append(ws)
        s = stat(hadir)
        check(s["gw2"][0] == 0 and s["gw1"][0] + s["gw3"][0] == 10,
              "six new sessions all on the two live gateways (%s)" % s)

        # Graceful stop of the proxy.
        live = sessions[-6:]
        t2 = time.time()
        stopper = subprocess.Popen([SVC, "stop", "haproxy", "--dir", hadir])
        unbound = None
        while time.time() - t2 < 5:
            try:
                socket.create_connection((host, int(port)), timeout=0.2).close()
            except OSError:
                unbound = time.time() - t2
                break
            time.sleep(0.05)
        check(unbound is not None and unbound < 2,
              "svc.sh stop: the port is released after %s s" %
              ("%.2f" % unbound if unbound is not None else "never"))
        alive = 0
        for ws in live:
            try:
                ws.ping().wait(2)
                alive += 1
            except Exception:
                pass
        check(alive == 6, "established WebSockets keep working during the drain (%d/6)" % alive)
        rc = stopper.wait(timeout=30)
        took = time.time() - t2
        check(rc == 0 and took < 3 + 5, "the stop completed in %.1f s (drain 3 s)" % took)
    finally:
        for ws in sessions:
            try:
                ws.close()
            except Exception:
                pass
        subprocess.call([SVC, "stop", "haproxy", "--dir", hadir],
                        stderr=subprocess.DEVNULL)
        for p, _ in gws:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p, _ in gws:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print("1..%d" % count)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
