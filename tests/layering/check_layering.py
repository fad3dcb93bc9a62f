#!/usr/bin/env python3
"""Layering and sans-I/O rules of lib/ (STYLE 2.5, 2.13; docs/architecture.md).

  check_layering.py includes SOURCE_ROOT
      Scans #include lines of lib/**/*.{c,h}:
      - the cores (lib/common, lib/proto, lib/client, lib/server) include
        no transport, storage, crypto, socket, thread or clock header;
      - cJSON is never included in lib/ (we have our own parser; cJSON is
        the tests' and fuzzers' oracle); sqlite3.h, sodium.h and
        libwebsockets.h only in their one backend or transport directory;
      - dependencies point down: common -> nothing; proto -> common;
        client and server -> proto, common, never each other.

  check_layering.py symbols --nm NM --map CHAT_MAP STATIC_LIB...
      Every global symbol defined in lib/'s static libraries is chat__*
      (internal) or a chat_* name listed in chat.map (public); and the core
      (the first library, chat_core) calls no clock, sleep, socket, thread,
      randomness, environment or stdio function, and allocates only in
      common/alloc.c.

TAP output, one line per rule and directory (or object file).
"""
import os
import re
import subprocess
import sys

CORES = ["common", "proto", "client", "server"]

# Headers a sans-I/O core never needs (STYLE 2.5): transports, storage,
# crypto, sockets, threads and clocks, plus the JSON library we do not use.
CORE_FORBIDDEN = {
    "libwebsockets.h", "sqlite3.h", "sodium.h", "cJSON.h", "cjson/cJSON.h",
    "sys/socket.h", "netinet/in.h", "netinet/tcp.h", "arpa/inet.h", "netdb.h",
    "poll.h", "sys/poll.h", "sys/epoll.h", "sys/select.h", "uv.h",
    "pthread.h", "threads.h", "time.h", "sys/time.h",
}

# Dependency headers that exactly one directory of lib/ may include.
ONLY_IN = {
    "sqlite3.h": "backends/sqlite",
    "sodium.h": "backends/sodium",
    "libwebsockets.h": "transport/lws",
}
NEVER_IN_LIB = {"cJSON.h", "cjson/cJSON.h", "cJSON_Utils.h",
                "cjson/cJSON_Utils.h"}

# Which lib/ areas each core may include from (besides include/chat).
MAY_USE = {
    "common": {"common"},
    "proto": {"common", "proto"},
    "client": {"common", "proto", "client"},
    "server": {"common", "proto", "server"},
}

INCLUDE_RE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"]+)[>"]', re.M)


def strip_comments(text):
    text = re.sub(r'/\*.*?\*/', lambda m: "\n" * m.group(0).count("\n"),
                  text, flags=re.S)
    return re.sub(r'//[^\n]*', '', text)


def sources(lib_dir):
    for dirpath, dirnames, filenames in os.walk(lib_dir):
        dirnames.sort()
        for f in sorted(filenames):
            if f.endswith((".c", ".h")):
                yield os.path.join(dirpath, f)


def area_of(lib_dir, path):
    rel = os.path.relpath(path, lib_dir).split(os.sep)
    return rel[0] if len(rel) > 1 else ""


def tap(results):
    print("TAP version 13")
    print("1..%d" % len(results))
    for i, (ok, desc, diag) in enumerate(results, 1):
        print("%s %d - %s" % ("ok" if ok else "not ok", i, desc))
        if not ok:
            # meson shows stderr with --print-errorlogs, not TAP comments.
            print("not ok - " + desc, file=sys.stderr)
        for line in diag:
            print("# " + line)
            if not ok:
                print("    " + line, file=sys.stderr)
    return 0 if all(r[0] for r in results) else 1


def cmd_includes(argv):
    root = argv[0]
    lib_dir = os.path.join(root, "lib")
    per_area = {}   # area -> list of problems
    for path in sources(lib_dir):
        area = area_of(lib_dir, path)
        rel = os.path.relpath(path, root)
        sub = os.path.relpath(os.path.dirname(path), lib_dir).replace(os.sep, "/")
        probs = per_area.setdefault(area or "(lib/)", [])
        with open(path, encoding="utf-8", errors="replace") as f:
            text = strip_comments(f.read())
        for m in INCLUDE_RE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            quote, target = m.group(1), m.group(2).strip()
            where = "%s:%d: #include %s%s%s" % (
                rel, line, quote, target, ">" if quote == "<" else '"')
            base = target.rsplit("/", 1)[-1]
            if target in NEVER_IN_LIB or base in NEVER_IN_LIB:
                probs.append(where + ": cJSON is for tests and fuzzers only; "
                             "lib/ uses its own parser (lib/common/json.c)")
                continue
            owner = ONLY_IN.get(target) or ONLY_IN.get(base)
            if owner and not (sub == owner or sub.startswith(owner + "/")):
                probs.append(where + ": only lib/%s may include this" % owner)
                continue
            if area in MAY_USE and (target in CORE_FORBIDDEN):
                probs.append(where + ": the sans-I/O cores use no sockets, "
                             "threads, clocks or dependency headers")
                continue
            if area in MAY_USE:
                # Resolve a project header the way the compiler would: next
                # to the includer (quotes only), then lib/ (lib_inc).
                cands = []
                if quote == '"':
                    cands.append(os.path.join(os.path.dirname(path), target))
                cands.append(os.path.join(lib_dir, target))
                hit = next((c for c in cands if os.path.isfile(c)), None)
                if hit is None:
                    continue  # system, public (<chat/...>) or generated
                dep = area_of(lib_dir, os.path.normpath(hit))
                if dep not in MAY_USE[area]:
                    probs.append(where + ": lib/%s may not depend on lib/%s "
                                 "(allowed: %s)" % (area, dep or ".",
                                 ", ".join(sorted(MAY_USE[area]))))
    results = []
    for area in sorted(per_area):
        probs = per_area[area]
        results.append((not probs, "lib/%s include rules" % area, probs))
    for core in CORES:
        if core not in per_area:
            results.append((True, "lib/%s include rules # SKIP no such "
                            "directory yet" % core, []))
    return tap(results)


# Undefined references that betray I/O, clocks, threads, randomness or
# global state in a core object (STYLE 2.5, 2.3 rule 6).
FORBIDDEN_CALLS = re.compile(r'^(' + "|".join([
    r'time', r'clock', r'clock_gettime', r'gettimeofday', r'timespec_get',
    r'localtime(_r)?', r'gmtime(_r)?', r'mktime',
    r'sleep', r'usleep', r'nanosleep', r'clock_nanosleep',
    r'pthread_\w+', r'thrd_\w+', r'mtx_\w+', r'cnd_\w+',
    r'socket', r'connect', r'bind', r'listen', r'accept4?', r'send',
    r'sendto', r'sendmsg', r'recv', r'recvfrom', r'recvmsg', r'poll',
    r'select', r'epoll_\w+', r'getaddrinfo',
    r'open', r'openat', r'read', r'write', r'close', r'fopen', r'fclose',
    r'fread', r'fwrite', r'fprintf', r'printf', r'vfprintf', r'vprintf',
    r'__fprintf_chk', r'__printf_chk', r'__vfprintf_chk', r'__vprintf_chk',
    r'puts', r'fputs', r'fputc', r'putchar', r'perror', r'stdout', r'stderr',
    r'rand', r'srand', r'random', r'srandom', r'rand_r', r'drand48',
    r'getrandom', r'getentropy', r'arc4random\w*',
    r'getenv', r'secure_getenv', r'setenv', r'exit', r'_exit',
    r'cJSON_\w+', r'sqlite3_\w+', r'sodium_\w+', r'randombytes\w*',
    r'lws_\w+',
]) + r')$')
ALLOC_CALLS = re.compile(r'^(malloc|calloc|realloc|free|reallocarray|'
                         r'aligned_alloc|posix_memalign|strdup|strndup)$')
# The one object that may call libc's allocator: the default chat_allocator.
ALLOC_HOME = re.compile(r'(^|[_/\\])common[_/\\]alloc\.c\.o(bj)?$|^alloc\.c\.o(bj)?$')
# Symbols compilers and sanitizers add on their own.
FOREIGN = re.compile(r'^(__asan|__odr_asan|__ubsan|__sanitizer|__sancov|'
                     r'__lsan|__gcov|__llvm|__profc|__profd|\.)')


def nm_members(nm, lib, extra):
    """{member: [(kind, name)]} from `nm -A` over a static library."""
    out = subprocess.run([nm, "-A", "-P"] + extra + [lib], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    members = {}
    for line in out.splitlines():
        # "lib.a[member.o]: name T value size" (POSIX format, with -A)
        m = re.match(r'^(.*?)(?:\[(.*?)\])?:\s+(\S+)\s+(\S)', line)
        if not m:
            continue
        member = m.group(2) or os.path.basename(m.group(1))
        members.setdefault(member, []).append((m.group(4), m.group(3)))
    return members


def cmd_symbols(argv):
    nm, map_path, libs = None, None, []
    it = iter(argv)
    for a in it:
        if a == "--nm":
            nm = next(it)
        elif a == "--map":
            map_path = next(it)
        else:
            libs.append(a)
    if not nm or not map_path or not libs:
        sys.exit("usage: symbols --nm NM --map CHAT_MAP STATIC_LIB...")
    with open(map_path, encoding="utf-8") as f:
        map_text = re.sub(r'/\*.*?\*/', ' ', f.read(), flags=re.S)
    listed = set(re.findall(r'\b(chat_\w+)\s*;', map_text))

    results = []
    for li, lib in enumerate(libs):
        name = os.path.basename(lib)
        defined = nm_members(nm, lib, ["--defined-only", "-g"])
        bad = []
        count = 0
        for member, syms in sorted(defined.items()):
            for kind, sym in syms:
                if FOREIGN.match(sym) or kind in "UwvN":
                    continue
                count += 1
                if sym.startswith("chat__"):
                    continue
                if sym.startswith("chat_") and sym in listed:
                    continue
                if sym.startswith("chat_"):
                    why = "public-looking name missing from lib/chat.map"
                else:
                    why = "make it static, or name it chat__<area>_<verb>"
                bad.append("%s: %s (%s): %s" % (member, sym, kind, why))
        results.append((not bad, "%s: %d global symbols are chat__* or "
                        "listed chat_*" % (name, count), bad))
        if li != 0:
            continue
        # The first library is the sans-I/O core.
        undefined = nm_members(nm, lib, ["--undefined-only"])
        calls, allocs = [], []
        for member, syms in sorted(undefined.items()):
            for _, sym in syms:
                if FORBIDDEN_CALLS.match(sym):
                    calls.append("%s calls %s" % (member, sym))
                elif ALLOC_CALLS.match(sym) and not ALLOC_HOME.search(member):
                    allocs.append("%s calls %s: allocate through "
                                  "chat__alloc() (STYLE 2.7)" % (member, sym))
        results.append((not calls, "%s: no clock, sleep, socket, thread, "
                        "randomness, environment or stdio calls" % name,
                        calls))
        results.append((not allocs, "%s: libc allocation only in "
                        "common/alloc.c" % name, allocs))
    return tap(results)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    mode, argv = sys.argv[1], sys.argv[2:]
    if mode == "includes":
        return cmd_includes(argv)
    if mode == "symbols":
        return cmd_symbols(argv)
    sys.exit("unknown mode %r" % mode)


if __name__ == "__main__":
    sys.exit(main())
