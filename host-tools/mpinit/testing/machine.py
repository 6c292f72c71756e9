"""FakeMachine: a machine description (RAM, command line, disks, modules, hooks, programs, console input) and a
boot of the agent inside it. See docs/fake-machine.md for the user guide; kernel.py holds the running state."""

from __future__ import annotations

import contextlib
import errno as _errno
import hashlib
import inspect
import json
import os as _real_os
import stat
import traceback

from mpinit_agent import contract
from mpinit_agent import syscalls

from mpinit import kmod as _host_kmod

from . import images
from .kernel import FakeKernel, Halt, with_root_ids
from .net import FakeNet

EOF = None  # put in console_input: readline() raises EOFError there (Ctrl-D)
SILENCE = "<nothing typed>"  # put in console_input: a poll() of the console times out there (nobody at the keys)
_KO_MAGIC = b"\x7fELF mpinit-fake-module name="
_TAG_LEN = 16


class Executable:
    """A file with mode 0755 in a filesystem or the initramfs."""

    def __init__(self, data=b"", mode=0o755):
        self.data = data.encode() if isinstance(data, str) else bytes(data)
        self.mode = mode


class Symlink:
    def __init__(self, target):
        self.target = target


class Directory:
    def __init__(self, mode=0o755):
        self.mode = mode


class FilesystemImage:
    """A filesystem: its image bytes (a superblock blkid and the agent's probes recognise) and its files.

    Mounting a device or loop device whose bytes are exactly `data` shows `files`: the machine keeps a registry
    keyed by the SHA-256 of the bytes, so a copy (toram) still mounts and a corrupted copy does not."""

    def __init__(self, fstype, data, files, label=None, uuid=None):
        self.fstype = fstype
        self.kind = "vfat" if fstype in ("fat32", "fat16", "fat12") else fstype
        self.data = data
        self.files = dict(files or {})
        self.label = label
        self.uuid = uuid
        for key in self.files:
            if not isinstance(key, str) or not key.strip("/") or ".." in key.split("/"):
                raise ValueError("%s filesystem: file name %r: want a relative path like 'live/x'" % (fstype, key))

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        return "FilesystemImage(%r, label=%r, %d bytes, %d files)" % (self.fstype, self.label, len(self.data),
                                                                       len(self.files))

    def populate(self, fs, top):
        """Create the files under top (a mounted root directory)."""
        for rel in sorted(self.files):
            _create(fs, top.rstrip("/") + "/" + rel.strip("/"), self.files[rel], "%s file %r" % (self.fstype, rel))


def _create(fs, path, value, what):
    if isinstance(value, Directory):
        if not fs.exists(path):
            fs.create_dir(path, perm_bits=value.mode, apply_umask=False)
        return
    if isinstance(value, Symlink):
        fs.create_symlink(path, value.target)
        return
    mode = 0o100644
    if isinstance(value, Executable):
        mode, value = 0o100000 | value.mode, value.data
    elif isinstance(value, FilesystemImage):
        value = value.data
    elif isinstance(value, str):
        value = value.encode()
    if not isinstance(value, (bytes, bytearray)):
        raise ValueError("%s: want bytes, str, Executable, Symlink, Directory or a filesystem, not %r"
                         % (what, type(value).__name__))
    f = fs.create_file(path, st_mode=mode, apply_umask=False)
    f._byte_contents = bytes(value)
    f.st_size = len(value)


class Program:
    """A program spawn() can run: its exit status, console output, and an optional action(machine, argv, env)."""

    def __init__(self, path, exit_code=0, output="", action=None):
        self.path = path
        self.exit_code = exit_code
        self.output = output
        self.action = action

    def run(self, machine, argv, env, stdin_data=None):
        if self.output:
            machine._console_parts.append(self.output)
        if self.action is not None:
            if _takes_stdin(self.action):
                code = self.action(machine, argv, env, stdin_data)
            else:
                code = self.action(machine, argv, env)
            if code is not None:
                return code
        return self.exit_code


def _takes_stdin(action):
    """An action(machine, argv, env, stdin) with a fourth parameter gets the bytes spawn() fed to stdin."""
    try:
        return len(inspect.signature(action).parameters) >= 4
    except (TypeError, ValueError):
        return False


class _Disk:
    def __init__(self, name, data, table, removable, driver, modalias, appear_after_ms, ro, devdir):
        self.name = name
        self.data = data
        self.table = table
        self.removable = removable
        self.driver = driver
        self.modalias = modalias
        self.appear_after_ms = appear_after_ms
        self.ro = ro
        self.devdir = devdir


class BootResult:
    """What a boot did. Paths are in the fake's global namespace (a new root mounted at /sysroot stays there)."""

    def __init__(self, machine, kernel, halt, error):
        self._fs = kernel.fs
        how = halt.how if halt else None
        self.handed_off = how == "execv"
        self.init = halt.detail[0] if self.handed_off else None
        self.argv = halt.detail[1] if self.handed_off else None
        self.root = kernel.root_label if self.handed_off else None
        self.reboot = halt.detail if how == "reboot" else None
        self.exit_code = halt.detail if how == "exit" else None
        self.stuck = how == "stuck"            # console input ran out (in the rescue REPL, normally)
        self.rescue = machine._rescue          # the console was read from: the REPL (or a prompt) was entered
        self.error = error                     # traceback text when the agent raised (PID 1 died: a panic)
        self.returned = halt is None and error is None  # start() returned: PID 1 would have exited
        self.panic = error is not None or how == "exit" or self.returned
        self.mounts = [m.entry() for m in kernel.mounts]
        self.mount_log = list(kernel.mount_log)
        self.loaded_modules = list(kernel.loaded)
        self.module_params = dict(kernel.module_params)
        self.console = "".join(machine._console_parts)
        self.kmsg = "".join(kernel.kmsg_parts).splitlines()
        self.calls = list(machine._calls)
        self.spawned = list(kernel.spawned)
        self.stdin_fed = list(kernel.stdin_fed)
        self.unknown_programs = list(kernel.unknown_programs)
        self.leaked_fds = list(kernel.leaked_fds)   # [(program, fd, path)] inherited without O_CLOEXEC
        self.uptime_ms = kernel.clock
        self.devices = list(kernel.devices)
        self.initramfs_left = _rootfs_paths(kernel)

    def __repr__(self):
        state = ("handed off to %s in %s" % (self.init, self.root) if self.handed_off else
                 "reboot=%s" % self.reboot if self.reboot else "stuck in rescue" if self.stuck else
                 "panic" if self.panic else "?")
        return "<BootResult %s>" % state

    def calls_to(self, name):
        """The argument tuples of every call of one syscall, in order."""
        return [args for n, args in self.calls if n == name]

    def mount_at(self, target):
        """The mount table entry (source, target, fstype, flags, data) on target (the top one), or None."""
        for m in reversed(self.mounts):
            if m[1] == target:
                return m
        return None

    def exists(self, path):
        return self._fs.exists(path)

    def read(self, path):
        """A file's bytes in the fake after the boot."""
        obj = self._fs.resolve(path)
        data = obj.byte_contents
        if data is None:
            raise IsADirectoryError(_errno.EISDIR, "is a directory", path)
        return data

    def listdir(self, path):
        return sorted(self._fs.resolve(path).entries)


class FakeMachine:
    """A machine description; boot() runs the agent in it. See docs/fake-machine.md."""

    EOF = EOF
    SILENCE = SILENCE
    DEFAULT_BUILTIN = ("loop", "squashfs", "overlay", "isofs", "vfat", "ext4", "exfat", "btrfs", "xfs", "msdos")

    def __init__(self, cmdline="", ram_mb=1024, config=None, kver="6.1.0-fake", builtin=DEFAULT_BUILTIN,
                 devtmpfs=True, fs=None):
        if not isinstance(cmdline, str):
            raise ValueError("cmdline: want a str, not %r" % (cmdline,))
        if not isinstance(ram_mb, (int, float)) or ram_mb <= 0:
            raise ValueError("ram_mb: want a positive number, not %r" % (ram_mb,))
        self.cmdline = cmdline
        self.ram_mb = ram_mb
        self.config = config
        self.kver = kver
        self.builtin = [b.replace("-", "_") for b in builtin]
        self.devtmpfs = devtmpfs
        self.console_input = []
        self._fs = fs
        self._patcher = None
        self._disks = []
        self._images = {}
        self._modules = {}
        self._module_options = {}
        self._hooks = []
        self._programs = {}
        self._files = {}
        self._faults = []
        self._calls = []
        self._console_parts = []
        self._rescue = False
        self._serial = 0
        self.kernel = None
        self._saved = None
        self.net = FakeNet()        # NICs, DHCP/DNS/HTTP servers (net.py)
        self.sys_files = {}         # more /sys entries, relative path -> ("f", text) | ("d",) (replay.py)

    # ------------------------------------------------------------------ describing the machine

    def executable(self, data=b"", mode=0o755):
        return Executable(data, mode)

    def symlink(self, target):
        return Symlink(target)

    def directory(self, mode=0o755):
        return Directory(mode)

    def filesystem(self, fstype, label=None, uuid=None, files=None, size=1 << 20, data=None):
        """A filesystem image (synthetic superblock from mpinit.testing.images, or your own bytes as data=)
        holding files: {relative path: bytes | str | executable() | symlink() | directory() | filesystem}."""
        if data is None:
            data = images.filesystem(fstype, label=label, uuid=uuid, size=size)
            if len(data) >= 65536 and data[-_TAG_LEN:] == bytes(_TAG_LEN):
                # Two images with equal superblocks (a squashfs has no UUID) would be one filesystem to the
                # registry: a tag in the unused tail keeps each distinct; no prober reads there.
                self._serial += 1
                tag = hashlib.sha256(b"%d:%s" % (self._serial, _real_os.urandom(8))).digest()[:_TAG_LEN]
                data = data[:-_TAG_LEN] + tag
        img = FilesystemImage(fstype, bytes(data), files, label=label, uuid=uuid)
        self._images[hashlib.sha256(img.data).digest()] = img
        return img

    def squashfs(self, files=None, size=1 << 20):
        return self.filesystem("squashfs", files=files, size=size)

    def partition(self, data, partlabel=None, partuuid=None, type=None, bootable=False):
        if isinstance(data, FilesystemImage):
            data = data.data
        return images.Partition(data, partlabel=partlabel, partuuid=partuuid, type=type, bootable=bootable)

    def add_disk(self, name, content, table=None, removable=False, driver=None, modalias=None, appear_after_ms=0,
                 ro=False, disk_uuid=None, signature=None, size=None):
        """A disk: content is a filesystem (no table), raw bytes, or a list of partition() (table "gpt"/"mbr").

        driver: the module that makes it appear (None: always there); appear_after_ms: how long after the
        driver's load (or the boot) it shows up, in virtual time."""
        if not name or "/" in name or any(d.name == name for d in self._disks):
            raise ValueError("disk name %r: want a new kernel device name like 'sda'" % (name,))
        if isinstance(content, (list, tuple)):
            table = table or "gpt"
            kw = {"disk_uuid": disk_uuid} if table == "gpt" else {"signature": signature}
            data = images.disk(content, table="dos" if table == "mbr" else table, size=size, **kw)
        elif table is not None:
            raise ValueError("disk %s: table=%r needs a list of partition()" % (name, table))
        elif isinstance(content, FilesystemImage):
            data = content.data
        elif isinstance(content, (bytes, bytearray)):
            data = bytes(content)
        else:
            raise ValueError("disk %s: content must be a filesystem, bytes or a list of partition(), not %r"
                             % (name, type(content).__name__))
        if not isinstance(appear_after_ms, int) or appear_after_ms < 0:
            raise ValueError("disk %s: appear_after_ms=%r: want an int >= 0" % (name, appear_after_ms))
        devdir = "devices/pci0000:00/0000:00:%02x.0" % (len(self._disks) + 3)
        self._disks.append(_Disk(name, data, table, removable, driver, modalias, appear_after_ms, ro, devdir))
        if self.kernel is not None:
            self.kernel.tick()
        return data

    def add_module(self, name, depends=(), aliases=(), builtin=False, softdep_pre=(), softdep_post=(),
                   path=None, options=None):
        """A kernel module: shipped in the image (a .ko the fake recognises) or built into the kernel."""
        name = name.replace("-", "_")
        if builtin:
            if name not in self.builtin:
                self.builtin.append(name)
            return
        if path is None:
            path = "%s/%s/kernel/%s.ko" % (contract.MODULES_DIR, self.kver, name)
        self._modules[name] = {"name": name, "path": path, "depends": [d.replace("-", "_") for d in depends],
                               "softdep_pre": list(softdep_pre), "softdep_post": list(softdep_post),
                               "aliases": list(aliases)}
        if options:
            self._module_options[name] = options

    def add_nic(self, name, mac=None, driver=None, modalias=None, carrier=True, carrier_after_ms=0,
                appear_after_ms=0):
        """An Ethernet interface (net.Nic): present once `driver` is loaded (None: at once), plus appear_after_ms;
        carrier_after_ms after its link is brought up it has a carrier (never with carrier=False)."""
        return self.net.add_nic(name, mac, driver, modalias, carrier, carrier_after_ms, appear_after_ms)

    def add_http_server(self, ip, port=80):
        """A web server at ip:port (net.HttpServer); `.serve(path, data, ...)` scripts what it answers."""
        return self.net.add_http_server(ip, port)

    def add_hook(self, name, source):
        if "/" in name or not name.endswith(".py"):
            raise ValueError("hook name %r: want a file name ending in .py" % (name,))
        self._hooks.append((name, source))

    def add_program(self, path, exit_code=0, output="", action=None):
        """An executable in the initramfs; spawn() of it prints output, runs action(machine, argv, env) and
        exits with action's return value, else exit_code."""
        if not path.startswith("/"):
            raise ValueError("program path %r: want an absolute path" % (path,))
        self._programs[path] = Program(path, exit_code, output, action)

    def add_file(self, path, content):
        """Any file in the initramfs (bytes, str, executable(), symlink(), directory())."""
        if not path.startswith("/"):
            raise ValueError("initramfs file %r: want an absolute path" % (path,))
        self._files[path] = content

    def fail(self, name, errno, when=None, times=None, skip=0, kmsg=()):
        """Make syscall `name` raise OSError(errno): for calls where when(*args) is true (args as the
        interface lists them, defaults filled in), after `skip` such calls, `times` times (None: always).
        kmsg: lines the kernel logs (KERN_ERR) each time the fault fires, e.g. "EXT4-fs (vda1): bad geometry: ..."."""
        if name not in syscalls.NAMES:
            raise ValueError("fail(%r): not a syscall (one of %s)" % (name, ", ".join(syscalls.NAMES)))
        if isinstance(kmsg, str):
            kmsg = [kmsg]
        self._faults.append({"name": name, "errno": errno, "when": when, "times": times, "skip": skip,
                             "kmsg": list(kmsg)})

    # ------------------------------------------------------------------ running it

    def _module_by_content(self, data):
        if data.startswith(_KO_MAGIC):
            name = data[len(_KO_MAGIC):].split(b"\n")[0].decode()
            if name in self._modules:
                return name
        return None

    def _build_initramfs(self, fs):
        for d in contract.IMAGE_DIRS:
            if not fs.exists(d):
                fs.create_dir(d)
        if not fs.exists("/dev/console"):
            self.kernel._chardev("/dev/console", 5, 1)
        if self.config is not None:
            text = self.config if isinstance(self.config, str) else json.dumps(self.config)
            fs.create_file(contract.CONFIG_PATH, contents=text)
        for name, source in self._hooks:
            fs.create_file(contract.HOOKS_DIR + "/" + name, contents=source)
        for path, prog in self._programs.items():
            if not fs.exists(path):
                _create(fs, path, Executable(b"#!fake-program\n"), "program %s" % path)
        for path, content in self._files.items():
            _create(fs, path, content, "initramfs file %s" % path)
        for disk in self._disks:
            if disk.driver and disk.driver not in self._modules and disk.driver not in self.builtin:
                raise ValueError("disk %s: driver %r is neither add_module()d nor built in" % (disk.name, disk.driver))
        for nic in self.net.nics:
            if nic.driver and nic.driver not in self._modules and nic.driver not in self.builtin:
                raise ValueError("NIC %s: driver %r is neither add_module()d nor built in" % (nic.name, nic.driver))
        mods = list(self._modules.values())
        for m in mods:
            fs.create_file(m["path"], contents=_KO_MAGIC + m["name"].encode() + b"\n")
        fs.create_file(contract.MODULES_TABLE_PATH, contents=_host_kmod.make_table(
            self.kver, _load_order(mods), builtin=self.builtin, options=self._module_options))

    def start(self):
        """Build the initramfs in the fake filesystem and plug the fake kernel into mpinit_agent.syscalls."""
        if self.kernel is not None:
            raise RuntimeError("this fake machine is already running")
        if self._fs is None:
            from pyfakefs.fake_filesystem_unittest import Patcher

            preload_agent()
            self._patcher = Patcher()
            self._patcher.setUp()
            self._fs = self._patcher.fs
        reset_agent_state()
        with_root_ids()
        self.kernel = FakeKernel(self, self._fs)
        try:
            self._build_initramfs(self._fs)
            self.kernel.tick()
        except BaseException:
            self._teardown()
            raise
        self._saved = syscalls.use(_Impl(self))
        return self.kernel

    def run(self, fn, *args):
        """Run fn inside the machine as PID 1 runs: console captured; the end of the machine (execv, reboot,
        exit, console input exhausted) and any exception are caught and recorded. Returns the Halt or None."""
        writer = _ConsoleWriter(self._console_parts)
        halt = None
        try:
            with contextlib.redirect_stdout(writer), contextlib.redirect_stderr(writer):
                fn(*args)
        except Halt as h:
            halt = h
        except SystemExit as e:
            halt = Halt("exit", e.code)
        except Exception:
            self._error = traceback.format_exc()
            self._console_parts.append(self._error)
        if halt is not None:
            self.kernel.ended = halt
        return halt

    def stop(self):
        """Unplug the fake kernel (restoring syscalls) and return the BootResult."""
        if self.kernel is None:
            raise RuntimeError("this fake machine is not running")
        kernel = self.kernel
        result = BootResult(self, kernel, kernel.ended, getattr(self, "_error", None))
        self._teardown()
        return result

    def _teardown(self):
        if self._saved is not None:
            syscalls.restore(self._saved)
            self._saved = None
        from pyfakefs import helpers

        helpers.reset_ids()
        if self._patcher is not None:
            self._patcher.tearDown()
            self._patcher = None
        self.kernel = None

    def boot(self, entry=None):
        """Run the agent's boot (mpinit_agent.main.start, or entry) in this machine; never raises for a boot
        failure: the BootResult says how it ended."""
        if entry is None:
            from mpinit_agent import main

            entry = main.start
        self.start()
        try:
            self.run(entry)
        finally:
            result = self.stop()
        return result


def preload_agent():
    """Import every agent module before a pyfakefs Patcher starts.

    pyfakefs deletes from sys.modules what was first imported while it patched, but the package attribute
    (mpinit_agent.kmod) survives: the next test's `from mpinit_agent import kmod` would get that stale module,
    whose `os` is the previous test's fake. Imported beforehand, each module is patched and restored properly.
    A module that fails to import (work in progress) is left for its own tests to report."""
    import importlib
    import pkgutil

    import mpinit_agent

    for info in pkgutil.iter_modules(mpinit_agent.__path__):
        name = "mpinit_agent." + info.name
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - reported when the module is used
            continue
        if name not in _PRISTINE and info.name != "syscalls":
            _PRISTINE[name] = _data_globals(module)


# Module-level state of each agent module as first imported: every boot is a fresh PID 1, so start() puts it back
# and one boot's state never leaks into the next (blockdev's probe cache, log's open /dev/kmsg and debug flag).
# What is restored: containers (dict, list, set, bytearray) refilled in place when still the same object, and
# names that the module's functions assign with `global` (STORE_GLOBAL). Constants (a `_POLL_MS`) are neither,
# so a test may monkeypatch them.
_PRISTINE = {}
_CONTAINERS = (dict, list, set, bytearray)


def _runtime_globals(module):
    """Names the module's functions assign through a `global` statement."""
    import dis
    import types

    path = getattr(module, "__file__", None)
    if not path or not path.endswith(".py"):
        return set()
    try:
        with open(path, encoding="utf-8") as f:
            code = compile(f.read(), path, "exec")
    except (OSError, SyntaxError):
        return set()
    names = set()
    todo = [c for c in code.co_consts if isinstance(c, types.CodeType)]
    while todo:
        co = todo.pop()
        for ins in dis.get_instructions(co):
            if ins.opname in ("STORE_GLOBAL", "DELETE_GLOBAL"):
                names.add(ins.argval)
        todo.extend(c for c in co.co_consts if isinstance(c, types.CodeType))
    return names


def _data_globals(module):
    import copy

    assigned = _runtime_globals(module)
    out = {}
    for key, value in vars(module).items():
        if key.startswith("__"):
            continue
        if isinstance(value, _CONTAINERS):
            try:
                out[key] = ("fill", value, copy.deepcopy(value))
            except Exception:  # noqa: BLE001 - not copyable: left as it is
                pass
        elif key in assigned:
            out[key] = ("set", None, value)
    for key in assigned:
        if key not in out and key not in vars(module):
            out[key] = ("del", None, None)   # first assigned at run time
    return out


def reset_agent_state():
    """Give every agent module its first-import state back (a fresh PID 1 for each boot)."""
    import copy
    import sys

    for name, saved in _PRISTINE.items():
        module = sys.modules.get(name)
        if module is None:
            continue
        for key, (how, original, value) in saved.items():
            if how == "set":
                setattr(module, key, value)
            elif how == "del":
                if hasattr(module, key):
                    delattr(module, key)
            elif getattr(module, key, None) is original:    # "fill": not replaced by the test itself
                fresh = copy.deepcopy(value)
                if isinstance(original, (dict, set)):
                    original.clear()
                    original.update(fresh)
                else:
                    original[:] = fresh


def _rootfs_paths(kernel):
    """Every path still in the initramfs (the rootfs mount, wherever it ended up: covered by the new root after a
    switch_root), not descending into other mounts: what the hand-off's cleanup left behind."""
    rootfs = kernel.mounts[0]
    top = rootfs.root          # the initramfs's root directory object stays the same through MS_MOVE onto /
    idev = rootfs.mp["idev"]
    out = []

    covered = {}
    for m in kernel.mounts:
        if m.covered is not None:
            covered[id(m.root)] = m.covered

    def walk(d, prefix):
        for name, obj in sorted(d.entries.items()):
            while obj.st_dev != idev and id(obj) in covered:
                obj = covered[id(obj)]      # a mount point: what it hides is still in the initramfs
            if obj.st_dev != idev:
                continue        # another filesystem's root
            path = prefix + "/" + name
            out.append(path)
            if stat.S_ISDIR(obj.st_mode):
                walk(obj, path)

    walk(top, "")
    return out


def _load_order(mods):
    """Dependencies first, as make_table wants."""
    by = {m["name"]: m for m in mods}
    out, seen = [], set()

    def visit(m, depth=0):
        if m["name"] in seen or depth > len(mods):
            return
        for d in m["depends"]:
            if d in by:
                visit(by[d], depth + 1)
        seen.add(m["name"])
        out.append(m)

    for m in mods:
        visit(m)
    return out


class _ConsoleWriter:
    """sys.stdout/stderr while booting: everything printed lands in the console text."""

    encoding = "utf-8"

    def __init__(self, parts):
        self.parts = parts

    def write(self, s):
        self.parts.append(s if isinstance(s, str) else s.decode("utf-8", "replace"))
        return len(s)

    def flush(self):
        pass

    def isatty(self):
        return True


class _Impl:
    """The object given to syscalls.use(): each name records the call, applies injected faults, then runs the
    fake kernel's method."""

    def __init__(self, machine):
        kernel = machine.kernel
        for name in syscalls.NAMES:
            setattr(self, name, self._wrap(machine, kernel, name, getattr(kernel, name)))
        for name in dir(syscalls):
            if name.isupper() and not hasattr(self, name):
                setattr(self, name, getattr(syscalls, name))

    @staticmethod
    def _wrap(machine, kernel, name, method):
        sig = inspect.signature(method)

        def call(*args, **kw):
            try:
                bound = sig.bind(*args, **kw)
            except TypeError as e:
                raise TypeError("syscalls.%s: %s" % (name, e)) from None
            bound.apply_defaults()
            full = tuple(bound.arguments.values())
            machine._calls.append((name, full))
            if kernel.ended is not None:
                raise kernel.ended      # the machine is off: nothing runs after execv/reboot/exit
            for f in machine._faults:
                if f["name"] != name or f["times"] == 0:
                    continue
                if f["when"] is not None and not f["when"](*full):
                    continue
                if f["skip"] > 0:
                    f["skip"] -= 1
                    continue
                if f["times"] is not None:
                    f["times"] -= 1
                for line in f.get("kmsg", ()):
                    kernel.klog.log(line)
                raise OSError(f["errno"], _real_os.strerror(f["errno"]))
            try:
                return method(*args, **kw)
            except Halt as h:
                kernel.ended = h
                raise
            finally:
                if kernel.ended is None:
                    kernel.refresh()    # /proc/meminfo, /proc/uptime, ... current at every step

        call.__name__ = name
        return call
