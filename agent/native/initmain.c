// /init's entry point. The link maps the C runtime's call of main() to __wrap_main() (-Wl,--wrap=main in
// micropython.mk), so the unix port's own main() (now __real_main) stays unpatched.
//
// Run as PID 1, or under a name whose basename is "init": this is the init. Anything but PID 1 then refuses
// before touching anything, so running /init by mistake on a workstation never mounts over the host. PID 1 of a
// PID namespace (`unshare --pid --fork`, a container) shares the host's mounts, devices and sysctls, so PID 1
// also has to find an initramfs at / (ramfs or tmpfs: the kernel's rootfs, init/do_mounts.c) before acting.
// Any other name: a plain MicroPython (REPL, -c, -m), which is also how the tests and the rescue tools use it.
//
// Named "shutdown": the exitrd. The agent copies this binary to /run/initramfs/shutdown when a persistent layer is
// mounted read-write; at the end of the live system's shutdown systemd-shutdown(8) pivots into /run/initramfs (a
// tmpfs, so the ramfs/tmpfs guard below holds) and executes it as PID 1 with argv[0] "/shutdown" and argv[1] the
// verb (src/shutdown/shutdown.c). It runs mpinit_agent.shutdown.start(verb): unmount /oldroot, sync, reboot(2).

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/statfs.h>

#include <linux/magic.h>

// The GC heap of the agent. The whole boot must fit a 4 MB peak: the binary's pages (~0.5 MB, mapped from the
// initramfs) + this heap (MicroPython allocates it in one malloc and touches it all before its first collection)
// + C stack, musl and kernel per-process state (~0.3 MB). 2 MB leaves ~1 MB of headroom and is still far more
// than the agent needs: its code is frozen bytecode that lives in the binary, not on the heap, and big data
// (image copies, checksums) goes through fixed buffers or copy_file_range(2) in the kernel.
#ifndef MPINIT_HEAPSIZE
#define MPINIT_HEAPSIZE "2M"
#endif

// The agent runs as `-m MPINIT_AGENT_MODULE` (mpinit_agent/pid1.py): a frozen module imported directly, with no
// source compiled first (`-c` would run MicroPython's lexer, parser and compiler once, code that a boot never needs
// otherwise and that QEMU's TCG has to translate before it runs: about 2.5 ms less from here to the agent's first
// line in one instrumented boot each way). The exitrd keeps `-c`: its verb is part of the code.
#define MPINIT_AGENT_MODULE "mpinit_agent.pid1"
#define MPINIT_SHUTDOWN_CODE "import mpinit_agent.shutdown; mpinit_agent.shutdown.start('%s')"

// systemd-shutdown's verbs (src/shutdown/shutdown.c): only these reach the Python code, which is compiled from a
// string with the verb in it; anything else becomes "" (the agent reboots, as dracut's shutdown does).
static const char *const shutdown_verbs[] = { "reboot", "poweroff", "halt", "kexec", "exit", NULL };

int __real_main(int argc, char **argv);
int __wrap_main(int argc, char **argv);

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

int __wrap_main(int argc, char **argv) {
    pid_t pid = getpid();
    int named_init = argc > 0 && argv[0] != NULL && strcmp(base_name(argv[0]), "init") == 0;
    int named_shutdown = argc > 0 && argv[0] != NULL && strcmp(base_name(argv[0]), "shutdown") == 0;
    if (pid != 1 && !named_init && !named_shutdown) {
        return __real_main(argc, argv);
    }
    if (pid != 1) {
        if (named_shutdown) {
            fprintf(stderr, "mpinit: shutdown must run as PID 1 (systemd-shutdown's exitrd); refusing to act "
                "(pid %d)\n", (int)pid);
        } else {
            fprintf(stderr, "mpinit: /init must run as PID 1 (the kernel's init); refusing to act (pid %d)\n",
                (int)pid);
        }
        return 2;
    }
    struct statfs root;
    memset(&root, 0, sizeof(root));
    if (statfs("/", &root) != 0
        || ((unsigned long)root.f_type != RAMFS_MAGIC && (unsigned long)root.f_type != TMPFS_MAGIC)) {
        fprintf(stderr, "mpinit: / is not an initramfs (filesystem type 0x%lx, not ramfs/tmpfs); refusing to act\n",
            (unsigned long)root.f_type & 0xffffffffUL);
        return 2;
    }
    // The kernel hands init the command line words it did not recognise, as argv (words) and environment
    // (name=value, Documentation/admin-guide/kernel-parameters.rst). None of them may steer the interpreter:
    // argv is replaced, and MicroPython's own environment variables (ports/unix/main.c) are dropped.
    unsetenv("MICROPYPATH");
    unsetenv("MICROPYINSPECT");
    static char shutdown_code[sizeof(MPINIT_SHUTDOWN_CODE) + 16];
    if (named_shutdown) {
        const char *verb = "";
        for (int i = 0; argc > 1 && argv[1] != NULL && shutdown_verbs[i] != NULL; i++) {
            if (strcmp(argv[1], shutdown_verbs[i]) == 0) {
                verb = shutdown_verbs[i];
            }
        }
        snprintf(shutdown_code, sizeof(shutdown_code), MPINIT_SHUTDOWN_CODE, verb);
    }
    char *agent_argv[] = {
        argv[0] != NULL ? argv[0] : (char *)"/init",
        (char *)"-X", (char *)"heapsize=" MPINIT_HEAPSIZE,
        named_shutdown ? (char *)"-c" : (char *)"-m",
        named_shutdown ? shutdown_code : (char *)MPINIT_AGENT_MODULE,
        NULL
    };
    int status = __real_main(5, agent_argv);
    // start() never returns on a good boot (it execs the real init) and catches its own failures; getting here
    // is a bug. PID 1 exiting panics the kernel, so offer a bare REPL first.
    fprintf(stderr, "mpinit: the agent returned (status %d); starting a bare MicroPython REPL\n", status);
    char *repl_argv[] = { agent_argv[0], agent_argv[1], agent_argv[2], NULL };
    return __real_main(3, repl_argv);
}
