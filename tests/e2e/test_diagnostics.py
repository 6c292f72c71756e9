"""End-to-end: what a person sees when something goes wrong (issue 16 items 2 and 3), on the real Debian kernel.

- A plain ext4 root whose superblock claims more blocks than the disk has (the image file truncated after mkfs):
  the kernel refuses the mount with EINVAL and says why in its log; the failure report quotes that line.
- The rescue REPL over the serial console: Tab completes helper names and attributes, help(blkid) prints the
  helper's text, the up arrow recalls the last line, shell() without a packed shell says how to get one.
- `mpinit analyze` on the console log of a live boot.
"""

import subprocess
import sys

import pytest

from e2e_support import log_path, medium, qemu_kernel, require_tools  # noqa: F401 (fixtures)
from test_boot import LABEL, REPL_PROMPT, agent_initrd  # noqa: F401 (fixture)
from mpinit import qemu

BLOCK = 4096


@pytest.mark.e2e
def test_ext4_bad_geometry_report_quotes_the_kernel(request, qemu_kernel, agent_initrd, tmp_path):
    require_tools("mkfs.ext4")
    img = tmp_path / "short-ext4.img"
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    # A plain file, no kernel device involved: mke2fs writes the superblock (16384 blocks of 4 KiB).
    subprocess.run(["mkfs.ext4", "-q", "-F", "-b", str(BLOCK), "-L", "SHORT", str(img)], check=True,
                   capture_output=True)
    with open(img, "r+b") as f:
        f.truncate(16 << 20)           # the disk now has 4096 blocks; the superblock still says 16384
    r = qemu.boot(qemu_kernel.vmlinuz, agent_initrd, disks=[img], memory_mb=256, timeout_s=90,
                  append="root=/dev/vda rootfstype=ext4 rd.shell=0 panic=1", log_path=log_path(request))
    assert not r.ok
    out = r.output
    at = out.find("boot failed in stage 'root'")
    assert at >= 0, out[-4000:]
    report = out[at:]
    assert "errno 22" in report, report[:3000]
    assert "the kernel's log since the stage started:" in report, report[:3000]
    # fs/ext4/super.c ext4_fill_super(): "bad geometry: block count %llu exceeds size of device (%llu blocks)"
    assert "EXT4-fs (vda): bad geometry: block count 16384 exceeds size of device (4096 blocks)" in report, \
        report[:3000]
    assert not r.timed_out


@pytest.mark.e2e
def test_repl_tab_completion_help_and_history(request, qemu_kernel, agent_initrd, medium):
    script = [
        (REPL_PROMPT, "blk\t()\r"),                # Tab: blk -> blkid (MicroPython adds no "("), Enter runs it
        ("/dev/vda", "print('STAGE', err.sta\t)\r"),   # an attribute of err completes too
        ("STAGE medium", "help(blkid)\r"),
        ("TYPE, LABEL, UUID", "print('SUM', 6 * 7)\r"),
        ("SUM 42", "\x1b[A\r"),                    # up arrow: the last line again
        ("SUM 42", "shell()\r"),
        ("no shell in this image", "print('DONE')\r"),
    ]
    r = qemu.boot(qemu_kernel.vmlinuz, agent_initrd, disks=[medium("ext4-root").path], memory_mb=256,
                  timeout_s=120, append="root=live:LABEL=NOSUCHMEDIUM rootdelay=2", input_lines=script,
                  stop_on=REPL_PROMPT, log_path=log_path(request))
    out = r.output
    at = out.find("rescue shell")
    assert at >= 0, out[-4000:]
    repl = out[at:]
    assert ">>> blkid()" in repl, repl[-3000:]                  # the completion was echoed on the line
    assert "/dev/vda" in repl
    assert "err.stage)" in repl and "STAGE medium" in repl, repl[-3000:]
    assert "blkid()\n    Every block device with TYPE, LABEL, UUID" in repl, repl[-3000:]
    # typed once, recalled by the up arrow: the line echoed twice, run twice
    assert repl.count(">>> print('SUM', 6 * 7)") == 2 and repl.count("SUM 42") == 2, repl[-3000:]
    assert "shell(): no shell in this image" in repl
    assert "DONE" in repl


@pytest.mark.e2e
def test_analyze_a_live_boot_console_log(request, qemu_kernel, agent_initrd, medium, tmp_path):
    r = qemu.boot(qemu_kernel.vmlinuz, agent_initrd, disks=[medium("gpt-vfat").path], memory_mb=256,
                  timeout_s=90, append=LABEL, log_path=log_path(request))
    assert r.ok, r.output[-3000:]
    log = tmp_path / "console.log"
    log.write_text(r.output)
    svg = tmp_path / "boot.svg"
    p = subprocess.run([sys.executable, "-m", "mpinit", "analyze", str(log), "--svg", str(svg)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    for stage in ("kernel", "early", "modules", "devices", "medium", "root", "handoff"):
        assert "\n%s " % stage in "\n" + p.stdout or (" %s " % stage) in p.stdout, p.stdout
    assert svg.read_text().startswith("<?xml") and "<svg" in svg.read_text()
