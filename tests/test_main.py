"""mpinit_agent.main: the stage runner (hooks, rd.break, timeline, failure -> rescue -> resume), the short stages
(cmdline, modules, devices), PID-1 rules; and whole boots on the fake machine (mpinit.testing)."""

import sys

import pytest

from agent_stub import StubSys, keep_log_state
from mpinit_agent import cmdline, contract, syscalls as abi, main
from mpinit_agent.failure import BootError

MICROPYTHON = True


@pytest.fixture(autouse=True)
def _log_state(monkeypatch):
    keep_log_state(monkeypatch)


def ctx_for(line="", **config):
    ctx = main.Context()
    ctx.config.update(config)
    ctx.opts = cmdline.parse(line, ctx.config["cmdline"])
    return ctx


# ---- pure pieces

@pytest.mark.parametrize("line, config, want", [
    ("", {}, 30000),
    ("rootdelay=7", {}, 7000),
    ("rootwait", {}, None),
    ("rootwait rootdelay=3", {}, 3000),
    ("", {"root_wait_s": 5}, 5000),
])
def test_deadline(line, config, want):
    assert ctx_for(line, **config).deadline_ms() == want


@pytest.mark.parametrize("line, spec", [
    ("root=UUID=abc", "UUID=abc"),
    ("root=live:CDLABEL=X", "CDLABEL=X"),
    ("root=live:/dev/sr0", "/dev/sr0"),
    ("root=live:/images/a.sfs", None),
    ("boot=live", ""),
    ("img_dev=/dev/sda2 img_loop=/a.iso", "/dev/sda2"),
    ("iso-scan/filename=/a.iso", None),
])
def test_wanted_spec(line, spec):
    assert main.wanted_spec(cmdline.parse(line)) == spec


# ---- the stage runner

def test_stage_runs_hooks_logs_and_records(fs, capsys):
    fs.create_file(contract.HOOKS_DIR + "/10.py", contents=(
        "def before_root(ctx):\n    ctx.order.append('before')\n"
        "def after_root(ctx):\n    ctx.order.append('after')\n"))
    ctx = ctx_for("root=/dev/sda1")
    ctx.order = []

    def body(c):
        c.order.append("body")
        sc_clock["s"].clock += 40
        return "mounted"

    sc_clock = {}
    with StubSys(fs) as s:
        sc_clock["s"] = s
        assert main.stage(ctx, "root", body) == "mounted"
    assert ctx.order == ["before", "body", "after"]
    assert ctx.timeline == [{"stage": "root", "start_ms": 1000, "duration_ms": 40, "result": "mounted"}]


def test_failure_goes_to_rescue_and_resume_runs_the_stage_again(fs, capsys):
    ctx = ctx_for("root=/dev/sda1")
    tries = []

    def body(c):
        tries.append(1)
        if len(tries) == 1:
            raise BootError("root", "cannot mount /dev/sda1", param="rootfstype=")
        return "ok the second time"

    with StubSys(fs, console=["ctx.stage", "resume()"]) as s:
        assert main.stage(ctx, "root", body) == "ok the second time"
    out = capsys.readouterr().out
    assert "boot failed in stage 'root': cannot mount /dev/sda1" in out and "parameter: rootfstype=" in out
    assert "'root'" in out  # the REPL echoed ctx.stage
    assert [e["result"] for e in ctx.timeline] == ["failed: cannot mount /dev/sda1", "ok the second time"]
    assert "reboot" not in s.names()


def test_unexpected_exceptions_become_boot_errors_with_a_traceback(fs, capsys):
    ctx = ctx_for("rd.shell=0 panic=-1")

    def body(c):
        {}["missing"]

    with StubSys(fs) as s:
        with pytest.raises(main.Stopped):
            main.stage(ctx, "devices", body)
    out = capsys.readouterr().out
    assert "stage 'devices': unexpected error: KeyError" in out and "Traceback" in out
    assert s.calls[-1] == ("reboot", (abi.RB_AUTOBOOT,))


def test_keyboard_interrupt_and_sys_exit_in_a_stage_do_not_kill_pid_1(fs, capsys):
    for exc in (KeyboardInterrupt(), SystemExit(1)):
        ctx = ctx_for("rd.shell=0 panic=-1")

        def body(c):
            raise exc

        with StubSys(fs):
            with pytest.raises(main.Stopped):
                main.stage(ctx, "modules", body)


def test_failing_hook_fails_its_stage(fs, capsys):
    fs.create_file(contract.HOOKS_DIR + "/x.py", contents="def after_medium(ctx):\n    raise OSError(5, 'x')\n")
    ctx = ctx_for("rd.shell=0 panic=-1 root=live:LABEL=x")
    with StubSys(fs):
        with pytest.raises(main.Stopped):
            main.stage(ctx, "medium", lambda c: "found")
    out = capsys.readouterr().out
    assert "stage 'medium': hook /etc/mpinit/hooks/x.py: after_medium() failed" in out
    assert ctx.timeline[-1]["result"].startswith("failed: hook")


def test_rd_break_enters_the_repl_before_the_stage_once(fs, capsys):
    ctx = ctx_for("rd.break=root root=/dev/sda1")
    ran = []
    with StubSys(fs, console=["len(ctx.timeline)", "resume()"]) as s:
        main.stage(ctx, "devices", lambda c: ran.append("devices"))
        assert s.prompts == []
        main.stage(ctx, "root", lambda c: ran.append("root"))
    assert s.prompts == [">>> ", ">>> "]
    assert ran == ["devices", "root"]
    assert "\n1\n" in capsys.readouterr().out  # the REPL ran between the two stages


def test_rd_break_early_waits_for_a_console(fs, capsys):
    fs.create_file("/proc/cmdline", contents="rd.break=early")
    ctx = main.Context()
    with StubSys(fs, console=["resume()"]) as s:
        main.stage(ctx, "early", lambda c: "mounted")
    assert s.prompts == [">>> "]


def test_shell_off_stops_the_boot(fs, capsys):
    ctx = ctx_for("rd.shell=0 panic=2")
    with StubSys(fs) as s:
        with pytest.raises(main.Stopped):
            main.stage(ctx, "root", lambda c: (_ for _ in ()).throw(BootError("root", "x")))
        assert s.clock >= 3000


# ---- the short stages

def test_cmdline_stage(fs):
    fs.create_file("/proc/cmdline", contents="root=live:LABEL=X loglevel=3\n")
    fs.create_file("/proc/sys/kernel/printk", contents="7 4 1 7\n")
    ctx = main.Context()
    ctx.config["cmdline"] = "quiet rd.live.ram=1"
    with StubSys(fs):
        assert main.cmdline_stage(ctx) == "live from LABEL=X"
    assert ctx.opts.toram == "yes" and ctx.opts.loglevel == 3
    assert open("/proc/sys/kernel/printk").read() == "3\n"


def test_the_command_line_is_parsed_once_from_early_to_the_cmdline_stage(fs, monkeypatch):
    """The break points after early and before cmdline and the cmdline stage itself share one parse of the same
    /proc/cmdline; a changed line (or none parsed yet) is parsed again."""
    fs.create_file("/proc/cmdline", contents="root=live:LABEL=X\n")
    parsed = []
    real = cmdline.parse

    def counting(text, defaults=""):
        parsed.append(text)
        return real(text, defaults)

    monkeypatch.setattr(cmdline, "parse", counting)
    ctx = main.Context()
    with StubSys(fs):
        main.stage(ctx, "early", lambda c: "mounted")
        main.stage(ctx, "cmdline", main.cmdline_stage)
    assert parsed == ["root=live:LABEL=X"]
    assert ctx.opts.live == "LABEL=X" and ctx._parsed is None
    ctx.opts = None
    with open("/proc/cmdline", "w") as f:
        f.write("root=/dev/sda1\n")
    with StubSys(fs):
        main.stage(ctx, "cmdline", main.cmdline_stage)
    assert parsed == ["root=live:LABEL=X", "root=/dev/sda1"]
    assert ctx.opts.root == "/dev/sda1"


def test_cmdline_stage_names_a_bad_parameter(fs):
    fs.create_file("/proc/cmdline", contents="root=/dev/sda1 rootdelay=soon\n")
    with StubSys(fs):
        with pytest.raises(BootError) as ei:
            main.cmdline_stage(main.Context())
    assert ei.value.stage == "cmdline" and "rootdelay" in ei.value.message


def test_bad_config_is_reported_by_the_cmdline_stage(fs):
    fs.create_file(contract.CONFIG_PATH, contents='{"shel": false}')
    ctx = main.Context()
    main.load_config(ctx)
    with StubSys(fs):
        with pytest.raises(BootError, match="unknown key 'shel'") as ei:
            main.cmdline_stage(ctx)
    assert ei.value.param == contract.CONFIG_PATH


def test_devices_stage_without_root_is_an_error(fs):
    fs.create_file("/proc/cmdline", contents="quiet\n")
    with StubSys(fs):
        with pytest.raises(BootError, match="no root=") as ei:
            main.devices_stage(ctx_for("quiet"))
    assert ei.value.param == "root="


def test_start_refuses_unless_pid_1(fs, capsys):
    with StubSys(fs, pid=4242) as s:
        main.start()
    assert s.calls == [("exit", (2,))]
    assert "must run as PID 1" in capsys.readouterr().out


# ---- whole boots on the fake machine (mpinit.testing) -----------------------------------------------------------

# The fake machine is CPython (pyfakefs); under tests/mpy/run.py only the parametrized ones need the mark (the
# runner skips plain functions that take fixtures by itself).
cpython_only = pytest.mark.skipif(sys.implementation.name == "micropython", reason="the fake machine needs CPython")


@pytest.fixture(autouse=True)
def _fresh_probe_cache():
    # blockdev caches probe results by (name, devno, size) across boots; two fake machines in a row reuse
    # names, numbers and sizes, so each test starts with an empty cache (reported to the fake machine's owner).
    from mpinit_agent import blockdev

    blockdev.forget()


def live_root(m, init=True):
    files = {"etc/os-release": "ID=test\n"}
    if init:
        files["sbin/init"] = m.executable(b"#!init")
    return m.squashfs(files)


def live_stick(m, label="MPLIVE", rel="live/filesystem.squashfs", fstype="vfat", extra=None, root=None):
    files = {rel: root if root is not None else live_root(m)}
    files.update(extra or {})
    return m.filesystem(fstype, label=label, files=files)


def overlay_is_root(r):
    top = r.mount_at("/")
    return top is not None and top[2] == "overlay" and "lowerdir=" + contract.IMAGE_MOUNT in top[4]


def test_boot_live_by_label(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE quiet -- single")
    m.add_disk("sda", m.filesystem("ext4", label="data"))
    m.add_disk("sdb", live_stick(m), removable=True)
    r = m.boot()
    assert r.handed_off and r.init == "/sbin/init" and r.argv == ["/sbin/init", "single"]
    assert overlay_is_root(r)
    assert r.mount_at(contract.MEDIUM_MOUNT)[:3] == ("/dev/sdb", contract.MEDIUM_MOUNT, "vfat")
    assert r.mount_at(contract.COW_MOUNT)[2] == "tmpfs"
    assert not r.rescue and not r.panic
    stages = [line.split(": ")[1] for line in r.kmsg if line.endswith(": start")]
    assert stages == list(contract.STAGES[1:])  # early logs its result only: /dev/kmsg opens during early
    assert any(": early: /dev by devtmpfs, console yes" in line for line in r.kmsg)


def test_boot_scans_removable_media_first(fake_machine):
    m = fake_machine(cmdline="boot=live")
    m.add_disk("sda", live_stick(m, label="INTERNAL"))
    m.add_disk("sdb", live_stick(m, label="STICK"), removable=True)
    r = m.boot()
    assert r.handed_off and r.mount_at(contract.MEDIUM_MOUNT)[0] == "/dev/sdb"


@cpython_only
@pytest.mark.parametrize("cmdline_, rel, label", [
    ("root=live:CDLABEL=Fedora-Live rd.live.image", "LiveOS/squashfs.img", "Fedora-Live"),
    ("archisobasedir=arch archisolabel=ARCH_2024", "arch/x86_64/airootfs.sfs", "ARCH_2024"),
])
def test_boot_optical_layouts(fake_machine, cmdline_, rel, label):
    m = fake_machine(cmdline=cmdline_)
    m.add_disk("sr0", live_stick(m, label=label, rel=rel, fstype="iso9660"), removable=True)
    r = m.boot()
    assert r.handed_off, r.console
    assert r.mount_at(contract.MEDIUM_MOUNT)[2] == "iso9660" and overlay_is_root(r)


def test_boot_whole_device_squashfs(fake_machine):
    m = fake_machine(cmdline="root=live:/dev/xvda")
    m.add_disk("xvda", live_root(m))
    r = m.boot()
    assert r.handed_off, r.console
    assert r.mount_at(contract.IMAGE_MOUNT)[:3] == ("/dev/xvda", contract.IMAGE_MOUNT, "squashfs")
    assert r.mount_at(contract.MEDIUM_MOUNT) is None


def test_boot_iso_file_on_a_partition(fake_machine):
    m = fake_machine(cmdline="iso-scan/filename=/isos/live.iso root=live:CDLABEL=LIVEISO")
    iso = live_stick(m, label="LIVEISO", fstype="iso9660")
    m.add_disk("sda", [m.partition(m.filesystem("ext4", label="data", files={"isos/live.iso": iso}))])
    r = m.boot()
    assert r.handed_off, r.console
    assert r.mount_at(contract.MEDIUM_MOUNT)[:3] == ("/dev/sda1", contract.MEDIUM_MOUNT, "ext4")
    assert r.mount_at(contract.ISO_MOUNT)[2] == "iso9660" and overlay_is_root(r)


def test_boot_toram_releases_the_medium(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE rd.live.ram=1")
    m.add_disk("sdb", live_stick(m), removable=True)
    r = m.boot()
    assert r.handed_off, r.console
    assert r.mount_at(contract.MEDIUM_MOUNT) is None
    assert r.mount_at(contract.TORAM_MOUNT)[2] == "tmpfs"
    assert ("/run/mpinit/toram/filesystem.squashfs",) == tuple(a[0] for a in r.calls_to("loop_attach"))
    assert "toram: 100%" in r.console


def test_boot_toram_auto_without_room_falls_back(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE copytoram=auto", config={"toram_reserve_mb": 1 << 20})
    m.add_disk("sdb", live_stick(m), removable=True)
    r = m.boot()
    assert r.handed_off and r.mount_at(contract.MEDIUM_MOUNT) is not None
    assert any("not enough memory" in line for line in r.kmsg) and "keep it plugged in" in r.console


def test_boot_toram_forced_without_room_is_a_clear_failure(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE toram", config={"toram_reserve_mb": 1 << 20})
    m.add_disk("sdb", live_stick(m), removable=True)
    r = m.boot()
    assert not r.handed_off and r.rescue and not r.panic
    assert "boot failed in stage 'toram': not enough memory to copy the image to RAM" in r.console


def test_boot_no_medium_lists_every_device(fake_machine):
    m = fake_machine(cmdline="root=live:CDLABEL=NOPE rootdelay=2")
    m.add_disk("sda", m.filesystem("ext4", label="data"))
    m.add_disk("sdb", m.filesystem("vfat", label="STICK"), removable=True)
    m.console_input = ["blkid()"]
    r = m.boot()
    assert not r.handed_off and r.stuck
    assert "boot failed in stage 'medium': did not find the medium CDLABEL=NOPE within 2 s" in r.console
    assert "parameter: root=live:CDLABEL=NOPE" in r.console
    seen = r.console.split("seen:")[1]
    assert '/dev/sda 8:0 1.0 MiB TYPE="ext4" LABEL="data"' in seen
    assert 'removable TYPE="vfat" LABEL="STICK"' in seen


def test_boot_corrupt_image(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE")
    m.add_disk("sdb", live_stick(m, root=b"\0" * 8192), removable=True)
    r = m.boot()
    assert not r.handed_off and "is not a squashfs image" in r.console


def test_boot_checksum(fake_machine):
    import hashlib

    m = fake_machine(cmdline="root=live:LABEL=MPLIVE checksum=y")
    sq = live_root(m)
    m.add_disk("sdb", live_stick(m, root=sq, extra={"live/filesystem.squashfs.sha256":
                                                    hashlib.sha256(sq.data).hexdigest() + "  filesystem.squashfs\n"}),
               removable=True)
    r = m.boot()
    assert r.handed_off and "sha256 ok" in "\n".join(r.kmsg)


def test_boot_checksum_mismatch(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE checksum=y")
    m.add_disk("sdb", live_stick(m, extra={"live/filesystem.squashfs.sha256": "0" * 64}), removable=True)
    r = m.boot()
    assert not r.handed_off and "checksum mismatch" in r.console and "parameter: checksum=y" in r.console


def test_boot_missing_init_never_switches(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE")
    m.add_disk("sdb", live_stick(m, root=live_root(m, init=False)), removable=True)
    r = m.boot()
    assert not r.handed_off and "boot failed in stage 'handoff': no init to run in the new root" in r.console
    assert not [c for c in r.calls_to("mount") if c[3] & abi.MS_MOVE]
    assert r.calls_to("chroot") == []


def test_boot_init_parameter(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE init=/bin/sh")
    m.add_disk("sdb", live_stick(m, root=m.squashfs({"bin/sh": m.executable(b"sh")})), removable=True)
    r = m.boot()
    assert r.handed_off and r.init == "/bin/sh"


def test_boot_plain_root_with_fsck(fake_machine):
    m = fake_machine(cmdline="root=UUID=11111111-2222-3333-4444-555555555555 rw rootflags=noatime")
    m.add_program("/sbin/fsck.ext4", exit_code=1)
    m.add_disk("vda", m.filesystem("ext4", uuid="11111111-2222-3333-4444-555555555555",
                                   files={"sbin/init": m.executable(b"init")}))
    r = m.boot()
    assert r.handed_off, r.console
    assert ["/sbin/fsck.ext4", "-a", "/dev/vda"] in [list(a[0]) for a in r.calls_to("spawn")]
    top = r.mount_at("/")
    assert top[:3] == ("/dev/vda", "/", "ext4") and top[3] & abi.MS_NOATIME and not top[3] & abi.MS_RDONLY


def test_boot_plain_root_fsck_failure(fake_machine):
    m = fake_machine(cmdline="root=/dev/vda rd.shell=0 panic=1")
    m.add_program("/sbin/fsck.ext4", exit_code=4)
    m.add_disk("vda", m.filesystem("ext4", files={"sbin/init": m.executable(b"init")}))
    r = m.boot()
    assert r.reboot == "restart" and not r.handed_off
    assert "fsck.ext4 /dev/vda: exit code 4" in r.console


def test_boot_plain_root_missing(fake_machine):
    m = fake_machine(cmdline="root=PARTUUID=0000-01 rd.shell=0")
    m.add_disk("vda", m.filesystem("ext4"))
    r = m.boot()
    assert r.reboot == "restart" and r.uptime_ms >= 40000  # root_wait_s 30 + panic 10
    assert "root device PARTUUID=0000-01 did not appear within 30 s" in r.console


def test_boot_late_usb_stick_is_waited_for(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE")
    m.add_disk("sdb", live_stick(m), removable=True, appear_after_ms=5000)
    r = m.boot()
    assert r.handed_off and r.uptime_ms >= 5000


def test_boot_rd_break_and_resume(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE rd.break=root")
    m.add_disk("sdb", live_stick(m), removable=True)
    m.console_input = ["ctx.image", "resume()"]
    r = m.boot()
    assert r.rescue and r.handed_off
    assert "'/run/initramfs/live/live/filesystem.squashfs'" in r.console


def test_boot_failure_then_resume_from_the_shell(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE")
    m.add_disk("sdb", live_stick(m), removable=True)
    m.fail("mount", abi.EIO, when=lambda source, target, *rest: target == contract.NEW_ROOT, times=1)
    m.console_input = ["resume()"]
    r = m.boot()
    assert r.rescue and r.handed_off and overlay_is_root(r)
    assert "boot failed in stage 'root'" in r.console


def test_boot_shell_off_reboots(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=NOPE rootdelay=1 rd.shell=0 panic=3")
    r = m.boot()
    assert r.reboot == "restart" and not r.rescue
    assert "rebooting in 3 s" in r.console


def test_boot_hooks_see_the_context(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE")
    m.add_disk("sdb", live_stick(m), removable=True)
    m.add_hook("10-mark.py", "from mpinit_agent import fsutil\n"
                             "def after_root(ctx):\n"
                             "    fsutil.write_text('/run/mpinit/hooked', ctx.medium_dev.path)\n")
    r = m.boot()
    assert r.handed_off
    assert any(b"/dev/sdb" == r.read(p) for p in ("/run/mpinit/hooked", "/sysroot/run/mpinit/hooked")
               if r.exists(p))


def test_boot_failing_hook_goes_to_rescue(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE rd.shell=0 panic=-1")
    m.add_disk("sdb", live_stick(m), removable=True)
    m.add_hook("50-check.py", "def before_toram(ctx):\n    raise ValueError('policy says no')\n")
    r = m.boot()
    assert r.reboot == "restart"
    assert "stage 'toram': hook /etc/mpinit/hooks/50-check.py: before_toram() failed: ValueError: policy says no" \
        in r.console


def test_timeline_is_written(fake_machine):
    import json

    m = fake_machine(cmdline="root=live:LABEL=MPLIVE")
    m.add_disk("sdb", live_stick(m), removable=True)
    r = m.boot()
    path = [p for p in ("/run/mpinit/timeline.json", "/sysroot/run/mpinit/timeline.json") if r.exists(p)][0]
    timeline = json.loads(r.read(path))
    assert [e["stage"] for e in timeline] == list(contract.STAGES)
    assert all(set(e) == {"stage", "start_ms", "duration_ms", "result"} for e in timeline)


def test_boot_without_devtmpfs_fills_dev_itself(fake_machine):
    # A plain root: the fake machine's /sys/dev/char is empty, so /dev/loop-control cannot be made from it yet.
    m = fake_machine(cmdline="root=LABEL=ROOT", devtmpfs=False)
    m.add_disk("vda", m.filesystem("ext4", label="ROOT", files={"sbin/init": m.executable(b"init")}))
    r = m.boot()
    assert r.handed_off, r.console
    assert any(c[1] == "/dev" and c[2] == "tmpfs" for c in r.calls_to("mount"))
    assert "/dev/vda" in [c[0] for c in r.calls_to("mknod")]


# ---- a failing syscall at every step ------------------------------------------------------------------------------

_PER_CALL = 12   # occurrences tried per syscall name (all of them when there are no more)
_NOT_FAILABLE = ("uptime_ms", "sleep_ms", "readline", "strerror", "getpid", "makedev", "major", "minor")


def _sweep_machine(console, cmdline_="root=live:LABEL=MPLIVE rd.live.ram=1"):
    from mpinit.testing import FakeMachine
    from mpinit_agent import blockdev

    blockdev.forget()
    m = FakeMachine(cmdline=cmdline_)
    m.add_disk("sdb", live_stick(m), removable=True)
    m.add_disk("vda", m.filesystem("ext4", label="ROOT", files={"sbin/init": m.executable(b"init")}))
    m.console_input = list(console)
    return m


def _every_call(cmdline_):
    r = _sweep_machine([], cmdline_).boot()
    assert r.handed_off, r.console
    seen = {}
    for name, _ in r.calls:
        if name not in _NOT_FAILABLE:
            seen[name] = seen.get(name, 0) + 1
    points = []
    for name in sorted(seen):
        n = seen[name]
        if n <= _PER_CALL:
            points.extend((name, i) for i in range(n))
        else:  # lstat and friends run dozens of times: the first, the last and evenly spaced ones between
            points.extend((name, i * (n - 1) // (_PER_CALL - 1)) for i in range(_PER_CALL))
    return points


@cpython_only
@pytest.mark.parametrize("cmdline_, complete", [
    ("root=live:LABEL=MPLIVE rd.live.ram=1", overlay_is_root),
    ("root=LABEL=ROOT", lambda r: r.mount_at("/")[:3] == ("/dev/vda", "/", "ext4")),
])
def test_a_failing_syscall_at_every_step(cmdline_, complete):
    """Each syscall of a good boot made to fail once (EIO), in turn: the boot either completes into a complete
    root or stops in the rescue shell with a report; PID 1 never dies. Without console input the shell is where it
    stays; with resume() typed, the failed stage runs again."""
    if True:  # each FakeMachine brings its own fake filesystem (no `fs` fixture here)
        points = _every_call(cmdline_)
        assert len(points) > 40
        rescued = 0
        for resume in (False, True):
            for name, skip in points:
                m = _sweep_machine(["resume()"] * 3 if resume else [], cmdline_)
                m.fail(name, abi.EIO, skip=skip, times=1)
                r = m.boot()
                where = "%s #%d (resume=%s): %s" % (name, skip, resume, (r.error or r.console)[-400:])
                assert not r.panic, where
                if r.handed_off:
                    assert complete(r), where
                else:
                    assert r.rescue and "mpinit: boot failed in stage '" in r.console, where
                    assert not resume, where  # a transient failure plus resume() always ends in the new root
                    rescued += 1
        assert rescued > 10  # most steps are not optional: their failure is reported


def test_run_guards_against_errors_outside_any_stage(fs, capsys, monkeypatch):
    def broken(ctx):
        raise RuntimeError("bug outside the stages")

    monkeypatch.setattr(main, "boot", broken)
    with StubSys(fs, console=["resume()"]) as s:
        main.run()
    out = capsys.readouterr().out
    assert "unexpected error: RuntimeError: bug outside the stages" in out
    assert "nothing to resume" in out  # resume() is refused: there is no stage to run again
    assert s.calls[-1] == ("reboot", (abi.RB_AUTOBOOT,))


def test_boot_loads_the_sticks_driver_by_coldplug_and_modules_param(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE modules=loop usb_storage.delay_use=0")
    m.add_module("usb_common")
    m.add_module("usb_storage", depends=["usb_common"], aliases=["usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*"])
    m.add_disk("sdb", live_stick(m), removable=True, driver="usb_storage",
               modalias="usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00", appear_after_ms=1500)
    r = m.boot()
    assert r.handed_off, r.console
    assert r.loaded_modules.index("usb_common") < r.loaded_modules.index("usb_storage")
    assert "delay_use=0" in r.module_params.get("usb_storage", "")


def test_boot_missing_driver_is_named_in_the_report(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE modules=nvme rootdelay=1")
    r = m.boot()
    assert not r.handed_off
    assert "modules that failed to load: nvme" in r.console


# ---- the modules stage: an image packed for another kernel release ---------------------------------------------


def _boot_other_kernel(m, running):
    from mpinit_agent import main as agent_main

    def entry():
        m.kver = running  # the kernel that booted is not the one the image was packed for (uname, /proc)
        return agent_main.start()

    return m.boot(entry)


def test_modules_for_another_kernel_release_fail_the_stage_at_once(fake_machine):
    m = fake_machine(cmdline="root=/dev/vda rootdelay=1", kver="6.1.0-packed")
    m.add_module("virtio_ring")
    m.add_module("virtio_blk", depends=("virtio_ring",))
    r = _boot_other_kernel(m, "6.9.0-running")
    assert "boot failed in stage 'modules': the image's 2 modules are for kernel 6.1.0-packed, but the running " \
           "kernel is 6.9.0-running" in r.console
    assert "mpinit pack --kver 6.9.0-running" in r.console
    assert r.loaded_modules == [] and not r.calls_to("load_module")


def test_no_modules_packed_for_another_release_is_only_a_warning(fake_machine):
    m = fake_machine(cmdline="root=/dev/vda rootdelay=1", kver="6.1.0-packed")
    m.add_disk("vda", m.filesystem("ext4", files={"sbin/init": m.executable(b"#!/bin/sh\n")}))
    r = _boot_other_kernel(m, "6.9.0-running")
    assert r.handed_off, r.console
    assert any("packed for kernel 6.1.0-packed, running 6.9.0-running" in line for line in r.kmsg)
