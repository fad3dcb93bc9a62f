#!/usr/bin/env python3
"""Count the verdicts in meson's testlog.json (one JSON object per line).

  testlog-summary.py TESTLOG_JSON

Prints, for each failed test that wrote nothing to stderr, the tail of its
stdout: a failed Criterion suite reports its failures there, in TAP, and
`meson test --print-errorlogs` shows only stderr for TAP tests. The last
line is "PASSED FAILED SKIPPED" for the calling script to read.
"""
import json
import sys

TAIL = 60


def main():
    passed = failed = skipped = 0
    try:
        with open(sys.argv[1], encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                t = json.loads(line)
                r = t.get("result", "")
                if r in ("OK", "EXPECTEDFAIL"):
                    passed += 1
                elif r == "SKIP":
                    skipped += 1
                else:  # FAIL, ERROR, TIMEOUT, UNEXPECTEDPASS, ...
                    failed += 1
                    out = (t.get("stdout") or "").rstrip().splitlines()
                    # A test that explained itself on stderr has already
                    # been shown by --print-errorlogs.
                    if out and not (t.get("stderr") or "").strip():
                        print("---- %s (%s): last %d lines of its stdout"
                              % (t.get("name"), r, min(TAIL, len(out))))
                        for text in out[-TAIL:]:
                            print("     " + text)
    except FileNotFoundError:
        pass
    print(passed, failed, skipped)


if __name__ == "__main__":
    main()
