"""The agent's module loader (mpinit_agent.kmod) over pyfakefs, with a recording syscall implementation."""

import errno
import fnmatch
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpinit import kmod as hostkmod
from test_kmod_closure import _modprobe, depmod_tree  # noqa: F401  (a fixture shared with the host tests)
from mpinit_agent import kmod
from mpinit_agent import syscalls as sc

TABLE = "/etc/mpinit/modules.tbl"


class Recorder:
    """Just enough of the syscall boundary: load_module records (path, params) or raises a chosen errno."""

    def __init__(self):
        self.calls = []
        self.fail = {}  # module file basename without .ko -> errno
        self.clock = 0

    def load_module(self, path, params=""):
        self.calls.append((path, params))
        name = path.rsplit("/", 1)[-1][:-3]
        if name in self.fail:
            raise OSError(self.fail[name], os.strerror(self.fail[name]))

    def strerror(self, err):
        return os.strerror(err)

    def uptime_ms(self):
        self.clock += 1  # each reading 1 ms later: timeline entries take 1 ms
        return self.clock

    def lstat(self, path):
        return tuple(os.lstat(path))

    def __getattr__(self, name):
        def unavailable(*args, **kw):
            raise OSError(errno.ENOSYS, "%s not available in this test" % name)
        return unavailable

    @property
    def names(self):
        return [p.rsplit("/", 1)[-1][:-3] for p, _ in self.calls]


@pytest.fixture
def rec(fs):
    r = Recorder()
    saved = sc.use(r)
    yield r
    sc.restore(saved)


def mod(name, depends=(), pre=(), post=(), aliases=()):
    return {"name": name, "path": "/lib/modules/6.1.0/kernel/%s.ko" % name, "depends": list(depends),
            "softdep_pre": list(pre), "softdep_post": list(post), "aliases": list(aliases)}


MODULES = [
    mod("virtio_ring"), mod("virtio", ["virtio_ring"]),
    mod("virtio_blk", ["virtio", "virtio_ring"], aliases=["virtio:d00000002v*"]),
    mod("virtio_pci", ["virtio", "virtio_ring"], aliases=["pci:v00001AF4d*sv*sd*bc*sc*i*"]),
    mod("scsi_common"), mod("scsi_mod", ["scsi_common"]),
    mod("virtio_scsi", ["virtio", "virtio_ring", "scsi_mod"], aliases=["virtio:d00000008v*"]),
    mod("fat"), mod("nls_cp437", aliases=["nls_cp437"]),
    mod("vfat", ["fat"], pre=["nls_cp437"], post=["crc_a"], aliases=["fs-vfat"]),
    mod("crc_a", pre=["vfat"]),  # a softdep cycle back to vfat must not loop
    mod("needs_ext4", ["ext4"]),
    mod("pcspkr", aliases=["platform:pcspkr"]),
    mod("usbhid", aliases=["usb:v*p*d*dc*dsc*dp*ic03isc*ip*in*"]),
    mod("hid_generic", aliases=["hid:b*g0001v*p*"]),
    mod("ranged", aliases=["usb:v05ACp021[0-9]d*", "usb:v05ACp02[!0-9]?d*"]),
]


def write_table(fs, modules=MODULES, **kw):
    kw.setdefault("builtin", ["ext4"])
    fs.create_file(TABLE, contents=hostkmod.make_table("6.1.0", modules, **kw))


def test_load_dependencies_first_each_once(rec, fs):
    write_table(fs)
    m = kmod.Modules(table_path=TABLE)
    assert rec.calls == []  # nothing read or loaded until asked
    assert m.load_many(["virtio-blk", "virtio_scsi", "virtio_blk"]) == \
        ["virtio_ring", "virtio", "virtio_blk", "scsi_common", "scsi_mod", "virtio_scsi"]
    assert rec.names == m.loaded
    assert rec.calls[0] == ("/lib/modules/6.1.0/kernel/virtio_ring.ko", "")
    assert m.load("virtio_blk") is True and len(rec.calls) == 6
    assert m.failed == []


def test_softdeps_pre_before_post_after_and_cycles(rec, fs):
    write_table(fs)
    m = kmod.Modules(table_path=TABLE)
    assert m.load("vfat")
    assert rec.names == ["nls_cp437", "fat", "vfat", "crc_a"]


def test_eexist_and_builtin_count_as_loaded(rec, fs):
    write_table(fs)
    rec.fail["virtio_ring"] = errno.EEXIST
    m = kmod.Modules(table_path=TABLE)
    assert m.load("virtio") and m.load("needs_ext4")
    assert rec.names == ["virtio_ring", "virtio", "needs_ext4"]  # ext4 is built in: no call
    assert m.loaded == ["virtio_ring", "virtio", "needs_ext4"] and m.failed == []


def test_failure_propagates_to_dependents(rec, fs):
    write_table(fs)
    rec.fail["scsi_common"] = errno.ENOEXEC
    m = kmod.Modules(table_path=TABLE)
    assert m.load_many(["virtio_scsi", "virtio_blk"]) == ["virtio_ring", "virtio", "virtio_blk"]
    assert m.failed == [
        ("scsi_common", "/lib/modules/6.1.0/kernel/scsi_common.ko: %s" % os.strerror(errno.ENOEXEC)),
        ("scsi_mod", "dependency scsi_common not loaded"),
        ("virtio_scsi", "dependency scsi_mod not loaded"),
    ]
    assert not m.load("scsi_mod")
    assert rec.names.count("scsi_common") == 1  # a failure is not retried


def test_load_by_alias_like_modprobe(rec, fs):
    write_table(fs, blacklist=["vfat"])
    m = kmod.Modules(table_path=TABLE)
    # a name asked for explicitly may be an alias; the modprobe.d blacklist does not stop explicit requests
    assert m.load_many(["fs-vfat"]) == ["nls_cp437", "fat", "vfat", "crc_a"]
    assert m.load("usb:v05ACp0215d0100dc00dsc00dp00ic03isc01ip01in00") and rec.names[-2:] == ["usbhid", "ranged"]
    m.blacklist(["pcspkr"])
    assert not m.load("platform:pcspkr")  # module_blacklist= still blocks: nothing matches, nothing loaded
    assert "pcspkr" not in rec.names


def test_unknown_module(rec, fs):
    write_table(fs)
    m = kmod.Modules(table_path=TABLE)
    assert m.load("nope") is False
    assert m.failed == [("nope", "not in the image's module table %s" % TABLE)]


def test_params_table_then_cmdline_then_call(rec, fs):
    write_table(fs, options={"virtio_ring": "a=1", "virtio-blk": "queue_depth=4"})
    m = kmod.Modules(table_path=TABLE)
    m.load_many(["fat"], {"virtio_ring": "b=2", "virtio-blk": "poll=1"})
    m.load("virtio_blk", params="x=y")
    assert rec.calls[1:] == [("/lib/modules/6.1.0/kernel/virtio_ring.ko", "a=1 b=2"),
                             ("/lib/modules/6.1.0/kernel/virtio.ko", ""),
                             ("/lib/modules/6.1.0/kernel/virtio_blk.ko", "queue_depth=4 poll=1 x=y")]


def test_module_blacklist_blocks_everything(rec, fs):
    write_table(fs)
    m = kmod.Modules(table_path=TABLE)
    m.blacklist(["virtio-ring", "nls_cp437"])
    assert not m.load("virtio_blk")
    assert m.load("vfat")  # a blacklisted softdep is skipped, not an error
    assert rec.names == ["fat", "vfat", "crc_a"]
    assert m.failed == [("virtio_ring", "blacklisted (module_blacklist=)"),
                        ("virtio", "dependency virtio_ring not loaded"),
                        ("virtio_blk", "dependency virtio not loaded")]
    assert m.match("virtio:d00000002v00001AF4") == ["virtio_blk"]
    assert m.match("nls_cp437") == []


def test_modprobe_blacklist_affects_aliases_only(rec, fs):
    write_table(fs, blacklist=["pcspkr"])
    fs.create_file("/sys/devices/platform/pcspkr/modalias", contents="platform:pcspkr\n")
    m = kmod.Modules(table_path=TABLE)
    assert m.match("platform:pcspkr") == [] and m.coldplug() == []
    assert m.load("pcspkr") and rec.names == ["pcspkr"]


def test_match_globs(rec, fs):
    write_table(fs)
    m = kmod.Modules(table_path=TABLE)
    assert m.match("pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00") == ["virtio_pci"]
    assert m.match("pci:v00008086d00001001sv00001AF4sd00000002bc01sc00i00") == []
    assert m.match("virtio:d00000002v00001AF4") == ["virtio_blk"]
    assert m.match("hid:b0003g0001v0000046Dp0000C52B") == ["hid_generic"]
    assert m.match("hid:b0003g0004v0000046Dp0000C52B") == []
    assert m.match("usb:v046DpC52Bd1201dc00dsc00dp00ic03isc01ip01in00") == ["usbhid"]
    assert m.match("usb:v05ACp0215d0100dc00dsc00dp00ic03isc01ip01in00") == ["usbhid", "ranged"]
    assert m.match("usb:v05ACp022Ad0100dc00dsc00dp00ic00isc01ip01in00") == []  # [!0-9] fails on 2
    assert m.match("usb:v05ACp02AXd0100") == ["ranged"]
    assert m.match("fs-vfat") == m.match("fs_vfat") == ["vfat"]  # '-' == '_' as kmod normalizes
    assert m.match("") == [] and m.match("pci:") == []


PCI_VIRTIO = "/sys/devices/pci0000:00/0000:00:04.0"


def sysfs_device(fs, path, modalias, bus=None, cls=None):
    """A device directory with its modalias and, as the kernel does, its link in /sys/bus/<bus>/devices or
    /sys/class/<class>."""
    fs.create_file(path + "/modalias", contents=modalias + "\n")
    name = path.rsplit("/", 1)[-1]
    if bus:
        fs.create_symlink("/sys/bus/%s/devices/%s" % (bus, name), path)
    if cls:
        fs.create_symlink("/sys/class/%s/%s" % (cls, name), path)


def test_coldplug_reads_the_bus_and_class_lists(rec, fs):
    write_table(fs)
    sysfs_device(fs, PCI_VIRTIO, "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", bus="pci")
    sysfs_device(fs, PCI_VIRTIO + "/virtio1", "virtio:d00000002v00001AF4", bus="virtio")
    sysfs_device(fs, "/sys/devices/pci0000:00/0000:00:01.0", "pci:v00008086d00007000sv*", bus="pci")
    fs.create_file("/sys/devices/system/cpu/modalias", contents="cpu:type:x86,ven0000fam0006\n")
    # sysfs links that lead back up the tree: the walk of the flat lists never follows them
    fs.create_symlink(PCI_VIRTIO + "/virtio1/subsystem", "/sys/bus/virtio")
    fs.create_symlink(PCI_VIRTIO + "/loop", "/sys/devices")
    m = kmod.Modules(table_path=TABLE)
    assert m.coldplug() == ["virtio_ring", "virtio", "virtio_pci", "virtio_blk"]
    assert m.coldplug() == []  # nothing new
    sysfs_device(fs, PCI_VIRTIO + "/virtio2", "virtio:d00000008v00001AF4", bus="virtio")
    assert m.coldplug() == ["scsi_common", "scsi_mod", "virtio_scsi"]
    assert len(rec.calls) == len(set(rec.calls)) == 7


def test_device_modaliases_finds_what_the_tree_walk_finds(fs):
    sysfs_device(fs, PCI_VIRTIO, "pci:v1", bus="pci")
    sysfs_device(fs, PCI_VIRTIO + "/virtio1", "virtio:d2", bus="virtio")
    sysfs_device(fs, "/sys/devices/virtual/dmi/id", "dmi:bvnSeaBIOS", cls="dmi")
    sysfs_device(fs, "/sys/devices/platform/i8042/serio0/input/input1", "input:b0011v0001", cls="input")
    fs.create_file("/sys/devices/system/cpu/modalias", contents="cpu:type:x86\n")
    fs.create_file(PCI_VIRTIO + "/power/control", contents="auto\n")  # not a device: never read
    fs.create_dir("/sys/class/block")  # a class whose devices have no modalias
    fast = sorted((os.path.realpath(d), a) for d, a in kmod.device_modaliases("/sys"))
    assert fast == sorted(kmod.modaliases("/sys/devices"))
    assert len(fast) == 5


def test_coldplug_without_sys_bus_walks_sys_devices(rec, fs):
    write_table(fs)
    fs.create_file(PCI_VIRTIO + "/modalias", contents="pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00\n")
    fs.create_file(PCI_VIRTIO + "/virtio1/modalias", contents="virtio:d00000002v00001AF4\n")
    fs.create_symlink(PCI_VIRTIO + "/loop", "/sys/devices")  # followed, it would loop forever
    assert kmod.device_modaliases("/sys") is None
    assert kmod.Modules(table_path=TABLE).coldplug() == ["virtio_ring", "virtio", "virtio_pci", "virtio_blk"]


def test_coldplug_repeats_while_drivers_bring_new_devices(rec, fs):
    """virtio_pci's probe registers the virtio device that virtio_blk serves: one coldplug() call loads both."""
    write_table(fs)
    sysfs_device(fs, PCI_VIRTIO, "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", bus="pci")
    load = rec.load_module

    def load_and_probe(path, params=""):
        load(path, params)
        if path.endswith("/virtio_pci.ko"):
            sysfs_device(fs, PCI_VIRTIO + "/virtio1", "virtio:d00000002v00001AF4", bus="virtio")

    rec.load_module = load_and_probe
    sc.use(rec)  # use() bound the recorder's methods; bind the patched one (the fixture restores afterwards)
    assert kmod.Modules(table_path=TABLE).coldplug() == ["virtio_ring", "virtio", "virtio_pci", "virtio_blk"]


def test_modaliases_lists_devices(fs):
    fs.create_file("/sys/devices/a/modalias", contents="x:1\n")
    fs.create_file("/sys/devices/a/b/modalias", contents="\n")  # empty: no driver can match
    fs.create_file("/sys/devices/c/modalias", contents="x:2")
    assert kmod.modaliases() == [("/sys/devices/a", "x:1"), ("/sys/devices/c", "x:2")]
    assert kmod.modaliases("/sys/nowhere") == []


def test_no_table_means_nothing_to_load(rec, fs):
    m = kmod.Modules(table_path=TABLE)
    assert m.coldplug() == [] and m.available() == []
    assert not m.load("virtio_blk") and m.failed[0][0] == "virtio_blk"


@pytest.mark.parametrize("contents", ["{not json", '{"format": "other"}', "[1, 2]"])
def test_bad_table_names_the_file(rec, fs, contents):
    fs.create_file(TABLE, contents=contents)
    with pytest.raises(ValueError, match=TABLE):
        kmod.Modules(table_path=TABLE).load("x")


# ---- the glob matcher on its own --------------------------------------------------------------------------------

@pytest.mark.parametrize("pat, s, want", [
    ("*", "", True), ("*", "abc", True), ("", "", True), ("", "a", False), ("a", "", False),
    ("a*c", "abbbc", True), ("a*c", "abbb", False), ("a?c", "abc", True), ("a?c", "ac", False),
    ("*a*b*c*", "xxaxxbxxcxx", True), ("*a*b*c", "abcab", False), ("**x", "abx", True),
    ("[abc]x", "bx", True), ("[abc]x", "dx", False), ("[a-c]", "b", True), ("[!a-c]", "b", False),
    ("[^a-c]", "d", True), ("[]]", "]", True), ("[]a]", "a", True), ("[!]]", "]", False),
    ("[a-]", "-", True), ("x[", "x[", True), ("x[ab", "x[ab", True), ("\\*", "*", True), ("\\*", "a", False),
    ("[\\]]", "]", True), ("a/*", "a/b/c", True), ("*.c", ".c", True),
    ("pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", True),
    ("usb:v05ACp021[0-9]d*", "usb:v05ACp021Ad0100", False),
])
def test_glob_match(pat, s, want):
    assert kmod.glob_match(pat, s) is want


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab*?[]!-", max_size=8), st.text(alphabet="ab-]!", max_size=8))
def test_glob_match_agrees_with_fnmatch(pat, s):
    # CPython's fnmatch follows the same rules for this alphabet (it lacks only '\\' escapes and '^' negation)
    assert kmod.glob_match(pat, s) == fnmatch.fnmatchcase(s, pat)


# ---- against a table the host made from the real Debian kernel and kmod's own matcher ----------------------

@pytest.fixture(scope="module")
def generic_table(debian_kernel):
    c = hostkmod.resolve(debian_kernel.modules_dir, hostkmod.MODULE_SETS["generic-live"], firmware_dirs=())
    return c.table


def test_real_table_virtio(rec, fs, generic_table):
    fs.create_file(TABLE, contents=generic_table)
    m = kmod.Modules(table_path=TABLE)
    # what a QEMU virtio disk shows: the PCI function (virtio_pci), then the virtio device on it (virtio_blk)
    assert m.match("pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00") == ["virtio_pci"]
    assert m.match("virtio:d00000002v00001AF4") == ["virtio_blk"]
    assert m.match("virtio:d00000008v00001AF4") == ["virtio_scsi"]
    assert m.match("pci:v00008086d00007010sv00000000sd00000000bc01sc01i80") == ["ata_piix"]  # QEMU's PIIX3 IDE
    assert m.load("virtio_blk")
    assert rec.names == ["virtio_ring", "virtio", "virtio_blk"]


def _instances(pattern):
    """A few strings a pattern matches: each '*' as "", "0" and "1A", '?' as "7", a bracket as its first member."""
    out = []
    for star in ("", "0", "1A"):
        s, i = [], 0
        while i < len(pattern):
            c = pattern[i]
            if c == "*":
                s.append(star)
            elif c == "?":
                s.append("7")
            elif c == "[" and "]" in pattern[i + 2:]:
                j = pattern.index("]", i + 2)
                body = pattern[i + 1:j]
                if body[0] in "!^":
                    s.append("~")  # outside every set the kernel writes
                else:
                    s.append(body[0])
                i = j
            else:
                s.append(c)
            i += 1
        out.append("".join(s))
    return out


@pytest.fixture(scope="module")
def kmod_resolutions(debian_kernel, depmod_tree, generic_table):
    """Modaliases built from every shipped alias pattern, each with what `modprobe -R` (kmod's lookup) says."""
    import json

    t = json.loads(generic_table)
    probes = set()
    for rows in t["aliases"].values():
        for pat, _name in rows:
            probes.update(_instances(pat))
    probes.update(["pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", "virtio:d00000002v00001AF4",
                   "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", "hid:b0003g0001v0000046Dp0000C52B"])
    shipped = {row[0] for row in t["modules"]}
    out = {}
    for p in sorted(probes):
        text = _modprobe(depmod_tree, debian_kernel.kver, "-R", p)
        # modprobe knows the whole tree; the image holds only the shipped modules
        out[p] = sorted({n for n in (kmod.normalize(x) for x in text.split()) if n in shipped})
    return out


@pytest.mark.tools
def test_real_aliases_agree_with_modprobe(rec, fs, generic_table, kmod_resolutions):
    fs.create_file(TABLE, contents=generic_table)
    m = kmod.Modules(table_path=TABLE)
    assert len(kmod_resolutions) > 50
    assert sum(1 for v in kmod_resolutions.values() if v) > 50
    for p, theirs in kmod_resolutions.items():
        assert sorted(m.match(p)) == theirs, p


# ---- issue 14: uevents, async probes, ENODEV, timeline, loads while waiting ---------------------------------------

class UeventRecorder(Recorder):
    """A Recorder with the kernel's uevent socket: events queued by add() are read through socket/bind_netlink/
    poll/recv_into as the agent's uevent.Listener reads them."""

    def __init__(self):
        super().__init__()
        self.queue = []
        self.polls = 0

    def socket(self, family, type_, proto=0):
        assert (family, type_, proto) == (sc.AF_NETLINK, sc.SOCK_DGRAM, sc.NETLINK_KOBJECT_UEVENT)
        return 7

    def bind_netlink(self, fd, groups):
        assert (fd, groups) == (7, 1)

    def add(self, devpath, **env):
        fields = ["add@" + devpath, "ACTION=add", "DEVPATH=" + devpath] + ["%s=%s" % kv for kv in env.items()]
        self.queue.append("".join(f + "\0" for f in fields).encode())

    def poll(self, fd, events, timeout_ms):
        self.polls += 1
        if self.queue:
            return sc.POLLIN
        self.clock += timeout_ms
        return 0

    def recv_into(self, fd, buf):
        data = self.queue.pop(0)
        buf[:len(data)] = data
        return len(data)


@pytest.fixture
def urec(fs):
    r = UeventRecorder()
    saved = sc.use(r)
    yield r
    sc.restore(saved)


def test_listening_coldplug_loads_what_uevents_announce_with_async_probe(urec, fs):
    """The first call scans sysfs once; the devices a driver brings later come as uevents, and drivers loaded for
    devices get async_probe=1 (finit_module returns before their probe) unless their probe order names disks.
    Nothing is re-read from sysfs."""
    write_table(fs)
    sysfs_device(fs, PCI_VIRTIO, "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", bus="pci")
    sysfs_device(fs, "/sys/devices/platform/pcspkr", "platform:pcspkr", bus="platform")
    m = kmod.Modules(table_path=TABLE)
    assert m.coldplug() == ["virtio_ring", "virtio", "virtio_pci", "pcspkr"]
    params = dict((p.rsplit("/", 1)[-1], a) for p, a in urec.calls)
    assert params["pcspkr.ko"] == "async_probe=1"
    assert params["virtio_pci.ko"] == ""  # virtioN, hence vdX, are numbered in probe order
    assert params["virtio.ko"] == ""  # a dependency: no probe of its own
    # virtio_pci's asynchronous probe adds virtio1 later; a device added to sysfs without a uevent is not read
    sysfs_device(fs, PCI_VIRTIO + "/virtio2", "virtio:d00000008v00001AF4", bus="virtio")
    urec.add("/devices/pci0000:00/0000:00:02.0/virtio1", SUBSYSTEM="virtio", MODALIAS="virtio:d00000002v00001AF4")
    urec.add("/devices/virtual/block/loop0", SUBSYSTEM="block", DEVNAME="loop0")
    assert m.wait_event(100) is True
    assert m.coldplug() == ["virtio_blk"]
    assert m.coldplug() == [] and "virtio_scsi" not in urec.names
    assert m.wait_event(50) is False


def test_listener_overflow_rescans_sysfs(urec, fs):
    write_table(fs)
    m = kmod.Modules(table_path=TABLE)
    assert m.coldplug() == []
    sysfs_device(fs, PCI_VIRTIO + "/virtio2", "virtio:d00000008v00001AF4", bus="virtio")
    m._events.overflow = True  # the kernel dropped events (ENOBUFS)
    assert m.coldplug() == ["virtio_ring", "virtio", "scsi_common", "scsi_mod", "virtio_scsi"]


def test_storage_controllers_are_plugged_first(rec, fs):
    write_table(fs)
    sysfs_device(fs, "/sys/devices/platform/pcspkr", "platform:pcspkr", bus="platform")
    sysfs_device(fs, "/sys/devices/pci0000:00/0000:00:01.0", "usb:v1234p5678d0100dc00dsc00dp00ic03isc01ip01in00",
                 bus="usb")
    sysfs_device(fs, PCI_VIRTIO, "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", bus="pci")
    assert kmod.Modules(table_path=TABLE).coldplug() == ["virtio_ring", "virtio", "virtio_pci", "usbhid", "pcspkr"]
    assert [kmod._rank(a) for a in ("pci:v1d2sv3sd4bc01sc06i01", "virtio:d1v2", "scsi:t-0x00", "usb:v1",
                                     "pci:v1d2sv3sd4bc03sc00i00", "cpu:type:x86", "acpi:PNP0A03:")] == \
        [0, 0, 0, 1, 2, 3, 3]


@pytest.mark.parametrize("alias, ok", [
    ("pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80", True),    # PIIX IDE (ata_piix)
    ("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", False),   # AHCI: sda/sdb in probe order
    ("pci:v0000144Dd0000A808sv0000144Dsd0000A801bc01sc08i02", False),   # NVMe
    ("pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", False),   # virtio transport
    ("pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", False),   # virtio net: still virtio_pci
    ("virtio:d00000002v00001AF4", False), ("scsi:t-0x00", False), ("mmc:block", False),
    ("pci:v00008086d000024CDsv00001AF4sd00001100bc0Csc03i20", True),    # a USB host controller
    ("cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0001", True), ("platform:pcspkr", True),
])
def test_async_probe_only_where_probe_order_names_no_disks(alias, ok):
    assert kmod._async_ok(alias) is ok


def test_enodev_from_a_coldplug_load_is_no_device_not_a_failure(rec, fs):
    """aesni_intel on a CPU without AES-NI: its init returns -ENODEV (arch/x86/crypto/aesni-intel_glue.c). Matched
    through a modalias, that means nothing to drive; asked for by name it is still a failure."""
    write_table(fs)
    sysfs_device(fs, "/sys/devices/platform/pcspkr", "platform:pcspkr", bus="platform")
    rec.fail["pcspkr"] = errno.ENODEV
    timeline = []
    m = kmod.Modules(table_path=TABLE, timeline=timeline)
    assert m.coldplug() == []
    assert m.failed == [] and m.absent == ["pcspkr"]
    assert timeline == [{"module": "pcspkr", "start_ms": 1, "duration_ms": 1, "result": "no device (%s)"
                         % os.strerror(errno.ENODEV)}]
    m2 = kmod.Modules(table_path=TABLE)
    assert not m2.load("pcspkr") and m2.failed[0][0] == "pcspkr" and m2.absent == []


def test_every_finit_module_call_gets_a_timeline_entry(rec, fs):
    write_table(fs)
    rec.fail["fat"] = errno.EEXIST
    rec.fail["scsi_common"] = errno.ENOEXEC
    timeline = [{"stage": "early"}]
    m = kmod.Modules(table_path=TABLE, timeline=timeline)
    m.load_many(["vfat", "virtio_scsi"])
    got = [(e["module"], e["result"]) for e in timeline[1:]]
    assert got == [("nls_cp437", "loaded"), ("fat", "already loaded"), ("vfat", "loaded"), ("crc_a", "loaded"),
                   ("virtio_ring", "loaded"), ("virtio", "loaded"),
                   ("scsi_common", "failed: %s" % os.strerror(errno.ENOEXEC))]
    for e in timeline[1:]:
        assert set(e) == {"module", "start_ms", "duration_ms", "result"} and e["duration_ms"] >= 0


def test_started_modules_load_while_waiting_and_a_uevent_interrupts(urec, fs):
    write_table(fs)
    m = kmod.Modules(table_path=TABLE)
    m.coldplug()  # opens the listener
    m.start(["fs-vfat", "needs_nothing_here", "pcspkr"])  # a name the image lacks is dropped
    urec.add("/devices/virtual/block/vda", SUBSYSTEM="block", DEVNAME="vda")
    assert m.wait_event(100) is True and urec.names == []  # the ready event comes first
    m.coldplug()  # drains it
    assert m.wait_event(100) is False
    assert urec.names == ["nls_cp437", "fat", "vfat", "crc_a", "pcspkr"] and m.failed == []
