"""mpinit_agent.hooks: loading hook files in order, calling points, and failures that name file and function."""

import pytest

from mpinit_agent import contract, hooks
from mpinit_agent.failure import BootError

MICROPYTHON = True

D = contract.HOOKS_DIR


class Ctx:
    def __init__(self):
        self.seen = []


def test_points_cover_every_stage():
    p = hooks.points()
    assert p[0] == "before_early" and p[-2] == "after_handoff" and p[-1] == "on_failure"
    assert len(p) == 2 * len(contract.STAGES) + 1


def test_hooks_run_in_file_name_order(fs):
    fs.create_file(D + "/20-second.py", contents="def before_root(ctx):\n    ctx.seen.append('20')\n")
    fs.create_file(D + "/10-first.py", contents="def before_root(ctx):\n    ctx.seen.append('10')\n"
                                                "def after_root(ctx):\n    ctx.seen.append('10-after')\n")
    fs.create_file(D + "/README", contents="not python")
    h = hooks.Hooks()
    ctx = Ctx()
    assert h.run("before_root", ctx) == 2
    assert h.run("after_root", ctx) == 1
    assert h.run("before_medium", ctx) == 0
    assert ctx.seen == ["10", "20", "10-after"]


def test_hooks_see_the_context_and_extra_arguments(fs):
    fs.create_file(D + "/a.py", contents="def on_failure(ctx, err):\n    ctx.seen.append(err)\n")
    ctx = Ctx()
    hooks.Hooks().run("on_failure", ctx, "boom")
    assert ctx.seen == ["boom"]


def test_a_failing_hook_names_file_and_function(fs):
    fs.create_file(D + "/50-check.py", contents="def before_medium(ctx):\n    raise RuntimeError('no net')\n")
    with pytest.raises(BootError) as ei:
        hooks.Hooks().run("before_medium", Ctx())
    e = ei.value
    assert e.stage == "medium"
    assert D + "/50-check.py" in e.message and "before_medium()" in e.message and "no net" in e.message


def test_a_broken_hook_file_is_reported_when_loading(fs):
    fs.create_file(D + "/bad.py", contents="def before_root(ctx:\n")
    with pytest.raises(BootError, match="bad.py failed to load"):
        hooks.Hooks().run("before_root", Ctx())


def test_disabled_or_missing_directory_runs_nothing(fs):
    fs.create_file(D + "/a.py", contents="def before_root(ctx):\n    raise RuntimeError\n")
    assert hooks.Hooks(enabled=False).run("before_root", Ctx()) == 0
    assert hooks.Hooks(directory="/nowhere").run("before_root", Ctx()) == 0


def test_files_are_loaded_once(fs):
    fs.create_file(D + "/a.py", contents="import sys\nCOUNT = []\nCOUNT.append(1)\n"
                                        "def before_root(ctx):\n    ctx.seen.append(len(COUNT))\n")
    h = hooks.Hooks()
    ctx = Ctx()
    h.run("before_root", ctx)
    h.run("before_root", ctx)
    assert ctx.seen == [1, 1]
