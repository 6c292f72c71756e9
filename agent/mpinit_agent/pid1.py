# The module /init runs: initmain.c starts MicroPython with `-m mpinit_agent.pid1`, which imports this frozen
# module as __main__ (ports/unix/main.c: -m calls __import__ directly). Unlike `-c "<code>"` that asks for no
# lexer, parser or compiler run before the first line of the agent: under QEMU's TCG every C function's first
# run is translated, and the compiler is a large share of the interpreter that a boot never uses otherwise.
#
# Imported any other way (CPython, the fake machine's module sweep) it does nothing.
if __name__ == "__main__":
    import sys

    # sys.path is ["", ".frozen"] (ports/unix/main.c always puts the current directory first). An import of an
    # extensible built-in (os, time, json, struct, ...) is never cached in sys.modules and looks in every sys.path
    # entry before the built-in (py/builtinimport.c process_import_at_level): with "" that is stat("os") and
    # stat("os.py") in the initramfs's / at every `import os` the agent runs, and a file named json.py added to the
    # image would replace the built-in inside PID 1. The package itself is imported already (this module is in
    # it), so from here on imports come from the frozen agent and the built-ins only.
    if "" in sys.path:
        sys.path.remove("")
    # -m also registered this module as sys.modules["__main__"] (py/builtinimport.c process_import_at_level,
    # override_main). The rescue REPL's Tab completion reads the interpreter's own __main__ (py/repl.c
    # mp_repl_autocomplete: mp_module___main__), and replkit.namespace() gets that one by `import __main__` only
    # when the name is not taken: give it back.
    sys.modules.pop("__main__", None)
    # MicroPython collects only when its heap (2 MB, initmain.c) is full, so every page of it gets touched first:
    # PID 1's peak memory (VmHWM) was 2588 kB with 32 disks of 4 partitions against 1004 kB for a plain boot. A
    # collection after each 512 KiB allocated holds it near what is alive: 1268 kB with 8 or 32 disks (py/gc.c
    # gc_alloc: MICROPY_GC_ALLOC_THRESHOLD); a plain boot allocates less and never collects (1004 kB either way).
    import gc

    gc.threshold(0x80000)
    from mpinit_agent import main

    main.start()
