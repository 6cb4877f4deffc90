"""``etcdlab proxy``'s own input: the ``--config`` file, checked whole before any
link listens, and the flags' bad values as one line naming the flag (the flags'
faults are the registry's, tested in faults/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from etcdlab.cli.main import build_parser, main
from etcdlab.proxy.cli import spec_from_args, spec_from_toml

# What a config's top-level keys default to: the command line's.
ARGS = build_parser().parse_args(["proxy", "--config", "links.toml"])


LINK = '[[links]]\nname = "a"\nupstream = "127.0.0.1:1"\n'


@pytest.mark.parametrize(
    "config, message",
    [
        ('[[link]]\nname = "a"\nupstream = "h:1"\n', "link: unknown key; did you mean links?"),
        ("sed = 3\n" + LINK, "sed: unknown key; did you mean seed?"),
        (LINK + 'listne = "127.0.0.1:0"\n', "links[0].listne: unknown key; did you mean listen?"),
        (LINK + 'http2 = "no"\n', 'links[0].http2: must be true or false, not "no"'),
        ('seed = "abc"\n' + LINK, 'seed: must be a whole number, not "abc"'),
        ('time_scale = "x"\n' + LINK, 'time_scale: must be a number, not "x"'),
        ("time_scale = 0\n" + LINK, "time_scale: must be a positive finite number"),
        ("control = 3\n" + LINK, "control: must be a HOST:PORT string, not 3"),
        ("links = 3\n", "links: must be an array of tables: write [[links]]"),
        ("seed = 1\n", "links: missing: at least one [[links]] table"),
        ('[[links]]\nname = "a"\n', "links[0].upstream: missing"),
        ('[[links]]\nname = ""\nupstream = "h:1"\n', "links[0].name: must be a non-empty string"),
        (LINK + LINK, 'links[1].name: "a" names an earlier link too'),
        (
            LINK + '[[links.faults]]\ntype = "latency"\nlatency = -50\n',
            "links[0].faults[0]: latency must be a finite number of milliseconds >= 0, not -50",
        ),
        (LINK + "faults = 3\n", "links[0].faults: must be an array of tables"),
        (
            LINK + 'write_deadline = "5s"\n',
            'links[0].write_deadline: must be a number of milliseconds, not "5s"',
        ),
        (
            LINK + "write_deadline = 0.5\n",
            "links[0].write_deadline: must be between 1 and 86400000 milliseconds (a day), not 0.5",
        ),
        (
            LINK + '[[links.faults]]\ntype = "loss"\nprobability = 0.1\nsend_buffer = -1\n',
            "links[0].faults[0]: send_buffer must be 0 (unbounded) or a positive number of "
            "bytes, not -1",
        ),
    ],
)
def test_a_bad_config_is_refused_naming_the_key(config: str, message: str) -> None:
    """Checked whole before any link listens: unknown keys with the closest name,
    types (``http2 = "no"`` was read as true), duplicate link names."""
    with pytest.raises(ValueError) as error:
        spec_from_toml(config, ARGS)
    assert str(error.value).startswith(f"config: {message}"), str(error.value)


def test_the_docs_config_example_is_accepted() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "PROXY.md").read_text()
    example = docs.split("(`--config links.toml`):\n\n```toml\n", 1)[1].split("```", 1)[0]
    spec = spec_from_toml(example, ARGS)
    assert [link.name for link in spec.links] == ["member0", "peer0"]
    assert spec.seed == 1 and spec.time_scale == 0.1 and not spec.links[1].http2
    assert spec.links[1].write_deadline == 5.0


@pytest.mark.parametrize(
    "flags, message",
    [
        # A minus and a digit make the flag's value, not an option argparse cannot place.
        (["--latency", "-5ms"], "--latency: must not be negative, not '-5ms'"),
        (["--latency", "5ms", "--jitter", "-1ms"], "--jitter: must not be negative, not '-1ms'"),
        # Beyond the latency a delay would be cut at 0: refused, as --help says.
        (
            ["--latency", "5ms", "--jitter", "20ms"],
            "--jitter: must not exceed the latency (5 ms), not 20 ms: a delay cannot go below 0",
        ),
        (["--jitter", "1ms"], "--jitter: must not exceed the latency (0 ms), not 1 ms"),
        (
            ["--write-deadline", "5"],
            "--write-deadline: a duration needs a unit (ms, s or m), like 50ms or 1.5s, not '5'",
        ),
        (["--write-deadline", "0ms"], "--write-deadline: must be between 1ms and 1440m (a day)"),
        (["--write-deadline", "-5s"], "--write-deadline: must not be negative, not '-5s'"),
        (
            ["--fault", "loss:probability=0.1,send_buffer=-1"],
            "--fault loss:probability=0.1,send_buffer=-1: send_buffer must be 0 (unbounded) or "
            "a positive number of bytes, not -1",
        ),
        (
            ["--fault", "loss:probability=0.1,send_buffer=46k"],
            "--fault loss:probability=0.1,send_buffer=46k: send_buffer: must be a whole "
            "number, not '46k'",
        ),
        (
            ["--fault", "frames:pings=true"],
            "--fault frames:pings=true: a frames fault needs probability: give it a number "
            "between 0 and 1",
        ),
    ],
)
def test_a_bad_flag_is_one_line_naming_it(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", *flags]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"etcdlab proxy: error: {message}") and error.count("\n") == 1, error


def test_help_says_the_jitter_is_at_most_the_latency(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["proxy", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    assert "at most --latency (a delay cannot go below 0)" in text


def test_a_write_deadline_is_given_per_link() -> None:
    """On the command line with a unit, in a file in milliseconds (as toxics'
    durations), per link; the time scale leaves it alone (the server's own timer)."""
    args = build_parser().parse_args(
        ["proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--raw",
         "--write-deadline", "5s", "--time-scale", "0.5"]
    )  # fmt: skip
    assert [link.write_deadline for link in spec_from_args(args).links] == [5.0]
    spec = spec_from_toml(LINK + "write_deadline = 5000\n" + LINK.replace('"a"', '"b"'), ARGS)
    assert [link.write_deadline for link in spec.links] == [5.0, None]


def test_the_write_deadline_flag_is_per_link_so_not_with_a_config(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["proxy", "--config", "links.toml", "--write-deadline", "5s"]) == 2
    error = capsys.readouterr().err
    assert error == (
        "etcdlab proxy: error: --write-deadline: not with --config; give each link its own "
        "write_deadline in the file\n"
    )


def test_help_says_what_the_write_deadline_models(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["proxy", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "e.g. 5s for an etcd peer link (rafthttp's ConnWriteTimeout)" in text
    assert "--time-scale leaves it alone" in text
