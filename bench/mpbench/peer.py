"""The peer image: a busybox-static initramfs whose /init is bench/peer/init.sh, with the same kernel modules as
mpinit's image (the same mpinit.kmod closure, so the same .ko files, uncompressed) and the same compression.

Contents:
  /init                     bench/peer/init.sh
  /bin/busybox              the host's static busybox (busybox-static)
  /bin/<applet>             symlinks to busybox for the applets the script runs (APPLETS), nothing more
  /dev/console, /dev/null   device nodes, so the kernel opens the console for /init (init/main.c
                            console_on_rootfs()) as it does for mpinit's image
  /proc /sys /mnt /newroot  mount points
  /lib/modules/<kver>/...   the closure's modules, at the same paths as in mpinit's image
  /etc/modules.order        their in-image paths, one a line, dependencies first (closure load order)

The archive is written by mpinit.cpio (newc, byte-identical to GNU cpio --reproducible --owner 0:0) and
compressed by mpinit.compress with the method and level given: the size comparison is about contents only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mpinit import compress, cpio
from mpinit.tree import Tree

INIT_SH = Path(__file__).resolve().parent.parent / "peer" / "init.sh"

# Every external command bench/peer/init.sh runs (shell builtins such as echo, read, cd, exec are not here).
APPLETS = ("sh", "mount", "umount", "mkdir", "cat", "cut", "tr", "grep", "insmod", "findfs", "sleep", "stat",
           "cp", "switch_root", "poweroff")

# ash builtins and keywords the script uses: a word in command position that is neither is an applet we forgot.
SHELL_WORDS = {"export", "echo", "read", "while", "do", "done", "for", "in", "case", "esac", "if", "then", "fi",
               "else", "until", "exec", "[", "test", "log", "fail", "||", "&&", "local", "return", "true",
               "false", "printf", ":"}

DIRS = ("bin", "dev", "proc", "sys", "mnt", "newroot", "etc", "lib/modules")


@dataclass
class PeerImage:
    image: bytes
    uncompressed_size: int
    entries: int
    modules: list


def init_script() -> str:
    return INIT_SH.read_text()


def module_order(closure) -> list:
    """In-image paths of the closure's modules, dependencies first (mpinit.kmod.Closure.modules order)."""
    out = []
    for name in closure.modules:
        info = closure.infos[name]
        out.append("/lib/modules/%s/%s" % (closure.kver, info.rel))
    return out


def commands(script: str) -> set:
    """The words in command position of a simple shell script: first word of each line and after `|`, `;`,
    `&&`, `||`, `$(`, `then`, `do`, `else`, `until`, `while` (enough for init.sh, which the tests check)."""
    import re
    import shlex

    found = set()
    for raw in script.split("\n"):
        line = raw.strip()
        if not line or line.startswith("#") or line.endswith(")") and re.match(r"^[\w|.=*:-]+\)$", line):
            continue
        line = re.sub(r"^[\w.|=*:-]+\)\s*", "", line)  # a case pattern "a|b)" before a command
        line = re.sub(r"\$\(\(.*?\)\)|\$\{[^}]*\}", "x", line)  # arithmetic and parameter expansions
        # split at command separators and open substitutions, then take each piece's first word
        for piece in re.split(r"\|\||&&|[|;]|\$\(|\{\s|\s\}|\bthen\b|\bdo\b|\belse\b", line):
            piece = re.sub(r"^\s*[\w.=*:-]*\)\s*", "", piece).strip()  # the rest of a case pattern "a|b)"
            if not piece or piece.startswith("#"):
                continue
            try:
                words = shlex.split(piece, comments=True)
            except ValueError:
                words = piece.split()
            if words and words[0] in ("for", "case"):
                continue  # `for w in ...` / `case "$w" in`: no command in this piece
            while words and (words[0] in ("until", "while", "if", "!", "exec") or re.match(r"^\w+=", words[0])):
                words = words[1:]  # keywords and VAR=value prefixes before the command
            if words:
                w = words[0]
                if w.endswith("()"):
                    continue
                found.add(w.rstrip(")"))
    return {w for w in found if w and not w.startswith(("$", '"', "'", "/", "-"))}


def base_tree(dirs, closure, source, mtime=0) -> Tree:
    """What the peer's and the C floor's images share: their directories, the two device nodes, the module list in
    dependency order (etc/modules.order) and the modules themselves."""
    tree = Tree(mtime=mtime)
    for d in dirs:
        tree.add_dir(d, source=source)
    # <linux/major.h>: TTYAUX_MAJOR 5 minor 1 is /dev/console, MEM_MAJOR 1 minor 3 is /dev/null.
    tree.add_node("dev/console", "c", 5, 1, 0o600, source=source)
    tree.add_node("dev/null", "c", 1, 3, 0o666, source=source)
    order = module_order(closure) if closure is not None else []
    tree.add_file("etc/modules.order", "".join(p + "\n" for p in order).encode(), 0o644, source=source)
    if closure is not None:
        for dest, data in closure.files:
            tree.add_file(dest, data, 0o644, source="kernel modules")
    return tree


def build_tree(busybox: Path, closure, script: str | None = None, mtime=0) -> Tree:
    tree = base_tree(DIRS, closure, "peer", mtime)
    tree.add_file("bin/busybox", Path(busybox).read_bytes(), 0o755, source=str(busybox))
    for applet in APPLETS:
        tree.add_symlink("bin/" + applet, "busybox", source="peer")
    tree.add_file("init", (script if script is not None else init_script()).encode(), 0o755, source=str(INIT_SH))
    return tree


def build(busybox: Path, closure, compression: str = compress.DEFAULT, script: str | None = None) -> PeerImage:
    """The peer image in memory (write it with mpinit.atomic.write_bytes)."""
    method, level = compress.parse_spec(compression)
    tree = build_tree(busybox, closure, script)
    entries = tree.sorted_entries()
    archive = cpio.write_newc(entries)
    return PeerImage(compress.compress(archive, method, level), len(archive), len(entries),
                     list(closure.modules) if closure is not None else [])
