"""mpinit_agent.failure: the failure report's lines and errno texts."""

import pytest

from agent_stub import StubSys
from mpinit_agent.failure import BootError, format_exception, oserror_text

MICROPYTHON = True


def test_lines_name_stage_parameter_tried_and_seen():
    e = BootError("medium", "did not find it", param="root=live:LABEL=X", tried=["a", "b"], seen=["/dev/sda"])
    assert e.lines() == ["mpinit: boot failed in stage 'medium': did not find it", "  parameter: root=live:LABEL=X",
                         "  tried:", "    a", "    b", "  seen:", "    /dev/sda"]
    assert str(e) == "\n".join(e.lines())


def test_minimal_error_has_one_line():
    e = BootError("root", "x")
    assert e.lines() == ["mpinit: boot failed in stage 'root': x"] and e.tried == [] and e.seen == []
    with pytest.raises(BootError):
        raise e


def test_oserror_text_without_an_implementation():
    assert oserror_text(OSError(2)).startswith("errno 2")


def test_oserror_text_with_strerror(fs):
    with StubSys(fs):
        assert oserror_text(OSError(2, "No such file or directory", "/dev/sda")) == \
            "errno 2: No such file or directory (/dev/sda)"
        assert oserror_text(OSError(2, "/dev/sdb")) == "errno 2: No such file or directory (/dev/sdb)"
        assert oserror_text(OSError(5)) == "errno 5: Input/output error"


def test_format_exception_lists_the_traceback():
    try:
        raise ValueError("boom")
    except ValueError as e:
        lines = format_exception(e)
    assert lines[-1] == "ValueError: boom"
