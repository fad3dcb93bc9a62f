#!/usr/bin/env python3
"""Public header hygiene (STYLE 2.2), as a TAP producer for meson.

  check_headers.py compile LANG INCLUDE_DIR --cc CMD... [--flags FLAG...]
      Every include/chat/*.h compiles on its own (included twice, which also
      proves the include guard) with the given compiler and flags. LANG is
      'c' or 'c++'. One TAP line per header.

  check_headers.py includes INCLUDE_DIR
      Every public header includes nothing but other public headers and
      <stddef.h>, <stdint.h>, <stdbool.h>; every header that declares
      CHAT_API functions wraps them in extern "C" for C++ callers.

Headers are found by globbing INCLUDE_DIR/chat at test time, so a header
added later is checked without touching meson.build.
"""
import os
import re
import subprocess
import sys

ALLOWED_SYSTEM = {"stddef.h", "stdint.h", "stdbool.h"}
INCLUDE_RE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*(.*?)[ \t]*$', re.M)


def public_headers(include_dir):
    chat_dir = os.path.join(include_dir, "chat")
    names = sorted(n for n in os.listdir(chat_dir) if n.endswith(".h"))
    return chat_dir, names


def strip_comments(text):
    # Good enough for headers: no string literal in them holds "/*" or "//"
    # ahead of an #include. Keep newlines so line numbers survive.
    text = re.sub(r'/\*.*?\*/', lambda m: "\n" * m.group(0).count("\n"),
                  text, flags=re.S)
    return re.sub(r'//[^\n]*', '', text)


def tap(results):
    """results: list of (ok, description, diagnostic lines)."""
    print("TAP version 13")
    print("1..%d" % len(results))
    failed = 0
    for i, (ok, desc, diag) in enumerate(results, 1):
        print("%s %d - %s" % ("ok" if ok else "not ok", i, desc))
        if not ok:
            # meson shows stderr with --print-errorlogs, not TAP comments.
            print("not ok - " + desc, file=sys.stderr)
        for line in diag:
            print("# " + line)
            if not ok:
                print("    " + line, file=sys.stderr)
        failed += not ok
    return 1 if failed else 0


def cmd_compile(argv):
    lang, include_dir = argv[0], argv[1]
    rest = argv[2:]
    if not rest or rest[0] != "--cc":
        sys.exit("usage: compile LANG INCLUDE_DIR --cc CMD... [--flags FLAG...]")
    rest = rest[1:]
    if "--flags" in rest:
        i = rest.index("--flags")
        cc, flags = rest[:i], rest[i + 1:]
    else:
        cc, flags = rest, []
    if lang not in ("c", "c++"):
        sys.exit("LANG must be c or c++")
    _, names = public_headers(include_dir)
    if not names:
        return tap([(False, "no public headers found in %s/chat" % include_dir, [])])
    results = []
    for name in names:
        src = "#include <chat/%s>\n#include <chat/%s>\n" % (name, name)
        if lang == "c":
            # A translation unit that is only declarations is "empty" to
            # -Wpedantic when the header is all macros (version.h).
            src += "typedef int chat_header_check_nonempty;\n"
        cmd = cc + ["-x", lang] + flags + ["-I", include_dir,
                                            "-c", "-o", os.devnull, "-"]
        p = subprocess.run(cmd, input=src, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        diag = []
        if p.returncode != 0 or p.stdout.strip():
            diag = ["$ " + " ".join(cmd)] + p.stdout.rstrip().splitlines()
        results.append((p.returncode == 0 and not p.stdout.strip(),
                        "chat/%s compiles alone as %s" % (name, lang), diag))
    return tap(results)


def cmd_includes(argv):
    include_dir = argv[0]
    chat_dir, names = public_headers(include_dir)
    public = set(names)
    results = []
    for name in names:
        path = os.path.join(chat_dir, name)
        with open(path, encoding="utf-8") as f:
            raw = f.read()
        text = strip_comments(raw)
        bad = []
        for m in INCLUDE_RE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            spec = m.group(1)
            sm = re.match(r'^(<([^>]+)>|"([^"]+)")', spec)
            if not sm:
                bad.append("%s:%d: computed #include %s" % (name, line, spec))
                continue
            target = sm.group(2) or sm.group(3)
            if sm.group(2) is not None and target in ALLOWED_SYSTEM:
                continue
            if sm.group(3) is not None and target in public:
                continue  # "common.h", next to the includer
            if target.startswith("chat/") and target[5:] in public:
                continue  # <chat/common.h> or "chat/common.h"
            bad.append("%s:%d: includes %s; public headers may include only "
                       "each other and <stddef.h>, <stdint.h>, <stdbool.h>"
                       % (name, line, sm.group(1)))
        results.append((not bad, "chat/%s includes only allowed headers" % name,
                        bad))

        # Only headers that declare functions need C linkage for C++.
        if re.search(r'^\s*CHAT_API\b', text, re.M):
            has_guard = re.search(r'#\s*ifdef\s+__cplusplus\s*\n\s*extern\s+"C"',
                                  text) is not None
            results.append((has_guard,
                            'chat/%s wraps its declarations in extern "C"' % name,
                            [] if has_guard else
                            ['%s declares CHAT_API functions without '
                             '#ifdef __cplusplus / extern "C" {' % name]))
    return tap(results)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    mode, argv = sys.argv[1], sys.argv[2:]
    if mode == "compile":
        return cmd_compile(argv)
    if mode == "includes":
        return cmd_includes(argv)
    sys.exit("unknown mode %r" % mode)


if __name__ == "__main__":
    sys.exit(main())
