"""The pytest plugin (entry point `mpinit` -> mpinit.testing.plugin): a user's own test file, in a directory of its
own with no conftest, gets the `fake_machine` fixture from the installed package alone."""

import importlib.metadata
import os

pytest_plugins = ["pytester"]


USER_TESTS = '''
import errno

from mpinit_agent import syscalls as sc


def live(fake_machine, **kw):
    m = fake_machine(cmdline=kw.pop("cmdline", "root=live:LABEL=MPLIVE"), ram_mb=512,
                     config={"modules": ["vfat", "squashfs"]}, **kw)
    m.add_module("virtio_ring")
    m.add_module("virtio_blk", depends=("virtio_ring",), aliases=("virtio:d00000002v*",))
    m.add_module("squashfs")
    m.add_module("fat")
    m.add_module("vfat", depends=("fat",))
    sq = m.squashfs({"sbin/init": m.executable(b"#!/bin/sh\\n"), "etc/os-release": b"ID=mine\\n"})
    medium = m.filesystem("vfat", label="MPLIVE", files={"live/filesystem.squashfs": sq})
    m.add_disk("vda", medium, driver="virtio_blk", modalias="virtio:d00000002v00001AF4")
    return m


def test_my_own_boot_logic(fake_machine):
    m = fake_machine(cmdline="quiet", ram_mb=256)
    m.add_disk("vda", m.filesystem("ext4", label="ROOT", files={"sbin/init": m.executable(b"x")}))

    def my_init():
        sc.mount("proc", "/proc", "proc")
        with open("/proc/cmdline") as f:
            assert f.read() == "quiet\\n"
        sc.mount("devtmpfs", "/dev", "devtmpfs")
        sc.mount("/dev/vda", "/sysroot", "ext4", sc.MS_RDONLY)
        sc.chroot("/sysroot")
        sc.execv("/sbin/init", ["/sbin/init", "single"])

    result = m.boot(my_init)
    assert result.handed_off and result.argv == ["/sbin/init", "single"]
    assert result.mount_at("/sysroot")[:3] == ("/dev/vda", "/sysroot", "ext4")


def test_agent_rescue_with_my_hook(fake_machine):
    m = live(fake_machine, cmdline="root=live:LABEL=MPLIVE rd.break=medium")
    m.add_hook("10-mine.py", "def after_devices(ctx):\\n    print('my hook saw', len(ctx.devices), 'devices')\\n")
    m.console_input = ["print('in the REPL')"]
    result = m.boot()
    assert result.rescue and result.stuck and not result.handed_off
    assert "my hook saw 1 devices" in result.console and "in the REPL" in result.console


def test_fault_injection(fake_machine):
    m = live(fake_machine)
    m.fail("mount", errno.EIO, when=lambda source, target, *a: target == "/sysroot")
    result = m.boot()
    assert not result.handed_off and result.rescue
    assert ("/sysroot" not in [t for _s, t, _f, _fl, _d in result.mounts])


def test_fails_mid_boot(fake_machine):
    m = fake_machine()

    def broken():
        sc.mount("proc", "/proc", "proc")
        assert False, "the user's test fails while the machine runs"

    m.start()
    broken()


def test_syscalls_are_restored_afterwards():
    assert sc.mount.__name__ == "_missing"     # no implementation plugged in any more


def test_two_machines_in_one_test_are_refused(fake_machine):
    fake_machine()
    try:
        fake_machine()
    except RuntimeError as e:
        assert "one machine per test" in str(e)
    else:
        raise AssertionError("a second machine was allowed")
'''


def test_entry_point_is_registered():
    eps = [e for e in importlib.metadata.entry_points(group="pytest11") if e.name == "mpinit"]
    assert [e.value for e in eps] == ["mpinit.testing.plugin"]


def test_fixture_works_in_a_users_own_test_file(pytester):
    pytester.makepyfile(test_users_init=USER_TESTS)
    # A fresh interpreter: only the installed package's entry point can provide the fixture there.
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: the user's test fails while the machine runs",
                                 "FAILED test_users_init.py::test_fails_mid_boot*"])


def test_fixture_is_listed_with_its_documentation(pytester):
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["fake_machine*", "*factory*"])


def doc_example():
    """The complete example of docs/fake-machine.md, as a user would paste it into a test file."""
    path = os.path.join(os.path.dirname(__file__), "..", "docs", "fake-machine.md")
    with open(path) as f:
        text = f.read()
    section = text.split("## A complete example", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_documented_example_passes(pytester):
    pytester.makepyfile(test_example=doc_example())
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
