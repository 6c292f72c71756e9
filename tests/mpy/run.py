# Runs our pure tests on MicroPython: `micropython tests/mpy/run.py [--agent-src DIR] [test_x.py ...]`.
#
# The point is to run the agent code as it ships: the built /init binary has mpinit_agent frozen in, and this
# runner imports that frozen package (it refuses to run against a mpinit_agent found on the filesystem unless
# --agent-src DIR asks for it, which is for developing with a stock MicroPython only).
#
# It imports every tests/test_*.py whose source has a line `MICROPYTHON = True` (or the files named), runs every
# top-level test_* function that takes no arguments, expands @pytest.mark.parametrize cases (tests/mpy/pytest.py
# is the pytest stand-in), prints one line per test and the closing line "N passed, N failed", and exits 1 when
# anything failed. Functions that take arguments and are not parametrized want pytest fixtures: listed as skipped.
# Also runs on CPython (handy when a failure needs a debugger), where the real pytest is not imported.
import sys


def _dirname(path):
    i = path.rfind("/")
    if i < 0:
        return "."
    return path[:i] or "/"


def _script_dir():
    import os

    path = sys.argv[0] if sys.argv and sys.argv[0] else __file__
    if not path.startswith("/"):
        path = os.getcwd() + "/" + path
    return _dirname(path.replace("/./", "/"))


HERE = _script_dir()
TESTS = _dirname(HERE)


def _print_exception(e):
    if hasattr(sys, "print_exception"):
        sys.print_exception(e)
    else:
        import traceback
        traceback.print_exception(type(e), e, e.__traceback__)


def _read(path):
    with open(path) as f:
        return f.read()


def opted_in(source):
    for line in source.split("\n"):
        if line.replace(" ", "") == "MICROPYTHON=True":
            return True
    return False


def test_functions(source):
    """(name, takes_arguments) of the top-level `def test_*(...)` in source order (dir() has no order on
    MicroPython, and functions there have no __code__ to count arguments with: the source tells both)."""
    out = []
    for line in source.split("\n"):
        if not line.startswith("def test_"):
            continue
        paren = line.find("(")
        if paren < 0:
            continue
        name = line[4:paren].strip()
        rest = line[paren + 1:]
        close = rest.find(")")
        takes = close < 0 or rest[:close].strip() != ""
        out.append((name, takes))
    return out


def _cases(pytest, fn):
    """[(id, kwargs)] for a parametrized function: the product of its stacked parametrize marks."""
    cases = [("", {})]
    for names, values, ids in pytest.PARAMS[fn]:
        expanded = []
        for i in range(len(values)):
            v = values[i]
            cid = None
            if isinstance(v, pytest._Param):
                cid = v.id
                v = v.values
                if len(names) == 1:
                    v = v[0]
            if len(names) == 1:
                v = (v,)
            if cid is None:
                cid = ids[i] if ids else str(i)
            kwargs = {}
            for k in range(len(names)):
                kwargs[names[k]] = v[k]
            expanded.append((cid, kwargs))
        new = []
        for cid0, kw0 in cases:
            for cid1, kw1 in expanded:
                kw = dict(kw0)
                kw.update(kw1)
                new.append((cid0 + "-" + cid1 if cid0 else cid1, kw))
        cases = new
    return cases


class Counts:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.skipped = 0


def _run_one(pytest, counts, label, fn, kwargs):
    try:
        fn(**kwargs)
    except pytest.Skipped as e:
        counts.skipped += 1
        print("SKIP %s: %s" % (label, e))
        return
    except Exception as e:  # noqa: BLE001  (a test's failure of any kind is reported, never fatal)
        counts.failed += 1
        print("FAIL %s: %s: %s" % (label, type(e).__name__, e))
        _print_exception(e)
        return
    counts.passed += 1
    print("PASS %s" % label)


def run_file(pytest, counts, filename):
    source = _read(TESTS + "/" + filename)
    modname = filename[:-3]
    try:
        mod = __import__(modname)
    except Exception as e:  # noqa: BLE001
        counts.failed += 1
        print("FAIL %s: cannot import: %s: %s" % (filename, type(e).__name__, e))
        _print_exception(e)
        return
    for name, takes in test_functions(source):
        fn = getattr(mod, name, None)
        label = "%s::%s" % (filename, name)
        if fn is None:
            continue
        if fn in pytest.SKIPS:
            counts.skipped += 1
            print("SKIP %s: %s" % (label, pytest.SKIPS[fn]))
        elif fn in pytest.PARAMS:
            for cid, kwargs in _cases(pytest, fn):
                _run_one(pytest, counts, "%s[%s]" % (label, cid), fn, kwargs)
        elif takes:
            counts.skipped += 1
            print("SKIP %s: takes pytest fixtures" % label)
        else:
            _run_one(pytest, counts, label, fn, {})


def main(argv):
    agent_src = None
    files = []
    i = 0
    while i < len(argv):
        if argv[i] == "--agent-src":
            agent_src = argv[i + 1]
            i += 2
            continue
        files.append(argv[i].split("/")[-1])
        i += 1
    sys.path.insert(0, TESTS)
    sys.path.insert(0, HERE)  # our pytest.py before any real one
    if agent_src:
        sys.path.insert(0, agent_src)
    import pytest

    if not hasattr(pytest, "PARAMS"):
        print("run.py: imported a real pytest (%s), not tests/mpy/pytest.py" % getattr(pytest, "__file__", "?"))
        return 2
    try:
        import mpinit_agent
    except ImportError:
        print("run.py: no mpinit_agent: this binary has none frozen in (use --agent-src DIR with a stock "
              "MicroPython)")
        return 2
    # A frozen package's __path__ is ".frozen/mpinit_agent" (py/builtinimport.c); one from disk has its directory.
    where = getattr(mpinit_agent, "__path__", None) or getattr(mpinit_agent, "__file__", "?")
    if not isinstance(where, str):
        where = where[0]  # CPython: a list of directories
    if not agent_src and sys.implementation.name == "micropython" and not where.startswith(".frozen"):
        print("run.py: mpinit_agent comes from %s, not the frozen package of this binary "
              "(use --agent-src DIR to test sources on purpose)" % where)
        return 2
    print("mpinit_agent from %s on %s %s" % (where, sys.implementation.name, sys.version))
    if not files:
        import os

        for name in sorted(os.listdir(TESTS)):
            if name.startswith("test_") and name.endswith(".py") and opted_in(_read(TESTS + "/" + name)):
                files.append(name)
    counts = Counts()
    for filename in files:
        run_file(pytest, counts, filename)
    if counts.skipped:
        print("(%d skipped)" % counts.skipped)
    print("%d passed, %d failed" % (counts.passed, counts.failed))
    return 1 if counts.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
