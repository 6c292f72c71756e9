"""End-to-end scenarios: the real Debian kernel, an initramfs made by `mpinit pack` with the real agent, our test
media as virtio disks, in QEMU (TCG). Each asserts on the live root's marker line (MPINIT-LIVE-OK with the facts
the root saw, see mpinit.liveroot) and on the agent's own `mpinit:` console lines.

Skipped, with the reason, until the runtime (build/mpinit-init), `mpinit pack` and the agent's main module exist.
The console of every boot is kept in build/e2e/logs/<test>.log for debugging.
"""

import importlib.util
import os
import subprocess
import sys

import pytest

from e2e_support import log_path, medium, qemu_kernel  # noqa: F401 (fixtures)
from mpinit import media, qemu
from mpinit_agent import contract

LABEL = "root=live:LABEL=%s" % media.VFAT_LABEL
REPL_PROMPT = ">>> "
NO_SHELL = "rd.shell=0 panic=1"        # a failure reboots at once; -no-reboot turns that into QEMU's exit
SHORT_WAIT = "rootdelay=3"             # a missing medium fails after 3 s instead of the 30 s default
MEMORY_MB = 256
LOW_MEMORY_MB = 192                    # media.BIG_FILE_MB does not fit in RAM here


@pytest.fixture(scope="session")
def agent_initrd(qemu_kernel, runtime_binary, tmp_path_factory):
    """`mpinit pack --modules generic-live` for the Debian kernel, once per session."""
    for mod in ("mpinit.cmd_pack", "mpinit_agent.main"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip("agent not built: %s is missing" % mod)
    work = tmp_path_factory.mktemp("initrd")
    # The runtime is a plain MicroPython under any name not ending in "init": check that the agent is frozen in.
    probe = work / "micropython"
    probe.symlink_to(runtime_binary.resolve())
    check = subprocess.run([str(probe), "-c", "import mpinit_agent.main"], capture_output=True, text=True)
    if check.returncode != 0:
        pytest.skip("agent not built into %s: %s" % (runtime_binary, (check.stdout + check.stderr).strip()[-300:]))
    out = work / "initrd.img"
    env = dict(os.environ, MPINIT_RUNTIME=str(runtime_binary))
    proc = subprocess.run([sys.executable, "-m", "mpinit", "pack", "-o", str(out), "--init", str(runtime_binary),
                           "--kernel-modules", str(qemu_kernel.modules_dir), "--modules", "generic-live"],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, "mpinit pack failed:\n%s\n%s" % (proc.stdout[-3000:], proc.stderr[-3000:])
    return out


@pytest.fixture
def boot(request, qemu_kernel, agent_initrd, medium):
    """boot(["gpt-vfat", ...], "kernel params", memory_mb=..., ...) -> BootResult; the console log is kept."""

    def run_boot(disks, append, memory_mb=MEMORY_MB, timeout_s=90, **kw):
        paths = [medium(d).path for d in disks]
        cdrom = kw.pop("cdrom", None)
        # Without an input script, the rescue prompt means the boot failed: stop there, not at the deadline.
        kw.setdefault("stop_on", None if kw.get("input_lines") else REPL_PROMPT)
        return qemu.boot(qemu_kernel.vmlinuz, agent_initrd, disks=paths,
                         cdrom=medium(cdrom).path if cdrom else None, append=append, memory_mb=memory_mb,
                         timeout_s=timeout_s, log_path=log_path(request), **kw)
    return run_boot


def agent_lines(r, *words):
    """The agent's console lines that contain every one of `words` (case-insensitive)."""
    return [line for line in r.lines("mpinit:") if all(w.lower() in line.lower() for w in words)]


def mount_table(r):
    return {m[1]: (m[0], m[2]) for m in r.mounts()}


def assert_live(r, device=None):
    """The boot reached the live root: overlay, writable, and the agent said which device held the medium."""
    assert r.ok, r.output[-4000:]
    facts = r.marker_fields()
    assert facts["rootfs"] == "overlay", facts
    assert facts["rw"] == "yes", facts
    assert r.lines("mpinit:"), "no mpinit: lines on the console"
    if device:
        assert agent_lines(r, "medium", device), "no mpinit: medium line naming %s:\n%s" % (
            device, "\n".join(r.lines("mpinit:")))
    mounts = mount_table(r)
    assert mounts["/"][1] == "overlay"
    return facts, mounts


def assert_failed(r, stage=None, *words):
    """No live root, the agent's failure report, and (with rd.shell=0) a reboot rather than the deadline."""
    assert not r.ok, r.marker_line
    text = r.output.lower()
    at = text.find("boot failed")
    assert at >= 0, r.output[-4000:]
    report = text[at:]  # the words must be in the agent's report, not in the kernel's messages before it
    if stage:
        assert "stage '%s'" % stage in report, r.output[-4000:]
    for w in words:
        assert w.lower() in report, "%r not in the failure report:\n%s" % (w, r.output[at:][-4000:])


# --- finding the medium ------------------------------------------------------------------------------------

@pytest.mark.e2e
@pytest.mark.parametrize("spec", [
    "LABEL=%s" % media.VFAT_LABEL,
    "UUID=%s" % media.VFAT_UUID,
    "PARTUUID=%s" % media.GPT_PARTUUID,
    "PARTLABEL=%s" % media.GPT_PARTLABEL,
])
def test_live_by_spec(boot, spec):
    r = boot(["gpt-vfat"], "root=live:" + spec)
    facts, mounts = assert_live(r, "/dev/vda1")
    assert "root=live:" + spec in facts["cmdline"]
    assert mounts[contract.MEDIUM_MOUNT] == ("/dev/vda1", "vfat")
    assert mounts[contract.IMAGE_MOUNT][1] == "squashfs"


@pytest.mark.e2e
def test_live_by_device_path_on_the_second_disk(boot):
    r = boot(["ext4-root", "gpt-vfat"], "root=live:/dev/vdb1")
    facts, mounts = assert_live(r, "/dev/vdb1")
    assert mounts[contract.MEDIUM_MOUNT][0] == "/dev/vdb1"


@pytest.mark.e2e
def test_live_without_spec_scans_the_devices(boot):
    r = boot(["ext4-root", "gpt-vfat"], "boot=live")
    facts, mounts = assert_live(r, "/dev/vdb1")
    assert mounts[contract.MEDIUM_MOUNT][0] == "/dev/vdb1"


@pytest.mark.e2e
def test_live_on_mbr_ext4_partition(boot):
    r = boot(["mbr-ext4"], "root=live:LABEL=%s" % media.EXT4_LABEL)
    facts, mounts = assert_live(r, "/dev/vda1")
    assert mounts[contract.MEDIUM_MOUNT] == ("/dev/vda1", "ext4")


@pytest.mark.e2e
@pytest.mark.parametrize("how", ["virtio", "cdrom"])
def test_live_by_cdlabel_on_the_iso(boot, how):
    spec = "root=live:CDLABEL=%s" % media.ISO_LABEL
    r = boot([], spec, cdrom="iso") if how == "cdrom" else boot(["iso"], spec)
    device = "/dev/sr0" if how == "cdrom" else "/dev/vda"
    facts, mounts = assert_live(r, device)
    assert mounts[contract.MEDIUM_MOUNT] == (device, "iso9660")


@pytest.mark.e2e
def test_live_whole_disk_squashfs(boot):
    r = boot(["squashfs-disk"], "root=live:/dev/vda")
    facts, mounts = assert_live(r, "/dev/vda")
    assert mounts[contract.IMAGE_MOUNT] == ("/dev/vda", "squashfs")


@pytest.mark.e2e
def test_live_iso_file_on_a_partition(boot):
    r = boot(["iso-in-ext4"], "img_dev=/dev/vda1 img_loop=%s" % media.ISO_FILE)
    facts, mounts = assert_live(r, "/dev/vda1")
    assert mounts[contract.MEDIUM_MOUNT] == ("/dev/vda1", "ext4")
    assert mounts[contract.ISO_MOUNT][1] == "iso9660"
    assert mounts[contract.IMAGE_MOUNT][1] == "squashfs"


# --- copy to RAM, checksums --------------------------------------------------------------------------------

@pytest.mark.e2e
@pytest.mark.parametrize("param", ["rd.live.ram=1", "toram", "copytoram=y"])
def test_toram_unmounts_the_medium(boot, param):
    r = boot(["gpt-vfat"], "%s %s" % (LABEL, param))
    facts, mounts = assert_live(r)
    assert contract.MEDIUM_MOUNT not in mounts, "medium still mounted after toram: %s" % sorted(mounts)
    assert mounts[contract.TORAM_MOUNT][1] == "tmpfs"
    assert mounts[contract.IMAGE_MOUNT][0].startswith("/dev/loop")
    assert agent_lines(r, "toram")


@pytest.mark.e2e
def test_toram_auto_with_too_little_ram_boots_from_the_medium(boot):
    r = boot(["gpt-vfat-big"], "%s copytoram=auto" % LABEL, memory_mb=LOW_MEMORY_MB)
    facts, mounts = assert_live(r)
    assert contract.TORAM_MOUNT not in mounts
    assert mounts[contract.MEDIUM_MOUNT][0] == "/dev/vda1"
    assert agent_lines(r, "toram", "medium"), "no toram warning:\n" + "\n".join(r.lines("mpinit:"))


@pytest.mark.e2e
def test_toram_forced_with_too_little_ram_is_a_clear_error(boot):
    r = boot(["gpt-vfat-big"], "%s rd.live.ram=1 %s" % (LABEL, NO_SHELL), memory_mb=LOW_MEMORY_MB)
    assert_failed(r, "toram", "MemAvailable")
    assert not r.timed_out


@pytest.mark.e2e
def test_checksum_good(boot):
    r = boot(["gpt-vfat"], "%s checksum=y" % LABEL)
    assert_live(r)
    assert agent_lines(r, "sha256"), "no checksum line:\n" + "\n".join(r.lines("mpinit:"))


@pytest.mark.e2e
def test_checksum_bad(boot):
    r = boot(["gpt-vfat-badsum"], "%s checksum=y %s" % (LABEL, NO_SHELL))
    assert_failed(r, "medium", "sha256")
    assert not r.timed_out


# --- plain root --------------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_plain_ext4_root_by_uuid(boot):
    r = boot(["ext4-root"], "root=UUID=%s rootfstype=ext4 rw" % media.ROOT_UUID)
    assert r.ok, r.output[-4000:]
    facts = r.marker_fields()
    assert facts["rootfs"] == "ext4" and facts["rw"] == "yes", facts
    assert mount_table(r)["/"] == ("/dev/vda", "ext4")
    assert r.lines("mpinit:")


# --- failures ----------------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_missing_medium_lists_devices_then_the_repl(boot):
    r = boot(["ext4-root"], "root=live:LABEL=NOSUCHMEDIUM " + SHORT_WAIT,
             input_lines=[(REPL_PROMPT, "print('REPL', 6 * 7)")], stop_on=REPL_PROMPT)
    assert_failed(r, "medium", "NOSUCHMEDIUM", "vda")
    assert "REPL 42" in r.output, r.output[-3000:]


@pytest.mark.e2e
def test_missing_medium_without_shell_reboots(boot):
    r = boot(["ext4-root"], "root=live:LABEL=NOSUCHMEDIUM %s %s" % (SHORT_WAIT, NO_SHELL))
    assert_failed(r, "medium", "NOSUCHMEDIUM")
    assert not r.timed_out, "no reboot: QEMU ran until the deadline"
    assert REPL_PROMPT not in r.output


@pytest.mark.e2e
def test_corrupt_squashfs(boot):
    r = boot(["gpt-vfat-corrupt"], "%s %s" % (LABEL, NO_SHELL))
    assert_failed(r, None, "squashfs")
    assert not r.timed_out


@pytest.mark.e2e
def test_missing_init_in_the_image(boot):
    r = boot(["gpt-vfat-noinit"], "%s %s" % (LABEL, NO_SHELL))
    assert_failed(r, "handoff", "init")
    assert not r.timed_out


# --- the break point ---------------------------------------------------------------------------------------

@pytest.mark.e2e
@pytest.mark.parametrize("name", ["premount", "pre-mount"])
def test_break_premount_repl_then_resume(boot, name):
    r = boot(["gpt-vfat"], "%s rd.break=%s" % (LABEL, name),
             input_lines=[(REPL_PROMPT, "print('AT-BREAK', 6 * 7)"), ("AT-BREAK 42", "resume()")])
    assert "AT-BREAK 42" in r.output, r.output[-3000:]
    assert_live(r)
    assert agent_lines(r, "rd.break"), "no mpinit: line about the break point"
    assert r.output.find("AT-BREAK 42") < r.output.find("MPINIT-LIVE-OK")  # stopped before the root, then resumed
