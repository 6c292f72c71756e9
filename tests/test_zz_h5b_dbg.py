from test_main import _sweep_machine
def test_x():
    r = _sweep_machine([]).boot()
    print(r.console); print("\n".join(r.kmsg))
