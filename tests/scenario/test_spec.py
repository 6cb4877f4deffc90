"""Scenario files: the whole file checked before anything starts, one line per problem
naming its path, and the format's documentation generated from the same schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from etcdlab.cli.main import main
from etcdlab.scenario import engine
from etcdlab.scenario.spec import (
    BUILTINS,
    INCIDENTS,
    FaultStep,
    Scenario,
    from_toml,
    schema_markdown,
)

ROOT = Path(__file__).resolve().parents[2]
HEAD = 'name = "s"\nduration = 100\n'
FAULT = '[[fault]]\nat = 10\nduration = 20\nkind = "loss"\n'


def test_builtins_are_valid_and_named_after_themselves() -> None:
    assert set(BUILTINS) == {
        "packet-loss-30",
        "partition-minority",
        "partition-majority",
        "member-kill",
        "member-pause",
        "flapping",
        *(incident.name for incident in INCIDENTS),
    }
    for name, scenario in BUILTINS.items():
        assert scenario.name == name and scenario.faults and scenario.description
    first = BUILTINS["packet-loss-30"].faults[0]
    assert (first.kind, first.probability, first.links) == ("loss", 0.3, "all")


def test_toml_scenario_round_trip() -> None:
    scenario = from_toml(
        """
        name = "two"
        description = "loss on two members"
        duration = 100
        [[fault]]
        at = 10
        duration = 20
        kind = "loss"
        target = "0,1"
        probability = 0.1
        links = "client"
        [[fault]]
        at = 40
        duration = 20.5
        kind = "flapping"
        target = [2]
        period = 4
        """
    )
    assert scenario == Scenario(
        "two",
        "loss on two members",
        100,
        (
            FaultStep(10, 20, "loss", "0,1", probability=0.1, links="client"),
            FaultStep(40, 20.5, "flapping", "2", period=4),
        ),
    )


def test_targets_may_be_strings_integers_or_arrays() -> None:
    for written, kept in (('"1"', "1"), ("1", "1"), ("[0, 2]", "0,2"), ('"leader"', "leader")):
        scenario = from_toml(HEAD + FAULT + f"target = {written}\n")
        assert scenario.faults[0].target == kept


def fault(extra: str = "", kind: str = "loss", at: str = "10") -> str:
    """A scenario with one fault of ``kind`` at ``at``, ``extra`` lines after it."""
    return HEAD + FAULT.replace('"loss"', f'"{kind}"').replace("at = 10", f"at = {at}") + extra


BAD = [
    # Unknown tables and keys, with the closest name.
    (
        HEAD + FAULT.replace("[[fault]]", "[[faults]]"),
        "faults: unknown table; did you mean [[fault]]?",
    ),
    (HEAD + "durration = 3\n", "durration: unknown key; did you mean duration?"),
    (fault("probabilty = 0.2\n"), "fault[0].probabilty: unknown key; did you mean probability?"),
    (fault("colour = 1\n"), "fault[0].colour: unknown key; known: at, duration, kind, target"),
    (fault("[fault.extra]\n"), "fault[0].extra: unknown table; known: at,"),
    # Types, with the path.
    ('duration = "ten"\n', "duration: must be a number, not the string 'ten'"),
    (fault(at="true"), "fault[0].at: must be a number, not the boolean true"),
    ("duration = inf\n", "duration: must be a finite number, not inf"),
    ("duration = 10\nname = 3\n", "name: must be a string, not 3"),
    (fault("target = 1.5\n"), "fault[0].target: must be member indexes, 'leader' or 'follower'"),
    (fault("target = [true]\n"), "fault[0].target: must be member indexes"),
    (HEAD + "fault = 3\n", "fault: must be an array of tables: write [[fault]]"),
    (HEAD + "fault = [1]\n", "fault[0]: must be a table: write [[fault]]"),
    # Missing keys.
    ('name = "s"\n', "duration: missing (seconds after the warm-up; above 0)"),
    (HEAD + FAULT.replace('kind = "loss"\n', ""), "fault[0].kind: missing (loss, partition-"),
    # Ranges and kinds, with what to do instead.
    (
        fault("probability = 1.0\n"),
        "fault[0].probability: must be below 1, not 1; a loss of 1 lets nothing through: "
        'use a blackhole, kind = "partition-minority"',
    ),
    (fault("probability = 0\n"), "fault[0].probability: must be above 0, not 0"),
    (
        fault(kind="los"),
        "fault[0].kind: must be one of loss, partition-minority, partition-majority, kill, "
        "pause, flapping, mtu, latency, not 'los'; did you mean loss?",
    ),
    (fault("mtu = 1000\n"), "fault[0].mtu: a loss fault has no mtu (only mtu)"),
    (fault("mtu = 52\n", "mtu"), "fault[0].mtu: must be a whole number of bytes above 52"),
    (fault("mtu = 999.5\n", "mtu"), "fault[0].mtu: must be a whole number of bytes above 52"),
    (fault('mtu = "big"\n', "mtu"), "fault[0].mtu: must be a number, not the string 'big'"),
    (fault("probability = 0.2\n", "kill"), "fault[0].probability: a kill fault has no probability"),
    (fault('links = "client"\n', "pause"), "fault[0].links: a pause fault has no links"),
    (fault("period = 2\n"), "fault[0].period: a loss fault has no period (only flapping)"),
    (fault('links = "clients"\n'), "fault[0].links: must be one of client, peer, all, not"),
    (fault(at="-1"), "fault[0].at: must not be negative, not -1"),
    (fault(FAULT.replace("= 20", "= 0")), "fault[1].duration: must be above 0, not 0"),
    (
        fault(at="90"),
        "fault[0].duration: the fault ends at 110 s, after the scenario's duration (100 s)",
    ),
    ('name = ""\nduration = 1\n', "name: must not be empty"),
    # Targets against the member count and the kind.
    (fault("target = 3\n"), "fault[0].target: member 3 does not exist: members are 0..2"),
    (fault("target = [-1]\n"), "fault[0].target: member indexes are 0 or more, not [-1]"),
    (fault('target = "0;1"\n'), "fault[0].target: must be member indexes like '0,1'"),
    (fault("target = []\n"), "fault[0].target: names no member: give at least one index"),
    (fault("target = [0, 0]\n"), "fault[0].target: member 0 is named twice in '0,0'"),
    (fault('target = "1, 2,1"\n'), "fault[0].target: member 1 is named twice in '1, 2,1'"),
    (
        fault('target = "leader"\n', "partition-majority"),
        "fault[0].target: a partition-majority cuts off more than half of the 3 members, not 1",
    ),
    (
        fault("target = [0, 1]\n", "partition-minority"),
        "fault[0].target: a partition-minority cuts off fewer than half of the 3 members, not 2",
    ),
    ("duration = ", "not valid TOML: "),
    # Write bursts: count and rate checked up front, and where the last write falls.
    (HEAD + "[[burst]]\nat = 1\ncount = 10\n", "burst[0].rate: missing (writes a second"),
    (
        HEAD + "[[burst]]\nat = 1\ncount = 2.5\nrate = 5\n",
        "burst[0].count: must be a whole number of writes above 0, not 2.5",
    ),
    (
        HEAD + "[[burst]]\nat = 1\ncount = 0\nrate = 5\n",
        "burst[0].count: must be a whole number of writes above 0, not 0",
    ),
    (
        HEAD + '[[burst]]\nat = 1\ncount = 10\nrate = "fast"\n',
        "burst[0].rate: must be a number, not the string 'fast'",
    ),
    (
        HEAD + "[[burst]]\nat = 1\ncount = 10\nrate = 0\n",
        "burst[0].rate: must be a number of writes a second above 0, not 0",
    ),
    (HEAD + "[[burst]]\nat = -1\ncount = 10\nrate = 5\n", "burst[0].at: must not be negative"),
    (
        HEAD + "[[burst]]\nat = 90\ncount = 100\nrate = 5\n",
        "burst[0].rate: 100 writes at 5 a second from 90 s end at 110 s, after the scenario's "
        "duration (100 s)",
    ),
    (
        HEAD + "[[burst]]\nat = 1\ncount = 10\nrate = 5\nsize = 3\n",
        "burst[0].size: unknown key; known: at, count, rate",
    ),
    (HEAD + "burst = 3\n", "burst: must be an array of tables: write [[burst]]"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_a_bad_file_is_rejected_with_the_path_of_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        from_toml(text, "bad.toml")
    assert str(error.value).startswith(f"bad.toml: {message}"), str(error.value)
    assert "\n" not in str(error.value)


def test_the_cli_rejects_a_bad_file_in_one_line_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "typo.toml"
    bad.write_text(HEAD + FAULT.replace("[[fault]]", "[[faults]]"))
    assert main(["run", str(bad), "--out", str(tmp_path / "report")]) == 2
    captured = capsys.readouterr()
    problem = "faults: unknown table; did you mean [[fault]]?"
    assert captured.err == f"etcdlab run: error: {bad}: {problem}\n"
    assert captured.out == ""
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("missing.toml", None, "No such file or directory"),
        ("folder.toml", "", "Is a directory"),
        (
            "latin1.toml",
            b'name = "x"\ndescription = "caf\xe9"\n',
            "not UTF-8 text (line 2 has byte 0xe9); TOML files are UTF-8",
        ),
    ],
)
def test_an_unreadable_file_is_one_line_naming_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: bytes | str | None,
    problem: str,
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.mkdir()
    assert main(["run", str(path), "--out", str(tmp_path / "report")]) == 2
    assert capsys.readouterr().err == (
        f"etcdlab run: error: cannot read scenario file {path}: {problem}\n"
    )


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ('kind = "kill"\ntarget = "0"', "fault[0].kind: a kill fault needs a local cluster"),
        ('kind = "loss"\ntarget = "leader"', "fault[0].target: 'leader' needs a local cluster"),
    ],
)
def test_what_an_existing_cluster_cannot_do_is_rejected_before_connecting(
    fault: str, message: str
) -> None:
    scenario = from_toml(f"duration = 100\n[[fault]]\nat = 1\nduration = 2\n{fault}\n")
    # Nothing listens there: the check must come first.
    options = engine.RunOptions(endpoints=("127.0.0.1:9",), proxy_control="http://127.0.0.1:9")
    with pytest.raises(ValueError, match=re.escape(message)):
        engine.check(scenario, options)
    with pytest.raises(ValueError, match="needs --proxy-control"):
        engine.check(scenario, engine.RunOptions(endpoints=("127.0.0.1:9",)))


def test_the_docs_show_the_format_the_loader_checks() -> None:
    docs = (ROOT / "docs" / "SCENARIOS.md").read_text()
    assert schema_markdown() in docs
    example = docs.split("```toml\n", 1)[1].split("```", 1)[0]
    assert [f.kind for f in from_toml(example).faults] == ["loss", "kill"]


def test_a_burst_reads_its_count_in_whole_writes() -> None:
    (burst,) = from_toml(HEAD + "[[burst]]\nat = 10\ncount = 300.0\nrate = 5\n").bursts
    assert (burst.at, burst.count, burst.rate, burst.end) == (10, 300, 5, 70)
    assert isinstance(burst.count, int)


def test_an_mtu_fault_reads_its_size_in_whole_bytes() -> None:
    (step,) = from_toml(fault('mtu = 1200\nlinks = "peer"\n', "mtu")).faults
    assert (step.kind, step.mtu, step.links) == ("mtu", 1200, "peer")
    assert isinstance(step.mtu, int)
    link = engine.link_fault(step, "m", None)
    assert (link.kind, getattr(link, "mtu", None)) == ("mtu", 1200)
