#!/usr/bin/env python3
"""The shared library exports exactly what lib/chat.map lists (STYLE 2.2).

  check_abi.py --nm NM --lib LIBCHAT_SO --map CHAT_MAP --headers INCLUDE_DIR
               [--readelf READELF --soname libchat.so.N]
               [--may-be-absent SYMBOL]... [--may-be-absent-header H]...

TAP output, one line per rule:
  - the map lists names only (no wildcard in global:), each once, each
    chat_<...> and never chat__<...>;
  - every map name is declared in a public header;
  - every symbol the library defines in its dynamic table is in the map;
  - every map name is exported (except --may-be-absent ones, e.g.
    chat_env_system when libchat is built without libsodium);
  - the SONAME is libchat.so.<CHAT_VERSION_MAJOR>.
"""
import argparse
import os
import re
import subprocess
import sys

# Sanitizer and coverage runtimes may add symbols of their own; they are
# not ours and the version script cannot always hide them.
FOREIGN = re.compile(r'^(__asan|__odr_asan|__ubsan|__sanitizer|__sancov|'
                     r'__lsan|__msan|__tsan|__gcov|__llvm|__profc|__profd)')


def parse_map(path):
    """Return (nodes, names, problems). names keeps order and duplicates."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r'/\*.*?\*/', ' ', text, flags=re.S)
    text = re.sub(r'#[^\n]*', ' ', text)
    tokens = re.findall(r'[A-Za-z0-9_.*?\[\]]+|[{}:;]', text)
    nodes, names, problems = [], [], []
    depth, section, i = 0, None, 0
    while i < len(tokens):
        t = tokens[i]
        if t == "{":
            depth += 1
            section = "global"  # names before any label are global
        elif t == "}":
            depth -= 1
            section = None
        elif depth == 0 and t not in (";",):
            if i + 1 < len(tokens) and tokens[i + 1] == "{":
                nodes.append(t)
            # else: the name of an inherited node after "}"
        elif depth > 0 and i + 1 < len(tokens) and tokens[i + 1] == ":":
            section = t
            i += 1
        elif depth > 0 and t != ";":
            if section == "global":
                if any(c in t for c in "*?[]"):
                    problems.append("wildcard %r under global: (list every "
                                    "export by name)" % t)
                else:
                    names.append(t)
            elif section == "local" and t != "*":
                problems.append("unexpected local name %r" % t)
        i += 1
    return nodes, names, problems


def strip_comments(text):
    text = re.sub(r'/\*.*?\*/', ' ', text, flags=re.S)
    return re.sub(r'//[^\n]*', '', text)


def dynamic_symbols(nm, lib):
    out = subprocess.run([nm, "-D", "--defined-only", lib], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        kind, name = parts[-2], parts[-1]
        name = name.split("@", 1)[0]  # chat_x@@CHAT_0 -> chat_x
        syms[name] = kind
    return syms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nm", required=True)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--map", required=True)
    ap.add_argument("--headers", required=True)
    ap.add_argument("--readelf")
    ap.add_argument("--soname")
    ap.add_argument("--may-be-absent", action="append", default=[],
                    help="a map name the library may lack in this build")
    ap.add_argument("--may-be-absent-header", action="append", default=[],
                    help="a public header (e.g. lws.h) whose CHAT_API "
                    "functions this build may lack")
    a = ap.parse_args()

    results = []

    def check(ok, desc, diag=()):
        results.append((bool(ok), desc, list(diag)))

    nodes, names, problems = parse_map(a.map)
    seen, dups, bad_prefix = set(), [], []
    for n in names:
        if n in seen:
            dups.append(n)
        seen.add(n)
        if not n.startswith("chat_") or n.startswith("chat__"):
            bad_prefix.append(n)
    check(nodes and names and not problems, "chat.map parses into named "
          "exports (%d names, nodes %s)" % (len(names), ", ".join(nodes)),
          problems or ([] if names else ["no names under global:"]))
    check(not dups, "chat.map lists each name once",
          ["listed more than once: " + n for n in dups])
    check(not bad_prefix, "chat.map names are chat_* and never chat__*",
          ["bad name: " + n for n in bad_prefix])

    # Declared in a public header: a word match on the name is enough to
    # catch a map entry with a typo or one left behind by a rename.
    header_text = ""
    declared = set()       # CHAT_API function names
    optional = set(a.may_be_absent)
    chat_dir = os.path.join(a.headers, "chat")
    for h in sorted(os.listdir(chat_dir)):
        if not h.endswith(".h"):
            continue
        with open(os.path.join(chat_dir, h), encoding="utf-8") as f:
            text = strip_comments(f.read())
        header_text += text
        names_here = set(re.findall(
            r'^[ \t]*CHAT_API\b[^;{#]*?\b(chat_\w+)\s*\(', text, re.M))
        declared |= names_here
        if h in a.may_be_absent_header:
            optional |= names_here
    undeclared = [n for n in sorted(seen)
                  if not re.search(r'\b%s\b' % re.escape(n), header_text)]
    check(not undeclared, "every chat.map name is declared in include/chat/",
          ["not in any public header: " + n for n in undeclared])
    # And the converse: a CHAT_API declaration missing from the map links
    # for nobody (the version script hides it).
    unlisted_decls = sorted(n for n in declared if n not in seen)
    check(not unlisted_decls, "every CHAT_API function in include/chat/ is "
          "listed in chat.map (%d declared)" % len(declared),
          ["declared CHAT_API but missing from lib/chat.map: " + n
           for n in unlisted_decls])

    syms = dynamic_symbols(a.nm, a.lib)
    # Version nodes (CHAT_0) show up as absolute symbols.
    exported = {n: k for n, k in syms.items()
                if not (k == "A" and n in nodes) and not FOREIGN.match(n)}
    unlisted = sorted(n for n in exported if n not in seen)
    check(not unlisted, "%s exports only names listed in chat.map (%d "
          "exported)" % (os.path.basename(a.lib), len(exported)),
          ["exported but not in lib/chat.map: %s (%s)" % (n, exported[n])
           for n in unlisted])
    bad_exports = sorted(n for n in exported
                         if not n.startswith("chat_") or n.startswith("chat__"))
    check(not bad_exports, "every export is chat_* and never chat__*",
          ["bad export: " + n for n in bad_exports])
    missing = sorted(n for n in seen
                     if n not in exported and n not in optional)
    check(not missing, "every chat.map name is exported",
          ["listed in chat.map but not exported (missing CHAT_API or "
           "definition?): " + n for n in missing])

    if a.readelf and a.soname:
        out = subprocess.run([a.readelf, "-d", a.lib], check=True,
                             stdout=subprocess.PIPE, text=True).stdout
        m = re.search(r'\(SONAME\)\s+Library soname: \[([^\]]+)\]', out)
        got = m.group(1) if m else None
        check(got == a.soname, "SONAME is %s" % a.soname,
              [] if got == a.soname else ["SONAME is %r" % got])

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


if __name__ == "__main__":
    sys.exit(main())
