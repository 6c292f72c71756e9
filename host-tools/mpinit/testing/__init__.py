"""mpinit's fake machine: run the agent's whole boot on CPython over a fake filesystem (pyfakefs)."""
