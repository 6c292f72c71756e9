"""mpinit_agent.rescue: the failure report, the REPL (multi-line input, echo, nothing kills PID 1) and the
shell-off reboot path."""

import pytest

from agent_stub import StubSys
from mpinit_agent import cmdline, contract, syscalls as abi, rescue
from mpinit_agent.failure import BootError

MICROPYTHON = True


class Ctx:
    def __init__(self, line="", config=None):
        self.config = dict(contract.DEFAULTS)
        self.config.update(config or {})
        self.opts = cmdline.parse(line)
        self.modules = None
        self.devices = []
        self.hooks = None
        self.timeline = []

    def write_timeline(self):
        pass


@pytest.mark.parametrize("src, more", [
    ("1 + 1", False),
    ("x = (1,", True),
    ("x = (1,\n 2)", False),
    ("for i in range(3):", True),
    ("for i in range(3):\n    print(i)", True),
    ("for i in range(3):\n    print(i)\n", False),
    ("if x:  # comment", True),
    ("s = 'a:'", False),
    ("s = '('", False),
    ("a = 1 + \\", True),
    ('d = """one', True),
    ('d = """one\ntwo"""', False),
    ("@decorator", True),
    ("print('#(')", False),
])
def test_needs_more(src, more):
    assert rescue.needs_more(src) is more


def run_shell(fs, lines, capsys, err=None):
    with StubSys(fs, console=lines) as s:
        out = rescue.Shell(Ctx(), err).run()
    return out, capsys.readouterr().out, s


def test_repl_echoes_expressions_and_runs_blocks(fs, capsys):
    out, text, s = run_shell(fs, ["1 + 2", "for i in range(2):", "    print('i', i)", "", "resume()"], capsys)
    assert out == "resume"
    assert "3\n" in text and "i 0\ni 1\n" in text
    assert s.prompts == [">>> ", ">>> ", "... ", "... ", ">>> "]


def test_nothing_typed_kills_pid_1(fs, capsys):
    lines = ["x = (", ")", "1 +* 2", "def f():", "", "1/0", "y = [", KeyboardInterrupt(), "exit()", "import sys",
             "sys.exit(3)", "raise SystemExit", "resume()"]
    out, text, _ = run_shell(fs, lines, capsys)
    assert out == "resume"
    assert "SyntaxError" in text and "IndentationError" in text and "ZeroDivisionError" in text and "KeyboardInterrupt" in text
    assert text.count("exit() does nothing here") == 3


def test_repl_ends_at_end_of_input(fs, capsys):
    assert run_shell(fs, ["1"], capsys)[0] == "eof"


def test_helpers_are_there_and_help_lists_them(fs, capsys):
    fs.create_file("/etc/hello", contents="hi there\n")
    fs.create_file("/proc/mounts", contents="proc /proc proc rw 0 0\n")
    out, text, _ = run_shell(fs, ["help()", "cat('/etc/hello')", "ls('/etc')", "mount()", "err.stage",
                                  "resume()"], capsys, err=BootError("medium", "x"))
    for name in ("ls(", "cat(", "dmesg(", "blkid(", "lsmod(", "modprobe(", "mount(", "umount(", "mounts(",
                 "resume(", "reboot(", "poweroff(", "help("):
        assert name in text
    assert "hi there" in text and "hello" in text and "proc /proc proc" in text and "'medium'" in text


def test_reboot_from_the_repl_stops_the_session(fs, capsys):
    out, _, s = run_shell(fs, ["poweroff()", "1"], capsys)
    assert out == "stopped"
    assert ("reboot", (abi.RB_POWER_OFF,)) in s.calls


def test_mount_helper_splits_options(fs, capsys):
    fs.create_dir("/dev")
    _, _, s = run_shell(fs, ["mount('/dev/sda1', '/mnt/x', 'ext4', 'ro,noatime,errors=remount-ro')", "resume()"],
                        capsys)
    assert s.mounts == [("/dev/sda1", "/mnt/x", "ext4", abi.MS_RDONLY | abi.MS_NOATIME, "errors=remount-ro")]


def test_report_names_stage_param_tried_seen(fs, capsys):
    err = BootError("medium", "did not find the medium CDLABEL=LIVE", param="root=live:CDLABEL=LIVE",
                    tried=["mount /dev/sda1"], seen=["/dev/sda1 TYPE=ext4 LABEL=data"])
    with StubSys(fs):
        lines = rescue.report(Ctx(), err)
    text = capsys.readouterr().out
    assert "stage 'medium'" in text and "root=live:CDLABEL=LIVE" in text
    assert "mount /dev/sda1" in text and "TYPE=ext4 LABEL=data" in text
    assert lines[0].startswith("mpinit: boot failed")


def test_shell_off_waits_panic_seconds_then_reboots(fs, capsys):
    with StubSys(fs, console=["resume()"]) as s:
        start = s.clock
        assert rescue.fail(Ctx("rd.shell=0 panic=5"), BootError("root", "x")) is False
    assert s.clock - start == 5000
    assert s.calls[-1] == ("reboot", (abi.RB_AUTOBOOT,))
    assert s.prompts == []  # no REPL
    assert "rebooting in 5 s" in capsys.readouterr().out


def test_shell_off_by_config_with_default_panic(fs, capsys):
    with StubSys(fs) as s:
        start = s.clock
        rescue.fail(Ctx("", {"shell": False}), BootError("root", "x"))
    assert s.clock - start == 10000


def test_shell_off_is_honoured_when_the_cmdline_stage_itself_failed(fs, capsys):
    # A bad config.json fails the cmdline stage before ctx.opts exists: rd.shell=0 panic=2 still hold.
    fs.create_file("/proc/cmdline", contents="root=live:LABEL=X rd.shell=0 panic=2\n")
    ctx = Ctx()
    ctx.opts = None
    with StubSys(fs, console=["resume()"]) as s:
        start = s.clock
        assert rescue.fail(ctx, BootError("cmdline", "bad config")) is False
    assert s.clock - start == 2000
    assert s.prompts == []


def test_shell_stays_on_without_rd_shell_when_the_cmdline_stage_failed(fs, capsys):
    fs.create_file("/proc/cmdline", contents="root=live:LABEL=X rd.shell panic=oops\n")
    ctx = Ctx()
    ctx.opts = None
    with StubSys(fs, console=["resume()"]):
        assert rescue.fail(ctx, BootError("cmdline", "bad config")) is True


def test_negative_panic_reboots_at_once(fs, capsys):
    with StubSys(fs) as s:
        start = s.clock
        rescue.fail(Ctx("rd.shell=0 panic=-1"), BootError("root", "x"))
    assert s.clock == start and ("reboot", (abi.RB_AUTOBOOT,)) in s.calls


def test_shell_resume_returns_true(fs, capsys):
    with StubSys(fs, console=["resume()"]) as s:
        assert rescue.fail(Ctx(), BootError("root", "x")) is True
    assert "reboot" not in s.names()


def test_shell_without_input_falls_back_to_reboot(fs, capsys):
    with StubSys(fs) as s:
        assert rescue.fail(Ctx("panic=1"), BootError("root", "x")) is False
    assert "reboot" in s.names()


def test_on_failure_hooks_run_and_their_failure_does_not_hide_the_first(fs, capsys):
    from mpinit_agent import hooks

    fs.create_file(contract.HOOKS_DIR + "/a.py", contents="def on_failure(ctx, err):\n    raise ValueError('h')\n")
    ctx = Ctx()
    ctx.hooks = hooks.Hooks()
    with StubSys(fs, console=["resume()"]):
        assert rescue.fail(ctx, BootError("root", "first")) is True
    text = capsys.readouterr().out
    assert "first" in text and "on_failure hook failed too" in text


def test_dmesg_reads_records_until_the_end(fs, capsys, monkeypatch):
    long = "x" * 300   # longer than the failure report's kernlog.MAX_LINE: dmesg() shows it whole
    records = [b"6,1,1500000,-;first line\n SUBSYSTEM=block\n", b"4,2,2000001,-;second\n", b"garbage\n",
               b"6,3,2000002,-;" + long.encode() + b"\n"]
    s = StubSys(fs)

    def read(fd, n):
        if records:
            return records.pop(0)
        raise OSError(abi.EAGAIN, "again")

    monkeypatch.setattr(s, "read", read)
    with s:
        rescue.dmesg()
    assert capsys.readouterr().out == "[    1.500000] first line\n[    2.000001] second\n[    2.000002] %s\n" % long
    assert ("close", (7,)) in s.calls
