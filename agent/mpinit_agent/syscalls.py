# The agent's one boundary to the kernel: every syscall, clock and console read the agent makes goes through here.
#
# On MicroPython this module is the only importer of the native C module `_linux` (agent/native/). On CPython
# there is no `_linux`; a replacement implementation is plugged in with use(impl): the fake machine
# (mpinit.testing) does that, so the whole boot runs on a laptop against a fake filesystem.
#
# Rules for agent code:
#   - import this module and call through it: `from mpinit_agent import syscalls as sc; sc.mount(...)`.
#     Never `from mpinit_agent.syscalls import mount`: use() rebinds the module's globals, and a copied name
#     would keep pointing at the old implementation.
#   - files are read and written with plain open()/os (MicroPython's VfsPosix; pyfakefs on CPython); what those
#     lack (lstat, readlink, symlink, mknod, chmod, ...) is here.
#   - every function raises OSError(errno) on failure (with the path as second argument where there is one).
#
# The interface (an implementation given to use() provides every name in NAMES, constants included):
#
#   mount(source, target, fstype, flags=0, data=None)   mount(2); source/fstype/data may be None
#   umount(target, flags=0)                              umount2(2); flags e.g. MNT_DETACH
#   mknod(path, mode, dev)                               mknod(2); mode includes S_IFCHR/S_IFBLK; dev=makedev()
#   makedev(major, minor) / major(dev) / minor(dev)      glibc/musl semantics (sys/sysmacros.h)
#   symlink(target, path) / readlink(path) -> str
#   lstat(path) -> (mode, ino, dev, nlink, uid, gid, size, atime, mtime, ctime)   as os.stat, not following links
#   chmod(path, mode) / chown(path, uid, gid) / umask(mask) -> previous mask
#   access(path, mode) -> bool                           access(2) with R_OK/W_OK/X_OK/F_OK
#   chroot(path) / chdir(path)
#   open(path, flags, mode=0o644) -> fd / close(fd) / dup2(old, new) / read(fd, n) -> bytes / write(fd, data) -> n
#   lseek(fd, offset, whence) -> new offset             lseek(2), whence SEEK_SET/SEEK_CUR/SEEK_END (on /dev/kmsg
#                                                        SEEK_END = after the last record: kernlog.py)
#   readahead(fd, offset, length)                        posix_fadvise(2) POSIX_FADV_WILLNEED: queue the reads of
#                                                        that range into the page cache, return without waiting
#   ioctl(fd, request, arg=0) -> int                     arg: int, or a bytearray passed by pointer (in/out)
#   setsid() / set_ctty(fd)                              setsid(2) / ioctl(fd, TIOCSCTTY, 1)
#   spawn(argv, env=None, stdin_data=None) -> pid        fork + execve(argv[0]); child exits 127 if exec fails;
#                                                        stdin_data (bytes): the child's stdin is a pipe holding
#                                                        them, then EOF (a secret for `cryptsetup --key-file=-`;
#                                                        at most a pipe's 64 KiB, written before the wait)
#   waitpid(pid, options=0) -> (pid, status)             wait status as the kernel gives it (see exit_code())
#   execv(path, argv)                                    replaces this process (the hand-off to the real init)
#   kill(pid, sig) / getpid() -> int / exit(code)        exit is _exit(2): no atexit, no flushing
#   load_module(path, params="")                         finit_module(2), init_module(2) fallback on ENOSYS
#   loop_attach(path, offset=0, sizelimit=0, read_only=True, autoclear=True) -> "/dev/loopN"
#                                                        LOOP_CTL_GET_FREE + LOOP_CONFIGURE, falling back to
#                                                        LOOP_SET_FD + LOOP_SET_STATUS64 on kernels before 5.8
#   loop_detach(loopdev)                                 LOOP_CLR_FD
#   reboot(how)                                          how: RB_POWER_OFF, RB_AUTOBOOT (restart), RB_HALT_SYSTEM
#   sync()
#   statfs(path) -> (f_type, f_bsize, f_blocks, f_bfree, f_bavail)
#   sysinfo() -> (uptime_s, totalram, freeram, sharedram, bufferram, totalswap, freeswap)   bytes
#   uname() -> (sysname, nodename, release, version, machine)
#   copy_range(in_fd, out_fd, count) -> n                copy_file_range(2), sendfile(2) fallback; 0 at EOF
#   copy_direct(in_fd, out_fd, count, bufsize) -> n      read/write through a page-aligned buffer (in_fd opened
#                                                        O_DIRECT); may copy up to 4095 bytes past count; 0 at EOF
#   strerror(errno) -> str
#   uptime_ms() -> int                                   CLOCK_BOOTTIME in ms (the kernel's printk clock)
#   sleep_ms(ms)
#   readline(prompt) -> str                              one console line without "\n"; EOFError at end of input
#   Network (agent/native/netsys.c; addresses are "a.b.c.d" strings, socket addresses (address, port)):
#   socket(family, type, proto=0) -> fd                  close-on-exec; close() it like any fd
#   bind(fd, addr) / setsockopt(fd, level, option, value)   value an int or a str/bytes (SO_BINDTODEVICE)
#   bind_netlink(fd, groups)                             a netlink socket to multicast groups (uevents: group 1)
#   connect(fd, addr, timeout_ms)                        TCP connect, ETIMEDOUT after timeout_ms
#   sendto(fd, data, addr=None) -> n                     None: on a connected socket; EPIPE, never SIGPIPE
#   recvfrom(fd, n) -> (bytes, addr or None) / recv_into(fd, buf) -> n   0 / b"": the peer closed
#   recv_fill(fd, buf, want, timeout_ms, out_fd=-1) -> n   receive until buf holds want bytes: n >= want; 0 <= n <
#                                                        want the peer closed; n < 0 nothing for timeout_ms after -n
#                                                        bytes; OSError(ETIMEDOUT) nothing at all; out_fd >= 0: each
#                                                        piece also written there, OSError(errno, out_fd) (netsys.c)
#   poll(fd, events, timeout_ms) -> revents              POLLIN and the kernel's POLLERR/POLLHUP; 0 after the timeout
#   if_hwaddr(name) -> bytes(6) / if_flags(name) -> IFF_* (IFF_RUNNING = carrier)
#   if_set_flags(name, flags) / if_set_addr(name, address, netmask)   OSError(errno, name) on failure
#   route_add(dest, netmask, gateway, name)              SIOCADDRT; gateway None: on-link; "0.0.0.0" x2: default
#   sha512([data]) -> object with update(data), digest() (native only: MicroPython's hashlib lacks it; CPython
#                                                        code uses hashlib.sha512, so use() does not replace it)
#   crc32(data, crc=0) -> int / crc32c(data, crc) -> int   (native only, agent/native/crc.c: zlib.crc32's semantics /
#                                                        the raw CRC-32C; probe.py falls back to Python without them)
#
# Constants (values from the kernel headers via `_linux`; linux_abi.py holds the same values for CPython and a test
# checks them against the native module): MS_*, MNT_DETACH, MNT_FORCE, S_IF*, O_*, R_OK/W_OK/X_OK/F_OK,
# SEEK_*, RB_*, LOOP_*, KDSKBENT, TIOCSCTTY, TCGETS/TCSETS/ECHO/ICANON, *_MAGIC (statfs f_type), SIG*, E* (errno values MicroPython's errno lacks).

try:
    from _linux import *  # noqa: F401,F403  (MicroPython: the native module)
    import _linux
    _NATIVE = True
except ImportError:  # CPython: constants here, functions from use()
    from .linux_abi import *  # noqa: F401,F403
    _linux = None
    _NATIVE = False

NAMES = (
    "mount", "umount", "mknod", "makedev", "major", "minor", "symlink", "readlink", "lstat", "chmod", "chown",
    "umask", "access", "chroot", "chdir", "open", "close", "dup2", "read", "write", "ioctl", "setsid", "set_ctty",
    "spawn", "waitpid", "execv", "kill", "getpid", "exit", "load_module", "loop_attach", "loop_detach", "reboot",
    "sync", "statfs", "sysinfo", "uname", "copy_range", "strerror", "uptime_ms", "sleep_ms", "readline",
    "socket", "bind", "connect", "sendto", "recvfrom", "recv_into", "recv_fill", "setsockopt", "poll", "if_hwaddr",
    "if_flags", "if_set_flags", "if_set_addr", "route_add", "lseek", "bind_netlink",
    "copy_direct", "readahead",
)


def use(impl):
    """Plug in an implementation of the interface above (an object or module with every name in NAMES).

    Returns the previous implementation's functions as a dict, so a caller can restore them with restore()."""
    g = globals()
    old = {}
    for name in NAMES:
        old[name] = g.get(name)
        g[name] = getattr(impl, name)
    return old


def restore(saved):
    g = globals()
    for name in saved:
        g[name] = saved[name]


def exit_code(status):
    """The exit code of a wait status, or -signal when the child was killed (WIFEXITED/WTERMSIG of wait(2))."""
    if status & 0x7F == 0:
        return (status >> 8) & 0xFF
    return -(status & 0x7F)


def _missing(*args, **kw):
    raise OSError(38, "no syscall implementation: call mpinit_agent.syscalls.use() first")  # ENOSYS


if _NATIVE:
    import builtins  # this module's own open() is the native one
    import time

    def spawn(argv, env=None, stdin_data=None):
        rfd = wfd = -1
        if stdin_data is not None:
            rfd, wfd = _linux.pipe()
        pid = _linux.fork()
        if pid == 0:
            try:
                if rfd >= 0:
                    _linux.dup2(rfd, 0)
                if env is None:
                    _linux.execv(argv[0], argv)
                else:
                    _linux.execve(argv[0], argv, env)
            finally:
                _linux._exit(127)
        if rfd >= 0:
            _linux.close(rfd)
            try:
                view = memoryview(stdin_data)
                while len(view):  # a pipe holds 64 KiB (pipe(7)): a secret fits, so this never blocks on us
                    view = view[_linux.write(wfd, view):]
            except OSError:
                # The child exited without reading: EPIPE (SIGPIPE is not delivered to PID 1 without a handler,
                # kernel/signal.c SIGNAL_UNKILLABLE); its exit code tells the caller.
                pass
            finally:
                _linux.close(wfd)
        return pid

    def exit(code):
        _linux._exit(code)

    def load_module(path, params=""):
        fd = _linux.open(path, O_RDONLY | O_CLOEXEC)
        try:
            _linux.finit_module(fd, params, 0)
        except OSError as e:
            if e.args[0] != ENOSYS:
                raise
            # Kernels without finit_module(2) (before 3.8): hand over the bytes instead.
            with builtins.open(path, "rb") as f:
                _linux.init_module(f.read(), params)
        finally:
            _linux.close(fd)

    def readline(prompt):
        return input(prompt)

    def sleep_ms(ms):
        time.sleep_ms(ms)
else:
    for _name in NAMES:
        globals()[_name] = _missing
