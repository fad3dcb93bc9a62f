#!/usr/bin/env python3
"""The reconnect curve of a chatd restart, with goaway and without
(PROTOCOL.md section 8, docs/benchmarks.md "Server-advised reconnect").

Runs `chat-bench drain` RUNS times in each mode: CLIENTS clients connected
and resumed, then chatd restarted (SIGTERM, a new chatd on the same port
and data directory):
  - goaway:    chatd --drain-spread-ms SPREAD; clients wait a uniform
               random delay in [0, retry_after_ms] before reconnecting;
  - no goaway: chatd --drain-spread-ms 0 (close 1001); clients use the
               SDK's reconnect backoff (1 s first ceiling, full jitter).
Every client resumes after reconnecting. It writes the raw runs and the
medians to bench/results/drain-<date>.json and plots reconnects per
100 ms and the share of clients resumed against the time since SIGTERM
(every run, the median one bold) to docs/img/drain-curve.png.

  bench/drain_curve.py [--build-dir DIR] [--runs 3] [--clients 10000]
                       [--spread 10000] [--plot-only RESULTS.json]

matplotlib comes from PyPI into a private virtual environment
(~/.cache/libchat-bench-venv, or $LIBCHAT_BENCH_VENV), never into the
repository. Never run by meson test.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def venv_python():
    """A python with matplotlib, in a venv made (once) for this script."""
    venv = os.environ.get("LIBCHAT_BENCH_VENV") or os.path.join(
        os.path.expanduser("~"), ".cache", "libchat-bench-venv")
    py = os.path.join(venv, "bin", "python3")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    probe = subprocess.run([py, "-c", "import matplotlib"],
                           capture_output=True)
    if probe.returncode != 0:
        subprocess.run([py, "-m", "pip", "install", "--quiet",
                        "matplotlib>=3.5"], check=True)
    return py


def run_bench(bench, chatd, clients, spread, timeout):
    args = [bench, "drain", "--chatd", chatd, "--clients", str(clients),
            "--spread", str(spread), "--timeout", str(timeout)]
    out = subprocess.run(args, capture_output=True, text=True,
                         timeout=timeout * 3 + 120)
    if out.returncode != 0:
        sys.exit("chat-bench failed (%d):\n%s" % (out.returncode,
                                                   out.stderr[-2000:]))
    result = None
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
        elif line.startswith("# "):
            print(line)
    if result is None or result["resumed"] != clients:
        sys.exit("chat-bench: not every client resumed: %s" % out.stdout)
    return result


FIGURES = ["peak_reconnects_per_100ms", "peak_resumes_per_100ms",
           "all_resumed_s", "resume_p50_s", "resume_p99_s",
           "failed_attempts", "old_exited_ms", "new_listening_ms",
           "closed_max_ms"]


def median_bins(runs, key):
    n = max(len(r[key]) for r in runs)
    return [statistics.median(r[key][i] if i < len(r[key]) else 0
                              for r in runs) for i in range(n)]


def summarize(runs):
    out = {}
    for f in FIGURES:
        vals = [r[f] for r in runs]
        out[f] = {"median": statistics.median(vals), "min": min(vals),
                  "max": max(vals)}
    out["reconnects_per_bin_median"] = median_bins(runs,
                                                   "reconnects_per_bin")
    out["resumes_per_bin_median"] = median_bins(runs, "resumes_per_bin")
    return out


PLOT = r'''
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
data = json.load(open(sys.argv[1]))
out = sys.argv[2]
modes = [("goaway", "with goaway (spread %d ms)" % data["spread_ms"],
          "tab:blue"),
         ("no_goaway", "without goaway (SDK backoff)", "tab:red")]
fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
total = data["clients"]
for key, label, color in modes:
    s = data["summary"][key]
    runs = sorted(data["raw"][key], key=lambda r: r["all_resumed_s"])
    middle = runs[len(runs) // 2]  # the median run, drawn bold
    for r in runs:
        bold = r is middle
        rec = r["reconnects_per_bin"]
        t = [0.1 * i for i in range(len(rec))]
        ax1.step(t, rec, where="post", color=color,
                 lw=1.6 if bold else 0.7, alpha=1.0 if bold else 0.35,
                 label=("%s: peak %d / 100 ms (median of runs)" % (
                     label, s["peak_reconnects_per_100ms"]["median"])
                        if bold else None))
        cum, acc = [], 0
        for v in r["resumes_per_bin"]:
            acc += v
            cum.append(100.0 * acc / total)
        ax2.step([0.1 * i for i in range(len(cum))], cum, where="post",
                 color=color, lw=1.6 if bold else 0.7,
                 alpha=1.0 if bold else 0.35,
                 label=("%s: all resumed after %.1f s (median)" % (
                     label, s["all_resumed_s"]["median"]) if bold else None))
ax1.set_ylabel("reconnects per 100 ms")
ax1.set_title("chatd restart under %d connected clients: %d runs each, "
              "the median run bold" % (data["clients"], data["runs"]))
ax1.legend()
ax1.grid(alpha=0.3)
ax2.set_ylabel("clients resumed (%)")
ax2.set_xlabel("seconds since SIGTERM")
ax2.set_ylim(0, 101)
ax2.legend(loc="lower right")
ax2.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(out, dpi=110)
'''


def plot(results_path, png):
    os.makedirs(os.path.dirname(png), exist_ok=True)
    py = venv_python()
    subprocess.run([py, "-c", PLOT, results_path, png], check=True)
    print("wrote", png)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", type=int, default=10000)
    ap.add_argument("--spread", type=int, default=10000,
                    help="goaway retry_after_ms (chatd --drain-spread-ms)")
    ap.add_argument("--timeout", type=int, default=120)
    ap.add_argument("--png", default=os.path.join(ROOT, "docs", "img",
                                                  "drain-curve.png"))
    ap.add_argument("--plot-only", metavar="RESULTS_JSON")
    a = ap.parse_args()
    if a.plot_only:
        plot(a.plot_only, a.png)
        return
    bench = os.path.join(a.build_dir, "bench", "chat-bench")
    chatd = os.path.join(a.build_dir, "chatd", "chatd")
    for p in (bench, chatd):
        if not os.access(p, os.X_OK):
            sys.exit("%s is missing: meson setup %s && ninja -C %s" %
                     (p, a.build_dir, a.build_dir))
    runs = {"goaway": [], "no_goaway": []}
    # Alternate the modes, so that a change in the machine's load falls on
    # both alike.
    for i in range(a.runs):
        for mode, spread in (("goaway", a.spread), ("no_goaway", 0)):
            print("run %d/%d, %s" % (i + 1, a.runs, mode), flush=True)
            runs[mode].append(run_bench(bench, chatd, a.clients, spread,
                                        a.timeout))
    data = {
        "date": datetime.date.today().isoformat(),
        "clients": a.clients,
        "spread_ms": a.spread,
        "runs": a.runs,
        "loadavg": os.getloadavg(),
        "summary": {m: summarize(r) for m, r in runs.items()},
        "raw": runs,
    }
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", "drain-%s.json" % data["date"])
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
    print("wrote", path)
    for m in ("goaway", "no_goaway"):
        s = data["summary"][m]
        print("%-9s peak %s reconnects/100 ms (%s..%s), all resumed after "
              "%.2f s (%.2f..%.2f), %s failed attempts" % (
                  m, s["peak_reconnects_per_100ms"]["median"],
                  s["peak_reconnects_per_100ms"]["min"],
                  s["peak_reconnects_per_100ms"]["max"],
                  s["all_resumed_s"]["median"], s["all_resumed_s"]["min"],
                  s["all_resumed_s"]["max"],
                  s["failed_attempts"]["median"]))
    plot(path, a.png)


if __name__ == "__main__":
    main()
