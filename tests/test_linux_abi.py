"""agent/mpinit_agent/linux_abi.py (the ABI numbers for CPython) against `_linux`, which exports them from the
kernel and C library headers: a wrong number in linux_abi.py fails here instead of in a boot."""

import subprocess

import pytest

from mpinit_agent import linux_abi

pytestmark = pytest.mark.runtime


def abi_names():
    return sorted(n for n in vars(linux_abi) if n.isupper() and not n.startswith("_"))


def native_constants(binary):
    code = ("import _linux\n"
            "for n in sorted(dir(_linux)):\n"
            "    v = getattr(_linux, n)\n"
            "    if n.isupper() and type(v) is int:\n"
            "        print(n, v)\n")
    proc = subprocess.run([str(binary), "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = {}
    for line in proc.stdout.splitlines():
        name, value = line.split()
        out[name] = int(value)
    return out


@pytest.fixture(scope="module")
def native(runtime_binary):
    return native_constants(runtime_binary)


def test_linux_abi_has_constants():
    assert len(abi_names()) > 100


def test_every_constant_equals_the_native_one(native):
    wrong = {}
    for name in abi_names():
        value = getattr(linux_abi, name)
        if native.get(name) != value:
            wrong[name] = (value, native.get(name))
    assert not wrong, "linux_abi.py value != _linux value (None: missing in _linux): %r" % wrong


def test_native_exports_nothing_the_cpython_side_lacks(native):
    # The fake machine on CPython gets its constants from linux_abi.py: anything _linux adds must be there too.
    missing = sorted(set(native) - set(abi_names()))
    assert not missing, "in _linux but not in linux_abi.py: %s" % missing
