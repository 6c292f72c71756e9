"""mpinit_agent.toram: the memory check, the progress line, the copy with size verification and the release of
the medium."""

import os

import pytest

from agent_stub import StubSys
from mpinit_agent import cmdline, contract, syscalls as abi, main, toram
from mpinit_agent.failure import BootError

MICROPYTHON = True

MiB = 1 << 20


def test_mem_available(fs):
    fs.create_file("/proc/meminfo", contents="MemTotal: 2048000 kB\nMemFree: 1000 kB\nMemAvailable: 1500000 kB\n")
    assert toram.mem_available() == 1500000 * 1024


def test_mem_available_falls_back_to_memfree(fs):
    fs.create_file("/proc/meminfo", contents="MemTotal: 2048000 kB\nMemFree: 1000 kB\n")
    assert toram.mem_available() == 1000 * 1024


@pytest.mark.parametrize("mode, size, avail, optical, copy", [
    ("no", 10, 1000, False, False),
    ("yes", 100, 1000, False, True),
    ("yes", 100, 1000, True, True),      # forced: even from an optical medium
    ("auto", 100, 1000, False, True),
    ("auto", 100, 1000, True, False),    # auto never copies from optical media
    ("auto", 950, 1000, False, False),   # not enough with the reserve: falls back
])
def test_decide(mode, size, avail, optical, copy):
    assert toram.decide(mode, size * MiB, avail * MiB, 64 * MiB, optical)[0] is copy


def test_decide_forced_without_room_is_a_clear_error():
    with pytest.raises(BootError, match="not enough memory") as ei:
        toram.decide("yes", 950 * MiB, 1000 * MiB, 64 * MiB, False)
    assert "950 MiB" in ei.value.message and "1000 MiB" in ei.value.message and ei.value.stage == "toram"


def test_progress_line():
    assert toram.progress_line(50 * MiB, 100 * MiB, 1000) == "mpinit: toram:  50% 50/100 MiB 52.4 MB/s ETA 1 s"
    assert toram.progress_line(100 * MiB, 100 * MiB, 2000).endswith("done")
    assert "ETA ?" in toram.progress_line(0, 100 * MiB, 0)


def live_ctx(fs, line, size=3 * MiB, avail_kb=4000000, optical=False):
    fs.create_file("/proc/meminfo", contents="MemAvailable: %d kB\n" % avail_kb)
    img = contract.MEDIUM_MOUNT + "/live/filesystem.squashfs"
    fs.create_file(img, contents=b"hsqs" + b"x" * (size - 4))
    ctx = main.Context()
    ctx.opts = cmdline.parse(line)
    ctx.image = img
    ctx.image_size = size
    ctx.medium = contract.MEDIUM_MOUNT
    ctx.optical = optical
    return ctx


def test_copy_to_ram_and_release_the_medium(fs, capsys):
    ctx = live_ctx(fs, "root=live:LABEL=LIVE rd.live.ram=1")
    with StubSys(fs) as s:
        s.mounts.append(("/dev/sdb1", contract.MEDIUM_MOUNT, "vfat", abi.MS_RDONLY, None))
        result = toram.run(ctx)
    assert result.startswith("copied " + contract.MEDIUM_MOUNT)
    assert ctx.image == contract.TORAM_MOUNT + "/filesystem.squashfs" and ctx.toram
    assert open(ctx.image, "rb").read(4) == b"hsqs"
    tmpfs = s.mounted(contract.TORAM_MOUNT)[0]
    assert tmpfs[2] == "tmpfs" and tmpfs[4] == "size=4m,mode=0755"
    assert ("umount", (contract.MEDIUM_MOUNT, 0)) in s.calls and ctx.medium is None
    assert "100% 3/3 MiB" in capsys.readouterr().out


def test_auto_without_room_boots_from_the_medium(fs):
    ctx = live_ctx(fs, "root=live:LABEL=LIVE copytoram=auto", avail_kb=3000)
    with StubSys(fs) as s:
        assert toram.run(ctx).startswith("skipped: copytoram=auto: not enough memory")
    assert s.mounts == [] and ctx.image.startswith(contract.MEDIUM_MOUNT)


def test_forced_without_room_fails(fs):
    ctx = live_ctx(fs, "root=live:LABEL=LIVE toram", avail_kb=3000)
    with StubSys(fs):
        with pytest.raises(BootError, match="not enough memory"):
            toram.run(ctx)


def test_auto_skips_optical(fs):
    ctx = live_ctx(fs, "root=live:CDLABEL=LIVE copytoram=auto", optical=True)
    with StubSys(fs):
        assert "optical" in toram.run(ctx)


def test_not_requested_or_not_live(fs):
    ctx = live_ctx(fs, "root=live:LABEL=LIVE")
    with StubSys(fs) as s:
        assert toram.run(ctx) == "skipped: not requested"
        ctx.opts = cmdline.parse("root=/dev/sda1")
        assert toram.run(ctx).startswith("skipped")
    assert s.calls == []


def test_short_copy_is_an_error_and_leaves_nothing_mounted(fs, monkeypatch):
    ctx = live_ctx(fs, "root=live:LABEL=LIVE toram")
    s = StubSys(fs)
    real = s.copy_direct
    # the source "ends" after 2 of 3 MiB (a medium pulled out, a truncated file): the copy returns 0
    monkeypatch.setattr(s, "copy_direct", lambda a, b, n, z: real(a, b, min(n, MiB), z) if s.clock < 1020 else 0)
    with s:
        with pytest.raises(BootError, match="short copy"):
            toram.run(ctx)
    assert s.mounted(contract.TORAM_MOUNT) == []
    assert ctx.image.startswith(contract.MEDIUM_MOUNT)


def test_failing_copy_in_auto_mode_falls_back(fs):
    ctx = live_ctx(fs, "root=live:LABEL=LIVE copytoram=auto")
    with StubSys(fs) as s:
        s.fail("copy_direct", abi.EIO)
        assert toram.run(ctx) == "skipped: copy failed"
    assert s.mounted(contract.TORAM_MOUNT) == [] and not ctx.toram


def test_the_copy_reads_with_o_direct_into_4_mib_buffers(fs):
    ctx = live_ctx(fs, "root=live:LABEL=LIVE toram")
    with StubSys(fs) as s:
        toram.run(ctx)
    opens = [a for n, a in s.calls if n == "open" and a[0].startswith(contract.MEDIUM_MOUNT)]
    assert opens and opens[0][1] & abi.O_DIRECT
    sizes = [a[3] for n, a in s.calls if n == "copy_direct"]
    assert sizes and set(sizes) == {4 << 20} and "copy_range" not in s.names()
    assert ctx.toram and os.path.getsize(ctx.image) == 3 * MiB


def test_the_file_is_mapped_through_the_page_cache_before_the_direct_copy(fs, monkeypatch):
    # On FAT an O_DIRECT copy of a file whose cluster chain was never walked reads the FAT synchronously in the
    # middle of the copy (about half the speed under TCG): toram reads the last byte first (toram._map_file).
    ctx = live_ctx(fs, "root=live:LABEL=LIVE toram")
    seen = []
    real = toram._map_file
    with StubSys(fs) as s:
        monkeypatch.setattr(toram, "_map_file",
                            lambda src, size: (seen.append((src, size, "copy_direct" in s.names())), real(src, size)))
        toram.run(ctx)
    assert len(seen) == 1
    src, size, copied_already = seen[0]
    assert src.startswith(contract.MEDIUM_MOUNT) and size == 3 * MiB and not copied_already


def test_mapping_a_file_that_cannot_be_read_costs_only_the_speed(fs):
    toram._map_file("/nonexistent/filesystem.squashfs", 1 << 20)
    fs.create_file("/m/img", contents=b"x" * 10)
    toram._map_file("/m/img", 10)
    toram._map_file("/m/img", 0)


def test_o_direct_refused_at_open_falls_back_to_the_kernels_copy(fs):
    """isofs and tmpfs before 6.6 refuse O_DIRECT at open(2) (EINVAL)."""
    _o_direct_refused(fs, "open")


def test_o_direct_refused_at_the_first_read_falls_back_to_the_kernels_copy(fs):
    _o_direct_refused(fs, "copy_direct")


def _o_direct_refused(fs, where):
    ctx = live_ctx(fs, "root=live:LABEL=LIVE toram")
    s = StubSys(fs)
    real_open = s.open

    def open_(path, flags, mode=0o644):
        if where == "open" and flags & abi.O_DIRECT:
            s._call("open", path, flags)
            raise OSError(abi.EINVAL, "Invalid argument")
        return real_open(path, flags, mode)

    s.open = open_
    if where == "copy_direct":
        s.fail("copy_direct", abi.EINVAL)
    with s:
        assert toram.run(ctx).startswith("copied ")
    assert "copy_range" in s.names() and ctx.toram and os.path.getsize(ctx.image) == 3 * MiB
