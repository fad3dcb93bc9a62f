#!/usr/bin/env python3
"""Load figures for chatd over loopback, with a raw-socket client (no
WebSocket library in the way: frames are built and counted by hand).

  chatd_load.py CHATD [--sync full|normal] [--write-budget N]
                [--rx-buffer N] MODE...

Modes (each starts its own chatd on a temporary data directory):
  latency    one sender, one send in flight: send -> ack latency
  acks       one sender, --window sends in flight: acks per second
  fanout     one sender to a group of --members online receivers: message
             frames delivered per second (from chatd's own counters)
  idle       --conns idle sessions: chatd's resident memory per session

Prints one line of key=value figures per mode. Numbers are for comparing
settings on one machine, not absolutes.
"""
import argparse
import json
import os
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request


def ws_frame(text):
    """A masked client text frame; the all-zero mask leaves the payload."""
    data = text.encode()
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", 0x81, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    return head + b"\0\0\0\0" + data


class Server:
    def __init__(self, chatd, args):
        self.dir = tempfile.mkdtemp(prefix="chatd-load-")
        self.chatd = chatd
        self.proc = subprocess.Popen(
            [chatd, "serve", "--listen", "127.0.0.1:0", "--data-dir",
             self.dir] + args, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        self.port = int(re.search(r":(\d+)$", line.strip()).group(1))
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}))

    def token(self, user, device="d"):
        return subprocess.run(
            [self.chatd, "token", "--data-dir", self.dir, "--user", user,
             "--device", device], capture_output=True,
            check=True).stdout.decode().strip()

    def rest(self, method, path, token, body=None):
        req = urllib.request.Request(
            "http://127.0.0.1:%d%s" % (self.port, path), method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": "Bearer " + token,
                     "Content-Type": "application/json"})
        with self.opener.open(req, timeout=30) as r:
            return json.loads(r.read())

    def metric(self, name):
        with self.opener.open("http://127.0.0.1:%d/metrics" % self.port,
                              timeout=30) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return None

    def cpu_s(self):
        """chatd's user + system CPU time so far, in seconds."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def connect(self, token):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        s.sendall(b"GET /chat/v1/ws HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
                  b"Sec-WebSocket-Version: 13\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Protocol: chat.v1\r\n"
                  b"Authorization: Bearer " + token.encode() + b"\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        assert buf.startswith(b"HTTP/1.1 101"), buf[:80]
        # The hello may follow in the same read or the next.
        rest = buf.partition(b"\r\n\r\n")[2]
        while b'"hello"' not in rest:
            rest += s.recv(4096)
        return s

    def stop(self):
        os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def count_acks(buf, carry):
    data = carry + buf
    n = data.count(b'"type":"ack"')
    return n, data[-16:]


def mode_latency(srv, n=2000):
    tok = srv.token("s")
    cid = srv.rest("POST", "/api/v1/conversations", tok,
                   {"type": "direct", "members": ["r"]})["conversation_id"]
    s = srv.connect(tok)
    lat = []
    for i in range(n):
        f = ws_frame(json.dumps({"type": "send", "client_msg_id": "l%d" % i,
                                 "conversation_id": cid, "body": "x" * 64}))
        t0 = time.perf_counter()
        s.sendall(f)
        got, carry = 0, b""
        while not got:
            got, carry = count_acks(s.recv(65536), carry)
        lat.append(time.perf_counter() - t0)
    lat.sort()
    s.close()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
    return "mode=latency n=%d p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f" % (
        n, q(0.5), q(0.9), q(0.99))


def mode_acks(srv, window=256, seconds=5.0):
    tok = srv.token("s")
    cid = srv.rest("POST", "/api/v1/conversations", tok,
                   {"type": "direct", "members": ["r"]})["conversation_id"]
    s = srv.connect(tok)
    s.setblocking(False)
    sent = acked = 0
    carry = b""
    out = b""
    t_end = time.monotonic() + seconds
    commits0 = srv.metric("chat_store_commits_total") or 0
    cpu0 = srv.cpu_s()
    t0 = time.monotonic()
    while time.monotonic() < t_end:
        while sent - acked < window:
            out += ws_frame(json.dumps(
                {"type": "send", "client_msg_id": "a%d" % sent,
                 "conversation_id": cid, "body": "x" * 64}))
            sent += 1
        if out:
            try:
                k = s.send(out)
                out = out[k:]
            except BlockingIOError:
                pass
        try:
            data = s.recv(1 << 20)
            got, carry = count_acks(data, carry)
            acked += got
        except BlockingIOError:
            time.sleep(0.0002)
    dt = time.monotonic() - t0
    cpu = (srv.cpu_s() - cpu0) / dt
    commits = (srv.metric("chat_store_commits_total") or 0) - commits0
    s.close()
    return ("mode=acks window=%d acks_per_s=%.0f commits=%d "
            "sends_per_commit=%.1f chatd_cpu=%.0f%%"
            % (window, acked / dt, commits, acked / max(commits, 1),
               cpu * 100))


def mode_fanout(srv, members=200, seconds=5.0, window=64):
    tok = srv.token("s")
    users = ["u%d" % i for i in range(members)]
    cid = srv.rest("POST", "/api/v1/conversations", tok,
                   {"type": "group", "name": "load",
                    "members": users})["conversation_id"]
    sel = selectors.DefaultSelector()
    recv = []
    for u in users:
        r = srv.connect(srv.token(u))
        r.setblocking(False)
        sel.register(r, selectors.EVENT_READ)
        recv.append(r)
    s = srv.connect(tok)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, data="sender")
    time.sleep(0.5)  # conversation frames to every receiver
    frames0 = srv.metric("chat_ws_messages_sent_total") or 0
    cpu0 = srv.cpu_s()
    sent = acked = 0
    carry = b""
    t0 = time.monotonic()
    t_end = t0 + seconds
    while time.monotonic() < t_end:
        while sent - acked < window:
            try:
                s.send(ws_frame(json.dumps(
                    {"type": "send", "client_msg_id": "f%d" % sent,
                     "conversation_id": cid, "body": "x" * 64})))
            except BlockingIOError:
                break
            sent += 1
        for key, _ in sel.select(timeout=0.01):
            try:
                data = key.fileobj.recv(1 << 20)
            except BlockingIOError:
                continue
            if key.data == "sender":
                got, carry = count_acks(data, carry)
                acked += got
    dt = time.monotonic() - t0
    cpu = (srv.cpu_s() - cpu0) / dt
    frames = (srv.metric("chat_ws_messages_sent_total") or 0) - frames0
    for r in recv:
        r.close()
    s.close()
    return ("mode=fanout members=%d sends_per_s=%.0f frames_out_per_s=%.0f "
            "chatd_cpu=%.0f%%" % (members, acked / dt, frames / dt,
                                  cpu * 100))


def mode_idle(srv, conns=2000):
    time.sleep(0.3)
    base = srv.rss_kib()
    socks = []
    for i in range(conns):
        socks.append(srv.connect(srv_token_cache(srv, i)))
    time.sleep(0.5)
    after = srv.rss_kib()
    for s in socks:
        s.close()
    return "mode=idle conns=%d rss_base_kib=%d bytes_per_conn=%.0f" % (
        conns, base, (after - base) * 1024.0 / conns)


_tokens = {}


def srv_token_cache(srv, i):
    # Minting spawns a process; one token per 100 connections is enough
    # (a user may have many devices, and device ids need not differ).
    k = i // 100
    if k not in _tokens:
        _tokens[k] = srv.token("idle%d" % k, "d%d" % k)
    return _tokens[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("chatd")
    ap.add_argument("modes", nargs="+")
    ap.add_argument("--sync", default="full")
    ap.add_argument("--write-budget", type=int, default=0)
    ap.add_argument("--rx-buffer", type=int, default=0)
    ap.add_argument("--members", type=int, default=200)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args()
    args = ["--sync", a.sync, "--rate-per-minute", "100000000",
            "--rest-rate-per-minute", "100000000",
            "--max-group-members", "100000"]
    if a.write_budget:
        args += ["--write-budget-bytes", str(a.write_budget)]
    if a.rx_buffer:
        args += ["--rx-buffer-bytes", str(a.rx_buffer)]
    for m in a.modes:
        srv = Server(a.chatd, args)
        try:
            if m == "latency":
                line = mode_latency(srv)
            elif m == "acks":
                line = mode_acks(srv, a.window, a.seconds)
            elif m == "fanout":
                line = mode_fanout(srv, a.members, a.seconds)
            elif m == "idle":
                _tokens.clear()
                line = mode_idle(srv, a.conns)
            else:
                raise SystemExit("unknown mode " + m)
        finally:
            srv.stop()
        print("sync=%s write_budget=%s %s" % (a.sync, a.write_budget or
                                               "default", line), flush=True)


if __name__ == "__main__":
    main()
