# Device-mapper and md names in /dev, made by us because an initramfs without udev has nobody else to make them.
#
# The kernel shows every mapped device as /sys/block/dm-N with dm/name (the mapping name) and dm/uuid (the owner's
# prefix: "CRYPT-LUKS2-<uuid>-<name>", "LVM-<vg uuid><lv uuid>"; Documentation/admin-guide/device-mapper and
# libdevmapper's naming), and devtmpfs makes /dev/dm-N. udev's 10-dm.rules and 11-dm-lvm.rules then add
# /dev/mapper/<name> and /dev/<vg>/<lv>; we make the same names as symlinks to ../dm-N. A node that libdevmapper
# made itself (it does when udev sync is off) is replaced by the link, so blockdev.find() resolves every one of
# these paths to the dm-N device it scanned. mdadm makes /dev/mdN and /dev/md/<name> itself when udev is absent.
from . import fsutil, log
from . import syscalls as sc

SYS_BLOCK = "/sys/block"
MAPPER = "/dev/mapper"


def mapped():
    """{mapping name: (kernel name "dm-N", dm uuid)} of the device-mapper devices that exist now."""
    out = {}
    for dev in fsutil.listdir(SYS_BLOCK):
        if not dev.startswith("dm-"):
            continue
        name = fsutil.read_text("%s/%s/dm/name" % (SYS_BLOCK, dev), "").strip()
        if name:
            out[name] = (dev, fsutil.read_text("%s/%s/dm/uuid" % (SYS_BLOCK, dev), "").strip())
    return out


def split_lvm_name(name):
    """(vg, lv) from an LVM mapping name: '-' separates them and a '-' inside either name is doubled
    (lvm2 lib/misc/lvm-string.c build_dm_name()). None when it is not of that form."""
    i = 0
    n = len(name)
    while i < n:
        if name[i] == "-":
            if i + 1 < n and name[i + 1] == "-":
                i += 2
                continue
            vg = name[:i].replace("--", "-")
            lv = name[i + 1:].replace("--", "-")
            if vg and lv:
                return (vg, lv)
            return None
        i += 1
    return None


def _link(target, path):
    """path -> target, replacing whatever is at path (a node libdevmapper made, a stale link)."""
    try:
        if sc.readlink(path) == target:
            return False
    except OSError:
        pass
    try:
        sc.lstat(path)
        import os

        os.remove(path)
    except OSError:
        pass
    sc.symlink(target, path)
    return True


def sync_nodes():
    """Make /dev/mapper/<name> (and /dev/<vg>/<lv> for LVM) links for every mapped device. Returns the mapping
    names seen. Errors are warnings: a missing link only matters if the root is named by it, and then the
    devices stage reports the device as not found with everything it saw."""
    names = mapped()
    if not names:
        return names
    try:
        fsutil.makedirs(MAPPER)
    except OSError as e:
        log.warning("devices: cannot create %s: %r" % (MAPPER, e))
        return names
    for name in names:
        dev, uuid = names[name]
        try:
            _link("../" + dev, "%s/%s" % (MAPPER, name))
            if uuid.startswith("LVM-"):
                vl = split_lvm_name(name)
                if vl is not None and vl[0] not in ("mapper", "disk", "md"):
                    fsutil.makedirs("/dev/" + vl[0])
                    _link("../" + dev, "/dev/%s/%s" % vl)
        except OSError as e:
            log.warning("devices: /dev links for %s (%s): %r" % (name, dev, e))
    return names


def mount_path(dev):
    """The path to mount a blockdev.Device by: /dev/mapper/<name> for a device-mapper device, so /proc/mounts and
    the new root's tools (findmnt, df, systemd's fstab units) see the mapping's name as under dracut and udev
    (the kernel keeps the source path given to mount(2) as the mount's device name, fs/namespace.c), else its
    own path."""
    if not dev.name.startswith("dm-"):
        return dev.path
    name = fsutil.read_text("%s/%s/dm/name" % (SYS_BLOCK, dev.name), "").strip()
    if not name:
        return dev.path
    link = "%s/%s" % (MAPPER, name)
    try:
        if sc.readlink(link) == "../" + dev.name:
            return link
    except OSError:
        pass
    sync_nodes()  # made by a tool after our last sync (or by libdevmapper as a node): make the link now
    try:
        if sc.readlink(link) == "../" + dev.name:
            return link
    except OSError:
        pass
    return dev.path
