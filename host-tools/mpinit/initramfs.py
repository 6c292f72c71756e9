"""Assemble an mpinit initramfs: the runtime as /init, the on-image contract (directories, device nodes, config,
keymap, hooks, module table), kernel modules, and the user's inputs; then one deterministic compressed archive.

Layers, later ones winning on the same path: the base (contract.IMAGE_DIRS, /dev/console, /dev/null, /init,
contract.INITRD_RELEASE), then user inputs in this order: --dir trees, --list files, --add and --binary
(ELF programs with their libraries), then what pack generates (modules, keymap, hooks, config), which the
user cannot shadow by accident. A user input that replaces a base file (a custom /init) or sits where a
generated file goes is allowed but printed as a warning (shadowing()).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from mpinit_agent import contract

from . import compress, cpio, genlist
from .tree import Tree, TreeError, normalize, source_date_epoch
from .sizes import human
from .textfile import read_text


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
    luks: bool = False                                # --luks, --mdadm, --lvm, --crypttab: storagekit.py
    mdadm: bool = False
    lvm: bool = False
    crypttab: Path | None = None
    arch: str | None = None                           # --arch: x86_64/arm64; None = /init's (mpinit.arch)


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


# What base_tree() puts in that a user input may replace (a custom /init is allowed, but said), and what pack
# generates last (so a user input at those paths is dropped, which is said too).
BASE_FILES = (contract.INIT_PATH, "/dev/console", "/dev/null")
GENERATED = ((contract.CONFIG_PATH, "--config/--cmdline"), (contract.MODULES_TABLE_PATH, "--modules/--modprobe-d"),
             (contract.KEYMAP_PATH, "--keymap"))


def shadowing(tree: Tree, base: dict, opts: PackOptions):
    """Warnings for user inputs (--dir, --list, --add) that replaced a base file or sit where pack's own
    generated files will go."""
    out = []
    for name, entry in base.items():
        now = tree.get(name)
        if now is not entry:
            out.append("%s of the base image replaced by %s" % (name, (now and now.source) or "a user input"))
    made = {contract.CONFIG_PATH: True, contract.MODULES_TABLE_PATH: opts.module_dir is not None,
            contract.KEYMAP_PATH: bool(opts.keymap)}
    for path, how in GENERATED:
        have = tree.get(path)
        if have is not None and made[path]:
            out.append("%s from %s is replaced by the one pack generates (use %s)"
                       % (path, have.source or "a user input", how))
    return out


def load_config(opts: PackOptions):
    """contract.load_config over --config, then --cmdline; errors name the file."""
    text = ""
    source = "(defaults)"
    if opts.config_file is not None:
        source = str(opts.config_file)
        text = read_text(opts.config_file, "--config %s" % opts.config_file, PackError)
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


def add_modules(tree: Tree, opts: PackOptions, warnings: list, boot_modules=()):
    """The kernel-module closure (mpinit.kmod) and its table; returns the kmod.Closure. `boot_modules` (the
    config's "modules", which the agent loads at boot) are shipped too, with --strict applying to them."""
    from . import kmod

    module_dir = Path(opts.module_dir)
    if not module_dir.is_dir():
        raise PackError("kernel module tree %s: not a directory" % module_dir)
    wanted = expand_modules(list(opts.modules if opts.modules is not None else ["generic-live"])
                            + list(boot_modules))
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
        return []
    real = str(Path(src).resolve())
    try:
        libs = resolver.closure(real)
    except elfdeps.ElfError as e:
        raise PackError("program %s: %s" % (src, e))
    for lib in libs:
        if normalize(lib) not in tree.entries:
            tree.add_host(lib, lib)
    # $ORIGIN is the program's directory at run time (ld.so(8)): the libraries were found relative to the
    # host's, and are shipped at their host paths, so a program moved elsewhere would not find them.
    info = resolver._read(real)
    dest_dir = normalize(dest).rpartition("/")[0]
    if any("ORIGIN" in d for d in info.rpath + info.runpath) and dest_dir != real.lstrip("/").rpartition("/")[0]:
        return ["program %s: its RPATH/RUNPATH uses $ORIGIN, but it goes to /%s, not beside its host directory "
                "%s: add it at its own path (--binary) so that its libraries are found"
                % (src, normalize(dest), real.rpartition("/")[0])]
    return []


def script_warnings(tree: Tree, programs):
    """An added script whose #! interpreter is not in the image (it would fail with ENOENT at run time)."""
    out = []
    for src, dest in programs:
        entry = tree.get(dest)
        if entry is None or not entry.isreg() or not entry.data.startswith(b"#!"):
            continue
        words = entry.data[2:].split(b"\n", 1)[0].split()
        if not words:
            continue
        interp = words[0].decode("utf-8", "replace")
        if tree.lookup(interp) is None:
            out.append("%s: a script for %s, which is not in the image (add it with --binary or --add)"
                       % (src, interp))
    return out


def cache_only_warnings(resolver):
    """Libraries ld.so will not find in the image (see elfdeps.Resolver.cache_only)."""
    return ["%s: found through /etc/ld.so.conf in %s, which ld.so does not search without ld.so.cache (the image "
            "has none): add it at a default directory (e.g. --add %s:/usr/lib/%s) or give the program a RUNPATH"
            % (lib, d, lib, lib.rsplit("/", 1)[-1]) for lib, d in sorted(resolver.cache_only.items())]


def add_hook(tree: Tree, path):
    path = Path(path)
    if path.suffix != ".py":
        raise PackError("--hook %s: hooks are Python files named *.py" % path)
    text = read_text(path, "--hook %s" % path, PackError)
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
    from . import storagekit

    try:
        opts, kit_warnings = storagekit.expand(opts)
    except storagekit.KitError as e:
        raise PackError(str(e))
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
    from . import arch as archmod

    try:
        # /init, the module tree and every ELF program must be for one CPU (build.py runtime --arch).
        archmod.check_image(opts.init, init_data, opts.arch, opts.module_dir,
                            list(opts.binaries) + [src for src, _ in opts.adds], opts.host_only)
    except archmod.ArchError as e:
        raise PackError(str(e))

    tree = Tree(mtime=source_date_epoch())
    warnings = list(kit_warnings)
    modules = []
    try:
        base_tree(tree, init_data)
        base = {n: tree.get(n) for n in BASE_FILES}
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
            warnings.extend(add_program(tree, src, dest, resolver))
        if resolver is not None:
            warnings.extend(cache_only_warnings(resolver))
        warnings.extend(script_warnings(tree, programs))
        warnings.extend(shadowing(tree, base, opts))
        if opts.module_dir is not None:
            closure = add_modules(tree, opts, warnings, conf["modules"])
            modules = list(closure.modules)
        elif opts.modules or opts.host_only or opts.modprobe_d:
            flag = "--modules" if opts.modules else "--host-only" if opts.host_only else "--modprobe-d"
            raise PackError("%s needs a module tree: give --kernel-modules DIR or --kver VER" % flag)
        elif conf["modules"]:
            warnings.append("config \"modules\" (%s): no module tree given (--kernel-modules DIR or --kver "
                            "VER), so the image ships no modules; the agent can only use built-in ones"
                            % ", ".join(conf["modules"]))
        if opts.keymap:
            try:
                tree.add_file(contract.KEYMAP_PATH, keymap.load(opts.keymap), 0o644, source="--keymap")
            except keymap.KeymapError as e:
                raise PackError(str(e))
        for hook in opts.hooks:
            add_hook(tree, hook)
        try:
            storagekit.add_files(tree, opts)
        except storagekit.KitError as e:
            raise PackError(str(e))
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
        raise PackError("-o %s: %s" % (output, e.strerror or "directory %s does not exist" % output.parent))
    result.seconds = time.monotonic() - started
    return result
