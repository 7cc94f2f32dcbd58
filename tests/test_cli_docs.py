"""README and `--help` say the same: every option the README names exists, every option of the render commands
(interpolate, plan, convert) is in the README, codecs and choices agree."""
from __future__ import annotations

import re

import pytest

from conftest import REPO
from emavfi import cli

NOT_OURS = {"--index-url", "--start", "--end"}  # pip's (set-up command) and vspipe's (VapourSynth section)


def _options() -> dict[str, list[tuple[str, ...]]]:
    """Subcommand -> the option strings of each of its options (the top level as "")."""
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    found = {"": [tuple(a.option_strings) for a in parser._actions if a.option_strings]}
    for name, sub in commands.items():
        found[name] = [tuple(a.option_strings) for a in sub._actions if a.option_strings]
    return found


def test_every_option_the_readme_names_exists():
    readme = (REPO / "README.md").read_text()
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", readme)) - NOT_OURS
    known = {o for options in _options().values() for strings in options for o in strings}
    assert sorted(named - known) == []


RENDER_COMMANDS = ("", "interpolate", "plan", "convert")  # the README's; evaluate/finetune: docs/evaluation.md


def test_every_option_is_in_the_readme():
    readme = (REPO / "README.md").read_text()
    missing = sorted({f"{command or 'emavfi'} {strings[-1]}" for command, options in _options().items()
                      if command in RENDER_COMMANDS for strings in options if "--help" not in strings
                      and not any(re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", readme) for o in strings)})
    assert missing == []


def test_codecs_and_choices_agree_between_help_readme_and_code():
    video_out = pytest.importorskip("emavfi.media.video_out")
    readme = (REPO / "README.md").read_text()
    parser = cli.build_parser()
    run = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices["interpolate"]
    helps = {a.dest: a.help or "" for a in run._actions}
    for codec in video_out._CODECS:
        word = rf"(?<!\w){codec}(?!\w)"
        assert re.search(word, helps["codec"]) and re.search(word, readme), codec
    for action in run._actions:
        for choice in action.choices or ():
            assert str(choice) in readme or action.dest == "variant", (action.dest, choice)
