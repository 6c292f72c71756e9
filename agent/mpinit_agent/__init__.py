# mpinit's init agent: the Python that runs as /init (PID 1) from the initramfs.
#
# The same package runs on MicroPython 1.25 (frozen into /init) and on CPython (host tools, the fake machine,
# tests). On CPython there is no `micropython` module, so a shim with const() is installed here: every agent
# module can then write `from micropython import const` and get the compiler's constant folding on MicroPython.
import sys

try:
    import micropython  # noqa: F401
except ImportError:
    class _Shim:
        @staticmethod
        def const(value):
            return value

    sys.modules["micropython"] = _Shim()
