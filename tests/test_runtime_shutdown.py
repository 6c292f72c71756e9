"""The built binary as systemd-shutdown's exitrd (agent/native/initmain.c, named "shutdown"): outside PID 1 it
refuses; as PID 1 on a tmpfs root it runs mpinit_agent.shutdown.start(verb) with argv[1] as the verb, and only
one of systemd-shutdown's verbs gets through (the Python code is compiled from a string holding it)."""

import subprocess

import pytest

from test_runtime import pid1_in_tmpfs

pytestmark = pytest.mark.runtime


def test_shutdown_outside_pid1_refuses(runtime_binary, tmp_path):
    exe = tmp_path / "shutdown"
    exe.symlink_to(runtime_binary.resolve())
    marker = tmp_path / "touched"
    proc = subprocess.run([str(exe), "-c", "open(%r, 'w').close()" % str(marker)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("mpinit: shutdown must run as PID 1 (systemd-shutdown's exitrd); refusing")
    assert not marker.exists()


@pytest.mark.parametrize("args, verb", [
    (["poweroff", "--log-level", "info", "--log-target", "console"], "poweroff"),
    (["reboot"], "reboot"),
    (["halt"], "halt"),
    (["kexec"], "kexec"),
    ([], ""),
    (["poweroff');print('injected"], ""),
])
def test_pid1_named_shutdown_runs_the_exitrd_with_the_verb(runtime_binary, tmp_path, args, verb):
    """A chroot into a fresh tmpfs (what /run/initramfs is) with a stand-in mpinit_agent.shutdown in the current
    directory (sys.path[0]) in place of the frozen one: nothing of the real exitrd runs."""
    proc = pid1_in_tmpfs(runtime_binary, tmp_path, "shutdown", args, "shutdown",
                         "import _linux\n"
                         "def start(verb):\n"
                         "    print('exitrd pid', _linux.getpid(), 'verb', repr(verb))\n")
    assert "exitrd pid 1 verb %r\n" % verb in proc.stdout, (proc.stdout, proc.stderr)
    assert "injected" not in proc.stdout.replace("verb %r" % verb, "")
