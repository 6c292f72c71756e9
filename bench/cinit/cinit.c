// cinit: the benchmark's floor (issue 14). The same boot as mpinit and the busybox script, written as plainly as
// C allows: no search, no interpreter, no fork. Everything it needs to know is in the image, written by the
// benchmark (bench/mpbench/cinit.py):
//
//   /etc/modules.order   in-image paths of the modules, dependencies first (the peer's list, loaded alike)
//   /etc/cinit.conf      "key value" lines: medium (device path), fstype, options (mount data), image (path of
//                        the squashfs on the medium)
//
// Steps: mount /proc /sys /dev; finit_module(2) every module in order; wait for the medium's device node; mount it;
// attach the squashfs to a loop device and mount it; tmpfs + overlay at /newroot; move /dev /proc /sys; empty the
// initramfs (as switch_root(8) does); MS_MOVE the new root onto /, chroot, exec /sbin/init.
//
// Lines the benchmark reads go to /dev/kmsg (printk timestamps, the same clock as the kernel's "Run /init"):
//   cinit: start / cinit: modules: done / cinit: medium: <dev> / cinit: root: done / cinit: VmHWM: <n> kB /
//   cinit: switch_root            (bench/mpbench/parse.py)
// A failure logs "cinit: FAILED: ..." and powers off: the benchmark's boot must end.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <linux/loop.h>

#define NEW_ROOT "/newroot"

static int kmsg = -1;

static void say(const char *fmt, ...) {
    char buf[512];
    int n = snprintf(buf, sizeof buf, "cinit: ");
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 2) {
        n = sizeof buf - 2;
    }
    buf[n++] = '\n';
    // One write(2) per line: /dev/kmsg takes one record per write (kernel/printk/printk.c devkmsg_write()).
    if (write(kmsg >= 0 ? kmsg : 2, buf, n) < 0) {
        (void)0;
    }
}

static void fail(const char *what, const char *arg) {
    say("FAILED: %s %s: %s", what, arg, strerror(errno));
    sync();
    reboot(RB_POWER_OFF);
    for (;;) {
        pause();
    }
}

static void do_mount(const char *src, const char *dst, const char *type, unsigned long flags, const char *data) {
    if (mount(src, dst, type, flags, data) != 0) {
        fail("mount", dst);
    }
}

// The whole of a small file, NUL-terminated, in a static buffer (the config and the module list are < 4 KiB).
static char *slurp(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fail("open", path);
    }
    ssize_t n = read(fd, buf, size - 1);
    if (n < 0 || (size_t)n == size - 1) {
        fail("read (or too big)", path);
    }
    buf[n] = 0;
    close(fd);
    return buf;
}

static char conf_buf[4096];
static char order_buf[16384];

static const char *conf_keys[16], *conf_values[16];

// /etc/cinit.conf as "key value" lines, cut in place once.
static void read_conf(void) {
    char *p = slurp("/etc/cinit.conf", conf_buf, sizeof conf_buf);
    int n = 0;
    while (*p && n < 16) {
        char *end = strchr(p, '\n'), *sp = strchr(p, ' ');
        if (end) {
            *end = 0;
        }
        if (sp && (!end || sp < end)) {
            *sp = 0;
            conf_keys[n] = p;
            conf_values[n++] = sp + 1;
        }
        if (!end) {
            break;
        }
        p = end + 1;
    }
}

static const char *conf(const char *key) {
    for (int i = 0; i < 16 && conf_keys[i]; i++) {
        if (!strcmp(conf_keys[i], key)) {
            return conf_values[i];
        }
    }
    errno = ENOENT;
    fail("no key in /etc/cinit.conf:", key);
    return NULL;
}

static void load_modules(void) {
    char *p = slurp("/etc/modules.order", order_buf, sizeof order_buf);
    while (*p) {
        char *end = strchr(p, '\n');
        if (end) {
            *end = 0;
        }
        if (*p) {
            int fd = open(p, O_RDONLY | O_CLOEXEC);
            if (fd < 0 || syscall(SYS_finit_module, fd, "", 0) != 0) {
                if (errno != EEXIST) {
                    say("insmod %s failed: %s", p, strerror(errno));  // as the peer: logged, not fatal
                }
            }
            if (fd >= 0) {
                close(fd);
            }
        }
        if (!end) {
            break;
        }
        p = end + 1;
    }
}

// Wait for the medium's node in devtmpfs, checking every millisecond, for at most 30 s.
static void wait_for(const char *dev) {
    struct timespec ms = { 0, 1000000 };
    struct stat st;
    for (int i = 0; i < 30000; i++) {
        if (stat(dev, &st) == 0) {
            return;
        }
        nanosleep(&ms, NULL);
    }
    fail("no device node", dev);
}

// The squashfs file on a free loop device, read-only (LOOP_CONFIGURE: Linux 5.8, drivers/block/loop.c). Returns
// the loop device's descriptor: with LO_FLAGS_AUTOCLEAR the kernel detaches the file at the last close
// (lo_release()), so it stays open until the mount holds the device.
static int loop_attach(const char *file, char *loopdev, size_t size) {
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0) {
        fail("open", "/dev/loop-control");
    }
    int n = ioctl(ctl, LOOP_CTL_GET_FREE);
    if (n < 0) {
        fail("LOOP_CTL_GET_FREE", "/dev/loop-control");
    }
    close(ctl);
    snprintf(loopdev, size, "/dev/loop%d", n);
    int lfd = open(loopdev, O_RDWR | O_CLOEXEC);
    int ffd = open(file, O_RDONLY | O_CLOEXEC);
    if (lfd < 0 || ffd < 0) {
        fail("open", lfd < 0 ? loopdev : file);
    }
    struct loop_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.fd = ffd;
    cfg.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
    if (ioctl(lfd, LOOP_CONFIGURE, &cfg) != 0) {
        fail("LOOP_CONFIGURE", loopdev);
    }
    close(ffd);
    return lfd;
}

static void log_vmhwm(void) {
    char buf[2048];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) {
        close(fd);
    }
    if (n <= 0) {
        return;
    }
    buf[n] = 0;
    char *p = strstr(buf, "VmHWM:");
    if (p) {
        say("VmHWM: %ld kB", strtol(p + 6, NULL, 10));
    }
}

// Empty the initramfs (the rootfs at "/"), never crossing into another filesystem: what switch_root(8) does so the
// RAM is given back. Best effort, like it.
static void delete_tree(int dirfd, dev_t rootdev) {
    DIR *d = fdopendir(dirfd);
    if (!d) {
        close(dirfd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) {
            continue;
        }
        struct stat st;
        if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_dev != rootdev) {
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (sub >= 0) {
                delete_tree(sub, rootdev);
            }
            unlinkat(dirfd, e->d_name, AT_REMOVEDIR);
        } else {
            unlinkat(dirfd, e->d_name, 0);
        }
    }
    closedir(d);
}

int main(void) {
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    kmsg = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
    say("start");

    read_conf();
    load_modules();
    say("modules: done");

    const char *medium = conf("medium");
    wait_for(medium);
    say("medium: %s", medium);

    mkdir("/mnt", 0755);
    mkdir("/mnt/medium", 0755);
    mkdir("/mnt/rootfs", 0755);
    mkdir("/mnt/cow", 0755);
    mkdir(NEW_ROOT, 0755);
    do_mount(medium, "/mnt/medium", conf("fstype"), MS_RDONLY, conf("options"));
    char image[256], loopdev[32];
    snprintf(image, sizeof image, "/mnt/medium%s", conf("image"));
    int lfd = loop_attach(image, loopdev, sizeof loopdev);
    do_mount(loopdev, "/mnt/rootfs", "squashfs", MS_RDONLY, NULL);
    close(lfd);
    do_mount("tmpfs", "/mnt/cow", "tmpfs", 0, "size=50%");
    mkdir("/mnt/cow/upper", 0755);
    mkdir("/mnt/cow/work", 0755);
    do_mount("overlay", NEW_ROOT, "overlay", 0,
             "lowerdir=/mnt/rootfs,upperdir=/mnt/cow/upper,workdir=/mnt/cow/work");
    if (access(NEW_ROOT "/sbin/init", X_OK) != 0) {
        fail("not executable:", NEW_ROOT "/sbin/init");
    }
    say("root: done");

    log_vmhwm();
    say("switch_root");
    do_mount("/dev", NEW_ROOT "/dev", NULL, MS_MOVE, NULL);
    do_mount("/proc", NEW_ROOT "/proc", NULL, MS_MOVE, NULL);
    do_mount("/sys", NEW_ROOT "/sys", NULL, MS_MOVE, NULL);
    struct stat root;
    if (stat("/", &root) == 0) {
        delete_tree(open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC), root.st_dev);
    }
    if (chdir(NEW_ROOT) != 0) {
        fail("chdir", NEW_ROOT);
    }
    do_mount(".", "/", NULL, MS_MOVE, NULL);
    if (chroot(".") != 0 || chdir("/") != 0) {
        fail("chroot", NEW_ROOT);
    }
    // The new root's init gets the console as stdin/stdout/stderr: the kernel opened /dev/console for us
    // (init/main.c console_on_rootfs()) and those descriptors survive the exec.
    execl("/sbin/init", "/sbin/init", (char *)NULL);
    fail("exec", "/sbin/init");
    return 1;
}
