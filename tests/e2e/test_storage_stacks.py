"""End-to-end boots of the storage stacks beyond tests/e2e/test_storage.py, on the real Debian kernel with the real
cryptsetup and lvm: LVM on LUKS and LUKS on LVM to the root, a LUKS2 persistence volume on a live boot (booted
twice, the passphrase typed on the serial console), and the LUKS2 unlock time with an entropy source.

Media from mpinit.testing.storage_stacks (made in the maker guest, cached under build/e2e/storage/); the image for
installed systems is test_storage's (`--luks --mdadm --lvm`); consoles in build/e2e/logs/<test>.log.
"""

import re
import shutil

import pytest

from e2e_support import qemu_kernel  # noqa: F401 (fixture)
from mpinit import liveimage, liveroot, qemu
from mpinit.paths import build_dir
from mpinit.testing import storage_stacks as ss
from test_storage import PROMPT, _pack, _runtime_with_agent, agent_lines, assert_root, boot, show  # noqa: F401
from test_storage import made, storage_initrd  # noqa: F401 (fixtures)

# A virtio RNG: the kernel's crng is seeded from it as soon as virtio_rng is loaded (coldplug, by modalias), as
# on real hardware with RDRAND; without one, under TCG, `cryptsetup open` of LUKS2 sits in getrandom(2) until the
# kernel's jitter entropy has initialised the crng (several seconds; "random: crng init done").
RNG = ["-device", "virtio-rng-pci"]


@pytest.fixture(scope="session")
def stacks(qemu_kernel, storage_initrd):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = getattr(ss, name)(qemu_kernel)
        return cache[name]
    return get


def _unlock_ms(r):
    """Milliseconds between the agent's `running ... cryptsetup open` line and its `unlocked` line (kernel
    timestamps), for the last unlock on the console."""
    start = end = None
    for line in r.output.split("\n"):
        m = re.match(r"\[\s*(\d+\.\d+)\] mpinit: luks: (running|\S+ unlocked)", line)
        if m:
            t = float(m.group(1))
            if m.group(2) == "running":
                start = t
            else:
                end = t
    assert start is not None and end is not None and end >= start, show(r)
    return int((end - start) * 1000)


@pytest.mark.e2e
def test_lvm_on_luks_root(boot, stacks):
    m = stacks("lvm_on_luks")
    r = boot(m.disks, "rd.luks.uuid=%s rd.lvm.vg=%s root=/dev/mapper/%s-root" % (
        ss.LVM_ON_LUKS_UUID, ss.VG_IN_LUKS, ss.VG_IN_LUKS), input_lines=[(PROMPT, ss.STACK_PASSPHRASE)],
        extra_args=RNG)
    assert_root(r, "/dev/mapper/%s-root" % ss.VG_IN_LUKS)
    # /proc/mounts names the mapping itself (as under dracut), not /dev/dm-N
    assert [m_ for m_ in r.mounts() if m_[1] == "/"][0][0] == "/dev/mapper/%s-root" % ss.VG_IN_LUKS, show(r)
    assert "leaked" not in r.output, show(r)           # lvm: "File descriptor 3 (/dev/kmsg) leaked on lvm ..."
    assert "mdadm" not in r.output, show(r)            # no md member anywhere: mdadm never ran
    assert len(agent_lines(r, "running", "lvm vgchange")) == 1, "\n".join(r.lines("mpinit:"))


@pytest.mark.e2e
def test_luks_on_lvm_root(boot, stacks):
    m = stacks("luks_on_lvm")
    r = boot(m.disks, "rd.lvm.vg=%s rd.luks.name=%s=cryptroot root=/dev/mapper/cryptroot" % (
        ss.VG_UNDER_LUKS, ss.LUKS_ON_LVM_UUID), input_lines=[(PROMPT, ss.STACK_PASSPHRASE)], extra_args=RNG)
    assert_root(r, "/dev/mapper/cryptroot")
    assert [m_ for m_ in r.mounts() if m_[1] == "/"][0][0] == "/dev/mapper/cryptroot", show(r)
    assert "leaked" not in r.output and "mdadm" not in r.output, show(r)
    assert len(agent_lines(r, "running", "lvm vgchange")) == 1, "\n".join(r.lines("mpinit:"))


# --- LUKS2 persistence on a live stick -------------------------------------------------------------------------

LIVE_LABEL = "MPLIVE"
MARKER = "PERSIST-REPORT"
# The live root's init: the same mark-and-report script as the plain persistence boots.
from test_persistence import INIT  # noqa: E402


@pytest.fixture(scope="module")
def live_luks_initrd(qemu_kernel, runtime_binary, tmp_path_factory):
    """A live image with LUKS support: generic-live + --luks + e2fsck."""
    work = tmp_path_factory.mktemp("live-luks-initrd")
    _runtime_with_agent(runtime_binary, work)
    e2fsck = shutil.which("e2fsck") or shutil.which("e2fsck", path="/usr/sbin:/sbin")
    return _pack(work / "initrd.img", runtime_binary, qemu_kernel.modules_dir, "--modules", "generic-live",
                 "--luks", "--binary", e2fsck)


@pytest.fixture(scope="module")
def live_stick(qemu_kernel, live_luks_initrd, tmp_path_factory):
    d = tmp_path_factory.mktemp("live-luks-stick")
    tree = liveroot.build_tree(d / "root")
    (tree / "sbin" / "init").write_text(INIT)
    (tree / "sbin" / "init").chmod(0o755)
    squash = liveroot.make_squashfs(tree, d / "root.squashfs")
    out = d / "stick.img"
    liveimage.build_disk_image(qemu_kernel.vmlinuz, live_luks_initrd, squash, out, label=LIVE_LABEL,
                               persistence=None)
    return out


@pytest.mark.e2e
def test_luks2_persistence_keeps_a_file_across_two_boots(qemu_kernel, live_luks_initrd, live_stick, stacks,
                                                         tmp_path):
    made = stacks("luks2_persistence")
    stick = tmp_path / "stick.img"
    crypt = tmp_path / "persist.img"
    shutil.copyfile(live_stick, stick)
    shutil.copyfile(made.disks[0], crypt)
    logs = build_dir() / "e2e" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    drives = []
    for p in (stick, crypt):   # writable copies (no snapshot=on): the second boot must see the first's writes
        drives += ["-drive", "file=%s,if=virtio,format=raw" % str(p).replace(",", ",,")]
    results = []
    for n in (1, 2):
        r = qemu.boot(qemu_kernel.vmlinuz, live_luks_initrd, append="root=live:LABEL=%s rootdelay=5 persistence "
                      "persistence-encryption=luks" % LIVE_LABEL, memory_mb=256, timeout_s=150, marker=MARKER,
                      extra_args=drives + RNG, stop_on=">>> ",
                      input_lines=[(PROMPT, ss.PERSIST_PASSPHRASE)],
                      log_path=logs / ("test_luks2_persistence-%d.log" % n))
        assert r.ok, show(r)
        assert r.output.count(PROMPT) == 1 and "persistence)" in r.output, show(r)   # the prompt names it
        assert ss.PERSIST_PASSPHRASE not in r.output, show(r)
        mounts = {m[1]: m[0] for m in r.mounts()}
        assert mounts.get("/run/mpinit/persist") == "/dev/mapper/luks-" + ss.PERSIST_LUKS_UUID, mounts
        results.append(dict(w.split("=", 1) for w in r.marker_line.split()[1:]))
    first, second = results
    assert first["state"] == "new"
    assert second["state"] == "found" and second["old"] == first["new"], results


# --- how long a LUKS2 unlock takes --------------------------------------------------------------------------------

@pytest.mark.e2e
def test_luks2_unlock_time_with_an_entropy_source(boot, made):
    """The same LUKS2 header (argon2id, 2 MiB, 4 passes) as test_storage's luks2 root, with a virtio RNG: the
    crng is ready before cryptsetup runs, and the unlock takes what the maker guest measures (well under the
    2.5-3.5 s it took without one, most of it waiting in getrandom(2))."""
    from mpinit.testing import storage_media as sm

    m = made("luks2_root")
    r = boot(m.disks, "rd.luks.uuid=%s root=UUID=%s" % (sm.LUKS2_UUID, sm.LUKS2_ROOT_UUID),
             input_lines=[(PROMPT, sm.LUKS2_PASSPHRASE)], extra_args=RNG)
    assert_root(r, "/dev/mapper/luks-" + sm.LUKS2_UUID)
    text = r.output
    crng = text.find("random: crng init done")
    running = text.find("mpinit: luks: running")
    assert 0 <= crng < running, "the crng was not ready before cryptsetup ran:\n" + show(r)
    ms = _unlock_ms(r)
    print("LUKS2 unlock with a virtio RNG: %d ms" % ms)
    assert ms < 2000, "unlock took %d ms:\n%s" % (ms, show(r))

