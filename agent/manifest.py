# Freeze manifest for /init (MicroPython's tools/manifestfile.py runs it with this directory as the cwd).
#
# Every module of the agent package is frozen as bytecode, except linux_abi.py: it holds the ABI numbers for
# CPython only (on MicroPython the native module `_linux` exports them from the kernel headers).
# Nothing is require()d from micropython-lib: the Debian source tarball ships lib/micropython-lib empty.
import os

_EXCLUDE = ("linux_abi.py",)


def _agent_files():
    files = []
    for dirpath, dirnames, filenames in os.walk("mpinit_agent"):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".py") and name not in _EXCLUDE:
                files.append(os.path.relpath(os.path.join(dirpath, name), "mpinit_agent"))
    return files


package("mpinit_agent", files=_agent_files())
