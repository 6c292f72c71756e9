"""`mpinit squash`: a root directory -> a squashfs image for live media, with the classic guides' defaults.

What mksquashfs is told, and why:
- the contents of proc, sys, dev, run and tmp are left out but the directories stay (they are mount points the
  live system needs; their contents on a running system are virtual or stale);
- the output image itself (and our temporary file beside it) is left out when it lies inside the root;
- `-noappend` (a fresh image, never added to an old one); xz gets a 1 MiB block (better ratio for a read-mostly
  image, as archiso and live-build do); zstd and gzip keep mksquashfs' 128 KiB default;
- `--all-root` makes every file owned by root (a root tree unpacked by a normal user is owned by that user).

A root is refused unless the kernel could start something in it: the names the kernel itself tries, in its order
(init/main.c, kernel_init(): /sbin/init, /etc/init, /bin/init, /bin/sh), followed through symlinks *inside* the
root (an absolute link target means the root's own path, as it will after switch_root).
"""

import os
import sys
import tempfile
from pathlib import Path

from .atomic import atomic_path
from .runner import find_tool, run
from .sizes import human

# init/main.c kernel_init(): the fallbacks tried when no init= is given, in order.
INIT_CANDIDATES = ("sbin/init", "etc/init", "bin/init", "bin/sh")

# Directories kept empty in the image (mount points of the running system).
EMPTY_DIRS = ("proc", "sys", "dev", "run", "tmp")

COMPRESSORS = ("xz", "zstd", "gzip")

# Linux follows at most 40 symlinks in one lookup (fs/namei.c MAXSYMLINKS); we use the same limit.
MAX_SYMLINKS = 40


class SquashError(Exception):
    """Bad input for the squashfs builder; the message names it."""


def resolve_in_root(root, rel):
    """Resolve `rel` (a path inside `root`) component by component, following symlinks the way the kernel would
    after switch_root (absolute targets start at `root`, ".." stops at `root`).

    Returns (host path, None) for an existing target, or (None, reason) when it does not resolve."""
    root = Path(root)
    todo = [p for p in rel.split("/") if p not in ("", ".")]
    done = []  # resolved components below root
    hops = 0
    while todo:
        name = todo.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        here = root.joinpath(*done, name)
        if here.is_symlink():
            hops += 1
            if hops > MAX_SYMLINKS:
                return None, "too many symlinks"
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            continue
        if not here.exists():
            return None, "/%s does not exist" % "/".join(done + [name])
        if todo and not here.is_dir():
            return None, "/%s is not a directory" % "/".join(done + [name])
        done.append(name)
    return root.joinpath(*done), None


def find_init(root):
    """The first of INIT_CANDIDATES that resolves inside `root` to an executable regular file, as "/sbin/init";
    raises SquashError naming what was looked for (and why each candidate failed) when none does."""
    root = Path(root)
    why = []
    for rel in INIT_CANDIDATES:
        path, reason = resolve_in_root(root, rel)
        if path is None:
            why.append("/%s: %s" % (rel, reason))
        elif not path.is_file():
            why.append("/%s: not a regular file" % rel)
        elif not os.stat(path).st_mode & 0o111:
            why.append("/%s: not executable" % rel)
        else:
            return "/" + rel
    raise SquashError("%s: no init in this root: looked for %s (symlinks followed inside the root); %s"
                      % (root, ", ".join("/" + c for c in INIT_CANDIDATES), "; ".join(why)))


def read_exclude_file(path):
    """The patterns of a guide-style exclude file: one per line, '#' comments and blank lines ignored, a leading
    '/' meaning the root (mksquashfs wants paths relative to the source)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SquashError("--exclude-file %s: cannot read: %s" % (path, e.strerror or e))
    except UnicodeDecodeError:
        raise SquashError("--exclude-file %s: not a text file" % path)
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pat = line.lstrip("/")
        if not pat:
            raise SquashError("--exclude-file %s line %d: '%s' would exclude the whole root" % (path, n, line))
        out.append(pat)
    return out


def default_excludes(root, output):
    """Wildcard patterns (relative to `root`) for the contents of EMPTY_DIRS and for `output` when inside root."""
    pats = ["%s/*" % d for d in EMPTY_DIRS if (Path(root) / d).is_dir()]
    try:
        rel = Path(output).resolve().relative_to(Path(root).resolve())
    except ValueError:
        rel = None
    if rel is not None:
        pats.append(str(rel))
        # our temporary file beside it: ".<name>.<random>.tmp"
        pats.append(str(rel.parent / (".%s.*.tmp" % rel.name)) if str(rel.parent) != "." else
                    ".%s.*.tmp" % rel.name)
    return pats


def data_size(root, excludes_dirs=EMPTY_DIRS, skip=None):
    """Bytes of regular-file data under root (the contents of EMPTY_DIRS and the file `skip` not counted): for
    the ratio."""
    total = 0
    root = Path(root)
    skip = os.path.realpath(skip) if skip else None
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d not in excludes_dirs]
        for f in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            if not os.path.islink(os.path.join(dirpath, f)) and (
                    skip is None or os.path.realpath(os.path.join(dirpath, f)) != skip):
                total += st.st_size
    return total


def mksquashfs_argv(root, tmp_out, comp="xz", all_root=False, exclude_file=None, progress=False):
    """The mksquashfs command line (exclude_file: a file of wildcard patterns we wrote)."""
    if comp not in COMPRESSORS:
        raise SquashError("--comp %s: not one of %s" % (comp, ", ".join(COMPRESSORS)))
    argv = [find_tool("mksquashfs", "squashfs-tools"), str(root), str(tmp_out), "-noappend", "-comp", comp]
    if comp == "xz":
        argv += ["-b", "1M"]
    if all_root:
        argv.append("-all-root")
    if not progress:
        argv.append("-no-progress")
    if exclude_file:
        argv += ["-wildcards", "-ef", str(exclude_file)]
    return argv


def build(root, output, comp="xz", all_root=False, exclude_file=None, progress=None, out=None):
    """Make `output` from `root`; returns (image bytes, file data bytes). Atomic: nothing is left at `output`
    (or beside it) on failure. progress: mksquashfs' progress bar (default: when stdout is a terminal)."""
    out = out or sys.stdout
    root = Path(root)
    output = Path(output)
    if not root.is_dir():
        raise SquashError("%s: not a directory (the root to squash)" % root)
    if output.is_dir():
        raise SquashError("-o %s: is a directory" % output)
    if not output.parent.is_dir():
        raise SquashError("-o %s: directory %s does not exist" % (output, output.parent))
    if comp not in COMPRESSORS:
        raise SquashError("--comp %s: not one of %s" % (comp, ", ".join(COMPRESSORS)))
    init = find_init(root)
    patterns = default_excludes(root, output)
    if exclude_file is not None:
        patterns += read_exclude_file(exclude_file)
    if progress is None:
        progress = sys.stdout.isatty()
    print("mpinit squash: %s (init %s) -> %s, %s" % (root, init, output, comp), file=out, flush=True)
    ef_fd, ef = tempfile.mkstemp(prefix="mpinit-squash-", suffix=".exclude")
    try:
        with os.fdopen(ef_fd, "w") as f:
            f.write("".join(p + "\n" for p in patterns))
        with atomic_path(output) as tmp:
            run(mksquashfs_argv(root, tmp, comp, all_root, ef, progress))
    finally:
        os.unlink(ef)
    size = output.stat().st_size
    data = data_size(root, skip=output)
    ratio = " (%.1f%% of %s file data)" % (100.0 * size / data, human(data)) if data else ""
    print("mpinit squash: wrote %s: %s%s" % (output, human(size), ratio), file=out, flush=True)
    return size, data


