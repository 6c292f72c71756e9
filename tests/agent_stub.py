"""A minimal recording syscall implementation over pyfakefs for the stage-level tests of issue 4's agent modules
(main, early, medium, toram, root, handoff, rescue, hooks). The whole-boot tests use the fake machine
(mpinit.testing); this stub lets each stage be tested alone, with every call recorded and any call made to fail.

Usage (inside a test taking pyfakefs's `fs` fixture):  sys_ = StubSys(fs); ... ; sys_.calls -> [(name, args)]."""

import errno
import os

from mpinit_agent import syscalls as _abi
from mpinit_agent import syscalls


class Exec(BaseException):
    """Raised by execv: the hand-off happened (BaseException, so the agent's failure path does not catch it)."""

    def __init__(self, path, argv):
        BaseException.__init__(self, path)
        self.path = path
        self.argv = argv


class StubSys:
    def __init__(self, fs, pid=1, ram_mb=1024, console=(), exit_codes=None):
        self.fs = fs
        self.pid = pid
        self.ram = ram_mb << 20
        self.calls = []
        self.mounts = []               # [(source, target, fstype, flags, data)]
        self.clock = 1000
        self.console_lines = list(console)
        self.prompts = []
        self.fail_at = {}              # name -> (errno, nth call or None for every call)
        self.counts = {}
        self.exit_codes = dict(exit_codes or {})   # argv[0] -> exit code
        self.loops = 0
        self.statfs_type = _abi.RAMFS_MAGIC
        self.saved = None
        for k in dir(_abi):
            if k.isupper():
                setattr(self, k, getattr(_abi, k))

    # plumbing
    def __enter__(self):
        self.saved = syscalls.use(self)
        return self

    def __exit__(self, *exc):
        syscalls.restore(self.saved)

    def fail(self, name, errno, nth=None):
        self.fail_at[name] = (errno, nth)

    def _call(self, name, *args):
        self.calls.append((name, args))
        n = self.counts.get(name, 0) + 1
        self.counts[name] = n
        if name in self.fail_at:
            errno, nth = self.fail_at[name]
            if nth is None or nth == n or (isinstance(nth, tuple) and n in nth):
                raise OSError(errno, os.strerror(errno))

    def names(self):
        return [c[0] for c in self.calls]

    # the interface
    def mount(self, source, target, fstype, flags=0, data=None):
        self._call("mount", source, target, fstype, flags, data)
        if flags & _abi.MS_MOVE:
            for i, m in enumerate(self.mounts):
                if m[1] == source:
                    self.mounts[i] = (m[0], target, m[2], m[3], m[4])
            return
        if not os.path.isdir(target):
            raise OSError(2, "No such file or directory", target)
        self.mounts.append((source, target, fstype, flags, data))

    def umount(self, target, flags=0):
        self._call("umount", target, flags)
        for i in range(len(self.mounts) - 1, -1, -1):
            if self.mounts[i][1] == target:
                del self.mounts[i]
                return
        raise OSError(22, "Invalid argument", target)

    def mounted(self, target):
        return [m for m in self.mounts if m[1] == target]

    def mknod(self, path, mode, dev):
        self._call("mknod", path, mode, dev)
        if os.path.exists(path):
            raise OSError(17, "File exists", path)
        self.fs.create_file(path)

    def makedev(self, ma, mi):
        return os.makedev(ma, mi)

    def major(self, dev):
        return os.major(dev)

    def minor(self, dev):
        return os.minor(dev)

    def symlink(self, target, path):
        self._call("symlink", target, path)
        os.symlink(target, path)

    def readlink(self, path):
        return os.readlink(path)

    def lstat(self, path):
        self._call("lstat", path)
        st = os.lstat(path)
        return (st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, st.st_size, 0, 0, 0)

    def chmod(self, path, mode):
        os.chmod(path, mode)

    def chown(self, path, uid, gid):
        pass

    def umask(self, mask):
        self._call("umask", mask)
        return 0o022

    def access(self, path, mode):
        return os.access(path, mode)

    def chroot(self, path):
        self._call("chroot", path)

    def chdir(self, path):
        self._call("chdir", path)

    def open(self, path, flags, mode=0o644):
        self._call("open", path, flags)
        if path.startswith("/dev/console") or path == "/dev/kmsg":
            return 7
        return os.open(path, flags & ~_abi.O_CLOEXEC & ~_abi.O_NOCTTY, mode)

    def close(self, fd):
        self._call("close", fd)
        if fd != 7:
            os.close(fd)

    def dup2(self, old, new):
        self._call("dup2", old, new)

    def read(self, fd, n):
        if fd == 7:
            raise OSError(errno.EAGAIN, "no new kernel log records")  # /dev/kmsg opened O_NONBLOCK, nothing new
        return os.read(fd, n)

    def lseek(self, fd, offset, whence):
        self._call("lseek", fd, offset, whence)
        if fd == 7:
            return 0
        return os.lseek(fd, offset, whence)

    def readahead(self, fd, offset, length):
        self._call("readahead", fd, offset, length)
        os.fstat(fd)   # EBADF for a closed descriptor, as fadvise64 gives

    def write(self, fd, data):
        return os.write(fd, data)

    def ioctl(self, fd, request, arg=0):
        self._call("ioctl", fd, request, bytes(arg) if isinstance(arg, bytearray) else arg)
        return 0

    def setsid(self):
        self._call("setsid")

    def set_ctty(self, fd):
        self._call("set_ctty", fd)

    def spawn(self, argv, env=None, stdin_data=None):
        self._call("spawn", list(argv))
        return 100 + self.counts["spawn"]

    def waitpid(self, pid, options=0):
        argv = [c[1][0] for c in self.calls if c[0] == "spawn"][pid - 101]
        code = self.exit_codes.get(argv[0], 0)
        return pid, (code & 0xFF) << 8

    def execv(self, path, argv):
        self._call("execv", path, list(argv))
        raise Exec(path, list(argv))

    def kill(self, pid, sig):
        pass

    def getpid(self):
        return self.pid

    def exit(self, code):
        self._call("exit", code)

    def load_module(self, path, params=""):
        self._call("load_module", path, params)

    def loop_attach(self, path, offset=0, sizelimit=0, read_only=True, autoclear=True):
        self._call("loop_attach", path, read_only, autoclear)
        dev = "/dev/loop%d" % self.loops
        self.loops += 1
        return dev

    def loop_detach(self, dev):
        self._call("loop_detach", dev)

    def reboot(self, how):
        self._call("reboot", how)

    def sync(self):
        self._call("sync")

    def statfs(self, path):
        self._call("statfs", path)
        return (self.statfs_type, 4096, 0, 0, 0)

    def sysinfo(self):
        return (self.clock // 1000, self.ram, self.ram // 2, 0, 0, 0, 0)

    def uname(self):
        return ("Linux", "stub", "6.1.0", "#1", "x86_64")

    def copy_range(self, fin, fout, count):
        self._call("copy_range", fin, fout, count)
        data = os.read(fin, count)
        os.write(fout, data)
        self.clock += 10
        return len(data)

    def copy_direct(self, fin, fout, count, bufsize):
        self._call("copy_direct", fin, fout, count, bufsize)
        data = os.read(fin, min(bufsize, (count + 4095) & ~4095))
        os.write(fout, data)
        self.clock += 10
        return len(data)

    def strerror(self, e):
        return os.strerror(e)

    def uptime_ms(self):
        return self.clock

    def sleep_ms(self, ms):
        self.clock += ms

    def readline(self, prompt):
        self.prompts.append(prompt)
        if not self.console_lines:
            raise EOFError
        line = self.console_lines.pop(0)
        if isinstance(line, BaseException):
            raise line
        return line

    # A machine without a network: every socket and interface call fails with EAFNOSUPPORT (97), as on a kernel
    # without CONFIG_INET (the fake machine, mpinit.testing.net, has a real one).
    def _no_net(self, *args):
        raise OSError(97, "no network in StubSys")

    socket = bind = connect = sendto = recvfrom = recv_into = recv_fill = setsockopt = poll = bind_netlink = _no_net
    if_hwaddr = if_flags = if_set_flags = if_set_addr = route_add = _no_net


def keep_log_state(monkeypatch):
    """log.setup() in a stage keeps /dev/kmsg open: inside pyfakefs that file object dies with the test, so each
    test that runs early.run() or the cmdline stage restores the log module's state afterwards."""
    from mpinit_agent import log

    for name in ("_kmsg", "_fallback", "_debug"):
        monkeypatch.setattr(log, name, getattr(log, name))
