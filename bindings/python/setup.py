"""setuptools entry: the cffi extension (libchat_build.py) and, with
LIBCHAT_BUNDLE=1, a copy of libchat.so.<major> inside the package (found
through the extension's $ORIGIN rpath). Metadata is in pyproject.toml."""
import os
import shutil
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import libchat_build  # noqa: E402


class BuildExt(build_ext):
    def run(self):
        super().run()
        if os.environ.get("LIBCHAT_BUNDLE", "") in ("", "0"):
            return
        _, libdirs = libchat_build.locate()
        for d in libdirs:
            names = sorted(n for n in os.listdir(d)
                           if n.startswith("libchat.so.") and n.count(".") == 2)
            if names:
                dest = os.path.join(self.build_lib, "libchat")
                os.makedirs(dest, exist_ok=True)
                shutil.copy2(os.path.join(d, names[0]),
                             os.path.join(dest, names[0]))
                return
        raise RuntimeError("LIBCHAT_BUNDLE=1 but no libchat.so.<major> in %r"
                           % (libdirs,))


setup(
    cffi_modules=["libchat_build.py:ffibuilder"],
    cmdclass={"build_ext": BuildExt},
)
