# The cffi extension built by libchat_build.py (API mode). cffi objects
# carry no static types; the modules that use them convert at the edges.
from typing import Any

ffi: Any
lib: Any
