"""`mpinit squash`: a root directory -> a squashfs (or, with --format erofs, an EROFS) image for live media, with
the classic guides' defaults.

What mksquashfs is told, and why:
- the contents of proc, sys, dev, run and tmp are left out but the directories stay (they are mount points the
  live system needs; their contents on a running system are virtual or stale);
- the output image itself (and our temporary file beside it) is left out when it lies inside the root;
- `-noappend` (a fresh image, never added to an old one); xz gets a 1 MiB block (better ratio for a read-mostly
  image, as archiso and live-build do); zstd and gzip keep mksquashfs' 128 KiB default;
- `--all-root` makes every file owned by root (a root tree unpacked by a normal user is owned by that user).

EROFS (`--format erofs`, mkfs.erofs from erofs-utils), the format Fedora's live media use since release 42 and
archiso offers as airootfs.erofs: the same exclusions (as `--exclude-regex`/`--exclude-path`, since mkfs.erofs
has no wildcard files), lz4hc at its highest level with 64 KiB physical clusters (`-C65536`, dracut's erofs
module's choice, to compress about as well as squashfs' 128 KiB blocks) and tail packing (`-Eztailpacking`);
`lz4` and `none` are the other choices (the kernel reads LZMA-compressed EROFS only when built with
CONFIG_EROFS_FS_ZIP_LZMA, which Debian's kernels are not, so it is not offered).

A root is refused unless the kernel could start something in it: the names the kernel itself tries, in its order
(init/main.c, kernel_init(): /sbin/init, /etc/init, /bin/init, /bin/sh), followed through symlinks *inside* the
root (an absolute link target means the root's own path, as it will after switch_root).
"""

import os
import sys
import tempfile
from pathlib import Path

from .atomic import atomic_path, check_output
from .runner import find_tool, run
from .sizes import human

# init/main.c kernel_init(): the fallbacks tried when no init= is given, in order.
INIT_CANDIDATES = ("sbin/init", "etc/init", "bin/init", "bin/sh")

# Directories kept empty in the image (mount points of the running system).
EMPTY_DIRS = ("proc", "sys", "dev", "run", "tmp")

COMPRESSORS = ("xz", "zstd", "gzip")
EROFS_COMPRESSORS = ("lz4hc", "lz4", "none")
FORMATS = ("squashfs", "erofs")

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


def glob_to_ere(pattern):
    """A mksquashfs -wildcards pattern (relative to the root) as a POSIX extended regex for mkfs.erofs
    --exclude-regex, anchored at both ends: `*` and `?` stay within one path component, `[...]` is kept."""
    out = ["^"]
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append("\\[")
            else:
                body = pattern[i + 1:j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body + "]")
                i = j
        elif c in ".^$+(){}|\\":
            out.append("\\" + c)
        else:
            out.append(c)
        i += 1
    out.append("$")
    return "".join(out)


def mkfs_erofs_argv(root, tmp_out, patterns, comp="lz4hc", all_root=False, exclude_paths=()):
    """The mkfs.erofs command line: `patterns` are wildcard patterns (as for mksquashfs), `exclude_paths` exact
    paths relative to the root."""
    if comp not in EROFS_COMPRESSORS:
        raise SquashError("--comp %s: not one of %s for EROFS" % (comp, ", ".join(EROFS_COMPRESSORS)))
    argv = [find_tool("mkfs.erofs", "erofs-utils"), "--quiet"]
    if comp == "lz4hc":
        argv += ["-zlz4hc,12", "-C65536", "-Eztailpacking"]
    elif comp == "lz4":
        argv += ["-zlz4", "-C65536", "-Eztailpacking"]
    if all_root:
        argv.append("--all-root")
    for p in exclude_paths:
        argv.append("--exclude-path=%s" % p)
    for p in patterns:
        argv.append("--exclude-regex=%s" % glob_to_ere(p))
    return argv + [str(tmp_out), str(root)]


def build(root, output, comp=None, all_root=False, exclude_file=None, progress=None, out=None, fmt="squashfs"):
    """Make `output` from `root`; returns (image bytes, file data bytes). Atomic: nothing is left at `output`
    (or beside it) on failure. progress: mksquashfs' progress bar (default: when stdout is a terminal).
    fmt: "squashfs" (mksquashfs, comp default xz) or "erofs" (mkfs.erofs, comp default lz4hc)."""
    out = out or sys.stdout
    if fmt not in FORMATS:
        raise SquashError("--format %s: not one of %s" % (fmt, ", ".join(FORMATS)))
    if comp is None:
        comp = "xz" if fmt == "squashfs" else "lz4hc"
    root = Path(root)
    output = Path(output)
    if not root.is_dir():
        raise SquashError("%s: not a directory (the root to squash)" % root)
    check_output(output, SquashError)
    allowed = COMPRESSORS if fmt == "squashfs" else EROFS_COMPRESSORS
    if comp not in allowed:
        raise SquashError("--comp %s: not one of %s for %s" % (comp, ", ".join(allowed), fmt))
    init = find_init(root)
    patterns = default_excludes(root, output)
    if exclude_file is not None:
        patterns += read_exclude_file(exclude_file)
    if progress is None:
        progress = sys.stdout.isatty()
    print("mpinit squash: %s (init %s) -> %s, %s %s" % (root, init, output, fmt, comp), file=out, flush=True)
    if fmt == "erofs":
        # The output (and our temporary file beside it) are exact paths; mkfs.erofs matches them literally.
        inside = [p for p in patterns if "*" not in p]
        globs = [p for p in patterns if "*" in p]
        with atomic_path(output) as tmp:
            try:
                rel_tmp = [str(Path(tmp).resolve().relative_to(root.resolve()))]
            except ValueError:
                rel_tmp = []
            run(mkfs_erofs_argv(root, tmp, globs, comp, all_root, inside + rel_tmp))
        return _report(root, output, out)
    ef_fd, ef = tempfile.mkstemp(prefix="mpinit-squash-", suffix=".exclude")
    try:
        with os.fdopen(ef_fd, "w") as f:
            f.write("".join(p + "\n" for p in patterns))
        with atomic_path(output) as tmp:
            run(mksquashfs_argv(root, tmp, comp, all_root, ef, progress))
    finally:
        os.unlink(ef)
    return _report(root, output, out)


def _report(root, output, out):
    size = output.stat().st_size
    data = data_size(root, skip=output)
    ratio = " (%.1f%% of %s file data)" % (100.0 * size / data, human(data)) if data else ""
    print("mpinit squash: wrote %s: %s%s" % (output, human(size), ratio), file=out, flush=True)
    return size, data


