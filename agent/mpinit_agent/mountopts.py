# Mount option strings ("ro,noatime,errors=remount-ro") split the way mount(8) does it: the options that are
# mount(2) flags become MS_* bits, fstab-only options are dropped, and the rest is the filesystem's data string.
#
# The table follows util-linux libmount/src/optmap.c (linux_flags_map and the userspace map); the MS_* values
# come from the syscall boundary (the kernel's include/uapi/linux/mount.h via _linux, or linux_abi on CPython).
from . import syscalls as sc

_table = None


def _flag_table():
    # Built on first use, not at import: syscalls.use() never rebinds constants, but a cheap import matters more
    # than a table nobody asked for. Each entry: name -> (bits, set?): "rw" clears MS_RDONLY, like MNT_INVERT.
    global _table
    if _table is None:
        _table = {
            "ro": (sc.MS_RDONLY, True), "rw": (sc.MS_RDONLY, False),
            "nosuid": (sc.MS_NOSUID, True), "suid": (sc.MS_NOSUID, False),
            "nodev": (sc.MS_NODEV, True), "dev": (sc.MS_NODEV, False),
            "noexec": (sc.MS_NOEXEC, True), "exec": (sc.MS_NOEXEC, False),
            "sync": (sc.MS_SYNCHRONOUS, True), "async": (sc.MS_SYNCHRONOUS, False),
            "remount": (sc.MS_REMOUNT, True),
            "mand": (sc.MS_MANDLOCK, True), "nomand": (sc.MS_MANDLOCK, False),
            "dirsync": (sc.MS_DIRSYNC, True),
            "noatime": (sc.MS_NOATIME, True), "atime": (sc.MS_NOATIME, False),
            "nodiratime": (sc.MS_NODIRATIME, True), "diratime": (sc.MS_NODIRATIME, False),
            "relatime": (sc.MS_RELATIME, True), "norelatime": (sc.MS_RELATIME, False),
            "strictatime": (sc.MS_STRICTATIME, True), "nostrictatime": (sc.MS_STRICTATIME, False),
            "lazytime": (sc.MS_LAZYTIME, True), "nolazytime": (sc.MS_LAZYTIME, False),
            "iversion": (sc.MS_I_VERSION, True), "noiversion": (sc.MS_I_VERSION, False),
            "nosymfollow": (sc.MS_NOSYMFOLLOW, True), "symfollow": (sc.MS_NOSYMFOLLOW, False),
            "bind": (sc.MS_BIND, True), "rbind": (sc.MS_BIND | sc.MS_REC, True),
            "move": (sc.MS_MOVE, True),
            "silent": (sc.MS_SILENT, True), "loud": (sc.MS_SILENT, False),
            # Propagation changes: the kernel takes them only in a mount(2) call of their own (do_mount() checks
            # them before anything else), as mount(8) does with a second call. The caller must do the same.
            "private": (sc.MS_PRIVATE, True), "rprivate": (sc.MS_PRIVATE | sc.MS_REC, True),
            "shared": (sc.MS_SHARED, True), "rshared": (sc.MS_SHARED | sc.MS_REC, True),
            "slave": (sc.MS_SLAVE, True), "rslave": (sc.MS_SLAVE | sc.MS_REC, True),
            "unbindable": (sc.MS_UNBINDABLE, True), "runbindable": (sc.MS_UNBINDABLE | sc.MS_REC, True),
        }
    return _table


# Options for mount(8) and fstab only (libmount's userspace map): never handed to the kernel.
_DROP = ("defaults", "auto", "noauto", "nofail", "_netdev", "user", "nouser", "users", "owner", "noowner",
         "group", "nogroup")


def split_options(opts):
    """The comma-separated items of an option string; a comma inside double quotes (an SELinux context=) does
    not split. Empty items are skipped. ValueError names the string when a quote is left open."""
    items = []
    start = 0
    quoted = False
    for i in range(len(opts)):
        c = opts[i]
        if c == '"':
            quoted = not quoted
        elif c == "," and not quoted:
            if i > start:
                items.append(opts[start:i])
            start = i + 1
    if quoted:
        raise ValueError("mount options %r: unterminated double quote" % opts)
    if len(opts) > start:
        items.append(opts[start:])
    return items


def mount_flags(opts):
    """(flags, data) for mount(2) from an option string such as "ro,nosuid,errors=remount-ro".

    Flags are applied left to right, so a later "rw" undoes an earlier "ro"; "defaults" and the other fstab-only
    options (noauto, nofail, _netdev, user, x-*, comment=...) are dropped; every other item is kept, in order, in
    the data string ("" when none). None or "" gives (0, "")."""
    if not opts:
        return 0, ""
    table = _flag_table()
    flags = 0
    data = []
    for item in split_options(opts):
        entry = table.get(item)
        if entry is not None:
            bits, on = entry
            if on:
                flags |= bits
            else:
                flags &= ~bits
        elif item in _DROP or item.startswith("x-") or item.startswith("X-") or item.startswith("comment="):
            continue
        else:
            data.append(item)
    return flags, ",".join(data)


def flags_str(flags):
    """The option names of MS_* flags, for messages and the rescue shell: 0x401 -> "ro,noatime"."""
    names = []
    table = _flag_table()
    for name in table:
        bits, on = table[name]
        if on and flags & bits == bits and bits & sc.MS_REC == 0:
            names.append(name)
    names.sort()
    if flags & sc.MS_REC:
        names.append("rec")
    return ",".join(names)
