"""Assemble an mpinit initramfs: the runtime as /init, the on-image contract (directories, device nodes, config,
keymap, hooks, module table), kernel modules, and the user's inputs; then one deterministic compressed archive.

Layers, later ones winning on the same path: the base (contract.IMAGE_DIRS, /dev/console, /dev/null, /init,
contract.INITRD_RELEASE), then user inputs in this order: --dir trees, --list files, --add and --binary
(ELF programs with their libraries), then what pack generates (modules, keymap, hooks, config), which the
user cannot shadow by accident.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from mpinit_agent import contract

from . import compress, cpio, genlist
from .tree import Tree, TreeError, normalize, source_date_epoch


class PackError(ValueError):
    """Bad input to pack; the message names it. The CLI turns it into a UsageError."""


@dataclass
class PackOptions:
    init: Path                                        # the /init binary
    directories: list = field(default_factory=list)   # host trees unpacked at the image root
    lists: list = field(default_factory=list)         # gen_init_cpio list files
    adds: list = field(default_factory=list)          # (src, dest)
    binaries: list = field(default_factory=list)      # host paths of ELF programs, added at the same path
    config_file: Path | None = None
    cmdline: str | None = None
    module_dir: Path | None = None
    modules: list | None = None                       # names and set names; None = generic-live with a module_dir
    host_only: bool = False
    strict: bool = False
    firmware_dirs: list = field(default_factory=lambda: [Path("/lib/firmware")])
    modprobe_d: list = field(default_factory=list)
    hooks: list = field(default_factory=list)
    keymap: str | None = None
    compression: str = compress.DEFAULT
    level: int | None = None
    kernel_config: Path | None = None
    early: list = field(default_factory=list)         # uncompressed cpio archives put first (CPU microcode)


@dataclass
class PackResult:
    image: bytes
    entries: list
    modules: list
    warnings: list
    uncompressed_size: int
    seconds: float
    config: dict

    def summary(self, out, method):
        ratio = len(self.image) / self.uncompressed_size if self.uncompressed_size else 1.0
        return ("mpinit: wrote %s: %s %s (%d%% of %s), %d entries, %d modules, %.2f s"
                % (out, human(len(self.image)), method, round(ratio * 100), human(self.uncompressed_size),
                   len(self.entries), len(self.modules), self.seconds))


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0


def initrd_release():
    """os-release(5) text for contract.INITRD_RELEASE (systemd's marker of an initrd)."""
    from . import __version__

    return 'NAME="mpinit"\nID=mpinit\nVERSION_ID=%s\nPRETTY_NAME="mpinit %s (initramfs)"\n' % (
        __version__, __version__)


def base_tree(tree: Tree, init_data: bytes):
    for d in contract.IMAGE_DIRS:
        # /tmp is world-writable with the sticky bit, as the FHS and every distribution have it.
        tree.add_dir(d, 0o1777 if d == "/tmp" else 0o755, source="contract.IMAGE_DIRS")
    # <linux/major.h>: TTYAUX_MAJOR 5 minor 1 is /dev/console, MEM_MAJOR 1 minor 3 is /dev/null
    # (Documentation/admin-guide/devices.txt). The kernel opens /dev/console for init's stdio before devtmpfs.
    tree.add_node("dev/console", "c", 5, 1, 0o600, source="base")
    tree.add_node("dev/null", "c", 1, 3, 0o666, source="base")
    tree.add_file(contract.INIT_PATH, init_data, 0o755, source="--init")
    tree.add_file(contract.INITRD_RELEASE, initrd_release().encode(), 0o644, source="base")


def load_config(opts: PackOptions):
    """contract.load_config over --config, then --cmdline; errors name the file."""
    text = ""
    source = "(defaults)"
    if opts.config_file is not None:
        source = str(opts.config_file)
        try:
            text = Path(opts.config_file).read_text(encoding="utf-8")
        except OSError as e:
            raise PackError("--config %s: %s" % (opts.config_file, e.strerror))
        except UnicodeDecodeError:
            raise PackError("--config %s: not UTF-8 text" % opts.config_file)
    try:
        conf = contract.load_config(text, source)
    except ValueError as e:
        raise PackError("--config %s" % e if opts.config_file else str(e))
    if opts.cmdline is not None:
        conf["cmdline"] = opts.cmdline.strip()
    return conf


def expand_modules(names):
    """Module names with set names (kmod.MODULE_SETS) expanded, order kept, duplicates dropped."""
    from . import kmod

    out = []
    for n in names:
        for m in kmod.MODULE_SETS.get(n, [n]):
            if m not in out:
                out.append(m)
    return out


def add_modules(tree: Tree, opts: PackOptions, warnings: list):
    """The kernel-module closure (mpinit.kmod) and its table; returns the kmod.Closure."""
    from . import kmod

    module_dir = Path(opts.module_dir)
    if not module_dir.is_dir():
        raise PackError("kernel module tree %s: not a directory" % module_dir)
    wanted = expand_modules(opts.modules if opts.modules is not None else ["generic-live"])
    try:
        closure = kmod.resolve(module_dir, wanted, host_only=opts.host_only, strict=opts.strict,
                               firmware_dirs=tuple(Path(d) for d in opts.firmware_dirs),
                               modprobe_d=[Path(p) for p in opts.modprobe_d])
    except kmod.ModuleError as e:
        raise PackError(str(e))
    for dest, data in closure.files:
        tree.add_file(dest, data, 0o644, source="kernel modules")
    tree.add_file(contract.MODULES_TABLE_PATH, closure.table, 0o644, source="module table")
    warnings.extend(closure.warnings)
    return closure


def add_program(tree: Tree, src, dest, resolver):
    """An ELF program (or any file) at dest; for a dynamic ELF also its interpreter and libraries, each at the
    path ld.so will open in the image (symlinks resolved: the content is stored under the name looked up)."""
    from . import elfdeps

    tree.add_host(src, dest)
    if not elfdeps.is_elf(src):
        return
    try:
        libs = resolver.closure(str(Path(src).resolve()))
    except elfdeps.ElfError as e:
        raise PackError("program %s: %s" % (src, e))
    for lib in libs:
        if normalize(lib) not in tree.entries:
            tree.add_host(lib, lib)


def add_hook(tree: Tree, path):
    path = Path(path)
    if path.suffix != ".py":
        raise PackError("--hook %s: hooks are Python files named *.py" % path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PackError("--hook %s: %s" % (path, e.strerror))
    except UnicodeDecodeError:
        raise PackError("--hook %s: not UTF-8 text" % path)
    try:
        compile(text, str(path), "exec")  # a syntax error found now, not at boot
    except SyntaxError as e:
        raise PackError("--hook %s:%s: syntax error: %s" % (path, e.lineno, e.msg))
    tree.add_file("%s/%s" % (contract.HOOKS_DIR, path.name), text.encode(), 0o644, source="--hook %s" % path)


def build(opts: PackOptions) -> PackResult:
    """Everything but writing the output: returns the image bytes and what went into it."""
    from . import keymap

    started = time.monotonic()
    try:
        method, level = compress.parse_spec(opts.compression)
        if opts.level is not None:
            method, level = compress.parse_spec("%s:%d" % (method, opts.level))
        if opts.kernel_config is not None:
            compress.check_kernel_config(opts.kernel_config, method)
    except compress.CompressError as e:
        raise PackError(str(e))
    conf = load_config(opts)
    early = []
    for path in opts.early:
        try:
            data = Path(path).read_bytes()
            if data[:6] not in (cpio.MAGIC, cpio.MAGIC_CRC):
                raise PackError("--early %s: not an uncompressed newc cpio archive" % path)
            cpio.parse_newc(data)
        except OSError as e:
            raise PackError("--early %s: %s" % (path, e.strerror))
        except cpio.FormatError as e:
            raise PackError("--early %s: %s" % (path, e))
        early.append(data + b"\0" * (-len(data) % 4))
    try:
        init_data = Path(opts.init).read_bytes()
    except OSError as e:
        hint = " (build it with `python3 build.py runtime` or give --init)" if e.errno == 2 else ""
        raise PackError("--init %s: %s%s" % (opts.init, e.strerror, hint))

    tree = Tree(mtime=source_date_epoch())
    warnings = []
    modules = []
    try:
        base_tree(tree, init_data)
        for d in opts.directories:
            tree.add_directory(d)
        for lst in opts.lists:
            try:
                genlist.load(tree, lst)
            except genlist.ListError as e:
                raise PackError(str(e))
        resolver = None
        programs = [(b, b) for b in opts.binaries] + list(opts.adds)
        for src, dest in programs:
            from . import elfdeps

            if resolver is None:
                resolver = elfdeps.Resolver("/")
            add_program(tree, src, dest, resolver)
        if opts.module_dir is not None:
            from . import kmod

            closure = add_modules(tree, opts, warnings)
            modules = list(closure.modules)
            # the config's load list must name modules the image can satisfy
            missing = [m for m in conf["modules"]
                       if kmod.normalize(m) not in closure.modules and kmod.normalize(m) not in closure.builtin]
            if missing:
                warnings.append("config \"modules\" not shipped in the image (add them with --modules): %s"
                                % ", ".join(missing))
        elif opts.modules:
            raise PackError("--modules needs a module tree: give --kernel-modules DIR or --kver VER")
        if opts.keymap:
            try:
                tree.add_file(contract.KEYMAP_PATH, keymap.load(opts.keymap), 0o644, source="--keymap")
            except keymap.KeymapError as e:
                raise PackError(str(e))
        for hook in opts.hooks:
            add_hook(tree, hook)
        text = json.dumps(conf, indent=1, sort_keys=True) + "\n"
        tree.add_file(contract.CONFIG_PATH, text.encode(), 0o644, source="config")
    except TreeError as e:
        raise PackError(str(e))

    entries = tree.sorted_entries()
    archive = cpio.write_newc(entries)
    try:
        body = compress.compress(archive, method, level)
    except Exception as e:  # a compression tool missing or failing
        from .runner import ToolError

        if isinstance(e, ToolError):
            raise PackError("compression %s: %s" % (method, e))
        raise
    image = b"".join(early) + body
    return PackResult(image, entries, modules, warnings, len(archive) + sum(map(len, early)),
                      time.monotonic() - started, conf)


def pack(opts: PackOptions, output) -> PackResult:
    """build() and write the image to `output` atomically (nothing is left behind on any error)."""
    from . import atomic

    output = Path(output)
    if output.is_dir():
        raise PackError("-o %s: is a directory" % output)
    started = time.monotonic()
    result = build(opts)
    try:
        atomic.write_bytes(output, result.image)
    except OSError as e:
        raise PackError("-o %s: %s" % (output, e.strerror or e))
    result.seconds = time.monotonic() - started
    return result
