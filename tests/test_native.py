"""The native module `_linux` (agent/native/modlinux.c), run inside the built binary.

Bad input: every call raises OSError with the expected errno (and the path where there is one), TypeError or
ValueError, and the interpreter carries on. Good input: results checked against CPython's os module and /proc.
Mounts, device nodes and loop devices for real inside a private mount namespace (unshare, util-linux)."""

import os
import subprocess
import textwrap

import pytest

from conftest import require_tools
from mpinit_agent import linux_abi as abi

pytestmark = pytest.mark.runtime

E = abi  # errno values live in linux_abi (checked against _linux by test_linux_abi.py)


def mpy(binary, code, *, prefix=(), cwd=None, timeout=60):
    """Run code in the binary (optionally under a prefix command such as unshare); returns the process."""
    argv = list(prefix) + [str(binary), "-c", textwrap.dedent(code)]
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          stdin=subprocess.DEVNULL)


PROBE = """
import _linux as L
try:
    r = {expr}
    print("RETURNED", repr(r))
except OSError as e:
    print("OSError", e.args[0], repr(e.args[1:]))
except TypeError as e:
    print("TypeError")
except ValueError as e:
    print("ValueError")
print("ALIVE")
"""


@pytest.fixture
def files(tmp_path):
    reg = tmp_path / "regular"
    reg.write_text("data")
    (tmp_path / "dir").mkdir()
    return tmp_path


# (expression, expected): expected is "TypeError", "ValueError", ("OSError", errno) or ("OSError", errno, path).
# {t} is replaced by a temporary directory holding "regular" (a file) and "dir".
BAD_INPUT = [
    ("L.mount(None, '/nonexistent/mp', 'tmpfs')", ("OSError", E.ENOENT, "/nonexistent/mp")),
    ("L.mount(1, '/nonexistent', 'tmpfs')", "TypeError"),
    ("L.mount(None, '/nonexistent', 'tmpfs', 'ro')", "TypeError"),
    ("L.mount(None, '/nonexistent', 'tmpfs', 0, 5)", "TypeError"),
    ("L.mount(None, '/a\\x00b', 'tmpfs')", "ValueError"),
    ("L.umount('/nonexistent/mp')", ("OSError", E.ENOENT, "/nonexistent/mp")),
    ("L.umount('{t}/dir')", ("OSError", E.EINVAL, "{t}/dir")),
    ("L.umount('{t}/dir', 'x')", "TypeError"),
    ("L.mknod('/nonexistent/n', L.S_IFCHR | 0o600, L.makedev(1, 3))", ("OSError", E.ENOENT, "/nonexistent/n")),
    ("L.mknod('{t}/regular', L.S_IFCHR | 0o600, L.makedev(1, 3))", ("OSError", E.EEXIST, "{t}/regular")),
    ("L.mknod('{t}/n', 'x', 0)", "TypeError"),
    ("L.makedev('a', 1)", "TypeError"),
    ("L.makedev(-1, 0)", "ValueError"),
    ("L.major('x')", "TypeError"),
    ("L.minor(None)", "TypeError"),
    ("L.symlink('t', '/nonexistent/l')", ("OSError", E.ENOENT, "/nonexistent/l")),
    ("L.symlink('t', '{t}/regular')", ("OSError", E.EEXIST, "{t}/regular")),
    ("L.symlink(None, '{t}/l')", "TypeError"),
    ("L.readlink('{t}/regular')", ("OSError", E.EINVAL, "{t}/regular")),
    ("L.readlink('/nonexistent')", ("OSError", E.ENOENT, "/nonexistent")),
    ("L.lstat('/nonexistent')", ("OSError", E.ENOENT, "/nonexistent")),
    ("L.lstat('{t}/regular/x')", ("OSError", E.ENOTDIR, "{t}/regular/x")),
    ("L.lstat(None)", "TypeError"),
    ("L.chmod('/nonexistent', 0o644)", ("OSError", E.ENOENT, "/nonexistent")),
    ("L.chmod('{t}/regular', '644')", "TypeError"),
    ("L.chown('/nonexistent', 0, 0)", ("OSError", E.ENOENT, "/nonexistent")),
    ("L.umask('x')", "TypeError"),
    ("L.access('/nonexistent', L.F_OK)", "RETURNED False"),
    ("L.access(3, L.F_OK)", "TypeError"),
    ("L.chroot('/nonexistent')", ("OSError", E.ENOENT, "/nonexistent")),
    ("L.chroot('{t}/regular')", ("OSError", E.ENOTDIR, "{t}/regular")),
    ("L.chdir('{t}/regular')", ("OSError", E.ENOTDIR, "{t}/regular")),
    ("L.open('/nonexistent', L.O_RDONLY)", ("OSError", E.ENOENT, "/nonexistent")),
    ("L.open('{t}/dir', L.O_WRONLY)", ("OSError", E.EISDIR, "{t}/dir")),
    ("L.open('{t}/regular', L.O_RDONLY | L.O_DIRECTORY)", ("OSError", E.ENOTDIR, "{t}/regular")),
    ("L.open('{t}/regular', L.O_CREAT | L.O_EXCL | L.O_WRONLY)", ("OSError", E.EEXIST, "{t}/regular")),
    ("L.open('{t}/regular', 'r')", "TypeError"),
    ("L.open('{t}/reg\\x00ular', 0)", "ValueError"),
    ("L.close(-1)", ("OSError", E.EBADF)),
    ("L.close(99999)", ("OSError", E.EBADF)),
    ("L.close('0')", "TypeError"),
    ("L.dup2(-1, 5)", ("OSError", E.EBADF)),
    ("L.read(-1, 10)", ("OSError", E.EBADF)),
    ("L.read(0, -1)", "ValueError"),
    ("L.read(None, 1)", "TypeError"),
    ("L.read(L.open('{t}/dir', L.O_RDONLY), 10)", ("OSError", E.EISDIR)),
    ("L.write(-1, b'x')", ("OSError", E.EBADF)),
    ("L.write(1, 123)", "TypeError"),
    ("L.ioctl(-1, L.TIOCSCTTY)", ("OSError", E.EBADF)),
    ("L.ioctl(L.open('{t}/regular', L.O_RDONLY), L.LOOP_CLR_FD)", ("OSError", E.ENOTTY)),
    ("L.ioctl(0, 0x5401, b'immutable')", "TypeError"),
    ("L.ioctl(0, 0x5401, 1.5)", "TypeError"),
    ("L.ioctl('0', 0x5401)", "TypeError"),
    ("L.set_ctty(-1)", ("OSError", E.EBADF)),
    ("L.set_ctty(L.open('{t}/regular', L.O_RDONLY))", ("OSError", E.ENOTTY)),
    ("L.execv('/nonexistent', ['x'])", ("OSError", E.ENOENT, "/nonexistent")),
    ("L.execv('{t}/regular', ['x'])", ("OSError", E.EACCES, "{t}/regular")),
    ("L.execv('{t}/regular', 'not a list')", "TypeError"),
    ("L.execv('{t}/regular', [1])", "TypeError"),
    ("L.execve('/nonexistent', ['x'], {{'A': 'b'}})", ("OSError", E.ENOENT, "/nonexistent")),
    ("L.execve('/nonexistent', ['x'], ['A=b'])", ("OSError", E.ENOENT, "/nonexistent")),
    ("L.execve('/nonexistent', ['x'], {{'A': 1}})", "TypeError"),
    ("L.execve('/nonexistent', ['x'], 5)", "TypeError"),
    ("L.waitpid(-1)", ("OSError", E.ECHILD)),
    ("L.waitpid(-1, L.WNOHANG)", ("OSError", E.ECHILD)),
    ("L.waitpid('x')", "TypeError"),
    ("L.kill(0x7ffffff0, 0)", ("OSError", E.ESRCH)),
    ("L.kill(1, 'TERM')", "TypeError"),
    ("L.finit_module(0, None, 0)", "TypeError"),
    ("L.init_module(123, '')", "TypeError"),
    ("L.loop_attach('/nonexistent')", ("OSError", E.ENOENT, "/nonexistent")),
    ("L.loop_attach('{t}/regular', offset=-1)", "ValueError"),
    ("L.loop_attach('{t}/regular', sizelimit='1')", "TypeError"),
    ("L.loop_attach(1)", "TypeError"),
    ("L.loop_detach('/nonexistent')", ("OSError", E.ENOENT, "/nonexistent")),
    ("L.loop_detach('{t}/regular')", ("OSError", E.ENOTTY, "{t}/regular")),
    ("L.reboot('off')", "TypeError"),
    ("L.statfs('/nonexistent')", ("OSError", E.ENOENT, "/nonexistent")),
    ("L.statfs(b'/nonexistent')", ("OSError", E.ENOENT, b"/nonexistent")),
    ("L.statfs(1)", "TypeError"),
    ("L.copy_range(-1, -1, 10)", ("OSError", E.EBADF)),
    ("L.copy_range(0, 1, -1)", "ValueError"),
    ("L.copy_range('a', 1, 1)", "TypeError"),
    ("L.copy_direct(-1, -1, 10, 4096)", ("OSError", E.EBADF)),
    ("L.copy_direct(0, 1, 10, 1000)", "ValueError"),
    ("L.copy_direct(0, 1, -1, 4096)", "ValueError"),
    ("L.strerror('x')", "TypeError"),
    ("L.readahead(-1, 0, 4096)", ("OSError", E.EBADF)),
    ("L.readahead(0, 0, 'x')", "TypeError"),
]


def _expected_lines(expected, t):
    if isinstance(expected, str):
        return [expected.replace("{t}", t)]
    if len(expected) == 2:
        return ["OSError %d ()" % expected[1]]
    path = expected[2]
    if isinstance(path, str):
        path = path.replace("{t}", t)
    return ["OSError %d %r" % (expected[1], (path,))]


@pytest.mark.parametrize("expr,expected", BAD_INPUT, ids=[case[0] for case in BAD_INPUT])
def test_bad_input(runtime_binary, files, expr, expected):
    t = str(files)
    proc = mpy(runtime_binary, PROBE.format(expr=expr.replace("{t}", t).replace("{{", "{").replace("}}", "}")))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "ALIVE", proc.stdout + proc.stderr
    got = lines[:-1]
    if expected == "TypeError" or expected == "ValueError":
        assert got == [expected]
    else:
        assert got == _expected_lines(expected, t), proc.stdout


@pytest.mark.parametrize("expr,usual", [("L.finit_module(-1, '', 0)", E.EBADF),
                                         ("L.init_module(b'not a module', '')", E.ENOEXEC)])
def test_module_loading_rejects_bad_input(runtime_binary, expr, usual):
    # A bad fd / not an ELF module: the usual errno where modules can be loaded; EPERM without CAP_SYS_MODULE or
    # with kernel.modules_disabled; ENOSYS on a kernel built without module support. Nothing is loaded.
    proc = mpy(runtime_binary, PROBE.format(expr=expr))
    lines = proc.stdout.splitlines()
    assert lines[-1] == "ALIVE", proc.stdout + proc.stderr
    assert lines[:-1] in (["OSError %d ()" % e] for e in (usual, E.EPERM, E.ENOSYS))


def test_setsid_twice_is_eperm(runtime_binary):
    proc = mpy(runtime_binary, """
        import _linux as L
        print(L.setsid() == L.getpid())
        try:
            L.setsid()
        except OSError as e:
            print(e.args[0])
        """)
    assert proc.stdout.split() == ["True", str(E.EPERM)], proc.stderr


def test_reboot_with_an_unknown_command_is_einval(runtime_binary):
    # Only inside a user and a PID namespace of its own: there even a valid command would end the namespace, not
    # the machine (kernel/reboot.c, reboot_pid_ns()). The binary runs as a child of sh, not as PID 1 (which would
    # make it the init).
    require_tools("unshare")
    code = PROBE.format(expr="L.reboot(12345)") + "print(L.getpid() != 1)\n"
    proc = mpy(runtime_binary, code, prefix=["unshare", "--user", "--map-root-user", "--pid", "--fork", "sh", "-c",
                                             '"$0" "$@"; exit $?'])
    if proc.returncode != 0 and "unshare" in proc.stderr:
        pytest.skip("cannot create user+PID namespaces: %s" % proc.stderr.strip())
    assert proc.stdout.splitlines() == ["OSError %d ()" % E.EINVAL, "ALIVE", "True"], proc.stderr


# ---- good input, compared with CPython and /proc ----

def run_ok(binary, code, **kw):
    proc = mpy(binary, code, **kw)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()


def test_makedev_major_minor_match_cpython(runtime_binary):
    pairs = [(0, 0), (1, 3), (8, 1), (259, 70000), (4095, 1048575), (65535, 65535)]
    out = run_ok(runtime_binary, """
        import _linux as L
        for ma, mi in %r:
            d = L.makedev(ma, mi)
            print(d, L.major(d), L.minor(d))
        """ % pairs)
    assert out == ["%d %d %d" % (os.makedev(ma, mi), ma, mi) for ma, mi in pairs]


def test_lstat_symlink_readlink(runtime_binary, files):
    link = files / "link"
    out = run_ok(runtime_binary, """
        import _linux as L
        L.symlink('regular', %r)
        print(L.readlink(%r))
        print(L.lstat(%r))
        print(L.lstat(%r))
        """ % (str(link), str(link), str(link), str(files / "regular")))
    assert out[0] == "regular"
    assert os.readlink(link) == "regular"
    for line, path in ((out[1], link), (out[2], files / "regular")):
        st = os.lstat(path)
        got = eval(line)
        assert got[:7] == (st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, st.st_size)
        assert got[7:] == (int(st.st_atime), int(st.st_mtime), int(st.st_ctime))


def test_chmod_chown_umask_access(runtime_binary, files):
    path = str(files / "regular")
    out = run_ok(runtime_binary, """
        import _linux as L
        L.chmod(%r, 0o640)
        L.chown(%r, 1234, -1)
        old = L.umask(0o27)
        print(old, L.umask(old))
        print(L.access(%r, L.R_OK), L.access('/nonexistent', L.F_OK))
        """ % (path, path, path))
    st = os.stat(path)
    assert st.st_mode & 0o7777 == 0o640
    assert st.st_uid == 1234 or os.geteuid() != 0
    old = os.umask(0o22)
    os.umask(old)
    assert out == ["%d 23" % old, "True False"]


def test_open_write_read_copy_range(runtime_binary, files):
    src, dst = str(files / "src"), str(files / "dst")
    data = bytes(range(256)) * 1000
    (files / "src").write_bytes(data)
    out = run_ok(runtime_binary, """
        import _linux as L
        fd = L.open(%r, L.O_RDONLY)
        print(L.read(fd, 4))
        out = L.open(%r, L.O_WRONLY | L.O_CREAT | L.O_TRUNC, 0o600)
        print(L.write(out, b'head'))
        total = 0
        while True:
            n = L.copy_range(fd, out, 65536)
            if n == 0:
                break
            total += n
        print(total, L.read(fd, 10))
        print(L.dup2(out, 50))
        L.close(50)
        L.close(out)
        L.close(fd)
        """ % (src, dst))
    assert out == ["b'\\x00\\x01\\x02\\x03'", "4", "%d b''" % (len(data) - 4), "50"]
    assert (files / "dst").read_bytes() == b"head" + data[4:]
    assert (files / "dst").stat().st_mode & 0o777 == 0o600


def test_readahead_queues_a_range_of_an_open_file(runtime_binary, files):
    (files / "src").write_bytes(b"x" * 65536)
    out = run_ok(runtime_binary, """
        import _linux as L
        fd = L.open(%r, L.O_RDONLY)
        print(L.readahead(fd, 0, 65536), L.readahead(fd, 1 << 40, 4096))   # past the end: nothing to do
        try:
            L.readahead(fd, 0, -1)
        except OSError as e:
            print(e.args[0] == L.EINVAL)
        L.close(fd)
        """ % str(files / "src"))
    assert out == ["None None", "True"]


def test_copy_direct_through_an_aligned_buffer_with_o_direct_where_the_filesystem_allows(runtime_binary, files):
    """copy_direct reads whole pages (the tail of a file that is not a multiple of 4096 comes along at the end)
    and writes what it read; with O_DIRECT refused (tmpfs before 6.6: EINVAL at open) the same call copies from
    a plain descriptor."""
    src, dst = str(files / "src"), str(files / "dst")
    data = bytes(range(256)) * 40000 + b"tail"   # 10 MB + 4: not a multiple of the buffer or the page
    (files / "src").write_bytes(data)
    out = run_ok(runtime_binary, """
        import _linux as L
        try:
            fd = L.open(%r, L.O_RDONLY | L.O_DIRECT)
            print("direct")
        except OSError as e:
            print("plain", e.args[0] == L.EINVAL)
            fd = L.open(%r, L.O_RDONLY)
        out = L.open(%r, L.O_WRONLY | L.O_CREAT | L.O_TRUNC, 0o600)
        total, calls = 0, 0
        while True:
            n = L.copy_direct(fd, out, 4 << 20, 1 << 20)
            if n == 0:
                break
            total += n
            calls += 1
        print(total, calls)
        L.close(out)
        L.close(fd)
        """ % (src, src, dst))
    assert out[0] in ("direct", "plain True")
    assert out[1] == "%d 3" % len(data)
    assert (files / "dst").read_bytes() == data


def test_fork_execv_execve_waitpid_kill(runtime_binary, files):
    out = run_ok(runtime_binary, """
        import _linux as L
        pid = L.fork()
        if pid == 0:
            L.execv('/bin/sh', ['sh', '-c', 'exit 7'])
        p, status = L.waitpid(pid)
        print(p == pid, (status >> 8) & 0xff)
        pid = L.fork()
        if pid == 0:
            L.execve('/bin/sh', ['sh', '-c', 'echo "$A$B"; exit 0'], {'A': 'x', 'B': 'y'})
        print(L.waitpid(pid, 0)[1])
        pid = L.fork()
        if pid == 0:
            L.execv('/bin/sh', ['sh', '-c', 'sleep 30'])
        print(L.waitpid(pid, L.WNOHANG))
        L.kill(pid, L.SIGKILL)
        print(L.waitpid(pid)[1] & 0x7f)
        pid = L.fork()
        if pid == 0:
            L._exit(300)
        print((L.waitpid(pid)[1] >> 8) & 0xff)
        """)
    assert out == ["True 7", "xy", "0", "(0, 0)", str(abi.SIGKILL), str(300 & 0xFF)]


def test_syscalls_boundary_on_micropython(runtime_binary):
    # syscalls.py builds spawn/exit/sleep_ms on _linux: the frozen module as it ships.
    out = run_ok(runtime_binary, """
        from mpinit_agent import syscalls as sc
        pid = sc.spawn(['/bin/sh', '-c', 'exit 5'])
        print(sc.exit_code(sc.waitpid(pid)[1]))
        pid = sc.spawn(['/nonexistent/prog'])
        print(sc.exit_code(sc.waitpid(pid)[1]))
        for name in sc.NAMES:
            assert callable(getattr(sc, name)), name
        print(sc.MS_RDONLY, sc.TMPFS_MAGIC == 0x01021994)
        """)
    assert out == ["5", "127", "1 True"]


def test_system_information(runtime_binary):
    out = run_ok(runtime_binary, """
        import _linux as L
        print(L.uname())
        print(L.sysinfo())
        print(L.statfs('/proc'))
        a = L.uptime_ms()
        b = L.uptime_ms()
        print(a > 0, b >= a)
        print(L.strerror(L.ENOENT))
        print(L.getpid() > 1)
        """)
    assert eval(out[0]) == tuple(os.uname())
    info = eval(out[1])
    meminfo = dict(line.split(":", 1) for line in open("/proc/meminfo"))
    assert info[1] == int(meminfo["MemTotal"].split()[0]) * 1024
    assert len(info) == 7 and info[0] > 0
    assert eval(out[2])[0] == abi.PROC_SUPER_MAGIC
    assert out[3:] == ["True True", os.strerror(abi.ENOENT), "True"]


# ---- for real, in a private mount namespace ----

def _namespace_prefix():
    require_tools("unshare")
    if os.geteuid() != 0:
        pytest.skip("mount namespaces with real mounts need root")
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True,
                           text=True)
    if probe.returncode != 0:
        pytest.skip("cannot create a private mount namespace here: %s" % probe.stderr.strip())
    return ["unshare", "--mount", "--propagation", "private"]


def test_mount_mknod_symlink_umount_in_a_namespace(runtime_binary, tmp_path):
    prefix = _namespace_prefix()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    out = run_ok(runtime_binary, """
        import _linux as L
        m = %r
        L.umask(0)
        L.mount('mpinit-test', m, 'tmpfs', L.MS_NOSUID | L.MS_NODEV, 'size=1m,mode=0755')
        st = L.statfs(m)
        print(st[0] == L.TMPFS_MAGIC, st[1] * st[2])
        L.mknod(m + '/null', L.S_IFCHR | 0o666, L.makedev(1, 3))
        mode = L.lstat(m + '/null')[0]
        print(mode & L.S_IFMT == L.S_IFCHR, mode & 0o777)
        L.symlink('null', m + '/link')
        print(L.readlink(m + '/link'), L.lstat(m + '/link')[0] & L.S_IFMT == L.S_IFLNK)
        try:
            L.open(m + '/null', L.O_WRONLY)
            print('nodev ignored')
        except OSError as e:
            print('nodev', e.args[0] == L.EACCES)
        L.close(L.open(m + '/file', L.O_WRONLY | L.O_CREAT, 0o600))
        L.mount(None, m, None, L.MS_REMOUNT | L.MS_RDONLY)
        keep = L.open(m + '/file', L.O_RDONLY)
        try:
            L.open(m + '/new', L.O_WRONLY | L.O_CREAT)
        except OSError as e:
            print('rofs', e.args[0] == L.EROFS, e.args[1])
        try:
            L.mount('x', m, 'no-such-fs')
        except OSError as e:
            print('nodevfs', e.args[0] == L.ENODEV)
        try:
            L.umount(m)
        except OSError as e:
            print('busy', e.args[0] == L.EBUSY)
        L.close(keep)
        L.umount(m, L.MNT_DETACH)
        print(L.statfs(m)[0] == L.TMPFS_MAGIC, L.access(m + '/null', L.F_OK))
        """ % str(mnt), prefix=prefix)
    assert out == ["True 1048576", "True 438", "null True", "nodev True", "rofs True %s/new" % mnt, "nodevfs True",
                   "busy True", "False False"]
    assert os.listdir(mnt) == []  # nothing leaked out of the namespace


def test_loop_attach_detach_in_a_namespace(runtime_binary, tmp_path):
    prefix = _namespace_prefix()
    if not os.path.exists("/dev/loop-control"):
        pytest.skip("no /dev/loop-control (loop driver not loaded or not permitted here)")
    image = tmp_path / "image"
    payload = b"mpinit-loop-test" * 512  # 8192 bytes
    image.write_bytes(b"\0" * 4096 + payload + b"\xff" * 4096)
    out = run_ok(runtime_binary, """
        import _linux as L, struct
        dev = L.loop_attach(%r, offset=4096, sizelimit=8192)
        print(dev.startswith('/dev/loop'))
        fd = L.open(dev, L.O_RDONLY)
        data = b''
        while True:
            chunk = L.read(fd, 65536)
            if not chunk:
                break
            data += chunk
        print(len(data), data[:16])
        # struct loop_info64 (<linux/loop.h>): 5 x u64, then u32 number, encrypt_type, encrypt_key_size, flags.
        info = bytearray(232)
        L.ioctl(fd, L.LOOP_GET_STATUS64, info)
        offset, sizelimit = struct.unpack_from('<QQ', info, 24)
        flags = struct.unpack_from('<I', info, 52)[0]
        print(offset, sizelimit, flags & (L.LO_FLAGS_READ_ONLY | L.LO_FLAGS_AUTOCLEAR))
        try:
            wfd = L.open(dev, L.O_WRONLY)
            try:
                L.write(wfd, b'x')
            finally:
                L.close(wfd)
            print('written')
        except OSError as e:
            print('ro', e.args[0] in (L.EROFS, L.EPERM, L.EACCES))
        L.close(fd)
        L.loop_detach(dev)
        fd = L.open(dev, L.O_RDONLY)
        try:
            L.ioctl(fd, L.LOOP_GET_STATUS64, info)
            print('still attached')
        except OSError as e:
            print('detached', e.args[0] == L.ENXIO)
        L.close(fd)
        """ % str(image), prefix=prefix)
    assert out == ["True", "8192 b'mpinit-loop-test'", "4096 8192 %d" % (abi.LO_FLAGS_READ_ONLY | abi.LO_FLAGS_AUTOCLEAR),
                   "ro True", "detached True"]


# ---- sha512 (agent/native/sha512.c) -----------------------------------------------------------------------------

SHA512_LENGTHS = (0, 1, 3, 111, 112, 113, 127, 128, 129, 239, 240, 255, 256, 1000, 65536 + 17)


def test_sha512_matches_hashlib_at_every_padding_edge(runtime_binary, tmp_path):
    """Lengths around the 112-byte padding boundary and the 128-byte block, fed in uneven chunks; digest() twice
    and update() after digest() behave as hashlib's."""
    import hashlib
    import random

    rnd = random.Random(512)
    data = bytes(rnd.getrandbits(8) for _ in range(max(SHA512_LENGTHS)))
    (tmp_path / "data").write_bytes(data)
    proc = mpy(runtime_binary, """
        import _linux as L
        from binascii import hexlify
        data = open(%r, "rb").read()
        for n in %r:
            h = L.sha512()
            i, step = 0, 1
            while i < n:                       # chunks of 1, 2, 3, ... bytes: every split of a block
                h.update(data[i:min(n, i + step)])
                i += step
                step = step %% 150 + 1
            print(n, hexlify(h.digest()).decode(), h.digest() == h.digest(),
                  L.sha512(data[:n]).digest() == h.digest())
        h = L.sha512(b"ab")
        first = h.digest()
        h.update(b"c")
        print("after", hexlify(first).decode(), hexlify(h.digest()).decode())
    """ % (str(tmp_path / "data"), SHA512_LENGTHS))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    for n, line in zip(SHA512_LENGTHS, lines):
        assert line == "%d %s True True" % (n, hashlib.sha512(data[:n]).hexdigest())
    assert lines[len(SHA512_LENGTHS)] == "after %s %s" % (hashlib.sha512(b"ab").hexdigest(),
                                                          hashlib.sha512(b"abc").hexdigest())


@pytest.mark.parametrize("expr", ["L.sha512(12)", "L.sha512().update(None)",
                                  "L.sha512(b'a', b'b')"])
def test_sha512_bad_input(runtime_binary, expr):
    proc = mpy(runtime_binary, PROBE.format(expr=expr))
    assert proc.stdout.split("\n")[:2] == ["TypeError", "ALIVE"], (proc.stdout, proc.stderr)


def test_agent_checksums_use_the_native_sha512(runtime_binary, tmp_path):
    """medium.file_digest (checksum=y) frozen in the runtime: sha512 through _linux, sha256 through hashlib."""
    import hashlib

    image = tmp_path / "airootfs.sfs"
    image.write_bytes(bytes(range(256)) * 5000 + b"tail")
    proc = mpy(runtime_binary, """
        from mpinit_agent import medium
        print(medium.file_digest(%r, "sha512"))
        print(medium.file_digest(%r, "sha256"))
    """ % (str(image), str(image)))
    assert proc.returncode == 0, proc.stderr
    data = image.read_bytes()
    assert proc.stdout.split() == [hashlib.sha512(data).hexdigest(), hashlib.sha256(data).hexdigest()]


# ---- crc32 / crc32c (agent/native/crc.c) --------------------------------------------------------------------------


def test_crc32_matches_zlib_and_crc32c_the_python_table(runtime_binary, tmp_path):
    """zlib.crc32's semantics (a previous result as the seed, memoryviews accepted) and the raw CRC-32C that
    probe.py's Python fallback computes, on the check string and on random data split at odd places."""
    import random
    import zlib

    from mpinit_agent import probe

    rnd = random.Random(32)
    data = bytes(rnd.getrandbits(8) for _ in range(20000))
    (tmp_path / "data").write_bytes(data)
    proc = mpy(runtime_binary, """
        import _linux as L
        data = open(%r, "rb").read()
        print(L.crc32(b"123456789"), L.crc32(b""), L.crc32(b"", 5))
        print(L.crc32(memoryview(data)[100:19000]), L.crc32(data[7000:], L.crc32(data[:7000])))
        print(L.crc32c(b"123456789", 0xFFFFFFFF) ^ 0xFFFFFFFF, L.crc32c(data, 0xF2F52010))
    """ % (str(tmp_path / "data"),))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:3] == [
        "%d 0 5" % zlib.crc32(b"123456789"),
        "%d %d" % (zlib.crc32(data[100:19000]), zlib.crc32(data)),
        "%d %d" % (0xE3069283, probe._crc32c_py(data, 0xF2F52010)),   # 0xE3069283: the catalogued CRC-32C check value
    ]
