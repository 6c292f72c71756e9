"""The MicroPython gate: the agent as it ships (frozen into build/mpinit-init) imports and passes the pure tests
under MicroPython itself, and every agent module compiles with mpy-cross.

The pure tests are the tests/test_*.py files with `MICROPYTHON = True`; tests/mpy/run.py runs them with a
pytest stand-in (tests/mpy/pytest.py). The runtime is built by `python3 build.py runtime` (MPINIT_RUNTIME
overrides); `python3 build.py test` builds it first, so the frozen code is the checkout's."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mpinit.paths import build_dir

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "agent" / "mpinit_agent"
RUNNER = ROOT / "tests" / "mpy" / "run.py"
NOT_FROZEN = {"linux_abi"}  # CPython's copy of the ABI numbers (agent/manifest.py leaves it out)

pytestmark = pytest.mark.runtime


def _micropython(binary, args, cwd=ROOT):
    # argv[0] "micropython": the binary is the init only under the name "init" (agent/native/initmain.c), and
    # MPINIT_RUNTIME may point at an /init taken out of an image.
    return subprocess.run(["micropython"] + [str(a) for a in args], executable=str(binary), cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)


def agent_modules():
    return sorted(p.stem for p in AGENT.glob("*.py") if p.stem != "__init__" and p.stem not in NOT_FROZEN)


def find_mpy_cross():
    """MPINIT_MPY_CROSS, else the one build.py built (build/micropython/src/*/mpy-cross/build/), else PATH."""
    env = os.environ.get("MPINIT_MPY_CROSS")
    if env:
        return Path(env)
    for pattern in ("micropython/src/*/mpy-cross/build/mpy-cross", "*/mpy-cross/build/mpy-cross",
                    "*/*/*/mpy-cross/build/mpy-cross"):
        for found in sorted(build_dir().glob(pattern)):
            if found.is_file() and os.access(found, os.X_OK):
                return found
    which = shutil.which("mpy-cross")
    return Path(which) if which else None


def test_runner_line_format_counts():
    # The gate below trusts the closing line; make sure a failing test is reported as failed, not passed.
    import importlib.util

    spec = importlib.util.spec_from_file_location("mpy_run", RUNNER)
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    src = "def test_a():\n    pass\ndef test_b(tmp_path):\n    pass\ndef helper():\n    pass\ndef test_c(\n  x):\n"
    assert run.test_functions(src) == [("test_a", False), ("test_b", True), ("test_c", True)]
    assert run.opted_in("import x\nMICROPYTHON = True\n")
    assert not run.opted_in("MICROPYTHON = False\n")


def test_pure_tests_pass_under_the_runtime(runtime_binary):
    assert_pure_tests_passed(_micropython(runtime_binary, [RUNNER]), "MicroPython")


def assert_pure_tests_passed(proc, where):
    """tests/mpy/run.py's output (proc) ran the frozen agent, says nothing failed, and names every opted-in file."""
    lines = proc.stdout.strip().split("\n")
    assert lines[0].startswith("mpinit_agent from .frozen/"), proc.stdout[-3000:]
    last = lines[-1].split()
    assert len(last) == 4 and last[1] == "passed," and last[3] == "failed", proc.stdout[-3000:]
    passed, failed = int(last[0]), int(last[2])
    failures = [line for line in lines if line.startswith("FAIL ")]
    assert failed == 0 and proc.returncode == 0, "\n".join(failures + ["", "output:", proc.stdout[-6000:]])
    assert passed > 0
    # Every opted-in test file was run.
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        if "\nMICROPYTHON = True\n" in path.read_text():
            assert ("%s::" % path.name) in proc.stdout, "%s did not run under %s" % (path.name, where)


def test_runner_reports_a_failure(runtime_binary, tmp_path):
    # A copy of the runner next to a failing test file: the closing line and the exit status must say so.
    tests = tmp_path / "tests"
    (tests / "mpy").mkdir(parents=True)
    for name in ("run.py", "pytest.py"):
        shutil.copy(ROOT / "tests" / "mpy" / name, tests / "mpy" / name)
    (tests / "test_demo.py").write_text(
        "import pytest\nMICROPYTHON = True\n"
        "def test_ok():\n    assert 1 + 1 == 2\n"
        "def test_bad():\n    assert 1 + 1 == 3, 'arithmetic'\n"
        "@pytest.mark.parametrize('a, b', [(1, 1), (2, 3)])\n"
        "def test_eq(a, b):\n    assert a == b\n"
        "def test_raises():\n    with pytest.raises(ValueError, match='bad'):\n        int('bad')\n"
        "def test_raises_other_text():\n    with pytest.raises(ValueError, match='nothing like it'):\n"
        "        int('bad')\n"
        "def test_skip():\n    pytest.skip('not here')\n"
        "def test_fixture(tmp_path):\n    pass\n")
    proc = _micropython(runtime_binary, [tests / "mpy" / "run.py"], cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout
    assert proc.stdout.strip().split("\n")[-1] == "3 passed, 3 failed", proc.stdout
    for line in ("PASS test_demo.py::test_ok", "FAIL test_demo.py::test_bad: AssertionError: arithmetic",
                 "PASS test_demo.py::test_eq[0]", "FAIL test_demo.py::test_eq[1]",
                 "PASS test_demo.py::test_raises", "FAIL test_demo.py::test_raises_other_text", "SKIP test_demo.py::test_skip: not here",
                 "SKIP test_demo.py::test_fixture: takes pytest fixtures"):
        assert line in proc.stdout, proc.stdout


def test_every_agent_module_is_frozen_and_imports(runtime_binary):
    assert_agent_imports(lambda args, cwd: _micropython(runtime_binary, args, cwd=cwd))


def assert_agent_imports(run):
    """Every agent module imports from the frozen package (run(args, cwd) runs the runtime); returns the output."""
    names = agent_modules()
    code = ("import sys\nfailed = 0\n"
            "for name in %r:\n"
            "    try:\n"
            "        mod = __import__('mpinit_agent.' + name, None, None, ['x'])\n"
            "        print('ok', name, mod.__file__)\n"
            "    except Exception as e:\n"
            "        failed += 1\n"
            "        print('FAIL', name, type(e).__name__, e)\n"
            "import mpinit_agent\nprint('path', mpinit_agent.__path__)\n"
            "import mpinit_agent.syscalls as sc\nprint('native', sc._NATIVE)\n"
            "sys.exit(1 if failed else 0)\n" % (names,))
    # Run from an empty directory: nothing but the frozen package can be found.
    proc = run(["-c", code], Path("/"))
    assert proc.returncode == 0, proc.stdout
    assert "path .frozen/mpinit_agent" in proc.stdout, proc.stdout
    for name in names:
        assert "ok %s " % name in proc.stdout, proc.stdout
    return proc


def test_every_agent_module_compiles_with_mpy_cross(tmp_path):
    mpy_cross = find_mpy_cross()
    if mpy_cross is None:
        pytest.skip("mpy-cross not found under %s (built by `python3 build.py runtime`) nor on PATH; "
                    "MPINIT_MPY_CROSS overrides" % build_dir())
    errors = []
    for path in sorted(AGENT.glob("*.py")):
        out = tmp_path / (path.stem + ".mpy")
        proc = subprocess.run([str(mpy_cross), "-o", str(out), "-s", "mpinit_agent/" + path.name, str(path)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0 or not out.exists():
            errors.append("%s: %s" % (path.name, proc.stdout.strip()))
    assert not errors, "\n".join(errors)
