# A pytest stand-in for running our pure tests on MicroPython (tests/mpy/run.py puts this directory first on
# sys.path). It provides only what test modules that set `MICROPYTHON = True` may use:
#   raises(exc, match=...)   context manager; match is a plain substring here (pytest: re.search), so write
#                            matches without regex metacharacters other than "." and they mean the same on both
#   mark.parametrize(names, values, ids=None)   cases stored in PARAMS; the runner expands them (stacking works)
#   mark.skip(reason=) / mark.skipif(cond, reason=)   honoured; any other mark.<name> is a no-op decorator
#   param(*values, id=None), skip(reason), fixture (no-op: fixtures themselves are not provided)
# MicroPython functions take no attributes, so marks live in dicts keyed by the function object.

PARAMS = {}   # function -> [(names list, values list, ids or None), ...] in decorator application order
SKIPS = {}    # function -> reason


class Skipped(Exception):
    pass


def skip(reason=""):
    raise Skipped(reason)


class ExceptionInfo:
    def __init__(self, expected, match):
        self.expected = expected
        self.match = match
        self.type = None
        self.value = None

    def __enter__(self):
        return self

    def __exit__(self, typ, value, tb):
        if typ is None:
            raise AssertionError("DID NOT RAISE %r" % (self.expected,))
        if not issubclass(typ, self.expected):
            return False  # let an unexpected exception through, as pytest does
        if self.match is not None and self.match not in str(value):
            raise AssertionError("%r does not contain %r" % (str(value), self.match))
        self.type = typ
        self.value = value
        return True


def raises(expected, match=None):
    return ExceptionInfo(expected, match)


class _Param:
    def __init__(self, values, id):
        self.values = values
        self.id = id


def param(*values, **kw):
    return _Param(values, kw.get("id"))


def fixture(*args, **kw):
    if len(args) == 1 and callable(args[0]) and not kw:
        return args[0]
    return lambda fn: fn


def _names(argnames):
    if isinstance(argnames, str):
        return [n.strip() for n in argnames.split(",") if n.strip()]
    return list(argnames)


class _NoOp:
    # @pytest.mark.e2e and @pytest.mark.foo(...) both hand the function back unchanged.
    def __call__(self, *args, **kw):
        if len(args) == 1 and callable(args[0]) and not kw:
            return args[0]
        return lambda fn: fn


class _Mark:
    def parametrize(self, argnames, argvalues, ids=None, **kw):
        def deco(fn):
            PARAMS.setdefault(fn, []).append((_names(argnames), list(argvalues), ids))
            return fn
        return deco

    def skip(self, *args, **kw):
        if len(args) == 1 and callable(args[0]):
            SKIPS[args[0]] = ""
            return args[0]
        reason = kw.get("reason", args[0] if args else "")

        def deco(fn):
            SKIPS[fn] = reason
            return fn
        return deco

    def skipif(self, condition, reason=""):
        def deco(fn):
            if condition:
                SKIPS[fn] = reason
            return fn
        return deco

    def __getattr__(self, name):
        return _NoOp()


mark = _Mark()
