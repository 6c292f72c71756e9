// opendir(3)/readdir(3)/closedir(3) for MicroPython's os.ilistdir and os.listdir (extmod/vfs_posix.c), which the
// link routes here with -Wl,--wrap=opendir,--wrap=readdir,--wrap=closedir (micropython.mk; MicroPython's sources
// stay unpatched, and libc's own callers keep libc's functions).
//
// Why: musl's opendir() mallocs its DIR (a 2 KB entry buffer plus its header, src/dirent/__dirent.h), and musl's
// allocator maps a fresh anonymous region for that size and unmaps it again at closedir(): `strace` of
// `build/mpinit-init` listing one directory shows open, fcntl(F_SETFD), mmap(8192), getdents64 x2, close,
// munmap(8192) every time. Under QEMU's TCG an mmap/munmap pair with its page fault and TLB flush is expensive,
// and the agent lists directories all the time (/sys while coldplugging, /sys/class/block, the initramfs when
// handoff empties it: 34 directories there, measured 13.7 ms of listing in all, about 0.4 ms each). Here a
// listing is openat(O_DIRECTORY|O_CLOEXEC), getdents64(2) until it returns 0, close(2): the DIRs come from a small
// static pool (an iterator left unfinished keeps its DIR until the GC finalises it), malloc only beyond it.
//
// The records getdents64(2) fills in are struct linux_dirent64 (include/linux/dirent.h): d_ino, d_off, d_reclen,
// d_type, d_name, the layout of struct dirent in musl and in glibc on 64-bit targets, so readdir returns pointers
// into the buffer as musl's own readdir does (src/dirent/readdir.c).

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>

DIR *__wrap_opendir(const char *path);
struct dirent *__wrap_readdir(DIR *dir);
int __wrap_closedir(DIR *dir);

#define DIRSTREAM_POOL 4
#define DIRSTREAM_BUF 2048

enum { DIRSTREAM_FREE, DIRSTREAM_POOLED, DIRSTREAM_MALLOCED };

struct dirstream {
    int fd;
    int owner;          // DIRSTREAM_POOLED or DIRSTREAM_MALLOCED; DIRSTREAM_FREE: a pool slot not in use
    size_t pos;         // next record in buf
    size_t len;         // bytes of records in buf
    char buf[DIRSTREAM_BUF] __attribute__((aligned(8)));  // struct dirent's d_ino/d_off are 8-byte fields
};

static struct dirstream pool[DIRSTREAM_POOL];

DIR *__wrap_opendir(const char *path) {
    // openat(2) itself: musl's open() follows an O_CLOEXEC open with fcntl(F_SETFD) for kernels before 2.6.23.
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return NULL;
    }
    struct dirstream *d = NULL;
    for (int i = 0; i < DIRSTREAM_POOL; i++) {
        if (pool[i].owner == DIRSTREAM_FREE) {
            d = &pool[i];
            d->owner = DIRSTREAM_POOLED;
            break;
        }
    }
    if (d == NULL) {
        d = malloc(sizeof(*d));
        if (d == NULL) {
            close(fd);
            errno = ENOMEM;
            return NULL;
        }
        d->owner = DIRSTREAM_MALLOCED;
    }
    d->fd = fd;
    d->pos = 0;
    d->len = 0;
    return (DIR *)d;
}

struct dirent *__wrap_readdir(DIR *dir) {
    struct dirstream *d = (struct dirstream *)dir;
    if (d->pos >= d->len) {
        long n = syscall(SYS_getdents64, d->fd, d->buf, sizeof(d->buf));
        if (n <= 0) {
            // 0: the end (errno untouched, as readdir(3) says); < 0: errno set by syscall(). A directory removed
            // while being read gives ENOENT, which readdir(3) also reports as the end (musl does the same).
            if (n < 0 && errno == ENOENT) {
                errno = 0;
            }
            return NULL;
        }
        d->len = (size_t)n;
        d->pos = 0;
    }
    struct dirent *de = (struct dirent *)(d->buf + d->pos);
    d->pos += de->d_reclen;
    return de;
}

int __wrap_closedir(DIR *dir) {
    struct dirstream *d = (struct dirstream *)dir;
    int ret = close(d->fd);
    if (d->owner == DIRSTREAM_MALLOCED) {
        free(d);
    } else {
        d->owner = DIRSTREAM_FREE;
    }
    return ret;
}
