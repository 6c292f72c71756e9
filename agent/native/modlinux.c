// _linux: the Linux calls mpinit's agent needs that MicroPython's unix port lacks.
//
// Only agent/mpinit_agent/syscalls.py imports this module; its header documents the interface (names, arguments,
// return values). Style follows MicroPython's own modules (ports/unix/modos.c, extmod/vfs_posix.c): convert the
// arguments, make the call (retrying on EINTR where it can happen), raise OSError(errno) on failure, with the path
// as the exception's second argument where there is one. Wrong argument types raise TypeError (from MicroPython's
// own converters), a path with an embedded NUL raises ValueError; nothing here can crash the interpreter.
//
// Every constant is exported from the C library / kernel headers with C(name), never retyped;
// agent/mpinit_agent/linux_abi.py repeats them for CPython and tests/test_linux_abi.py checks both agree.

// copy_file_range(2) and other Linux-only declarations.
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <sys/wait.h>

// Kernel UAPI headers: musl-gcc sees them through buildsys/runtime.py's include dir of symlinks.
#include <linux/kd.h>
#include <linux/loop.h>
#include <linux/magic.h>
#include <linux/netlink.h>

// Sockets and interfaces (netsys.c): the headers of the constants exported below.
#include <poll.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "netsys.h"

#include "py/runtime.h"
#include "py/mphal.h"
#include "py/objstr.h"
#include "py/smallint.h"

// ---------------------------------------------------------------------------------------------------------------
// Helpers

// OSError(errno, path): the path tells the failure report which file a mount or open failed on (netsys.c gives
// the interface name an ioctl failed on; declared in netsys.h).
NORETURN void raise_errno_path(int err, mp_obj_t path) {
    mp_obj_t args[2] = { MP_OBJ_NEW_SMALL_INT(err), path };
    nlr_raise(mp_obj_exception_make_new(&mp_type_OSError, 2, 0, args));
}

// A str or bytes path as a C string. TypeError for other types (mp_obj_str_get_data); ValueError for an embedded
// NUL, which the kernel would silently cut the path at (CPython raises ValueError too).
static const char *get_path(mp_obj_t obj) {
    size_t len;
    const char *s = mp_obj_str_get_data(obj, &len);
    if (strlen(s) != len) {
        mp_raise_ValueError(MP_ERROR_TEXT("embedded null byte"));
    }
    return s;
}

// Like get_path, but None gives NULL (mount's source, fstype and data may be absent).
static const char *get_path_or_null(mp_obj_t obj) {
    return obj == mp_const_none ? NULL : get_path(obj);
}

// A NULL-terminated char* array from a list or tuple of str/bytes (execv's argv). Lives on the GC heap: freed by
// the collector if exec fails, gone with the process image if it succeeds.
static char **get_str_array(mp_obj_t seq) {
    size_t n;
    mp_obj_t *items;
    if (!mp_obj_is_type(seq, &mp_type_list) && !mp_obj_is_type(seq, &mp_type_tuple)) {
        mp_raise_TypeError(MP_ERROR_TEXT("expected a list or tuple of str"));
    }
    mp_obj_get_array(seq, &n, &items);
    char **out = m_new(char *, n + 1);
    for (size_t i = 0; i < n; i++) {
        out[i] = (char *)get_path(items[i]);
    }
    out[n] = NULL;
    return out;
}

// The environment for execve: a dict {name: value} or a list/tuple of "name=value" strings.
static char **get_env_array(mp_obj_t env) {
    if (!mp_obj_is_type(env, &mp_type_dict)) {
        return get_str_array(env);
    }
    mp_map_t *map = mp_obj_dict_get_map(env);
    char **out = m_new(char *, map->used + 1);
    size_t n = 0;
    for (size_t i = 0; i < map->alloc; i++) {
        if (!mp_map_slot_is_filled(map, i)) {
            continue;
        }
        const char *key = get_path(map->table[i].key);
        const char *value = get_path(map->table[i].value);
        vstr_t vstr;
        vstr_init(&vstr, strlen(key) + strlen(value) + 2);
        vstr_add_str(&vstr, key);
        vstr_add_byte(&vstr, '=');
        vstr_add_str(&vstr, value);
        out[n++] = vstr_null_terminated_str(&vstr);
    }
    out[n] = NULL;
    return out;
}

// An unsigned 64-bit value (sizes, inode and device numbers) as a small int when it fits, a long int otherwise.
static mp_obj_t new_u64(uint64_t v) {
    if (v <= (uint64_t)MP_SMALL_INT_MAX) {
        return MP_OBJ_NEW_SMALL_INT((mp_int_t)v);
    }
    return mp_obj_new_int_from_ull(v);
}

static mp_obj_t new_str(const char *s) {
    return mp_obj_new_str(s, strlen(s));
}

// ---------------------------------------------------------------------------------------------------------------
// Mounts

// mount(source, target, fstype, flags=0, data=None): mount(2).
static mp_obj_t linux_mount(size_t n_args, const mp_obj_t *pos_args, mp_map_t *kw_args) {
    enum { ARG_source, ARG_target, ARG_fstype, ARG_flags, ARG_data };
    static const mp_arg_t allowed_args[] = {
        { MP_QSTR_source, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_rom_obj = MP_ROM_NONE} },
        { MP_QSTR_target, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_rom_obj = MP_ROM_NONE} },
        { MP_QSTR_fstype, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_rom_obj = MP_ROM_NONE} },
        { MP_QSTR_flags, MP_ARG_OBJ, {.u_rom_obj = MP_ROM_INT(0)} },
        { MP_QSTR_data, MP_ARG_OBJ, {.u_rom_obj = MP_ROM_NONE} },
    };
    mp_arg_val_t args[MP_ARRAY_SIZE(allowed_args)];
    mp_arg_parse_all(n_args, pos_args, kw_args, MP_ARRAY_SIZE(allowed_args), allowed_args, args);
    const char *source = get_path_or_null(args[ARG_source].u_obj);
    const char *target = get_path(args[ARG_target].u_obj);
    const char *fstype = get_path_or_null(args[ARG_fstype].u_obj);
    unsigned long flags = (unsigned long)mp_obj_get_int_truncated(args[ARG_flags].u_obj);
    const char *data = get_path_or_null(args[ARG_data].u_obj);
    if (mount(source, target, fstype, flags, data) != 0) {
        raise_errno_path(errno, args[ARG_target].u_obj);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_KW(linux_mount_obj, 3, linux_mount);

// umount(target, flags=0): umount2(2).
static mp_obj_t linux_umount(size_t n_args, const mp_obj_t *pos_args, mp_map_t *kw_args) {
    enum { ARG_target, ARG_flags };
    static const mp_arg_t allowed_args[] = {
        { MP_QSTR_target, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_rom_obj = MP_ROM_NONE} },
        { MP_QSTR_flags, MP_ARG_OBJ, {.u_rom_obj = MP_ROM_INT(0)} },
    };
    mp_arg_val_t args[MP_ARRAY_SIZE(allowed_args)];
    mp_arg_parse_all(n_args, pos_args, kw_args, MP_ARRAY_SIZE(allowed_args), allowed_args, args);
    const char *target = get_path(args[ARG_target].u_obj);
    int flags = mp_obj_get_int(args[ARG_flags].u_obj);
    if (umount2(target, flags) != 0) {
        raise_errno_path(errno, args[ARG_target].u_obj);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_KW(linux_umount_obj, 1, linux_umount);

static mp_obj_t linux_chroot(mp_obj_t path_in) {
    if (chroot(get_path(path_in)) != 0) {
        raise_errno_path(errno, path_in);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(linux_chroot_obj, linux_chroot);

static mp_obj_t linux_chdir(mp_obj_t path_in) {
    if (chdir(get_path(path_in)) != 0) {
        raise_errno_path(errno, path_in);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(linux_chdir_obj, linux_chdir);

// statfs(path) -> (f_type, f_bsize, f_blocks, f_bfree, f_bavail): statfs(2). f_type is a 32-bit magic number
// (<linux/magic.h>); masked so 32-bit systems, where f_type is a signed long, give the same positive values.
static mp_obj_t linux_statfs(mp_obj_t path_in) {
    struct statfs sf;
    int ret;
    const char *path = get_path(path_in);
    MP_HAL_RETRY_SYSCALL(ret, statfs(path, &sf), raise_errno_path(err, path_in));
    mp_obj_t t[5] = {
        new_u64((unsigned long)sf.f_type & 0xffffffffUL),
        new_u64(sf.f_bsize),
        new_u64(sf.f_blocks),
        new_u64(sf.f_bfree),
        new_u64(sf.f_bavail),
    };
    return mp_obj_new_tuple(5, t);
}
static MP_DEFINE_CONST_FUN_OBJ_1(linux_statfs_obj, linux_statfs);

// ---------------------------------------------------------------------------------------------------------------
// Files and nodes

static mp_obj_t linux_mknod(mp_obj_t path_in, mp_obj_t mode_in, mp_obj_t dev_in) {
    const char *path = get_path(path_in);
    mode_t mode = mp_obj_get_int(mode_in);
    dev_t dev = (dev_t)mp_obj_get_int_truncated(dev_in);
    if (mknod(path, mode, dev) != 0) {
        raise_errno_path(errno, path_in);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_3(linux_mknod_obj, linux_mknod);

// makedev/major/minor: the C library's encoding (sys/sysmacros.h), which is the kernel's new_encode_dev().
static mp_obj_t linux_makedev(mp_obj_t major_in, mp_obj_t minor_in) {
    mp_int_t ma = mp_obj_get_int(major_in);
    mp_int_t mi = mp_obj_get_int(minor_in);
    if (ma < 0 || mi < 0 || ma > 0xffffffffL || mi > 0xffffffffL) {
        mp_raise_ValueError(MP_ERROR_TEXT("major/minor out of range"));
    }
    return new_u64(makedev((unsigned int)ma, (unsigned int)mi));
}
static MP_DEFINE_CONST_FUN_OBJ_2(linux_makedev_obj, linux_makedev);

static mp_obj_t linux_major(mp_obj_t dev_in) {
    return new_u64(major((dev_t)mp_obj_get_int_truncated(dev_in)));
}
static MP_DEFINE_CONST_FUN_OBJ_1(linux_major_obj, linux_major);

static mp_obj_t linux_minor(mp_obj_t dev_in) {
    return new_u64(minor((dev_t)mp_obj_get_int_truncated(dev_in)));
}
static MP_DEFINE_CONST_FUN_OBJ_1(linux_minor_obj, linux_minor);

// symlink(target, path): creates path pointing at target; the error names path.
static mp_obj_t linux_symlink(mp_obj_t target_in, mp_obj_t path_in) {
    const char *target = get_path(target_in);
    if (symlink(target, get_path(path_in)) != 0) {
        raise_errno_path(errno, path_in);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(linux_symlink_obj, linux_symlink);

static mp_obj_t linux_readlink(mp_obj_t path_in) {
    char buf[4096];  // PATH_MAX (<linux/limits.h>)
    ssize_t n = readlink(get_path(path_in), buf, sizeof(buf));
    if (n < 0) {
        raise_errno_path(errno, path_in);
    }
    if ((size_t)n >= sizeof(buf)) {
        raise_errno_path(ENAMETOOLONG, path_in);
    }
    return mp_obj_new_str(buf, n);
}
static MP_DEFINE_CONST_FUN_OBJ_1(linux_readlink_obj, linux_readlink);

// lstat(path) -> (mode, ino, dev, nlink, uid, gid, size, atime, mtime, ctime), the order of os.stat().
static mp_obj_t linux_lstat(mp_obj_t path_in) {
    struct stat st;
    int ret;
    const char *path = get_path(path_in);
    MP_HAL_RETRY_SYSCALL(ret, lstat(path, &st), raise_errno_path(err, path_in));
    mp_obj_t t[10] = {
        new_u64(st.st_mode),
        new_u64(st.st_ino),
        new_u64(st.st_dev),
        new_u64(st.st_nlink),
        new_u64(st.st_uid),
        new_u64(st.st_gid),
        mp_obj_new_int(st.st_size),
        mp_obj_new_int(st.st_atime),
        mp_obj_new_int(st.st_mtime),
        mp_obj_new_int(st.st_ctime),
    };
    return mp_obj_new_tuple(10, t);
}
static MP_DEFINE_CONST_FUN_OBJ_1(linux_lstat_obj, linux_lstat);

static mp_obj_t linux_chmod(mp_obj_t path_in, mp_obj_t mode_in) {
    const char *path = get_path(path_in);
    if (chmod(path, mp_obj_get_int(mode_in)) != 0) {
        raise_errno_path(errno, path_in);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(linux_chmod_obj, linux_chmod);

// chown(path, uid, gid): -1 leaves that id unchanged, as chown(2).
static mp_obj_t linux_chown(mp_obj_t path_in, mp_obj_t uid_in, mp_obj_t gid_in) {
    const char *path = get_path(path_in);
    uid_t uid = (uid_t)mp_obj_get_int(uid_in);
    gid_t gid = (gid_t)mp_obj_get_int(gid_in);
    if (chown(path, uid, gid) != 0) {
        raise_errno_path(errno, path_in);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_3(linux_chown_obj, linux_chown);

static mp_obj_t linux_umask(mp_obj_t mask_in) {
    return MP_OBJ_NEW_SMALL_INT(umask(mp_obj_get_int(mask_in) & 0777));
}
static MP_DEFINE_CONST_FUN_OBJ_1(linux_umask_obj, linux_umask);

// access(path, mode) -> bool: a question, not an action, so no OSError.
static mp_obj_t linux_access(mp_obj_t path_in, mp_obj_t mode_in) {
    const char *path = get_path(path_in);
    return mp_obj_new_bool(access(path, mp_obj_get_int(mode_in)) == 0);
}
static MP_DEFINE_CONST_FUN_OBJ_2(linux_access_obj, linux_access);

// ---------------------------------------------------------------------------------------------------------------
// File descriptors

// open(path, flags, mode=0o644) -> fd. EINTR is possible on FIFOs and some character devices (open(2)).
static mp_obj_t linux_open(size_t n_args, const mp_obj_t *pos_args, mp_map_t *kw_args) {
    enum { ARG_path, ARG_flags, ARG_mode };
    static const mp_arg_t allowed_args[] = {
        { MP_QSTR_path, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_rom_obj = MP_ROM_NONE} },
        { MP_QSTR_flags, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_rom_obj = MP_ROM_NONE} },
        { MP_QSTR_mode, MP_ARG_OBJ, {.u_rom_obj = MP_ROM_INT(0644)} },
    };
    mp_arg_val_t args[MP_ARRAY_SIZE(allowed_args)];
    mp_arg_parse_all(n_args, pos_args, kw_args, MP_ARRAY_SIZE(allowed_args), allowed_args, args);
    const char *path = get_path(args[ARG_path].u_obj);
    int flags = mp_obj_get_int(args[ARG_flags].u_obj);
    mode_t mode = mp_obj_get_int(args[ARG_mode].u_obj);
    int fd;
    MP_HAL_RETRY_SYSCALL(fd, open(path, flags, mode), raise_errno_path(err, args[ARG_path].u_obj));
    return MP_OBJ_NEW_SMALL_INT(fd);
}
static MP_DEFINE_CONST_FUN_OBJ_KW(linux_open_obj, 2, linux_open);

// close(fd). No retry on EINTR: Linux always releases the fd, and a retry could close someone else's (close(2)).
static mp_obj_t linux_close(mp_obj_t fd_in) {
    if (close(mp_obj_get_int(fd_in)) != 0 && errno != EINTR) {
        mp_raise_OSError(errno);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(linux_close_obj, linux_close);

static mp_obj_t linux_dup2(mp_obj_t old_in, mp_obj_t new_in) {
    int ret;
    int oldfd = mp_obj_get_int(old_in);
    int newfd = mp_obj_get_int(new_in);
    MP_HAL_RETRY_SYSCALL(ret, dup2(oldfd, newfd), mp_raise_OSError(err));
    return MP_OBJ_NEW_SMALL_INT(ret);
}
static MP_DEFINE_CONST_FUN_OBJ_2(linux_dup2_obj, linux_dup2);

// read(fd, n) -> bytes (shorter at end of file, b"" at EOF).
static mp_obj_t linux_read(mp_obj_t fd_in, mp_obj_t n_in) {
    int fd = mp_obj_get_int(fd_in);
    mp_int_t n = mp_obj_get_int(n_in);
    if (n < 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("negative count"));
    }
    vstr_t vstr;
    vstr_init_len(&vstr, n);
    ssize_t got;
    MP_HAL_RETRY_SYSCALL(got, read(fd, vstr.buf, n), {
        vstr_clear(&vstr);
        mp_raise_OSError(err);
    });
    vstr.len = got;
    return mp_obj_new_bytes_from_vstr(&vstr);
}
static MP_DEFINE_CONST_FUN_OBJ_2(linux_read_obj, linux_read);

// write(fd, data) -> number of bytes written (may be short, as write(2)).
static mp_obj_t linux_write(mp_obj_t fd_in, mp_obj_t data_in) {
    int fd = mp_obj_get_int(fd_in);
    mp_buffer_info_t bufinfo;
    mp_get_buffer_raise(data_in, &bufinfo, MP_BUFFER_READ);
    ssize_t n;
    MP_HAL_RETRY_SYSCALL(n, write(fd, bufinfo.buf, bufinfo.len), mp_raise_OSError(err));
    return MP_OBJ_NEW_SMALL_INT(n);
}
static MP_DEFINE_CONST_FUN_OBJ_2(linux_write_obj, linux_write);

// lseek(fd, offset, whence) -> the new offset. On /dev/kmsg, SEEK_END moves the reader after the last record and
// returns 0 (Documentation/ABI/testing/dev-kmsg, kernel/printk/printk.c devkmsg_llseek).
static mp_obj_t linux_lseek(mp_obj_t fd_in, mp_obj_t offset_in, mp_obj_t whence_in) {
    off_t off = lseek(mp_obj_get_int(fd_in), (off_t)mp_obj_get_int(offset_in), mp_obj_get_int(whence_in));
    if (off == (off_t)-1) {
        mp_raise_OSError(errno);
    }
    return mp_obj_new_int_from_ll(off);
}
static MP_DEFINE_CONST_FUN_OBJ_3(linux_lseek_obj, linux_lseek);

// readahead(fd, offset, length): posix_fadvise(POSIX_FADV_WILLNEED), which queues the reads of that range into the
// page cache and returns without waiting for them (mm/fadvise.c generic_fadvise -> force_page_cache_readahead).
// The pages stay cached only while some fd of the device is open: the last close of a block device drops its
// page cache (block/bdev.c blkdev_put -> blkdev_flush_mapping -> kill_bdev).
static mp_obj_t linux_readahead(mp_obj_t fd_in, mp_obj_t offset_in, mp_obj_t length_in) {
    int err = posix_fadvise(mp_obj_get_int(fd_in), (off_t)mp_obj_get_int(offset_in),
        (off_t)mp_obj_get_int(length_in), POSIX_FADV_WILLNEED);
    if (err != 0) {
        mp_raise_OSError(err);   // posix_fadvise returns the error number; errno is not set
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_3(linux_readahead_obj, linux_readahead);

// ioctl(fd, request, arg=0) -> int. arg is an int passed by value, or a mutable buffer (bytearray, memoryview of
// one) passed by pointer for the kernel to read and fill. Immutable bytes are refused (TypeError): the kernel
// may write into the buffer.
static mp_obj_t linux_ioctl(size_t n_args, const mp_obj_t *args) {
    int fd = mp_obj_get_int(args[0]);
    unsigned long request = (unsigned long)mp_obj_get_int_truncated(args[1]);
    int ret;
    if (n_args < 3 || mp_obj_is_int(args[2])) {
        long arg = n_args < 3 ? 0 : (long)mp_obj_get_int_truncated(args[2]);
        MP_HAL_RETRY_SYSCALL(ret, ioctl(fd, request, arg), mp_raise_OSError(err));
    } else {
        mp_buffer_info_t bufinfo;
        mp_get_buffer_raise(args[2], &bufinfo, MP_BUFFER_RW);
        MP_HAL_RETRY_SYSCALL(ret, ioctl(fd, request, bufinfo.buf), mp_raise_OSError(err));
    }
    return MP_OBJ_NEW_SMALL_INT(ret);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(linux_ioctl_obj, 2, 3, linux_ioctl);

// copy_range(in_fd, out_fd, count) -> n: copy_file_range(2) from the current offsets, the copy staying in the
// kernel; sendfile(2) where copy_file_range cannot do it (no syscall before 4.5, EXDEV across filesystems before
// 5.3 and again since 5.19, EINVAL/EOPNOTSUPP on some filesystems). Returns 0 at end of input.
static bool copy_file_range_works = true;

static mp_obj_t linux_copy_range(mp_obj_t in_in, mp_obj_t out_in, mp_obj_t count_in) {
    int in_fd = mp_obj_get_int(in_in);
    int out_fd = mp_obj_get_int(out_in);
    mp_int_t count = mp_obj_get_int(count_in);
    if (count < 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("negative count"));
    }
    ssize_t n = -1;
    if (copy_file_range_works) {
        for (;;) {
            n = copy_file_range(in_fd, NULL, out_fd, NULL, (size_t)count, 0);
            if (n >= 0) {
                return MP_OBJ_NEW_SMALL_INT(n);
            }
            if (errno == EINTR) {
                mp_handle_pending(true);
                continue;
            }
            break;
        }
        int err = errno;
        if (err == ENOSYS) {
            copy_file_range_works = false;
        } else if (err != EXDEV && err != EINVAL && err != EOPNOTSUPP) {
            mp_raise_OSError(err);
        }
    }
    MP_HAL_RETRY_SYSCALL(n, sendfile(out_fd, in_fd, NULL, (size_t)count), mp_raise_OSError(err));
    return MP_OBJ_NEW_SMALL_INT(n);
}
static MP_DEFINE_CONST_FUN_OBJ_3(linux_copy_range_obj, linux_copy_range);

// copy_direct(in_fd, out_fd, count, bufsize) -> n: read(2) into one page-aligned buffer of bufsize bytes (mapped
// for this call only) and write(2) it out, until count bytes or the end of input. Meant for an in_fd opened with
// O_DIRECT: the medium's blocks land in the buffer without passing through the page cache (one copy less, no cache
// pages to allocate; open(2) "O_DIRECT": buffer, length and offset aligned to the logical block size, which a
// page-aligned buffer and reads of whole pages are). Each read asks for at most count rounded up to 4096 bytes, so
// at the end of a file the last block's tail comes along. Returns the bytes written (0 at end of input); an error
// after some bytes were copied returns those (the next call raises it).
static mp_obj_t linux_copy_direct(size_t n_args, const mp_obj_t *args) {
    (void)n_args;
    int in_fd = mp_obj_get_int(args[0]);
    int out_fd = mp_obj_get_int(args[1]);
    mp_int_t count = mp_obj_get_int(args[2]);
    mp_int_t bufsize = mp_obj_get_int(args[3]);
    if (count < 0 || bufsize <= 0 || bufsize % 4096 != 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("count >= 0 and bufsize a positive multiple of 4096"));
    }
    char *buf = mmap(NULL, (size_t)bufsize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) {
        mp_raise_OSError(errno);
    }
    mp_int_t done = 0;
    int err = 0;
    while (done < count && !err) {
        mp_int_t want = (count - done + 4095) & ~(mp_int_t)4095;
        ssize_t r = read(in_fd, buf, (size_t)(want < bufsize ? want : bufsize));
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            err = errno;
            break;
        }
        if (r == 0) {
            break;
        }
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out_fd, buf + off, (size_t)(r - off));
            if (w < 0) {
                if (errno == EINTR) {
                    continue;
                }
                err = errno;
                break;
            }
            off += w;
            done += w;
        }
    }
    munmap(buf, (size_t)bufsize);
    if (err && done == 0) {
        mp_raise_OSError(err);
    }
    return mp_obj_new_int(done);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(linux_copy_direct_obj, 4, 4, linux_copy_direct);

// ---------------------------------------------------------------------------------------------------------------
// Processes and sessions

static mp_obj_t linux_setsid(void) {
    pid_t sid = setsid();
    if (sid < 0) {
        mp_raise_OSError(errno);
    }
    return MP_OBJ_NEW_SMALL_INT(sid);
}
static MP_DEFINE_CONST_FUN_OBJ_0(linux_setsid_obj, linux_setsid);

// set_ctty(fd): make fd's terminal the controlling terminal of this session. The 1 steals it from another
// session when we have CAP_SYS_ADMIN (tty_ioctl(4), TIOCSCTTY).
static mp_obj_t linux_set_ctty(mp_obj_t fd_in) {
    if (ioctl(mp_obj_get_int(fd_in), TIOCSCTTY, 1) != 0) {
        mp_raise_OSError(errno);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(linux_set_ctty_obj, linux_set_ctty);

// fork() -> pid (0 in the child). MicroPython here has no threads, so the child is a complete copy.
static mp_obj_t linux_fork(void) {
    pid_t pid = fork();
    if (pid < 0) {
        mp_raise_OSError(errno);
    }
    return MP_OBJ_NEW_SMALL_INT(pid);
}
static MP_DEFINE_CONST_FUN_OBJ_0(linux_fork_obj, linux_fork);

// pipe() -> (read_fd, write_fd), both close-on-exec (pipe2(2) O_CLOEXEC): spawn() dup2()s the read end onto a
// child's stdin (dup2 clears the flag on the copy) so a secret reaches a tool without touching argv or a file.
static mp_obj_t linux_pipe(void) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        mp_raise_OSError(errno);
    }
    mp_obj_t t[2] = { MP_OBJ_NEW_SMALL_INT(fds[0]), MP_OBJ_NEW_SMALL_INT(fds[1]) };
    return mp_obj_new_tuple(2, t);
}
static MP_DEFINE_CONST_FUN_OBJ_0(linux_pipe_obj, linux_pipe);

// execv(path, argv): only returns by raising.
static mp_obj_t linux_execv(mp_obj_t path_in, mp_obj_t argv_in) {
    const char *path = get_path(path_in);
    char **argv = get_str_array(argv_in);
    execv(path, argv);
    raise_errno_path(errno, path_in);
}
static MP_DEFINE_CONST_FUN_OBJ_2(linux_execv_obj, linux_execv);

// execve(path, argv, env): env is a dict or a list/tuple of "name=value".
static mp_obj_t linux_execve(mp_obj_t path_in, mp_obj_t argv_in, mp_obj_t env_in) {
    const char *path = get_path(path_in);
    char **argv = get_str_array(argv_in);
    char **envp = get_env_array(env_in);
    execve(path, argv, envp);
    raise_errno_path(errno, path_in);
}
static MP_DEFINE_CONST_FUN_OBJ_3(linux_execve_obj, linux_execve);

// _exit(code): no atexit handlers, no stdio flushing (the forked child of spawn() must not run the parent's).
static mp_obj_t linux__exit(mp_obj_t code_in) {
    _exit(mp_obj_get_int(code_in) & 0xff);
}
static MP_DEFINE_CONST_FUN_OBJ_1(linux__exit_obj, linux__exit);

// waitpid(pid, options=0) -> (pid, status); (0, 0) with WNOHANG and nothing to reap.
static mp_obj_t linux_waitpid(size_t n_args, const mp_obj_t *args) {
    pid_t pid = mp_obj_get_int(args[0]);
    int options = n_args > 1 ? mp_obj_get_int(args[1]) : 0;
    int status = 0;
    pid_t ret;
    MP_HAL_RETRY_SYSCALL(ret, waitpid(pid, &status, options), mp_raise_OSError(err));
    mp_obj_t t[2] = { MP_OBJ_NEW_SMALL_INT(ret), MP_OBJ_NEW_SMALL_INT(status) };
    return mp_obj_new_tuple(2, t);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(linux_waitpid_obj, 1, 2, linux_waitpid);

static mp_obj_t linux_kill(mp_obj_t pid_in, mp_obj_t sig_in) {
    if (kill(mp_obj_get_int(pid_in), mp_obj_get_int(sig_in)) != 0) {
        mp_raise_OSError(errno);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(linux_kill_obj, linux_kill);

static mp_obj_t linux_getpid(void) {
    return MP_OBJ_NEW_SMALL_INT(getpid());
}
static MP_DEFINE_CONST_FUN_OBJ_0(linux_getpid_obj, linux_getpid);

// ---------------------------------------------------------------------------------------------------------------
// Kernel modules: raw syscalls (no C library wrappers in musl), init_module(2).

// finit_module(fd, params, flags)
static mp_obj_t linux_finit_module(mp_obj_t fd_in, mp_obj_t params_in, mp_obj_t flags_in) {
    int fd = mp_obj_get_int(fd_in);
    const char *params = get_path(params_in);
    int flags = mp_obj_get_int(flags_in);
    if (syscall(SYS_finit_module, fd, params, flags) != 0) {
        mp_raise_OSError(errno);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_3(linux_finit_module_obj, linux_finit_module);

// init_module(image, params): the module's bytes, for kernels before 3.8 without finit_module.
static mp_obj_t linux_init_module(mp_obj_t image_in, mp_obj_t params_in) {
    mp_buffer_info_t bufinfo;
    mp_get_buffer_raise(image_in, &bufinfo, MP_BUFFER_READ);
    const char *params = get_path(params_in);
    if (syscall(SYS_init_module, bufinfo.buf, (unsigned long)bufinfo.len, params) != 0) {
        mp_raise_OSError(errno);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(linux_init_module_obj, linux_init_module);

// ---------------------------------------------------------------------------------------------------------------
// Loop devices (loop(4), drivers/block/loop.c)

// An attached device stays open in this process (close-on-exec). With LO_FLAGS_AUTOCLEAR the kernel detaches a
// loop device at its last close (lo_release()), so closing it before the caller has mounted it would undo the
// attach. The hand-off's exec closes these; the mount then holds the device, and umount frees it.
#define LOOP_HELD_MAX (16)
static int loop_held_fd[LOOP_HELD_MAX];
static int loop_held_nr[LOOP_HELD_MAX];
static size_t loop_held_count;

static void loop_hold(int nr, int fd) {
    if (loop_held_count < LOOP_HELD_MAX) {
        loop_held_nr[loop_held_count] = nr;
        loop_held_fd[loop_held_count] = fd;
        loop_held_count++;
    }
    // Beyond the table the fd simply stays open until exec: the same outcome, without early release.
}

static void loop_release(int nr) {
    for (size_t i = 0; i < loop_held_count; i++) {
        if (loop_held_nr[i] == nr) {
            close(loop_held_fd[i]);
            loop_held_count--;
            loop_held_nr[i] = loop_held_nr[loop_held_count];
            loop_held_fd[i] = loop_held_fd[loop_held_count];
            return;
        }
    }
}

static int ioctl_retry(int fd, unsigned long request, void *arg) {
    int ret;
    do {
        ret = ioctl(fd, request, arg);
    } while (ret != 0 && errno == EINTR);
    return ret;
}

// Configure an open loop device over backing_fd. 0 or an errno.
static int loop_configure(int loop_fd, int backing_fd, const char *path, uint64_t offset, uint64_t sizelimit,
    uint32_t lo_flags) {
    struct loop_config config;
    memset(&config, 0, sizeof(config));
    config.fd = backing_fd;
    config.info.lo_offset = offset;
    config.info.lo_sizelimit = sizelimit;
    config.info.lo_flags = lo_flags;
    strncpy((char *)config.info.lo_file_name, path, LO_NAME_SIZE - 1);
    if (ioctl_retry(loop_fd, LOOP_CONFIGURE, &config) == 0) {
        return 0;
    }
    int err = errno;
    if (err != EINVAL && err != ENOTTY) {
        return err;
    }
    // Kernels before 5.8 have no LOOP_CONFIGURE: bind, then set the status (what losetup does there).
    if (ioctl(loop_fd, LOOP_SET_FD, backing_fd) != 0) {
        return errno;
    }
    if (ioctl_retry(loop_fd, LOOP_SET_STATUS64, &config.info) != 0) {
        err = errno;
        ioctl(loop_fd, LOOP_CLR_FD, 0);
        return err;
    }
    return 0;
}

// loop_attach(path, offset=0, sizelimit=0, read_only=True, autoclear=True) -> "/dev/loopN"
static mp_obj_t linux_loop_attach(size_t n_args, const mp_obj_t *pos_args, mp_map_t *kw_args) {
    enum { ARG_path, ARG_offset, ARG_sizelimit, ARG_read_only, ARG_autoclear };
    static const mp_arg_t allowed_args[] = {
        { MP_QSTR_path, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_rom_obj = MP_ROM_NONE} },
        { MP_QSTR_offset, MP_ARG_OBJ, {.u_rom_obj = MP_ROM_INT(0)} },
        { MP_QSTR_sizelimit, MP_ARG_OBJ, {.u_rom_obj = MP_ROM_INT(0)} },
        { MP_QSTR_read_only, MP_ARG_OBJ, {.u_rom_obj = MP_ROM_TRUE} },
        { MP_QSTR_autoclear, MP_ARG_OBJ, {.u_rom_obj = MP_ROM_TRUE} },
    };
    mp_arg_val_t args[MP_ARRAY_SIZE(allowed_args)];
    mp_arg_parse_all(n_args, pos_args, kw_args, MP_ARRAY_SIZE(allowed_args), allowed_args, args);
    mp_obj_t path_obj = args[ARG_path].u_obj;
    const char *path = get_path(path_obj);
    mp_int_t offset = mp_obj_get_int(args[ARG_offset].u_obj);
    mp_int_t sizelimit = mp_obj_get_int(args[ARG_sizelimit].u_obj);
    if (offset < 0 || sizelimit < 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("negative offset or sizelimit"));
    }
    bool read_only = mp_obj_is_true(args[ARG_read_only].u_obj);
    uint32_t lo_flags = (read_only ? LO_FLAGS_READ_ONLY : 0)
        | (mp_obj_is_true(args[ARG_autoclear].u_obj) ? LO_FLAGS_AUTOCLEAR : 0);
    int open_flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;

    int backing_fd;
    MP_HAL_RETRY_SYSCALL(backing_fd, open(path, open_flags), raise_errno_path(err, path_obj));

    static const char ctl_path[] = "/dev/loop-control";
    char dev[32];
    int err = 0;
    // Another process may take the free device between LOOP_CTL_GET_FREE and our configure (EBUSY): ask again,
    // a few times, as losetup does.
    for (int attempt = 0; attempt < 8; attempt++) {
        int ctl = open(ctl_path, O_RDWR | O_CLOEXEC);
        if (ctl < 0) {
            err = errno;
            close(backing_fd);
            raise_errno_path(err, new_str(ctl_path));
        }
        int nr = ioctl(ctl, LOOP_CTL_GET_FREE);
        err = errno;
        close(ctl);
        if (nr < 0) {
            close(backing_fd);
            raise_errno_path(err, new_str(ctl_path));
        }
        snprintf(dev, sizeof(dev), "/dev/loop%d", nr);
        int loop_fd = open(dev, open_flags);
        if (loop_fd < 0) {
            err = errno;
            close(backing_fd);
            raise_errno_path(err, new_str(dev));
        }
        err = loop_configure(loop_fd, backing_fd, path, (uint64_t)offset, (uint64_t)sizelimit, lo_flags);
        if (err == 0) {
            close(backing_fd);  // the loop device holds its own reference to the file
            loop_hold(nr, loop_fd);
            return new_str(dev);
        }
        close(loop_fd);
        if (err != EBUSY) {
            break;
        }
    }
    close(backing_fd);
    raise_errno_path(err, path_obj);
}
static MP_DEFINE_CONST_FUN_OBJ_KW(linux_loop_attach_obj, 1, linux_loop_attach);

// loop_detach(loopdev): LOOP_CLR_FD; with autoclear set, the kernel finishes it at the last close.
static mp_obj_t linux_loop_detach(mp_obj_t dev_in) {
    const char *dev = get_path(dev_in);
    int nr = -1;
    if (strncmp(dev, "/dev/loop", 9) == 0) {
        sscanf(dev + 9, "%d", &nr);
    }
    int fd;
    MP_HAL_RETRY_SYSCALL(fd, open(dev, O_RDONLY | O_CLOEXEC), raise_errno_path(err, dev_in));
    // Drop the reference loop_attach kept; fd keeps the device open for the ioctl. Since Linux 5.x LOOP_CLR_FD
    // with other openers only marks the device autoclear (loop_clr_fd()), so ours must not be one of them.
    loop_release(nr);
    int ret = ioctl(fd, LOOP_CLR_FD, 0);
    int err = errno;
    close(fd);
    if (ret != 0) {
        raise_errno_path(err, dev_in);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(linux_loop_detach_obj, linux_loop_detach);

// ---------------------------------------------------------------------------------------------------------------
// System

// reboot(how): RB_POWER_OFF, RB_AUTOBOOT or RB_HALT_SYSTEM (reboot(2)). Callers sync() first.
static mp_obj_t linux_reboot(mp_obj_t how_in) {
    int how = (int)mp_obj_get_int_truncated(how_in);
    if (reboot(how) != 0) {
        mp_raise_OSError(errno);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(linux_reboot_obj, linux_reboot);

static mp_obj_t linux_sync(void) {
    sync();
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_0(linux_sync_obj, linux_sync);

// sysinfo() -> (uptime_s, totalram, freeram, sharedram, bufferram, totalswap, freeswap), sizes in bytes
// (sysinfo(2) counts in units of mem_unit).
static mp_obj_t linux_sysinfo(void) {
    struct sysinfo si;
    if (sysinfo(&si) != 0) {
        mp_raise_OSError(errno);
    }
    unsigned long long unit = si.mem_unit ? si.mem_unit : 1;
    mp_obj_t t[7] = {
        mp_obj_new_int(si.uptime),
        new_u64(si.totalram * unit),
        new_u64(si.freeram * unit),
        new_u64(si.sharedram * unit),
        new_u64(si.bufferram * unit),
        new_u64(si.totalswap * unit),
        new_u64(si.freeswap * unit),
    };
    return mp_obj_new_tuple(7, t);
}
static MP_DEFINE_CONST_FUN_OBJ_0(linux_sysinfo_obj, linux_sysinfo);

static mp_obj_t linux_uname(void) {
    struct utsname u;
    if (uname(&u) != 0) {
        mp_raise_OSError(errno);
    }
    mp_obj_t t[5] = {
        new_str(u.sysname), new_str(u.nodename), new_str(u.release), new_str(u.version), new_str(u.machine),
    };
    return mp_obj_new_tuple(5, t);
}
static MP_DEFINE_CONST_FUN_OBJ_0(linux_uname_obj, linux_uname);

static mp_obj_t linux_strerror(mp_obj_t errno_in) {
    return new_str(strerror(mp_obj_get_int(errno_in)));
}
static MP_DEFINE_CONST_FUN_OBJ_1(linux_strerror_obj, linux_strerror);

// uptime_ms() -> int: CLOCK_BOOTTIME, the clock of the kernel's printk timestamps (includes suspend).
static mp_obj_t linux_uptime_ms(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0) {
        mp_raise_OSError(errno);
    }
    return mp_obj_new_int((mp_int_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}
static MP_DEFINE_CONST_FUN_OBJ_0(linux_uptime_ms_obj, linux_uptime_ms);

// ---------------------------------------------------------------------------------------------------------------
// The module

#define C(name) { MP_ROM_QSTR(MP_QSTR_##name), MP_ROM_INT(name) }

extern const mp_obj_type_t linux_sha512_type;  // sha512.c
extern const mp_obj_fun_builtin_var_t linux_crc32_obj;  // crc.c
extern const mp_obj_fun_builtin_fixed_t linux_crc32c_obj;  // crc.c

static const mp_rom_map_elem_t linux_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR__linux) },

    { MP_ROM_QSTR(MP_QSTR_mount), MP_ROM_PTR(&linux_mount_obj) },
    { MP_ROM_QSTR(MP_QSTR_sha512), MP_ROM_PTR(&linux_sha512_type) },
    { MP_ROM_QSTR(MP_QSTR_crc32), MP_ROM_PTR(&linux_crc32_obj) },
    { MP_ROM_QSTR(MP_QSTR_crc32c), MP_ROM_PTR(&linux_crc32c_obj) },
    { MP_ROM_QSTR(MP_QSTR_umount), MP_ROM_PTR(&linux_umount_obj) },
    { MP_ROM_QSTR(MP_QSTR_chroot), MP_ROM_PTR(&linux_chroot_obj) },
    { MP_ROM_QSTR(MP_QSTR_chdir), MP_ROM_PTR(&linux_chdir_obj) },
    { MP_ROM_QSTR(MP_QSTR_statfs), MP_ROM_PTR(&linux_statfs_obj) },
    { MP_ROM_QSTR(MP_QSTR_mknod), MP_ROM_PTR(&linux_mknod_obj) },
    { MP_ROM_QSTR(MP_QSTR_makedev), MP_ROM_PTR(&linux_makedev_obj) },
    { MP_ROM_QSTR(MP_QSTR_major), MP_ROM_PTR(&linux_major_obj) },
    { MP_ROM_QSTR(MP_QSTR_minor), MP_ROM_PTR(&linux_minor_obj) },
    { MP_ROM_QSTR(MP_QSTR_symlink), MP_ROM_PTR(&linux_symlink_obj) },
    { MP_ROM_QSTR(MP_QSTR_readlink), MP_ROM_PTR(&linux_readlink_obj) },
    { MP_ROM_QSTR(MP_QSTR_lstat), MP_ROM_PTR(&linux_lstat_obj) },
    { MP_ROM_QSTR(MP_QSTR_chmod), MP_ROM_PTR(&linux_chmod_obj) },
    { MP_ROM_QSTR(MP_QSTR_chown), MP_ROM_PTR(&linux_chown_obj) },
    { MP_ROM_QSTR(MP_QSTR_umask), MP_ROM_PTR(&linux_umask_obj) },
    { MP_ROM_QSTR(MP_QSTR_access), MP_ROM_PTR(&linux_access_obj) },
    { MP_ROM_QSTR(MP_QSTR_open), MP_ROM_PTR(&linux_open_obj) },
    { MP_ROM_QSTR(MP_QSTR_close), MP_ROM_PTR(&linux_close_obj) },
    { MP_ROM_QSTR(MP_QSTR_dup2), MP_ROM_PTR(&linux_dup2_obj) },
    { MP_ROM_QSTR(MP_QSTR_read), MP_ROM_PTR(&linux_read_obj) },
    { MP_ROM_QSTR(MP_QSTR_write), MP_ROM_PTR(&linux_write_obj) },
    { MP_ROM_QSTR(MP_QSTR_lseek), MP_ROM_PTR(&linux_lseek_obj) },
    { MP_ROM_QSTR(MP_QSTR_readahead), MP_ROM_PTR(&linux_readahead_obj) },
    { MP_ROM_QSTR(MP_QSTR_ioctl), MP_ROM_PTR(&linux_ioctl_obj) },
    { MP_ROM_QSTR(MP_QSTR_copy_range), MP_ROM_PTR(&linux_copy_range_obj) },
    { MP_ROM_QSTR(MP_QSTR_copy_direct), MP_ROM_PTR(&linux_copy_direct_obj) },
    { MP_ROM_QSTR(MP_QSTR_setsid), MP_ROM_PTR(&linux_setsid_obj) },
    { MP_ROM_QSTR(MP_QSTR_set_ctty), MP_ROM_PTR(&linux_set_ctty_obj) },
    { MP_ROM_QSTR(MP_QSTR_fork), MP_ROM_PTR(&linux_fork_obj) },
    { MP_ROM_QSTR(MP_QSTR_pipe), MP_ROM_PTR(&linux_pipe_obj) },
    { MP_ROM_QSTR(MP_QSTR_execv), MP_ROM_PTR(&linux_execv_obj) },
    { MP_ROM_QSTR(MP_QSTR_execve), MP_ROM_PTR(&linux_execve_obj) },
    { MP_ROM_QSTR(MP_QSTR__exit), MP_ROM_PTR(&linux__exit_obj) },
    { MP_ROM_QSTR(MP_QSTR_waitpid), MP_ROM_PTR(&linux_waitpid_obj) },
    { MP_ROM_QSTR(MP_QSTR_kill), MP_ROM_PTR(&linux_kill_obj) },
    { MP_ROM_QSTR(MP_QSTR_getpid), MP_ROM_PTR(&linux_getpid_obj) },
    { MP_ROM_QSTR(MP_QSTR_finit_module), MP_ROM_PTR(&linux_finit_module_obj) },
    { MP_ROM_QSTR(MP_QSTR_init_module), MP_ROM_PTR(&linux_init_module_obj) },
    { MP_ROM_QSTR(MP_QSTR_loop_attach), MP_ROM_PTR(&linux_loop_attach_obj) },
    { MP_ROM_QSTR(MP_QSTR_loop_detach), MP_ROM_PTR(&linux_loop_detach_obj) },
    { MP_ROM_QSTR(MP_QSTR_reboot), MP_ROM_PTR(&linux_reboot_obj) },
    { MP_ROM_QSTR(MP_QSTR_sync), MP_ROM_PTR(&linux_sync_obj) },
    { MP_ROM_QSTR(MP_QSTR_sysinfo), MP_ROM_PTR(&linux_sysinfo_obj) },
    { MP_ROM_QSTR(MP_QSTR_uname), MP_ROM_PTR(&linux_uname_obj) },
    { MP_ROM_QSTR(MP_QSTR_strerror), MP_ROM_PTR(&linux_strerror_obj) },
    { MP_ROM_QSTR(MP_QSTR_uptime_ms), MP_ROM_PTR(&linux_uptime_ms_obj) },

    // netsys.c: sockets and interface configuration (network boot)
    { MP_ROM_QSTR(MP_QSTR_socket), MP_ROM_PTR(&linux_socket_obj) },
    { MP_ROM_QSTR(MP_QSTR_bind), MP_ROM_PTR(&linux_bind_obj) },
    { MP_ROM_QSTR(MP_QSTR_bind_netlink), MP_ROM_PTR(&linux_bind_netlink_obj) },
    { MP_ROM_QSTR(MP_QSTR_connect), MP_ROM_PTR(&linux_connect_obj) },
    { MP_ROM_QSTR(MP_QSTR_sendto), MP_ROM_PTR(&linux_sendto_obj) },
    { MP_ROM_QSTR(MP_QSTR_recvfrom), MP_ROM_PTR(&linux_recvfrom_obj) },
    { MP_ROM_QSTR(MP_QSTR_recv_into), MP_ROM_PTR(&linux_recv_into_obj) },
    { MP_ROM_QSTR(MP_QSTR_recv_fill), MP_ROM_PTR(&linux_recv_fill_obj) },
    { MP_ROM_QSTR(MP_QSTR_setsockopt), MP_ROM_PTR(&linux_setsockopt_obj) },
    { MP_ROM_QSTR(MP_QSTR_poll), MP_ROM_PTR(&linux_poll_obj) },
    { MP_ROM_QSTR(MP_QSTR_if_hwaddr), MP_ROM_PTR(&linux_if_hwaddr_obj) },
    { MP_ROM_QSTR(MP_QSTR_if_flags), MP_ROM_PTR(&linux_if_flags_obj) },
    { MP_ROM_QSTR(MP_QSTR_if_set_flags), MP_ROM_PTR(&linux_if_set_flags_obj) },
    { MP_ROM_QSTR(MP_QSTR_if_set_addr), MP_ROM_PTR(&linux_if_set_addr_obj) },
    { MP_ROM_QSTR(MP_QSTR_route_add), MP_ROM_PTR(&linux_route_add_obj) },

    // <sys/mount.h>
    C(MS_RDONLY), C(MS_NOSUID), C(MS_NODEV), C(MS_NOEXEC), C(MS_SYNCHRONOUS), C(MS_REMOUNT), C(MS_MANDLOCK),
    C(MS_DIRSYNC), C(MS_NOSYMFOLLOW), C(MS_NOATIME), C(MS_NODIRATIME), C(MS_BIND), C(MS_MOVE), C(MS_REC),
    C(MS_SILENT), C(MS_POSIXACL), C(MS_UNBINDABLE), C(MS_PRIVATE), C(MS_SLAVE), C(MS_SHARED), C(MS_RELATIME),
    C(MS_I_VERSION), C(MS_STRICTATIME), C(MS_LAZYTIME),
    C(MNT_FORCE), C(MNT_DETACH), C(MNT_EXPIRE), C(UMOUNT_NOFOLLOW),

    // <sys/stat.h>
    C(S_IFMT), C(S_IFSOCK), C(S_IFLNK), C(S_IFREG), C(S_IFBLK), C(S_IFDIR), C(S_IFCHR), C(S_IFIFO),

    // <fcntl.h>, <unistd.h>
    C(O_RDONLY), C(O_WRONLY), C(O_RDWR), C(O_CREAT), C(O_EXCL), C(O_NOCTTY), C(O_TRUNC), C(O_APPEND),
    C(O_NONBLOCK), C(O_DIRECTORY), C(O_NOFOLLOW), C(O_CLOEXEC), C(O_DIRECT),
    C(F_OK), C(X_OK), C(W_OK), C(R_OK), C(SEEK_SET), C(SEEK_CUR), C(SEEK_END),

    // <sys/reboot.h> (the kernel's LINUX_REBOOT_CMD_* of <linux/reboot.h>)
    C(RB_AUTOBOOT), C(RB_HALT_SYSTEM), C(RB_POWER_OFF),

    // <linux/loop.h>
    C(LOOP_SET_FD), C(LOOP_CLR_FD), C(LOOP_SET_STATUS64), C(LOOP_GET_STATUS64), C(LOOP_CONFIGURE),
    C(LOOP_CTL_GET_FREE), C(LO_FLAGS_READ_ONLY), C(LO_FLAGS_AUTOCLEAR), C(LO_FLAGS_PARTSCAN),

    // <linux/kd.h>, <sys/ioctl.h>
    C(KDGKBENT), C(KDSKBENT), C(TIOCSCTTY),

    // <sys/ioctl.h>, <termios.h>: the console's termios for a passphrase read without echo
    C(TCGETS), C(TCSETS), C(ECHO), C(ICANON),

    // <linux/magic.h> (statfs f_type)
    C(RAMFS_MAGIC), C(TMPFS_MAGIC), C(PROC_SUPER_MAGIC), C(SYSFS_MAGIC), C(SQUASHFS_MAGIC),
    C(OVERLAYFS_SUPER_MAGIC), C(EXT4_SUPER_MAGIC), C(MSDOS_SUPER_MAGIC), C(ISOFS_SUPER_MAGIC),

    // <sys/socket.h>, <netinet/in.h>, <poll.h>, <net/if.h>: sockets and interface flags (netsys.c)
    // (only what the agent uses: tests take the others from CPython's modules)
    C(AF_INET), C(SOCK_STREAM), C(SOCK_DGRAM), C(IPPROTO_TCP), C(IPPROTO_UDP), C(SOL_SOCKET), C(SO_BROADCAST),
    C(SO_REUSEADDR), C(SO_BINDTODEVICE), C(SO_RCVLOWAT), C(POLLIN), C(IFF_UP), C(IFF_RUNNING),
    // <linux/netlink.h>: the kernel's uevent socket (kmod.py's Uevents)
    C(AF_NETLINK), C(NETLINK_KOBJECT_UEVENT),

    // <signal.h>, <sys/wait.h>
    C(SIGHUP), C(SIGINT), C(SIGKILL), C(SIGUSR1), C(SIGUSR2), C(SIGTERM), C(SIGCHLD), C(WNOHANG),

    // <errno.h>
    C(EPERM), C(ENOENT), C(ESRCH), C(EINTR), C(EIO), C(ENXIO), C(ENOEXEC), C(EBADF), C(ECHILD), C(EAGAIN),
    C(ENOMEM), C(EACCES), C(EFAULT), C(ENOTBLK), C(EBUSY), C(EEXIST), C(EXDEV), C(ENODEV), C(ENOTDIR),
    C(EISDIR), C(EINVAL), C(ENOTTY), C(EFBIG), C(ENOSPC), C(EROFS), C(ENAMETOOLONG), C(ENOSYS), C(ENOTEMPTY),
    C(ELOOP), C(ENODATA), C(EBADMSG), C(EOPNOTSUPP), C(ETIMEDOUT), C(ENOKEY), C(EKEYREJECTED),
};
static MP_DEFINE_CONST_DICT(linux_module_globals, linux_module_globals_table);

const mp_obj_module_t linux_user_cmodule = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&linux_module_globals,
};

MP_REGISTER_MODULE(MP_QSTR__linux, linux_user_cmodule);
