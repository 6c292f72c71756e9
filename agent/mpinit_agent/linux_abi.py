# Linux x86-64/arm64 ABI values for CPython, where the native module `_linux` (which exports them straight from
# the kernel headers) does not exist. Not frozen into /init. tests/test_linux_abi.py checks every value here
# against the native module built from the headers, so a wrong number here fails a test instead of a boot.
# Values are the same on both architectures except those in _BY_MACHINE (set for the machine CPython runs on);
# tests/test_arm64.py checks _arch_values("aarch64") against the arm64 binary.

import os as _os

# Where the architectures differ: arm64's arch/arm64/include/uapi/asm/fcntl.h moves these three; x86-64 takes
# include/uapi/asm-generic/fcntl.h's.
_BY_MACHINE = {
    "x86_64": {"O_DIRECTORY": 0o200000, "O_NOFOLLOW": 0o400000, "O_DIRECT": 0o40000},
    "aarch64": {"O_DIRECTORY": 0o40000, "O_NOFOLLOW": 0o100000, "O_DIRECT": 0o200000},
}


def _arch_values(machine):
    """{name: value} of every constant here as on `machine` (uname -m: x86_64, aarch64)."""
    out = dict((k, v) for k, v in globals().items() if k.isupper() and not k.startswith("_") and type(v) is int)
    out.update(_BY_MACHINE[machine])
    return out


_MACHINE = _os.uname().machine if _os.uname().machine in _BY_MACHINE else "x86_64"

# <linux/mount.h>
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_POSIXACL = 1 << 16
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_I_VERSION = 1 << 23
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

# <sys/stat.h>
S_IFMT = 0o170000
S_IFSOCK = 0o140000
S_IFLNK = 0o120000
S_IFREG = 0o100000
S_IFBLK = 0o060000
S_IFDIR = 0o040000
S_IFCHR = 0o020000
S_IFIFO = 0o010000

# <fcntl.h>, <unistd.h>
O_RDONLY = 0
O_WRONLY = 1
O_RDWR = 2
O_CREAT = 0o100
O_EXCL = 0o200
O_NOCTTY = 0o400
O_TRUNC = 0o1000
O_APPEND = 0o2000
O_NONBLOCK = 0o4000
O_DIRECTORY = _BY_MACHINE[_MACHINE]["O_DIRECTORY"]
O_NOFOLLOW = _BY_MACHINE[_MACHINE]["O_NOFOLLOW"]
O_DIRECT = _BY_MACHINE[_MACHINE]["O_DIRECT"]
O_CLOEXEC = 0o2000000
# <unistd.h> lseek(2) whence
SEEK_SET = 0
SEEK_CUR = 1
SEEK_END = 2
F_OK = 0
X_OK = 1
W_OK = 2
R_OK = 4

# <linux/reboot.h> (LINUX_REBOOT_CMD_*, as glibc's RB_*)
RB_AUTOBOOT = 0x01234567
RB_HALT_SYSTEM = 0xCDEF0123
RB_POWER_OFF = 0x4321FEDC

# <linux/loop.h>
LOOP_SET_FD = 0x4C00
LOOP_CLR_FD = 0x4C01
LOOP_SET_STATUS64 = 0x4C04
LOOP_GET_STATUS64 = 0x4C05
LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_GET_FREE = 0x4C82
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
LO_FLAGS_PARTSCAN = 8

# <linux/kd.h>, <asm-generic/ioctls.h>
KDGKBENT = 0x4B46
KDSKBENT = 0x4B47
TIOCSCTTY = 0x540E

# <asm-generic/ioctls.h> TCGETS/TCSETS, <asm-generic/termbits.h> c_lflag bits
TCGETS = 0x5401
TCSETS = 0x5402
ECHO = 0o10
ICANON = 0o2

# <linux/magic.h> (statfs f_type)
RAMFS_MAGIC = 0x858458F6
TMPFS_MAGIC = 0x01021994
PROC_SUPER_MAGIC = 0x9FA0
SYSFS_MAGIC = 0x62656572
SQUASHFS_MAGIC = 0x73717368
OVERLAYFS_SUPER_MAGIC = 0x794C7630
EXT4_SUPER_MAGIC = 0xEF53
MSDOS_SUPER_MAGIC = 0x4D44
ISOFS_SUPER_MAGIC = 0x9660

# <sys/socket.h>, <netinet/in.h>, <poll.h>, <net/if.h> (sockets and interface flags, agent/native/netsys.c)
AF_INET = 2
SOCK_STREAM = 1
SOCK_DGRAM = 2
IPPROTO_TCP = 6
IPPROTO_UDP = 17
SOL_SOCKET = 1
SO_BROADCAST = 6
SO_REUSEADDR = 2
SO_BINDTODEVICE = 25
SO_RCVLOWAT = 18
POLLIN = 1
IFF_UP = 0x1
IFF_RUNNING = 0x40
# <linux/netlink.h>, <sys/socket.h>: the kernel's uevent socket (kmod.py's Uevents)
AF_NETLINK = 16
NETLINK_KOBJECT_UEVENT = 15

# <signal.h>, <sys/wait.h>
SIGHUP = 1
SIGINT = 2
SIGKILL = 9
SIGUSR1 = 10
SIGUSR2 = 12
SIGTERM = 15
SIGCHLD = 17
WNOHANG = 1

# <errno.h>: all the agent uses, including those MicroPython's errno module lacks
EPERM = 1
ENOENT = 2
ESRCH = 3
EINTR = 4
EIO = 5
ENXIO = 6
ENOEXEC = 8
EBADF = 9
ECHILD = 10
EAGAIN = 11
ENOMEM = 12
EACCES = 13
EFAULT = 14
ENOTBLK = 15
EBUSY = 16
EEXIST = 17
EXDEV = 18
ENODEV = 19
ENOTDIR = 20
EISDIR = 21
EINVAL = 22
ENOTTY = 25
EFBIG = 27
ENOSPC = 28
EROFS = 30
ENAMETOOLONG = 36
ENOSYS = 38
ENOTEMPTY = 39
ELOOP = 40
ENODATA = 61
EBADMSG = 74
EOPNOTSUPP = 95
ETIMEDOUT = 110
ENOKEY = 126
EKEYREJECTED = 129
