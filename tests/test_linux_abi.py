"""agent/mpinit_agent/linux_abi.py (the ABI numbers for CPython) against `_linux`, which exports them from the
kernel and C library headers: a wrong number in linux_abi.py fails here instead of in a boot.

Once per architecture: the build machine's runtime, and the arm64 one (run under qemu-aarch64) against
linux_abi._arch_values("aarch64"), where arm64's own headers differ (O_DIRECTORY, O_NOFOLLOW)."""

import subprocess

import pytest

from mpinit_agent import linux_abi

pytestmark = pytest.mark.runtime


def abi_names():
    return sorted(n for n in vars(linux_abi) if n.isupper() and not n.startswith("_"))


def native_constants(binary, prefix=()):
    code = ("import _linux\n"
            "for n in sorted(dir(_linux)):\n"
            "    v = getattr(_linux, n)\n"
            "    if n.isupper() and type(v) is int:\n"
            "        print(n, v)\n")
    proc = subprocess.run(list(prefix) + [str(binary), "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = {}
    for line in proc.stdout.splitlines():
        name, value = line.split()
        out[name] = int(value)
    return out


def _elf_machine_name(path):
    from mpinit import arch

    return arch.of_elf(path).machines[0]   # uname -m's spelling: x86_64, aarch64


@pytest.fixture(scope="module", params=["build machine", "arm64"])
def built(request):
    """(uname -m of the binary, its _linux constants)."""
    if request.param == "arm64":
        prefix, path = request.getfixturevalue("arm64_runtime")
    else:
        prefix, path = (), request.getfixturevalue("runtime_binary")
    return _elf_machine_name(path), native_constants(path, prefix)


@pytest.fixture(scope="module")
def native(built):
    return built[1]


@pytest.fixture(scope="module")
def expected(built):
    """linux_abi's values for the binary's architecture."""
    return linux_abi._arch_values(built[0])


def test_linux_abi_has_constants():
    assert len(abi_names()) > 100


def test_every_constant_equals_the_native_one(native, expected):
    wrong = {}
    for name in abi_names():
        value = expected[name]
        if native.get(name) != value:
            wrong[name] = (value, native.get(name))
    assert not wrong, "linux_abi.py value != _linux value (None: missing in _linux): %r" % wrong


def test_native_exports_nothing_the_cpython_side_lacks(native):
    # The fake machine on CPython gets its constants from linux_abi.py: anything _linux adds must be there too.
    missing = sorted(set(native) - set(abi_names()))
    assert not missing, "in _linux but not in linux_abi.py: %s" % missing


def test_arch_values_differ_only_where_the_headers_do():
    x86, arm = linux_abi._arch_values("x86_64"), linux_abi._arch_values("aarch64")
    assert set(x86) == set(arm) == set(abi_names())
    # arch/arm64/include/uapi/asm/fcntl.h: O_DIRECTORY 040000, O_NOFOLLOW 0100000, O_DIRECT 0200000 (asm-generic:
    # 0200000, 0400000, 040000)
    assert {n for n in x86 if x86[n] != arm[n]} == {"O_DIRECTORY", "O_NOFOLLOW", "O_DIRECT"}
    assert (arm["O_DIRECTORY"], arm["O_NOFOLLOW"], arm["O_DIRECT"]) == (0o40000, 0o100000, 0o200000)
    assert x86["O_DIRECT"] == 0o40000
