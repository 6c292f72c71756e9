# Filesystem drivers on demand. When mount(2) meets a filesystem type the kernel does not know, it calls
# request_module("fs-<type>") (fs/filesystems.c get_fs_type), which runs /sbin/modprobe: there is none in the
# initramfs, so the mount fails with ENODEV. Coldplug loads drivers for devices, not for filesystems, so the agent
# loads the filesystem's module itself before mounting: the shipped module whose alias matches "fs-<type>"
# (MODULE_ALIAS_FS in every filesystem driver), plus the character sets the driver asks for by default
# (fat: codepage 437 and the iocharset, CONFIG_FAT_DEFAULT_CODEPAGE/_IOCHARSET; isofs Joliet, exfat: utf8).
# Each finit_module(2) costs ~3-5 ms under TCG (a signature check, relocation), so only the charsets the mount
# asks for are loaded up front; the others wait for the EINVAL that names a missing one (retry_charsets()).
from . import fsutil, log

# Module names for kernels whose table lacks the fs- aliases (ext2/ext3 are served by ext4 since 4.3).
_BY_NAME = {"iso9660": "isofs", "ext2": "ext4", "ext3": "ext4"}
# vfat's mount (fs/fat/inode.c fat_fill_super) loads two tables: the codepage ("cp%d" of codepage=, default
# CONFIG_FAT_DEFAULT_CODEPAGE=437) and, for vfat, the iocharset (default CONFIG_FAT_DEFAULT_IOCHARSET: "ascii" in
# Debian's and Fedora's kernels). The utf8 option (CONFIG_FAT_DEFAULT_UTF8=y) converts names with the kernel's own
# utf8s_to_utf16s() and loads no table: nls_utf8 is needed only for iocharset=utf8.
_NLS = {"vfat": ("nls_cp437", "nls_ascii"), "msdos": ("nls_cp437",),
        "iso9660": ("nls_utf8",), "exfat": ("nls_utf8",), "udf": ("nls_utf8",)}
# Loaded only after mount(2) said EINVAL: the upstream default iocharset ("iso8859-1", fs/fat/Kconfig; Ubuntu's
# kernels keep it), and utf8 for the iocharset=utf8 retry (retry_data()).
_NLS_RETRY = {"vfat": ("nls_iso8859_1", "nls_utf8")}


def registered(path="/proc/filesystems"):
    """The filesystem types the running kernel has registered (/proc/filesystems: "nodev\\ttmpfs" or "\\text4"),
    as a dict name -> True."""
    out = {}
    for line in fsutil.read_text(path, "").split("\n"):
        name = line.split("\t")[-1].strip()
        if name:
            out[name] = True
    return out


def known(fstype, path="/proc/filesystems"):
    """True when the running kernel has fstype registered."""
    return fstype in registered(path)


def _known_in_boot(ctx, fstype):
    """known() for ensure(), reading /proc/filesystems once per boot (~1 ms under TCG each time): the types ensure()
    loaded since are added. One loaded behind its back (a hook, the REPL) only costs a load that finds it there
    (EEXIST counts as loaded)."""
    have = getattr(ctx, "fs_registered", None)
    if have is None:
        have = registered()
        try:
            ctx.fs_registered = have
        except AttributeError:
            pass
    return fstype in have


def mount_type(fstype, path="/proc/filesystems"):
    """The type to give mount(2) for a probed TYPE. blkid's "ntfs" is served by the ntfs3 driver (fs/ntfs3, in the
    kernel since 5.15), which registers "ntfs3"; only kernels without the old ntfs driver (6.9+) also register
    "ntfs" for it (fs/ntfs3/super.c). So "ntfs" stays "ntfs" only when the running kernel has that type."""
    if fstype == "ntfs" and not known("ntfs", path):
        return "ntfs3"
    return fstype


def ensure(ctx, fstype):
    """Load the module for fstype (and its default character sets) when the kernel lacks it. Returns the names
    loaded; never raises for a missing module (mount(2) then reports ENODEV, which the caller names)."""
    if not fstype or _known_in_boot(ctx, fstype):
        return []
    try:
        from . import kmod

        m = kmod.of(ctx)
        have = m.available()
        names = m.match("fs-" + fstype)
        if not names:
            alt = _BY_NAME.get(fstype, fstype)
            names = [alt] if alt in have else []
        names = names + [n for n in _NLS.get(fstype, ()) if n in have]
        loaded = [n for n in names if m.load(n)]
    except (OSError, ValueError) as e:
        log.warning("no module for filesystem %s: %s" % (fstype, e))
        return []
    if loaded:
        log.info("loaded %s for filesystem %s" % (", ".join(loaded), fstype))
        have = getattr(ctx, "fs_registered", None)
        if have is not None:
            have[fstype] = True
    return loaded


def ensure_loop(ctx, control="/dev/loop-control"):
    """The loop driver, when /dev/loop-control is missing (loop built as a module)."""
    if fsutil.exists(control):
        return True
    try:
        from . import kmod

        m = kmod.of(ctx)
        return "loop" in m.available() and m.load("loop")
    except (OSError, ValueError) as e:
        log.warning("loop module: %s" % e)
        return False


def retry_charsets(ctx, fstype):
    """After mount(2) said EINVAL: load the charsets ensure() left out (_NLS_RETRY) that the image ships and that
    are not loaded yet. Returns the names loaded now: when there are some, the same mount is worth trying again
    (the kernel's default iocharset may be one of them) before retry_data()'s."""
    names = _NLS_RETRY.get(fstype)
    if not names:
        return []
    try:
        from . import kmod

        loaded = kmod.of(ctx).load_shipped(names)
    except (OSError, ValueError) as e:
        log.warning("no character sets for filesystem %s: %s" % (fstype, e))
        return []
    if loaded:
        log.info("loaded %s for filesystem %s" % (", ".join(loaded), fstype))
    return loaded


def retry_data(fstype):
    """Mount data to try once more after EINVAL, or None. vfat loads its default iocharset (Debian's kernels:
    CONFIG_FAT_DEFAULT_IOCHARSET="ascii", so nls_ascii) even for UTF-8 names (fs/fat/inode.c fat_fill_super:
    "IO charset %s not found"); when that module is not in the image, iocharset=utf8 (nls_utf8) is the one that
    usually is."""
    if fstype == "vfat":
        return "iocharset=utf8"
    return None
