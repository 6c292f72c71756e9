"""The arm64 /init (`python3 build.py runtime --arch arm64`: build/arm64/mpinit-init) on this machine, run under
qemu-aarch64 (qemu-user): an arm64 static binary inside the same size budget, the frozen agent imports, and the
agent's MicroPython tests pass under it as they do under the build machine's runtime.

The ABI numbers of its native module are checked against linux_abi.py in tests/test_linux_abi.py; real arm64
boots are tests/e2e/test_arm64.py."""

import subprocess
from pathlib import Path

import pytest

from test_micropython import RUNNER, assert_agent_imports, assert_pure_tests_passed
from test_runtime import GZIP_BUDGET, PT_INTERP, REFUSAL, SIZE_BUDGET, program_header_types

pytestmark = pytest.mark.runtime

ROOT = Path(__file__).resolve().parent.parent
EM_AARCH64 = 183   # System V gABI e_machine


def run(arm64_runtime, args, cwd=ROOT, argv0=None):
    prefix, path = arm64_runtime
    if argv0 and prefix:
        prefix = list(prefix) + ["-0", argv0]   # qemu-user's own option: the program's argv[0]
    return subprocess.run(list(prefix) + [str(path)] + [str(a) for a in args], cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=900)


def test_is_a_static_arm64_binary(arm64_runtime):
    _, path = arm64_runtime
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2, "not a 64-bit ELF file"
    assert int.from_bytes(data[18:20], "little") == EM_AARCH64
    assert PT_INTERP not in program_header_types(path), "%s is dynamically linked" % path


def test_size_budget(arm64_runtime, record_property):
    import gzip

    _, path = arm64_runtime
    data = path.read_bytes()
    gz = len(gzip.compress(data, compresslevel=9, mtime=0))
    record_property("arm64_size", len(data))
    record_property("arm64_gzip", gz)
    assert len(data) <= SIZE_BUDGET, "%d bytes > %d" % (len(data), SIZE_BUDGET)
    assert gz <= GZIP_BUDGET, "%d gzipped > %d" % (gz, GZIP_BUDGET)


def test_pure_tests_pass_under_the_arm64_runtime(arm64_runtime):
    assert_pure_tests_passed(run(arm64_runtime, [RUNNER]), "the arm64 runtime")


def test_every_agent_module_is_frozen_and_imports(arm64_runtime):
    proc = assert_agent_imports(lambda args, cwd: run(arm64_runtime, args, cwd=cwd))
    assert "native True" in proc.stdout


def test_as_init_outside_pid1_it_refuses(arm64_runtime, tmp_path):
    # Under the name "init" and not PID 1 (qemu-user runs it as an ordinary process): the refusal, exit 2,
    # before any Python runs (agent/native/initmain.c).
    marker = tmp_path / "touched"
    proc = run(arm64_runtime, ["-c", "open(%r, 'w').write('x')" % str(marker)], cwd=tmp_path, argv0="/init")
    assert proc.returncode == 2, proc.stdout
    assert REFUSAL.split(" (pid")[0] in proc.stdout
    assert not marker.exists()
