"""Settings sets: the built-ins, a user's TOML file checked whole with errors
that name the field, and what a set changes in the control plane."""

from __future__ import annotations

from pathlib import Path

import pytest

from etcdlab.controlplane.plane import PlaneConfig
from etcdlab.scenario.spec import FieldError
from etcdlab.sweep.settings import BUILTINS, Settings, from_toml, load


def test_the_built_ins_are_client_go_openshift_and_a_tighter_set() -> None:
    client_go, openshift, tight = BUILTINS["client-go"], BUILTINS["openshift"], BUILTINS["tight"]
    election = [(s.lease_duration, s.renew_deadline, s.retry_period) for s in BUILTINS.values()]
    assert election[:2] == [(15, 10, 2), (137, 107, 26)]
    assert (client_go.keepalive_time, client_go.keepalive_timeout) == (30, 10)
    for key in ("keepalive_time", "keepalive_timeout", "livez_timeout", "lease_duration"):
        assert getattr(tight, key) < getattr(client_go, key) <= getattr(openshift, key)


def test_a_set_reaches_the_client_the_checks_and_the_electors() -> None:
    plane = BUILTINS["openshift"].plane(PlaneConfig(apiservers=1))
    assert plane.apiservers == 1
    assert (plane.client.keepalive_time, plane.client.keepalive_timeout) == (30, 10)
    assert plane.election.lease_duration == 137 and plane.election.retry_period == 26
    # client-go's lock requests get max(1 s, RenewDeadline / 2).
    assert plane.election_request_timeout == 53.5
    tight = BUILTINS["tight"].plane()
    assert (tight.client.health_check_timeout, tight.client.ready_check_timeout) == (1, 1)
    assert tight.scaled(0.5).election.renew_deadline == 2.5


def test_a_file_adds_named_sets_that_keep_client_go_values_for_missing_keys() -> None:
    sets = from_toml(
        """
        [settings.patient]
        lease_duration = 60
        renew_deadline = 40
        retry_period = 5
        [settings.fast-checks]
        livez_timeout = 0.5
        """
    )
    assert list(sets) == ["patient", "fast-checks"]
    assert sets["patient"].lease_duration == 60 and sets["patient"].keepalive_time == 30
    assert sets["fast-checks"] == Settings("fast-checks", livez_timeout=0.5)


BAD = [
    ("[settings.a]\nlease_duraton = 20", "settings.a.lease_duraton: unknown key; "
     "did you mean lease_duration?"),
    ("[settings.a]\nkeepalive_time = '30s'", "settings.a.keepalive_time: must be a number "
     "of seconds, not the string '30s'"),
    ("[settings.a]\nkeepalive_time = true", "settings.a.keepalive_time: must be a number "
     "of seconds, not the boolean true"),
    ("[settings.a]\nreadyz_timeout = 0", "settings.a.readyz_timeout: must be a positive "
     "number of seconds, not 0.0"),
    ("[settings.a]\nrenew_deadline = 15", "settings.a.renew_deadline: must be below "
     "lease_duration (15 s), not 15"),
    ("[settings.a]\nretry_period = 9", "settings.a.retry_period: must be below "
     "renew_deadline / 1.2 (8.33 s), not 9"),
    ("[settings.A]\nretry_period = 1", "settings.A: must be lower-case letters"),
    ("[settings.tight]\nretry_period = 1", "settings.tight: 'tight' is a built-in set"),
    ("[settings]\na = 1", "settings.a: must be a table: write [settings.a]"),
    ("[setting.a]\nretry_period = 1", "setting: unknown table; write [settings.NAME] tables"),
    ("", "settings: missing: write one [settings.NAME] table per set"),
    ("[settings.a", "not valid TOML"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD)
def test_a_bad_file_is_one_error_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^sets\.toml: ") as caught:
        from_toml(text, "sets.toml")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_set_built_in_code_is_checked_like_a_file() -> None:
    with pytest.raises(FieldError, match="renew_deadline: must be below lease_duration"):
        Settings("x", lease_duration=5, renew_deadline=5)


def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot read settings file .*missing.toml"):
        load(tmp_path / "missing.toml")
