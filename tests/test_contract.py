"""mpinit_agent.contract: load_config() and the constants both sides rely on.

Runs under CPython pytest and under the built MicroPython (tests/mpy/run.py)."""

import pytest

from mpinit_agent import contract
from mpinit_agent.contract import DEFAULTS, load_config

MICROPYTHON = True


def test_empty_text_gives_the_defaults():
    assert load_config("") == DEFAULTS
    assert load_config("  \n") == DEFAULTS
    assert load_config("{}") == DEFAULTS


def test_given_keys_override():
    conf = load_config('{"modules": ["loop", "squashfs"], "root_wait_s": 5, "shell": false, '
                       '"cmdline": "quiet", "overlay_size": "75%"}')
    assert conf["modules"] == ["loop", "squashfs"]
    assert conf["root_wait_s"] == 5
    assert conf["shell"] is False
    assert conf["cmdline"] == "quiet"
    assert conf["overlay_size"] == "75%"
    assert conf["blacklist"] == [] and conf["panic_s"] == 10  # the others keep their defaults


def test_result_does_not_share_lists_with_defaults():
    conf = load_config("")
    conf["modules"].append("x")
    conf["blacklist"].append("y")
    assert DEFAULTS["modules"] == [] and DEFAULTS["blacklist"] == []
    assert load_config("")["modules"] == []


def test_every_default_key_is_accepted_with_its_own_value():
    import json

    assert load_config(json.dumps(DEFAULTS)) == DEFAULTS


@pytest.mark.parametrize("text, words", [
    ('{"modlues": []}', "unknown key 'modlues'"),
    ('{"root_wait_s": "30"}', "'root_wait_s' must be int"),
    ('{"root_wait_s": true}', "'root_wait_s' must be int"),
    ('{"root_wait_s": -1}', "'root_wait_s' must not be negative"),
    ('{"shell": 1}', "'shell' must be bool"),
    ('{"modules": "loop"}', "'modules' must be list"),
    ('{"modules": ["loop", 3]}', "'modules' must be a list of names"),
    ('{"blacklist": [""]}', "'blacklist' must be a list of names"),
    ('{"cmdline": null}', "'cmdline' must be str"),
    ("[1, 2]", "must be a JSON object"),
    ("{not json", "not valid JSON"),
])
def test_bad_config_names_the_source_and_key(text, words):
    with pytest.raises(ValueError, match=words):
        load_config(text, source="test.json")
    with pytest.raises(ValueError, match="test.json"):
        load_config(text, source="test.json")


def test_error_names_the_default_path():
    with pytest.raises(ValueError, match=contract.CONFIG_PATH):
        load_config('{"nope": 1}')


def test_stages_are_the_documented_order():
    assert contract.STAGES == ("early", "cmdline", "modules", "devices", "network", "medium", "toram", "persistence",
                               "root", "handoff")


def test_paths_are_absolute():
    for name in ("INIT_PATH", "CONFIG_PATH", "MODULES_TABLE_PATH", "MODULES_DIR", "FIRMWARE_DIR", "KEYMAP_PATH",
                 "HOOKS_DIR", "INITRD_RELEASE", "RUN_DIR", "TIMELINE_PATH", "MEDIUM_MOUNT", "ISO_MOUNT",
                 "TORAM_MOUNT", "IMAGE_MOUNT", "COW_MOUNT", "NEW_ROOT"):
        path = getattr(contract, name)
        assert path.startswith("/") and not path.endswith("/"), name
    for path in contract.IMAGE_DIRS:
        assert path.startswith("/")


def test_default_cmdline_parses():
    from mpinit_agent import cmdline

    opts = cmdline.parse("", defaults=load_config("")["cmdline"])
    assert opts.live_dir == DEFAULTS["live_dir"] and opts.live_image == DEFAULTS["live_image"]
