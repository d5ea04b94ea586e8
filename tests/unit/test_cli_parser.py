"""The parser as a user meets it: every option explained with its default, global options anywhere,
option values held to the config's own rules, --listen on run."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from edgeinfer.cli import build_parser


def _parsers(
    parser: argparse.ArgumentParser, path: str = "edgeinfer"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def _all_actions() -> list[tuple[str, argparse.Action]]:
    return [(path, a) for path, p in _parsers(build_parser()) for a in p._actions]


def test_every_option_of_every_verb_has_help() -> None:
    missing = [
        f"{path} {'/'.join(a.option_strings) or a.dest}"
        for path, a in _all_actions()
        if not a.help and (a.option_strings or not path.startswith("edgeinfer config"))
    ]  # positionals of `config` are edgeinfer/commands/config.py's (another change)
    assert missing == []


def test_help_shows_every_default() -> None:
    for path, parser in _parsers(build_parser()):
        text = parser.format_help()
        for action in parser._actions:
            default = action.default
            if not action.option_strings or default in (None, argparse.SUPPRESS) or default is False:
                continue
            if isinstance(default, bool | int | float | str) and not isinstance(default, bool):
                shown = {str(default), f"{default:g}" if isinstance(default, float) else str(default)}
                assert any(s in text for s in shown), (
                    f"{path} {action.option_strings[0]}: no {default} in --help"
                )
    detect = dict(_parsers(build_parser()))["edgeinfer detect"].format_help()
    assert "(default: 0.25)" in detect and "(default: 0.45)" in detect and "(default: 300)" in detect
    run = dict(_parsers(build_parser()))["edgeinfer run"].format_help()
    assert "--status-interval SECONDS" in run and "(default: 5.0)" in run
    events = dict(_parsers(build_parser()))["edgeinfer events"].format_help()
    assert "(default: 100)" in events


@pytest.mark.parametrize(
    ("argv", "level", "fmt"),
    [
        (["run"], "INFO", "text"),
        (["run", "--log-level", "DEBUG"], "DEBUG", "text"),
        (["run", "--log-level", "debug", "--log-format", "json"], "DEBUG", "json"),
        (["--log-level", "error", "events"], "ERROR", "text"),
        (["--log-level", "Warning", "--log-format", "json", "events"], "WARNING", "json"),
        (["--log-level", "error", "run", "--log-level", "warn"], "WARNING", "text"),  # after the verb wins
        (["model", "inspect", "--log-level", "error"], "ERROR", "text"),
        (["config", "show", "--log-format", "json"], "INFO", "json"),
    ],
)
def test_global_options_before_or_after_the_verb_in_any_case(argv: list[str], level: str, fmt: str) -> None:
    args = build_parser().parse_args(argv)
    assert (args.log_level, args.log_format) == (level, fmt)


def test_an_unknown_log_level_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["run", "--log-level", "loud"])
    assert exit_.value.code == 2
    assert "argument --log-level: 'loud': choose from DEBUG, INFO, WARNING, ERROR" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--conf", "1.5", "Input should be less than 1"),
        ("--conf", "0", "Input should be greater than 0"),
        ("--conf", "high", "Input should be a valid number"),
        ("--iou", "7", "Input should be less than or equal to 1"),
        ("--max-det", "0", "Input should be greater than or equal to 1"),
        ("--threads", "100", "Input should be less than or equal to 64"),
    ],
)
def test_detect_values_are_held_to_the_detector_config_rules(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["detect", "x.jpg", option, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"edgeinfer detect: error: argument {option}: '{value}': {message}" in err
    assert "Traceback" not in err


def test_detect_accepts_what_the_config_accepts_and_has_its_defaults() -> None:
    from edgeinfer.config import DetectorConfig

    args = build_parser().parse_args(["detect", "x.jpg", "--conf", "0.9", "--iou", "1", "--max-det", "5"])
    assert (args.conf, args.iou, args.max_det) == (0.9, 1.0, 5)
    defaults = build_parser().parse_args(["detect", "x.jpg"])
    config = DetectorConfig()
    assert (defaults.conf, defaults.iou, defaults.max_det, defaults.threads) == (
        config.conf,
        config.iou,
        config.max_det,
        config.threads,
    )


@pytest.mark.parametrize("bad", ["9108", "localhost", "127.0.0.1:http", "127.0.0.1:70000", "0.0.0.0:0"])
def test_run_listen_is_host_and_port(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args(["run", "--listen", "0.0.0.0:9200"]).listen == "0.0.0.0:9200"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--listen", bad])
    assert "argument --listen:" in capsys.readouterr().err


def test_run_listen_overrides_http_listen_and_turns_http_on(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import edgeinfer.app.daemon as daemon_module
    import edgeinfer.app.reload as reload_module
    from edgeinfer.commands import run as run_verb

    seen = []

    class FakeDaemon:  # no cameras opened: this test is about the config the daemon gets
        reload_to = None

        def __init__(self, config, **_kwargs):  # type: ignore[no-untyped-def]
            seen.append(config)

        async def run(self) -> daemon_module.RunSummary:
            return daemon_module.RunSummary(frames=0, events=0, seconds=0.0, first_event_s=None)

    monkeypatch.setattr(daemon_module, "Daemon", FakeDaemon)
    # serve() builds its daemons from the name it imported (an earlier test may have imported it already)
    monkeypatch.setattr(reload_module, "Daemon", FakeDaemon)
    config = tmp_path / "edge.yaml"
    config.write_text(f"data_dir: {tmp_path}\nhttp: {{enabled: false, listen: 127.0.0.1:9108}}\n")
    args = build_parser().parse_args(["run", "-c", str(config), "--listen", "0.0.0.0:9200"])
    assert run_verb.run(args) == 0
    assert seen[0].http.enabled and seen[0].http.listen == "0.0.0.0:9200"
    args = build_parser().parse_args(["run", "-c", str(config)])
    run_verb.run(args)
    assert not seen[1].http.enabled and seen[1].http.listen == "127.0.0.1:9108"  # untouched without it
