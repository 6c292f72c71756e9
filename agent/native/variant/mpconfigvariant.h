// mpinit's variant of MicroPython's unix port: what a PID 1 init agent and a comfortable rescue REPL need,
// nothing else. Used as VARIANT_DIR by buildsys/runtime.py; MicroPython's own sources are not patched.
//
// Modelled on ports/unix/variants/standard + variants/mpconfigvariant_common.h, with what an init never uses
// turned off (native emitters, websocket, machine, asyncio, VFS ROM, memory statistics) to stay inside the size
// budget (600 KB, 320 KB gzipped).

#define MICROPY_CONFIG_ROM_LEVEL (MICROPY_CONFIG_ROM_LEVEL_EXTRA_FEATURES)

// Ctrl-C in the rescue REPL interrupts directly from the signal handler.
#define MICROPY_ASYNC_KBD_INTR         (1)

// Floats (progress percentages, timing) as double; arbitrary precision ints (sizes, sha256 digests as ints).
#define MICROPY_FLOAT_IMPL             (MICROPY_FLOAT_IMPL_DOUBLE)
#define MICROPY_FLOAT_USE_NATIVE_FLT16 (0)
#define MICROPY_LONGINT_IMPL           (MICROPY_LONGINT_IMPL_MPZ)

// Streams over plain fds (read/write/lseek), as the standard variant.
#define MICROPY_STREAMS_POSIX_API      (1)

// Rescue REPL conveniences: readline-style editing and history (MICROPY_USE_READLINE=1 in the .mk).
#define MICROPY_REPL_EMACS_WORDS_MOVE  (1)
#define MICROPY_REPL_EMACS_EXTRA_WORDS_MOVE (1)
#define MICROPY_USE_READLINE_HISTORY   (1)
#define MICROPY_READLINE_HISTORY_SIZE  (20)

// Exceptions still carry their details when the heap is exhausted: the failure report matters most then.
#define MICROPY_ENABLE_EMERGENCY_EXCEPTION_BUF (1)
#define MICROPY_EMERGENCY_EXCEPTION_BUF_SIZE (256)

// The frozen agent is bytecode; no .mpy loading from the initramfs and no native code emitters.
#define MICROPY_PERSISTENT_CODE_LOAD   (0)
#define MICROPY_EMIT_X64               (0)
#define MICROPY_EMIT_X86               (0)
#define MICROPY_EMIT_THUMB             (0)
#define MICROPY_EMIT_ARM               (0)
#define MICROPY_EMIT_INLINE_THUMB      (0)

#define MICROPY_OPT_COMPUTED_GOTO      (1)
#define MICROPY_PY_GC_COLLECT_RETVAL   (1)

// Detailed error messages: a boot failure must say what went wrong.
#define MICROPY_ERROR_REPORTING        (MICROPY_ERROR_REPORTING_DETAILED)
#define MICROPY_WARNINGS               (1)

#define MICROPY_PY_SYS_ATEXIT          (1)
#define MICROPY_PY_SYS_EXC_INFO        (1)

// os: the unix port's extras (getenv, system, urandom, errno).
#define MICROPY_PY_OS_INCLUDEFILE      "ports/unix/modos.c"
#define MICROPY_PY_OS_ERRNO            (1)
#define MICROPY_PY_OS_GETENV_PUTENV_UNSETENV (1)
#define MICROPY_PY_OS_SYSTEM           (1)
#define MICROPY_PY_OS_URANDOM          (1)

// time: the unix port's module (sleep_ms, ticks_ms, time).
#define MICROPY_PY_TIME                (1)
#define MICROPY_PY_TIME_TIME_TIME_NS   (1)
#define MICROPY_PY_TIME_CUSTOM_SLEEP   (1)
#define MICROPY_PY_TIME_INCLUDEFILE    "ports/unix/modtime.c"

// select.poll (console and uevent waits); select.select() is not needed.
#define MICROPY_PY_SELECT_POSIX_OPTIMISATIONS (1)
#define MICROPY_PY_SELECT_SELECT       (0)

// hashlib: sha256 verifies image checksums (sha512: agent/native/sha512.c). Its sha1/md5 need mbedTLS or
// axTLS (extmod/modhashlib.c), which this variant leaves out with ssl.
#define MICROPY_PY_HASHLIB             (1)
#define MICROPY_PY_HASHLIB_SHA256      (1)

// Not needed by an init.
#define MICROPY_PY_WEBSOCKET           (0)
#define MICROPY_PY_MACHINE             (0)
#define MICROPY_PY_FRAMEBUF            (0)
#define MICROPY_PY_ASYNCIO             (0)
#define MICROPY_PY_CRYPTOLIB           (0)
#define MICROPY_PY_DEFLATE             (0)
#define MICROPY_PY_UCTYPES             (0)
#define MICROPY_PY_SYS_SETTRACE        (0)
#define MICROPY_VFS_ROM                (0)
#define MICROPY_MEM_STATS              (0)
// Numeric and container extras of the EXTRA_FEATURES level that no init code (nor the rescue helpers) uses:
// left out to keep /init inside its gzipped budget with the network, LUKS and persistence code frozen in
// (about 10 KB; see py/mpconfig.h for what each switch removes).
#define MICROPY_PY_BUILTINS_COMPLEX    (0)
#define MICROPY_PY_CMATH               (0)
#define MICROPY_PY_MATH                (0)
#define MICROPY_PY_MATH_SPECIAL_FUNCTIONS (0)
#define MICROPY_PY_MATH_FACTORIAL      (0)
#define MICROPY_OPT_MATH_FACTORIAL     (0)
#define MICROPY_PY_HEAPQ               (0)
#define MICROPY_PY_RANDOM              (0)
#define MICROPY_PY_PLATFORM            (0)
#define MICROPY_PY_COLLECTIONS_DEQUE   (0)
#define MICROPY_PY_COLLECTIONS_ORDEREDDICT (0)
#define MICROPY_PY_RE_SUB              (0)
#define MICROPY_PY_BUILTINS_FROZENSET  (0)
#define MICROPY_PY_BUILTINS_STR_CENTER (0)
#define MICROPY_PY_MICROPYTHON_RINGIO  (0)
// ports/unix/main.c needs mp_verbose_flag (-v, mem_info), which only exists with the debug printers.
#define MICROPY_DEBUG_PRINTERS         (1)

// Frozen modules first; no per-user or system library directories on an initramfs.
#define MICROPY_PY_SYS_PATH_DEFAULT    ".frozen"
