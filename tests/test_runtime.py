"""The built /init (build/mpinit-init): static, inside its size budget, a plain MicroPython under any other name,
and as `init` outside PID 1 it refuses before doing anything."""

import gzip
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import require_tools

pytestmark = pytest.mark.runtime

SIZE_BUDGET = 600 * 1024
GZIP_BUDGET = 320 * 1024
REFUSAL = "mpinit: /init must run as PID 1 (the kernel's init); refusing to act (pid %d)"

PT_INTERP = 3


def program_header_types(path):
    """The p_type of every ELF program header, read straight from the file (ELF spec, Elf32/64_Ehdr/Phdr)."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF", "%s is not an ELF file" % path
    elf_class, elf_data = data[4], data[5]
    assert elf_class in (1, 2) and elf_data in (1, 2), "bad ELF ident in %s" % path
    end = "<" if elf_data == 1 else ">"
    if elf_class == 2:
        e_phoff, = struct.unpack_from(end + "Q", data, 0x20)
        e_phentsize, e_phnum = struct.unpack_from(end + "HH", data, 0x36)
    else:
        e_phoff, = struct.unpack_from(end + "I", data, 0x1C)
        e_phentsize, e_phnum = struct.unpack_from(end + "HH", data, 0x2A)
    assert e_phnum > 0 and e_phoff + e_phnum * e_phentsize <= len(data)
    return [struct.unpack_from(end + "I", data, e_phoff + i * e_phentsize)[0] for i in range(e_phnum)]


def run(argv, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60, **kw)


def test_program_header_parser_sees_an_interpreter_in_a_dynamic_binary():
    # The check below is only worth something if the parser finds PT_INTERP where there is one: CPython here is
    # dynamically linked when its file names the dynamic loader (the PT_INTERP string, e.g. /lib64/ld-linux-...).
    import sys

    python = Path(os.path.realpath(sys.executable))
    if b"/ld-" not in python.read_bytes()[:65536]:
        pytest.skip("%s names no dynamic loader: statically linked" % python)
    assert PT_INTERP in program_header_types(python)


def test_binary_is_static(runtime_binary):
    types = program_header_types(runtime_binary)
    assert PT_INTERP not in types, "%s has a PT_INTERP program header: not static" % runtime_binary


def test_size_budget(runtime_binary, record_property):
    data = runtime_binary.read_bytes()
    size, gz = len(data), len(gzip.compress(data, compresslevel=9, mtime=0))
    record_property("runtime_size", size)
    record_property("runtime_size_gzip", gz)
    print("%s: %d bytes, %d gzipped" % (runtime_binary, size, gz))
    assert size <= SIZE_BUDGET, "%d bytes > %d" % (size, SIZE_BUDGET)
    assert gz <= GZIP_BUDGET, "%d bytes gzipped > %d" % (gz, GZIP_BUDGET)


def test_plain_micropython(runtime_binary):
    proc = run([runtime_binary, "-c", "print(1+1)"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "2\n"


def test_native_module_and_needed_modules_import(runtime_binary):
    code = ("import _linux, os, io, struct, errno, select, time, json, re, binascii, hashlib, sys\n"
            "print(binascii.hexlify(hashlib.sha256(b'abc').digest()).decode())\n"
            "print(2 ** 100)\n"
            "print(eval('6*7'), compile('1', 's', 'eval') is not None)\n"
            "exec('x = 5')\n"
            "print(x, sys.stdin is not None, sys.stdout is not None)\n")
    proc = run([runtime_binary, "-c", code])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        str(2 ** 100),
        "42 True",
        "5 True True",
    ]


def test_trimmed_modules_are_absent(runtime_binary):
    # ffi, ssl, btree, bluetooth, jni, threads and sockets are out of the variant.
    code = ("for m in ('ffi', 'ssl', 'tls', 'btree', 'bluetooth', 'jni', '_thread', 'socket'):\n"
            "    try:\n"
            "        __import__(m)\n"
            "        print('present', m)\n"
            "    except ImportError:\n"
            "        pass\n"
            "print('done')\n")
    proc = run([runtime_binary, "-c", code])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n"


def test_agent_is_frozen_without_linux_abi(runtime_binary, tmp_path):
    # Run from an empty directory so only the frozen package can be found.
    code = ("import mpinit_agent.syscalls as sc, mpinit_agent.contract\n"
            "print(sc._NATIVE)\n"
            "try:\n"
            "    import mpinit_agent.linux_abi\n"
            "    print('linux_abi frozen')\n"
            "except ImportError:\n"
            "    print('no linux_abi')\n")
    proc = run([runtime_binary, "-c", code], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["True", "no linux_abi"]


@pytest.mark.parametrize("how", ["symlink", "copy"])
def test_init_outside_pid1_refuses(runtime_binary, tmp_path, how):
    init = tmp_path / "init"
    if how == "symlink":
        init.symlink_to(runtime_binary)
    else:
        shutil.copy2(runtime_binary, init)
    marker = tmp_path / "touched"
    # Were the agent to start, this environment would not stop it; the refusal must come before any Python runs.
    env = dict(os.environ, MICROPYINSPECT="1")
    proc = subprocess.Popen([str(init), "-c", "open(%r, 'w').close()" % str(marker)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, cwd=tmp_path, env=env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err == REFUSAL % proc.pid + "\n"
    assert out == ""
    assert not marker.exists()


@pytest.mark.parametrize("name", ["not-init", "mpinit-init", "init.py"])
def test_other_names_are_plain_micropython(runtime_binary, tmp_path, name):
    # Only the basename "init" (or PID 1) makes it the init.
    other = tmp_path / name
    other.symlink_to(runtime_binary)
    proc = run([other, "-c", "print('plain')"])
    assert (proc.returncode, proc.stdout) == (0, "plain\n"), proc.stderr


# Namespaces for running the binary as PID 1. A user namespace as well as PID and mount namespaces: even if
# the refusals under test were broken and the real agent ran, it could not touch the host (no CAP_MKNOD, sysctls,
# console or reboot outside the namespaces; its mounts stay in the private mount namespace).
SANDBOX = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount", "--propagation", "private"]


def _sandbox_works():
    require_tools("unshare")
    probe = subprocess.run(SANDBOX + ["true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("cannot create user+PID+mount namespaces here: %s" % probe.stderr.strip())


def test_pid1_outside_an_initramfs_refuses(runtime_binary, tmp_path):
    """PID 1 of a PID namespace on the host's root (not ramfs/tmpfs) refuses: `unshare --pid --fork /init` on a
    workstation would otherwise mount over the host's /proc, /run and /dev/pts."""
    _sandbox_works()
    from mpinit_agent import linux_abi

    fstype = run([runtime_binary, "-c", "import _linux; print(_linux.statfs('/')[0])"]).stdout.strip()
    if int(fstype) in (linux_abi.RAMFS_MAGIC, linux_abi.TMPFS_MAGIC):
        pytest.skip("this machine's / is itself ramfs/tmpfs")
    proc = subprocess.run(SANDBOX + [str(runtime_binary), "-c", "print('ran')"], cwd=tmp_path,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == ("mpinit: / is not an initramfs (filesystem type 0x%x, not ramfs/tmpfs); refusing to act\n"
                           % int(fstype))


def pid1_in_tmpfs(runtime_binary, tmp_path, name, args, module, source):
    """The runtime as PID 1 named /<name> (with args) in a chroot into a fresh tmpfs (what an initramfs or
    /run/initramfs is), a stand-in mpinit_agent.<module> (source) in the chroot's / (sys.path[0]) taking the place of
    the frozen one, so nothing of the real agent runs; MICROPYPATH=/nonexistent. The CompletedProcess."""
    _sandbox_works()
    stage = tmp_path / "stage"
    (stage / "mpinit_agent").mkdir(parents=True)
    (stage / "mpinit_agent" / "__init__.py").write_text("")
    # The real entry module (initmain.c runs `-m mpinit_agent.pid1`), so the stand-in main is reached through it.
    shutil.copy2(Path(__file__).resolve().parent.parent / "agent" / "mpinit_agent" / "pid1.py",
                 stage / "mpinit_agent" / "pid1.py")
    (stage / "mpinit_agent" / (module + ".py")).write_text(source)
    shutil.copy2(runtime_binary, stage / name)
    root = tmp_path / "root"
    root.mkdir()
    script = 'mount -t tmpfs mpinit-test "$1" && cp -a "$2"/. "$1"/ && R="$1" && shift 2 && exec chroot "$R" /%s "$@"'
    env = dict(os.environ, MICROPYPATH="/nonexistent")
    return subprocess.run(SANDBOX + ["sh", "-c", script % name, "sh", str(root), str(stage)] + list(args), env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def test_pid1_on_an_initramfs_runs_the_agent_with_replaced_argv(runtime_binary, tmp_path):
    """PID 1 with a tmpfs root (a chroot into a fresh tmpfs) runs mpinit_agent.main.start(), whatever its own
    arguments and MICROPYPATH say.

    A stand-in package in the chroot's / (sys.path[0] is "", the current directory) takes the place of the frozen
    agent, so nothing of the real boot runs; when start() returns, the binary says so and falls back to a REPL
    (which ends at once on the empty stdin)."""
    proc = pid1_in_tmpfs(runtime_binary, tmp_path, "init", ["ignored", "words"], "main",
                         "import sys, os, gc, _linux\n"
                         "def start():\n"
                         "    print('agent pid', _linux.getpid(), 'argv', sys.argv[1:],\n"
                         "          'path', os.getenv('MICROPYPATH'))\n"
                         "    print('heap', gc.mem_free() + gc.mem_alloc())\n"
                         "    print('sys.path', sys.path)\n")
    assert "agent pid 1 argv [] path None\n" in proc.stdout, (proc.stdout, proc.stderr)
    # pid1.py drops "" once the package is imported: built-ins are not looked for in the initramfs's / any more.
    assert "sys.path ['.frozen']\n" in proc.stdout
    # -X heapsize=2M: the GC heap minus its allocation tables (py/gc.c: 1 table byte per 4 blocks of 16 bytes).
    heap = int(proc.stdout.split("heap ")[1].split()[0])
    assert 2 * 1024 * 1024 * 60 // 65 < heap <= 2 * 1024 * 1024
    assert "mpinit: the agent returned (status 0); starting a bare MicroPython REPL" in proc.stderr


# ---- buildsys/runtime.py itself (no binary needed) ----

def _runtime_module():
    import sys

    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from buildsys import runtime

    return runtime


def test_apt_mirror_uris_picks_the_main_archive(tmp_path):
    runtime = _runtime_module()
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n"
        "\nTypes: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n")
    (tmp_path / "sources.list.d" / "other.list").write_text(
        "deb [arch=amd64 signed-by=/k.gpg] http://other.example/debian bookworm main contrib\n"
        "deb http://third.example/mirror bookworm contrib\n")
    (tmp_path / "sources.list").write_text("# deb http://commented.example/debian bookworm main\n")
    assert runtime.apt_mirror_uris(tmp_path) == ["http://mirror.example/debian", "http://other.example/debian"]


def test_apt_mirror_uris_empty_configuration(tmp_path):
    assert _runtime_module().apt_mirror_uris(tmp_path) == []


def test_source_error_names_every_way_tried(tmp_path, monkeypatch):
    runtime = _runtime_module()
    monkeypatch.setattr(runtime, "WORK", tmp_path)
    monkeypatch.setattr(runtime, "CACHE_TARBALL", tmp_path / runtime.ORIG_TARBALL)

    def no_apt():
        raise runtime.BuildError("apt-get not found")

    monkeypatch.setattr(runtime, "_fetch_with_apt", no_apt)
    with pytest.raises(runtime.BuildError) as e:
        runtime.source_tree(None)
    msg = str(e.value)
    assert "no cached" in msg and "apt-get source micropython=1.25.0+ds-1" in msg and "--micropython-src" in msg


def test_micropython_src_is_checked(tmp_path):
    runtime = _runtime_module()
    with pytest.raises(runtime.BuildError, match="not a MicroPython source tree"):
        runtime.source_tree(str(tmp_path))
    with pytest.raises(runtime.BuildError, match="no such file"):
        runtime.source_tree(str(tmp_path / "missing"))
    (tmp_path / "py").mkdir()
    (tmp_path / "ports" / "unix").mkdir(parents=True)
    (tmp_path / "ports" / "unix" / "Makefile").write_text("")
    (tmp_path / "py" / "mpconfig.h").write_text("#define MICROPY_VERSION_MAJOR 1\n#define MICROPY_VERSION_MINOR 24"
                                                "\n#define MICROPY_VERSION_MICRO 1\n")
    with pytest.raises(runtime.BuildError, match="is MicroPython 1.24.1; mpinit needs 1.25.0"):
        runtime.source_tree(str(tmp_path))


def test_inputs_hash_follows_agent_native_and_manifest(tmp_path, monkeypatch):
    runtime = _runtime_module()
    agent = tmp_path / "agent"
    (agent / "mpinit_agent").mkdir(parents=True)
    (agent / "native" / "variant").mkdir(parents=True)
    (agent / "mpinit_agent" / "a.py").write_text("x = 1\n")
    (agent / "native" / "modlinux.c").write_text("int x;\n")
    (agent / "manifest.py").write_text("package('mpinit_agent')\n")
    for name, value in (("ROOT", tmp_path), ("AGENT", agent), ("NATIVE", agent / "native"),
                        ("VARIANT_DIR", agent / "native" / "variant"), ("MANIFEST", agent / "manifest.py")):
        monkeypatch.setattr(runtime, name, value)
    seen = {runtime._inputs_hash("config")}
    assert runtime._inputs_hash("config") in seen, "not deterministic"
    for path, text in ((agent / "mpinit_agent" / "a.py", "x = 2\n"), (agent / "native" / "modlinux.c", "int y;\n"),
                       (agent / "manifest.py", "package('other')\n"), (agent / "mpinit_agent" / "new.py", "")):
        path.write_text(text)
        h = runtime._inputs_hash("config")
        assert h not in seen, "%s changed but the hash did not" % path
        seen.add(h)
    assert runtime._inputs_hash("other config") not in seen
    (agent / "mpinit_agent" / "__pycache__").mkdir()
    (agent / "mpinit_agent" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"junk")
    assert runtime._inputs_hash("config") in seen, "bytecode caches must not trigger rebuilds"


def test_sizes_reports_gzip(tmp_path):
    runtime = _runtime_module()
    f = tmp_path / "f"
    f.write_bytes(b"a" * 100000)
    size, gz = runtime.sizes(f)
    assert size == 100000 and 0 < gz < 1000
