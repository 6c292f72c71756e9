"""pytest plugin (pytest11 entry point `mpinit`): provides the `fake_machine` fixture. Filled in by the fake machine."""
