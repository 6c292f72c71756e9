"""`mpinit ls IMAGE` and `mpinit extract IMAGE DIR`: read any initramfs (concatenated, compressed members)."""

import os
import stat as st
import sys
from pathlib import Path


def register(sub):
    p = sub.add_parser("ls", help="list an initramfs image (every member, compressed or not)",
                       description="List the entries of an initramfs: early uncompressed archives and "
                                   "compressed members (gzip, xz, zstd, lz4, bzip2, lzma) in order.")
    p.add_argument("image", type=Path, metavar="IMAGE")
    p.add_argument("-l", "--long", action="store_true", help="mode, owner, size, mtime like ls -l")
    p.set_defaults(func=run_ls)
    p = sub.add_parser("extract", help="unpack an initramfs image into a directory",
                       description="Unpack an initramfs into DIR the way the kernel would (later members win). "
                                   "Names with '..', absolute names and paths through symlinks are refused "
                                   "before anything is written. Device nodes need root; without it they are "
                                   "skipped with a warning.")
    p.add_argument("image", type=Path, metavar="IMAGE")
    p.add_argument("dest", type=Path, metavar="DIR")
    p.set_defaults(func=run_extract)


def read(path):
    """The image's members (cpio.read_image); errors become UsageError naming the file."""
    from . import cpio
    from .cli import UsageError

    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UsageError("%s: %s" % (path, e.strerror))
    try:
        members = cpio.read_image(data)
    except cpio.FormatError as e:
        raise UsageError("%s: %s" % (path, e))
    if not members:
        raise UsageError("%s: empty image (no cpio archive)" % path)
    return members


def describe(e, long=False):
    name = e.name
    if e.islnk():
        name += " -> " + os.fsdecode(e.data)
    if not long:
        return name
    if st.S_ISCHR(e.mode) or st.S_ISBLK(e.mode):
        size = "%d, %d" % e.rdev
    else:
        size = str(len(e.data))
    return "%s %d/%d %9s %d %s" % (st.filemode(e.mode), e.uid, e.gid, size, e.mtime, name)


def run_ls(args):
    members = read(args.image)
    lines = []
    for i, m in enumerate(members):
        if len(members) > 1 or args.long:
            lines.append("# member %d at offset %d: %s, %d entries, %d bytes"
                         % (i + 1, m.offset, m.compression, len(m.entries), m.size))
        for e in m.entries:
            lines.append(describe(e, args.long))
    try:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader stopped early (`mpinit ls IMG | head`): not an error. stdout goes to /dev/null so that the
        # interpreter's flush at exit does not raise again (the recipe in Python's signal module docs).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 0


def check_names(entries):
    """Refuse names that could write outside the destination: absolute, '..', or (checked while writing) a path
    through a symlink the archive itself made."""
    from .cli import UsageError

    symlinks = set()
    for e in entries:
        parts = e.name.split("/")
        if e.name.startswith("/") or ".." in parts or "\0" in e.name:
            raise UsageError("entry %r: absolute names and '..' would escape the destination; nothing extracted"
                             % e.name)
        if e.islnk():
            symlinks.add(e.name.strip("/"))
    for e in entries:
        parts = e.name.strip("/").split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in symlinks:
                raise UsageError("entry %r: its directory %s is a symlink in the archive; refusing to write "
                                 "through it; nothing extracted" % (e.name, "/".join(parts[:i])))


def check_existing(final, dest):
    """Refuse, before writing anything, entries whose path in `dest` goes through a symlink already there
    (extracting over an old tree must not write outside it). The loop in extract() checks again as it goes."""
    from .cli import UsageError

    if not os.path.isdir(dest):
        return
    checked = {}
    for name in final:
        parts = name.strip("/").split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix not in checked:
                checked[prefix] = os.path.islink(os.path.join(dest, prefix))
            if checked[prefix]:
                raise UsageError("entry %r: %s is a symlink; refusing to write through it; nothing extracted"
                                 % (name, os.path.join(dest, prefix)))


def extract(members, dest):
    """Write the merged tree into `dest`; returns warnings (skipped device nodes)."""
    from . import cpio
    from .cli import UsageError

    final = cpio.merged(members)
    check_names(list(final.values()))
    dest = Path(dest)
    check_existing(final, dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(dest)
    warnings = []
    links = {}
    dir_times = []
    is_root = os.geteuid() == 0
    for e in final.values():
        if e.name in (".", ""):
            continue
        target = os.path.join(root, e.name)
        parent = os.path.dirname(target)
        if os.path.realpath(parent) != os.path.normpath(parent):
            raise UsageError("entry %r: its directory is a symlink in the archive; refusing to write through it"
                             % e.name)
        os.makedirs(parent, exist_ok=True)
        if os.path.lexists(target) and not (e.isdir() and os.path.isdir(target) and not os.path.islink(target)):
            if os.path.isdir(target) and not os.path.islink(target):
                import shutil

                shutil.rmtree(target)
            else:
                os.unlink(target)
        perm = st.S_IMODE(e.mode)
        if e.isdir():
            os.makedirs(target, exist_ok=True)
            os.chmod(target, perm)
            dir_times.append((target, e.mtime))
        elif e.isreg():
            if e.link is not None and e.link in links:
                os.link(links[e.link], target)
                continue
            with open(target, "wb") as f:
                f.write(e.data)
            os.chmod(target, perm)
            if e.link is not None:
                links[e.link] = target
        elif e.islnk():
            os.symlink(os.fsdecode(e.data), target)
        else:
            try:
                os.mknod(target, e.mode, os.makedev(*e.rdev))
            except PermissionError:
                warnings.append("%s: device node or fifo skipped (needs root)" % e.name)
                continue
            os.chmod(target, perm)  # mknod applied the umask
        if is_root:
            os.lchown(target, e.uid, e.gid)
        os.utime(target, (e.mtime, e.mtime), follow_symlinks=False)
    for path, mtime in reversed(dir_times):  # after their contents changed them
        os.utime(path, (mtime, mtime))
    return warnings


def run_extract(args):
    from .cli import UsageError

    members = read(args.image)
    if args.dest.exists() and not args.dest.is_dir():
        raise UsageError("%s: exists and is not a directory" % args.dest)
    for w in extract(members, args.dest):
        print("mpinit: warning: %s" % w, file=sys.stderr)
    count = sum(len(m.entries) for m in members)
    print("mpinit: extracted %d entries from %d member(s) of %s into %s" % (count, len(members), args.image,
                                                                            args.dest))
    return 0
