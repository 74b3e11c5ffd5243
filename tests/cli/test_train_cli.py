"""``psal train TASK`` and ``psal eval TASK``: help, and errors before any training."""

from __future__ import annotations

import os
import stat

import pytest

from psal.cli import build_parser, main


def _help(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def _choice_actions(*argv):
    parser = build_parser(list(argv))
    sub = next(a for a in parser._actions if a.dest == "command").choices[argv[0]]
    task = next(a for a in sub._actions if a.dest == "task").choices[argv[1]]
    return [a for a in task._actions if a.choices and a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("command", ["train", "eval"])
@pytest.mark.parametrize("task", ["inpaint", "colorize", "upscale"])
def test_help_lists_the_allowed_values_of_choice_options(capsys, command, task):
    actions = _choice_actions(command, task)
    if command == "train":
        assert actions  # --attention, --critic, --masks, --guide, --pairs, --scheduler ...
    text = _help(capsys, command, task)
    for action in actions:
        if action.dest == "model":  # --model lists its names in its own help
            continue
        listed = "one of " + ", ".join(str(c) for c in action.choices)
        assert listed in text, (action.option_strings, listed)


def _error(capsys, *argv) -> str:
    assert main(list(argv)) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("psal: error: "), err
    return err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_eval_json_to_a_fifo_is_refused_and_left_alone(tmp_path, capsys):
    """The atomic write would rename a regular file onto it (as root: onto /dev/null too)."""
    fifo = tmp_path / "metrics.json"
    os.mkfifo(fifo)
    err = _error(capsys, "eval", "inpaint", "--checkpoint", str(tmp_path / "none"),
                 "--data", str(tmp_path), "--json", str(fifo))  # fmt: skip
    assert "--json" in err and "not a regular file" in err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_eval_empty_json_name_is_an_error_before_the_evaluation(tmp_path, capsys):
    """``--json ''`` used to be taken as no --json: metrics silently not written."""
    err = _error(capsys, "eval", "inpaint", "--checkpoint", str(tmp_path / "none"),
                 "--data", str(tmp_path), "--json", "")  # fmt: skip
    assert "--json" in err and "file name" in err
