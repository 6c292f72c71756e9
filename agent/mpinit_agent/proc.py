# Running helper programs from PID 1 (mdadm, lvm, fsck, a shell from the rescue REPL): spawn, wait, exit code.
from . import fsutil
from . import syscalls as sc

# Where packed tools live in the image (mpinit pack copies binaries to their host paths).
TOOL_DIRS = ("/sbin", "/usr/sbin", "/bin", "/usr/bin")


def find_tool(name, dirs=TOOL_DIRS):
    """The first dirs/name that is a file, or None (no PATH: PID 1 has no environment to speak of)."""
    for d in dirs:
        path = d + "/" + name
        if fsutil.isfile(path):
            return path
    return None


def wait(pid):
    """Wait for one child; returns its exit code (-signal when killed). Retries EINTR."""
    while True:
        try:
            return sc.exit_code(sc.waitpid(pid, 0)[1])
        except OSError as e:
            if not e.args or e.args[0] != sc.EINTR:
                raise


def run(argv, env=None, stdin_data=None):
    """spawn + wait: the exit code (127: could not exec, as a shell reports it). Raises OSError when fork fails.
    stdin_data: bytes for the child's stdin (a pipe), e.g. a passphrase; never put a secret in argv."""
    if stdin_data is None:
        return wait(sc.spawn(list(argv), env))
    return wait(sc.spawn(list(argv), env, stdin_data))
