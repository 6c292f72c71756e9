"""The kernel's gen_init_cpio list format (usr/gen_init_cpio.c, and the DIY initramfs guide), read and written.

One entry per line; `#` starts a comment; fields are separated by blanks; modes are octal:

    file <name> <location> <mode> <uid> <gid> [<hard links> ...]
    dir <name> <mode> <uid> <gid>
    nod <name> <mode> <uid> <gid> <dev_type: b|c> <maj> <min>
    slink <name> <target> <mode> <uid> <gid>
    pipe <name> <mode> <uid> <gid>
    sock <name> <mode> <uid> <gid>

As in gen_init_cpio, ${VAR} in a file's <location> is replaced from the environment. A relative <location> is
taken relative to the list file's directory (gen_init_cpio uses its working directory, which for the kernel's
build is where the list's paths are rooted; ours lets a list and its files travel together).
"""

from __future__ import annotations

import os
import re
import stat as st
from pathlib import Path

from .cpio import Entry
from .textfile import read_text
from .tree import Tree, TreeError

_ARGS = {"file": 5, "dir": 4, "nod": 7, "slink": 5, "pipe": 4, "sock": 4}
_USAGE = {
    "file": "file <name> <location> <mode> <uid> <gid> [<hard links>]",
    "dir": "dir <name> <mode> <uid> <gid>",
    "nod": "nod <name> <mode> <uid> <gid> <b|c> <maj> <min>",
    "slink": "slink <name> <target> <mode> <uid> <gid>",
    "pipe": "pipe <name> <mode> <uid> <gid>",
    "sock": "sock <name> <mode> <uid> <gid>",
}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ListError(ValueError):
    """A syntax or content error; the message is `FILE:LINE: what`."""


def _num(text, base, what, where):
    try:
        n = int(text, base)
    except ValueError:
        raise ListError("%s: %s %r is not a%s number" % (where, what, text, "n octal" if base == 8 else ""))
    if n < 0:
        raise ListError("%s: %s %r is negative" % (where, what, text))
    return n


def _expand(location, where):
    def repl(m):
        value = os.environ.get(m.group(1))
        if value is None:
            raise ListError("%s: ${%s} in %r is not set in the environment" % (where, m.group(1), location))
        return value

    return _VAR.sub(repl, location)


def parse(text, source="<list>"):
    """Yield (where, kind, fields) per entry line; `where` is "source:line" for messages."""
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = "%s:%d" % (source, lineno)
        fields = line.split()
        kind = fields[0]
        if kind not in _ARGS:
            raise ListError("%s: unknown entry type %r (known: %s)" % (where, kind, ", ".join(_ARGS)))
        args = fields[1:]
        if len(args) < _ARGS[kind] or (kind != "file" and len(args) > _ARGS[kind]):
            raise ListError("%s: %s takes %d fields: %s" % (where, kind, _ARGS[kind], _USAGE[kind]))
        yield where, kind, args


def apply(tree: Tree, text, source="<list>", base_dir=None):
    """Add every entry of a list to `tree`; errors name the file and line."""
    base_dir = Path(base_dir) if base_dir is not None else Path(".")
    for where, kind, a in parse(text, source):
        try:
            if kind == "file":
                name, location = a[0], _expand(a[1], where)
                mode, uid, gid = _num(a[2], 8, "mode", where), _num(a[3], 10, "uid", where), \
                    _num(a[4], 10, "gid", where)
                path = base_dir / location
                try:
                    data = path.read_bytes()
                except OSError as e:
                    if path.is_symlink() and not path.exists():
                        raise ListError("%s: file %s: dangling symlink (to %s)" % (where, path, os.readlink(path)))
                    raise ListError("%s: file %s: %s" % (where, path, e.strerror))
                links = a[5:]
                key = ("list", where) if links else None
                for n in [name] + links:
                    tree.add(Entry(n, st.S_IFREG | (mode & 0o7777), data, uid, gid, tree.mtime, link=key,
                                   source="%s (%s)" % (where, path)))
            elif kind == "dir":
                tree.add(Entry(a[0], st.S_IFDIR | (_num(a[1], 8, "mode", where) & 0o7777),
                               uid=_num(a[2], 10, "uid", where), gid=_num(a[3], 10, "gid", where),
                               mtime=tree.mtime, source=where))
            elif kind == "nod":
                if a[4] not in ("b", "c"):
                    raise ListError("%s: device type %r must be b or c" % (where, a[4]))
                fmt = st.S_IFBLK if a[4] == "b" else st.S_IFCHR
                tree.add(Entry(a[0], fmt | (_num(a[1], 8, "mode", where) & 0o7777),
                               uid=_num(a[2], 10, "uid", where), gid=_num(a[3], 10, "gid", where),
                               mtime=tree.mtime, rdev=(_num(a[5], 10, "major", where),
                                                       _num(a[6], 10, "minor", where)), source=where))
            elif kind == "slink":
                tree.add(Entry(a[0], st.S_IFLNK | (_num(a[2], 8, "mode", where) & 0o7777), os.fsencode(a[1]),
                               _num(a[3], 10, "uid", where), _num(a[4], 10, "gid", where), tree.mtime,
                               source=where))
            else:
                fmt = st.S_IFIFO if kind == "pipe" else st.S_IFSOCK
                tree.add(Entry(a[0], fmt | (_num(a[1], 8, "mode", where) & 0o7777),
                               uid=_num(a[2], 10, "uid", where), gid=_num(a[3], 10, "gid", where),
                               mtime=tree.mtime, source=where))
        except TreeError as e:
            raise ListError("%s: %s" % (where, e))


def load(tree: Tree, path):
    """apply() the list file at `path`."""
    path = Path(path)
    apply(tree, read_text(path, "list %s" % path, ListError), str(path), path.parent)


def dump(entries, files_dir):
    """The list text describing `entries` (e.g. read back from an archive); file contents are written under
    `files_dir` (named by their image path) and referenced from the list, relative to it. Hardlink groups become
    one `file` line with the other names appended."""
    files_dir = Path(files_dir)
    lines = []
    done = set()
    groups = {}
    for e in entries:
        if e.link is not None:
            groups.setdefault(e.link, []).append(e.name)
    for e in entries:
        if e.name == "." or e.name in done:
            continue
        name = "/" + e.name
        perm = "%o" % (e.mode & 0o7777)
        if any(c.isspace() for c in e.name + e.data.decode(errors="replace") * e.islnk()):
            raise ListError("%s: the list format cannot hold a name with blanks" % e.name)
        if e.isreg():
            data_path = files_dir / e.name
            data_path.parent.mkdir(parents=True, exist_ok=True)
            data_path.write_bytes(e.data)
            others = [n for n in groups.get(e.link, [e.name]) if n != e.name] if e.link is not None else []
            done.update(others)
            lines.append(" ".join(["file", name, e.name, perm, str(e.uid), str(e.gid)] + ["/" + n for n in others]))
        elif e.isdir():
            lines.append("dir %s %s %d %d" % (name, perm, e.uid, e.gid))
        elif e.islnk():
            lines.append("slink %s %s %s %d %d" % (name, os.fsdecode(e.data), perm, e.uid, e.gid))
        elif st.S_ISCHR(e.mode) or st.S_ISBLK(e.mode):
            lines.append("nod %s %s %d %d %s %d %d" % (name, perm, e.uid, e.gid, "c" if st.S_ISCHR(e.mode) else "b",
                                                       e.rdev[0], e.rdev[1]))
        elif st.S_ISFIFO(e.mode):
            lines.append("pipe %s %s %d %d" % (name, perm, e.uid, e.gid))
        elif st.S_ISSOCK(e.mode):
            lines.append("sock %s %s %d %d" % (name, perm, e.uid, e.gid))
    return "\n".join(lines) + "\n"
