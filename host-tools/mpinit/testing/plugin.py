"""pytest plugin (pytest11 entry point `mpinit`): the `fake_machine` fixture.

    def test_boots(fake_machine):
        m = fake_machine(cmdline="root=live:LABEL=MPLIVE", ram_mb=1024)
        ...
        result = m.boot()

The fixture builds on pyfakefs's `fs` fixture (so the test's whole filesystem is fake while it runs) and makes sure
mpinit_agent.syscalls is back to its previous implementation afterwards, even when the test fails mid-boot.
"""

import pytest

from mpinit.testing.machine import preload_agent

# At plugin load, before any test's fake filesystem exists (see preload_agent for why).
preload_agent()


@pytest.fixture
def fake_machine(fs):
    """A factory: fake_machine(cmdline=, ram_mb=, config=, kver=, builtin=, devtmpfs=) -> FakeMachine.

    One machine per test: they share the test's fake filesystem."""
    from mpinit.testing import FakeMachine

    made = []

    def factory(**kw):
        if made:
            raise RuntimeError("fake_machine: one machine per test (they would share one fake filesystem)")
        m = FakeMachine(fs=fs, **kw)
        made.append(m)
        return m

    def from_capture(source, **kw):
        """A machine rebuilt from a capture file (or console log, bytes, dict): mpinit.testing.replay."""
        import os

        from mpinit.testing import replay

        if made:
            raise RuntimeError("fake_machine: one machine per test (they would share one fake filesystem)")
        if isinstance(source, (str, os.PathLike)) and not os.path.exists(source) and "\n" not in str(source):
            fs.add_real_file(os.fspath(source))    # the test's filesystem is the fake one: bring the file in
        m = replay.machine_from_capture(source, fs=fs, **kw)
        made.append(m)
        return m

    factory.from_capture = from_capture
    yield factory
    for m in made:
        if m.kernel is not None:
            m.stop()
