"""Capture in QEMU, replay on the host (issue 17): the real Debian kernel and the packed agent boot with a live
medium and a second, writable FAT disk BUGS (a plain image file made with mformat, read back with mtools: no
mounts on the host).

- A boot that fails (a label no disk has): in the rescue REPL, typed on the serial console, capture("LABEL=BUGS")
  writes the capture onto BUGS and capture("console") prints it framed; both are read back on the host (mtools,
  the console log) and replayed on the fake machine, which fails in the same stage with the same report.
- A boot that passes, with rd.mpinit.capture=LABEL=BUGS@handoff: the capture replays to the same hand-off.

Disks: vda = the gpt-vfat live medium (snapshot=on, as every e2e disk), vdb = BUGS, attached writable.
"""

import pytest

from e2e_support import medium, qemu_kernel  # noqa: F401 (fixtures)
from test_boot import REPL_PROMPT, agent_initrd  # noqa: F401 (fixture)
from mpinit import fat, media, qemu
from mpinit.paths import build_dir
from mpinit.testing import replay
from mpinit_agent import capture

BUGS_MB = 16


def bugs_disk(path):
    """A FAT16 filesystem labelled BUGS in a plain image file (mformat: no mkfs on a device, no mount)."""
    with open(path, "wb") as f:
        f.truncate(BUGS_MB << 20)
    fat.mkfs(str(path), 0, BUGS_MB << 20, "BUGS", 0, fat32=False)
    return path


def run(request, qemu_kernel, initrd, medium, bugs, append, **kw):
    logs = build_dir() / "e2e" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return qemu.boot(qemu_kernel.vmlinuz, initrd, disks=[medium("gpt-vfat").path], append=append, memory_mb=256,
                     extra_args=["-drive", "file=%s,if=virtio,format=raw" % bugs],
                     log_path=logs / (request.node.name + ".log"), **kw)


def replayed(data):
    m = replay.machine_from_capture(data)
    return m, m.boot()


@pytest.mark.e2e
def test_failed_boot_captured_on_a_stick_and_on_the_console_replays_the_same(request, qemu_kernel, agent_initrd,
                                                                             medium, tmp_path):
    bugs = bugs_disk(tmp_path / "bugs.img")
    r = run(request, qemu_kernel, agent_initrd, medium, bugs, "root=live:LABEL=NOSUCHLABEL rootdelay=2",
            timeout_s=240, input_lines=[(REPL_PROMPT, 'capture("LABEL=BUGS")'),
                                        ("as mpinit-capture-1.json", 'capture("console")'),
                                        ("==== END MPINIT CAPTURE", "poweroff()")])
    assert "as mpinit-capture-1.json" in r.output, r.output[-4000:]
    real_report = replay.failure_lines(r.output)
    assert real_report and "stage 'medium'" in real_report[0], r.output[-4000:]
    assert fat.listing(str(bugs), 0) == ["/mpinit-capture-1.json"]     # the temporary name was renamed
    from_stick = fat.read_file(str(bugs), 0, "/mpinit-capture-1.json")
    from_console = capture.unframe(r.output)
    for data in (from_stick, from_console):
        doc = capture.load(data)
        assert doc["failure"]["stage"] == "medium"
        assert doc["kernel"]["release"] == qemu_kernel.kver
        devs = {d["name"]: d for d in doc["devices"]}
        assert devs["vdb"]["probed"]["LABEL"] == "BUGS" and devs["vda1"]["probed"]["LABEL"] == media.VFAT_LABEL
        assert len(data) < 512 << 10, len(data)
        m, result = replayed(data)
        assert result.stuck and not result.handed_off
        assert replay.compare(doc, result) == [], "\n".join(replay.compare(doc, result)) + "\nnotes: %s" % (
            m.replay_notes,)
        assert replay.failure_lines(result.console) == real_report


@pytest.mark.e2e
def test_passing_boot_captured_at_handoff_replays_to_the_same_handoff(request, qemu_kernel, agent_initrd, medium,
                                                                      tmp_path):
    bugs = bugs_disk(tmp_path / "bugs.img")
    r = run(request, qemu_kernel, agent_initrd, medium, bugs,
            "root=live:LABEL=%s rd.mpinit.capture=LABEL=BUGS@handoff" % media.VFAT_LABEL, timeout_s=240)
    assert r.ok, r.output[-4000:]
    assert "as mpinit-capture-1.json" in r.output
    data = fat.read_file(str(bugs), 0, "/mpinit-capture-1.json")
    doc = capture.load(data)
    assert doc["reason"] == "at handoff" and doc["used"]["inits"]
    m, result = replayed(data)
    assert result.handed_off, result.console[-3000:]
    assert "exec %s" % result.init in r.output          # the real agent's handoff line names the same init
    assert replay.compare(doc, result) == [], "\n".join(replay.compare(doc, result))
    assert result.mount_at("/")[2] == "overlay"
