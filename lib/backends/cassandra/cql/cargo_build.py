#!/usr/bin/env python3
"""Build the chat_cql staticlib with cargo for meson.

Usage: cargo_build.py CARGO MANIFEST TARGET_DIR OUTPUT DEPFILE [PROFILE]

Runs `cargo build --locked` (Cargo.lock is committed; crates come from
crates.io into ~/.cargo, nothing is vendored), copies the archive to
OUTPUT, and rewrites cargo's dependency file so that ninja sees OUTPUT
depending on every Rust source cargo read: the next `ninja` rebuilds only
when one of them changed.
"""
import os
import shutil
import subprocess
import sys


def main() -> int:
    cargo, manifest, target_dir, output, depfile = sys.argv[1:6]
    profile = sys.argv[6] if len(sys.argv) > 6 else "release"
    cmd = [cargo, "build", "--locked", "--manifest-path", manifest,
           "--target-dir", target_dir, "--profile", profile]
    # -j from meson's environment is not cargo's business; keep it modest
    # on shared machines unless the caller says otherwise.
    env = dict(os.environ)
    env.setdefault("CARGO_BUILD_JOBS", os.environ.get("JOBS", "2"))
    rc = subprocess.call(cmd, env=env)
    if rc != 0:
        return rc
    out_dir = "release" if profile == "release" else (
        "debug" if profile == "dev" else profile)
    built = os.path.join(target_dir, out_dir, "libchat_cql.a")
    tmp = output + ".tmp"
    shutil.copyfile(built, tmp)
    os.replace(tmp, output)
    dep = os.path.join(target_dir, out_dir, "libchat_cql.d")
    with open(dep, encoding="utf-8") as f:
        text = f.read()
    # "target: dep dep ..." -> "OUTPUT: dep dep ..."; the separator is the
    # first ": " (paths may hold ':' only on Windows).
    _, _, deps = text.partition(": ")
    with open(depfile, "w", encoding="utf-8") as f:
        f.write(output.replace(" ", "\\ ") + ": " + deps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
