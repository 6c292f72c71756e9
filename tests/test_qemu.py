"""The QEMU runner (mpinit.qemu, mpinit qemu): command line, result parsing, and real boots of a throwaway
busybox-script initramfs (no agent needed), proving the console capture, the input script and the deadline."""

import shutil
from pathlib import Path

import pytest

from conftest import require_tools
from mpinit import cli, qemu
from mpinit.runner import ToolError, run


def _files(tmp_path):
    k = tmp_path / "vmlinuz"
    i = tmp_path / "initrd"
    k.write_bytes(b"k")
    i.write_bytes(b"i")
    return k, i


def test_argv_is_tcg_serial_no_reboot_with_console_added(tmp_path):
    k, i = _files(tmp_path)
    d = tmp_path / "a,b.img"
    d.write_bytes(b"\0" * 512)
    argv = qemu.qemu_argv(k, i, disks=[d], append="quiet", memory_mb=256, qemu="qemu")
    assert argv[argv.index("-accel") + 1] == "tcg"
    assert "kvm" not in " ".join(argv)
    assert "-no-reboot" in argv
    assert argv[argv.index("-serial") + 1] == "stdio"
    assert argv[argv.index("-m") + 1] == "256"
    assert argv[argv.index("-append") + 1] == "quiet console=ttyS0"
    drive = argv[argv.index("-drive") + 1]
    assert drive == "file=%s,if=virtio,format=raw,snapshot=on" % str(d).replace(",", ",,")


def test_argv_keeps_a_given_console(tmp_path):
    k, i = _files(tmp_path)
    argv = qemu.qemu_argv(k, i, append="console=ttyS0,115200", qemu="qemu")
    assert argv[argv.index("-append") + 1] == "console=ttyS0,115200"


def test_argv_names_a_missing_input(tmp_path):
    k, i = _files(tmp_path)
    with pytest.raises(ToolError, match="initrd: .*nope"):
        qemu.qemu_argv(k, tmp_path / "nope", qemu="qemu")
    with pytest.raises(ToolError, match="disk image .*missing.img"):
        qemu.qemu_argv(k, i, disks=[tmp_path / "missing.img"], qemu="qemu")


def test_script_normalisation_adds_newlines():
    steps = qemu._normalise_script([(">>> ", "1+1"), "resume()\n", (None, "x\r")])
    assert steps == [(">>> ", "1+1\n"), (None, "resume()\n"), (None, "x\r")]


def test_marker_fields_and_mounts_parse_the_live_root_report():
    out = ("[    1.0] boot\nMPINIT-LIVE-OK uptime=3.50 rootfs=overlay rw=yes cmdline=root=live:LABEL=X quiet\n"
           "MPINIT-MOUNTS-BEGIN\noverlay / overlay rw,relatime 0 0\ntmpfs /run tmpfs rw 0 0\n"
           "MPINIT-MOUNTS-END\n")
    r = qemu.BootResult(ok=True, output=out, elapsed_s=1.0, marker_line=out.split("\n")[1])
    assert r.marker_fields() == {"uptime": "3.50", "rootfs": "overlay", "rw": "yes",
                                 "cmdline": "root=live:LABEL=X quiet"}
    assert [m[1] for m in r.mounts()] == ["/", "/run"]
    r2 = qemu.BootResult(ok=False, output="<6>mpinit: medium: done in 12 ms\n", elapsed_s=1.0, marker_line=None)
    assert r2.lines() == ["mpinit: medium: done in 12 ms"]
    assert r2.marker_fields() == {} and r2.mounts() == []


def test_cli_rejects_bad_memory_and_missing_kernel(tmp_path, capsys):
    k, i = _files(tmp_path)
    assert cli.main(["qemu", "--kernel", str(k), "--initrd", str(i), "--memory", "8"]) == 2
    assert "--memory 8" in capsys.readouterr().err
    assert cli.main(["qemu", "--kernel", str(tmp_path / "nokernel"), "--initrd", str(i),
                     "--no-interactive"]) == 2
    assert "nokernel" in capsys.readouterr().err


# --- real boots of a busybox-script initramfs --------------------------------------------------------------

def busybox_initrd(out, script):
    """A throwaway initramfs: static busybox + an ash /init script (GNU cpio, newc, owner 0:0)."""
    require_tools("cpio", "busybox")
    root = out.parent / (out.name + ".d")
    (root / "bin").mkdir(parents=True)
    shutil.copy(shutil.which("busybox"), root / "bin" / "busybox")
    for applet in ("sh", "mount", "echo", "cat", "poweroff", "sleep", "read"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "dev").mkdir()
    (root / "proc").mkdir()
    init = root / "init"
    # The kernel runs /init with no console fds when the archive has no /dev/console node (we cannot make one
    # without root), so the script mounts devtmpfs and opens the console itself.
    init.write_text("#!/bin/sh\nmount -t devtmpfs dev /dev\nexec </dev/console >/dev/console 2>&1\n"
                    "mount -t proc proc /proc\n" + script + "\npoweroff -f\n")
    init.chmod(0o755)
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet", "-O", out], cwd=root,
        input=("\n".join(names) + "\n").encode())
    return out


@pytest.fixture
def qemu_ready(debian_kernel):
    require_tools("qemu-system-x86_64", "cpio", "busybox")
    return debian_kernel


@pytest.mark.e2e
def test_boot_sees_marker_and_powers_off(qemu_ready, tmp_path):
    initrd = busybox_initrd(tmp_path / "initrd", 'echo "MPINIT-LIVE-OK uptime=$(cat /proc/uptime) hello"')
    log = tmp_path / "console.log"
    r = qemu.boot(qemu_ready.vmlinuz, initrd, append="quiet", memory_mb=256, timeout_s=90, log_path=log)
    assert r.ok, r.output[-3000:]
    assert r.marker_line.startswith("MPINIT-LIVE-OK uptime=") and r.marker_line.endswith("hello")
    assert not r.timed_out and r.exit_status == 0  # poweroff -f, not the deadline, ended QEMU
    assert "MPINIT-LIVE-OK" in log.read_text(errors="replace")


@pytest.mark.e2e
def test_boot_feeds_input_when_the_prompt_appears(qemu_ready, tmp_path):
    initrd = busybox_initrd(tmp_path / "initrd", 'echo "ASK>"; read a; echo "GOT[$a]"; read b; '
                                                 'echo "MPINIT-LIVE-OK $a-$b"')
    r = qemu.boot(qemu_ready.vmlinuz, initrd, append="quiet", memory_mb=256, timeout_s=90,
                  input_lines=[("ASK>", "first"), ("GOT[first]", "second")])
    assert r.sent == ["first\n", "second\n"]
    assert r.ok, r.output[-3000:]
    assert r.marker_line == "MPINIT-LIVE-OK first-second"


@pytest.mark.e2e
def test_boot_without_marker_hits_the_deadline_and_is_killed(qemu_ready, tmp_path):
    initrd = busybox_initrd(tmp_path / "initrd", 'echo "STUCK"; sleep 100000')
    r = qemu.boot(qemu_ready.vmlinuz, initrd, append="quiet", memory_mb=256, timeout_s=15)
    assert not r.ok and r.marker_line is None
    assert r.timed_out
    assert "STUCK" in r.output  # the console was captured up to the kill


@pytest.mark.e2e
def test_cli_exit_status_follows_the_marker(qemu_ready, tmp_path, capsys):
    initrd = busybox_initrd(tmp_path / "initrd", 'echo "NOT-THE-MARKER"')
    base = ["qemu", "--kernel", str(qemu_ready.vmlinuz), "--initrd", str(initrd), "--append", "quiet",
            "--memory", "256", "--timeout", "90", "--no-interactive"]
    assert cli.main(base + ["--marker", "NOT-THE-MARKER"]) == 0
    assert cli.main(base) == 1
    assert "NOT seen" in capsys.readouterr().err


@pytest.mark.e2e
def test_stop_on_ends_the_boot_at_a_prompt_after_the_script(qemu_ready, tmp_path):
    initrd = busybox_initrd(tmp_path / "initrd", 'echo "P1>"; read a; echo "P2>"; sleep 100000')
    r = qemu.boot(qemu_ready.vmlinuz, initrd, append="quiet", memory_mb=256, timeout_s=90,
                  input_lines=[("P1>", "go")], stop_on="P2>")
    assert r.sent == ["go\n"]
    assert "P2>" in r.output
    assert not r.timed_out and not r.ok


# --- the guest network (net_args, pxe_argv, mpinit qemu --net-port) -----------------------------------------

def test_net_args_is_exactly_the_restricted_loopback_forward(tmp_path):
    assert qemu.net_args(8080) == [
        "-netdev", "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:80-tcp:127.0.0.1:8080",
        "-device", "virtio-net-pci,netdev=n0"]
    tftp = tmp_path / "t,ree"
    tftp.mkdir()
    (tftp / "pxelinux.0").write_bytes(b"x")
    args = qemu.net_args("8080", tftp=tftp, bootfile="pxelinux.0", nic="e1000")
    assert args == ["-netdev", "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:80-tcp:127.0.0.1:8080,"
                    "tftp=%s,bootfile=pxelinux.0" % str(tftp).replace(",", ",,"), "-device", "e1000,netdev=n0"]


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.2.2", "localhost", "127.0.0.2", "::1", "192.168.1.1"])
def test_net_args_refuses_any_other_host_address(host):
    with pytest.raises(ToolError, match="host address %s refused" % host):
        qemu.net_args(8080, host=host)


def test_net_args_refuses_bad_ports_nics_and_boot_files(tmp_path):
    for port in (0, 65536, -1, "x", None):
        with pytest.raises(ToolError, match="port"):
            qemu.net_args(port)
    with pytest.raises(ToolError, match="NIC 'rtl8139' unknown"):
        qemu.net_args(80, nic="rtl8139")
    with pytest.raises(ToolError, match="needs a TFTP directory"):
        qemu.net_args(80, bootfile="pxelinux.0")
    with pytest.raises(ToolError, match="nodir is not a directory"):
        qemu.net_args(80, tftp=tmp_path / "nodir")
    (tmp_path / "sub").mkdir()
    (tmp_path / "outside").write_bytes(b"x")
    for bad in ("missing.0", "../outside", str(tmp_path / "outside")):
        with pytest.raises(ToolError, match="not a file inside the TFTP directory"):
            qemu.net_args(80, tftp=tmp_path / "sub", bootfile=bad)


def test_pxe_argv_boots_the_network_from_the_firmware(tmp_path):
    (tmp_path / "pxelinux.0").write_bytes(b"x")
    argv = qemu.pxe_argv(tmp_path, "pxelinux.0", 1234, qemu="qemu")
    assert "-kernel" not in argv and "-initrd" not in argv
    assert argv[argv.index("-boot") + 1] == "order=n"
    assert argv[argv.index("-netdev") + 1].startswith("user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:80-"
                                                      "tcp:127.0.0.1:1234,tftp=")
    assert argv.count("-netdev") == 1 and "-nic" not in argv and "-net" not in argv


def test_cli_net_port_forms_and_refusals(tmp_path, capsys, monkeypatch):
    k, i = _files(tmp_path)
    seen = {}

    def fake_boot(kernel, initrd, **kw):
        seen.update(kw, kernel=kernel)
        return qemu.BootResult(ok=True, output="", elapsed_s=0.1, marker_line="MPINIT-LIVE-OK")

    monkeypatch.setattr(qemu, "boot", fake_boot)
    base = ["qemu", "--no-interactive", "--no-relay"]
    assert cli.main(base + ["--kernel", str(k), "--initrd", str(i), "--net-port", "127.0.0.1:5000"]) == 0
    assert seen["extra_args"] == qemu.net_args(5000) and seen["argv"] is None
    assert cli.main(base + ["--kernel", str(k), "--initrd", str(i), "--net-port", "5001", "--nic", "e1000"]) == 0
    assert seen["extra_args"] == qemu.net_args(5001, nic="e1000")
    (tmp_path / "pxelinux.0").write_bytes(b"x")
    assert cli.main(base + ["--net-port", "5002", "--tftp", str(tmp_path)]) == 0
    assert seen["kernel"] is None and "order=n" in seen["argv"] and "bootfile=pxelinux.0" in " ".join(seen["argv"])
    capsys.readouterr()
    for bad, msg in ((["--net-port", "10.0.0.1:80"], "only 127.0.0.1"), (["--net-port", "0"], "not a port"),
                     (["--net-port", "http"], "not a port"), (["--tftp", str(tmp_path)], "need --net-port"),
                     (["--net-port", "80"], "required, unless --net-port and --tftp"),
                     (["--net-port", "80", "--tftp", str(tmp_path), "--append", "x"], "do not apply"),
                     (["--net-port", "80", "--tftp", str(tmp_path), "--bootfile", "nope.efi"],
                      "nope.efi is not a file inside")):
        assert cli.main(base + bad) == 2, bad
        assert msg in capsys.readouterr().err, bad


def test_cli_net_port_puts_a_relay_in_front_and_stops_it(tmp_path, monkeypatch, capsys):
    import socket

    k, i = _files(tmp_path)
    seen = {}

    def fake_boot(kernel, initrd, **kw):
        fwd = kw["extra_args"][1]
        seen["port"] = int(fwd.rsplit(":", 1)[1])
        socket.create_connection(("127.0.0.1", seen["port"]), timeout=5).close()  # listening during the boot
        return qemu.BootResult(ok=True, output="", elapsed_s=0.1, marker_line="MPINIT-LIVE-OK")

    monkeypatch.setattr(qemu, "boot", fake_boot)
    assert cli.main(["qemu", "--no-interactive", "--kernel", str(k), "--initrd", str(i), "--net-port", "5003"]) == 0
    assert seen["port"] != 5003
    assert "relay 127.0.0.1:%d -> web server 127.0.0.1:5003" % seen["port"] in capsys.readouterr().out
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", seen["port"]), timeout=2).close()  # stopped after the boot
