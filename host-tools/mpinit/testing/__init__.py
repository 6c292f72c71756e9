"""mpinit's fake machine: run the agent's whole boot on CPython over a fake filesystem (pyfakefs).

    from mpinit.testing import FakeMachine
    m = FakeMachine(cmdline="root=live:LABEL=MPLIVE", ram_mb=1024)
    ...describe disks, modules, hooks, programs...
    result = m.boot()

The pytest plugin (mpinit.testing.plugin, entry point `mpinit`) offers the same as the `fake_machine` fixture.
User guide: docs/fake-machine.md.
"""

from .kernel import Halt
from .machine import EOF, BootResult, Directory, Executable, FakeMachine, FilesystemImage, Symlink

__all__ = ["FakeMachine", "BootResult", "FilesystemImage", "Executable", "Symlink", "Directory", "Halt", "EOF"]
