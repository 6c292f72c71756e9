"""replkit: the rescue REPL's help(helper), shell() and namespace, through the fake machine's console."""

import sys

from mpinit_agent import replkit

FAIL = "root=live:LABEL=NOSUCH rootdelay=1"


def repl(fake_machine, lines, **kw):
    m = fake_machine(cmdline=FAIL)
    for path, prog in kw.get("programs", {}).items():
        m.add_program(path, **prog)
    m.console_input = list(lines)
    r = m.boot()
    assert r.rescue, r.console[-2000:]
    return r


def test_help_of_a_helper_prints_its_own_text(fake_machine):
    r = repl(fake_machine, ["help(blkid)", 'help("modprobe")', "help(err)", "help(shell)"])
    assert replkit.help_text("blkid") in r.console
    assert 'modprobe(name, params="")' in r.console
    assert "err.kernel" in r.console
    assert "shell()\n    Run a shell packed into the image" in r.console


def test_help_overview_and_unknown_names(fake_machine):
    r = repl(fake_machine, ["help()", 'help("nosuch")', "help(42)"])
    assert "Tab completes names and attributes" in r.console
    assert "help('nosuch'): no such helper" in r.console
    assert "42: " in r.console            # anything else: its attributes (MicroPython: the built-in help)


def test_every_helper_in_the_namespace_has_a_topic(fake_machine):
    r = repl(fake_machine, ["print('MISSING', sorted(k for k in ('ls','cat','dmesg','blkid','lsmod','modprobe',"
                            "'mount','umount','mounts','run','shell','unlock','capture','resume','reboot',"
                            "'poweroff','help','ctx','err') if k not in globals()))"])
    assert "MISSING []" in r.console
    assert set(replkit.TOPICS) >= {"blkid", "shell", "ctx", "err", "capture", "unlock"}


def test_shell_without_a_shell_says_how_to_pack_one(fake_machine):
    r = repl(fake_machine, ["print('RC', shell())"])
    assert "shell(): no shell in this image" in r.console
    assert "mpinit pack --binary /bin/busybox" in r.console
    assert "RC None" in r.console


def test_shell_runs_busybox_sh_with_a_path(fake_machine):
    seen = []

    def action(machine, argv, env):
        seen.append((argv, env))
        return 3

    r = repl(fake_machine, ["print('RC', shell())"], programs={"/bin/busybox": {"action": action}})
    assert seen and seen[0][0] == ["/bin/busybox", "sh"]
    assert "PATH=/sbin:/usr/sbin:/bin:/usr/bin" in seen[0][1]
    assert "RC 3" in r.console


def test_shell_prefers_bin_sh():
    have = {"/bin/sh", "/bin/busybox"}
    assert replkit.find_shell(have.__contains__) == ["/bin/sh"]
    assert replkit.find_shell({"/usr/bin/busybox"}.__contains__) == ["/usr/bin/busybox", "sh"]
    assert replkit.find_shell(set().__contains__) is None


def test_cpython_namespace_leaves_main_alone():
    main = sys.modules["__main__"]
    ns = replkit.namespace({"zz_helper": 1})
    assert ns["zz_helper"] == 1 and not hasattr(main, "zz_helper")


def test_user_names_and_errors_never_end_the_session(fake_machine):
    r = repl(fake_machine, ["x = 41", "raise SystemExit(3)", "1/0", "print('X', x + 1)"])
    assert "X 42" in r.console
    assert "ZeroDivisionError" in r.console
