"""Settings sets: the timings an operator chooses, as one named, validated set.

A set fixes the apiserver's etcd client keepalive (time and timeout), its
livez and readyz etcd check timeouts (``--etcd-healthcheck-timeout``,
``--etcd-readycheck-timeout``) and the leader election timings of every
leader-elected component (LeaseDuration, RenewDeadline, RetryPeriod). Every
value is in real (unscaled) seconds.

Built in: client-go's defaults (15/10/2 s, the apiserver's keepalive 30 s + 10 s
and 2 s checks), OpenShift's (library-go's ``LeaderElectionDefaulting``:
137/107/26 s, chosen to ride out a 60 s apiserver outage) and a tighter set
that notices a bad member and fails over faster. More come from a TOML file::

    [settings.patient]      # the set's name
    lease_duration = 60     # keys left out keep client-go's values
    renew_deadline = 40
    retry_period = 5
    keepalive_time = 30
    keepalive_timeout = 10
    livez_timeout = 2
    readyz_timeout = 2

The whole file is checked before anything runs; each problem is a
:class:`~etcdlab.scenario.spec.FieldError` naming its path
(``settings.patient.renew_deadline``).
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from etcdlab.client.config import ClientConfig
from etcdlab.controlplane.plane import PlaneConfig
from etcdlab.election.config import LeaderElectionConfig
from etcdlab.scenario.spec import FieldError

NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
# What each key means, for errors and the docs (seconds, unscaled).
KEYS = {
    "keepalive_time": "gRPC keepalive time of the apiserver's etcd client",
    "keepalive_timeout": "how long its keepalive PING may go unanswered",
    "livez_timeout": "--etcd-healthcheck-timeout (livez etcd check)",
    "readyz_timeout": "--etcd-readycheck-timeout (readyz etcd-readiness check)",
    "lease_duration": "leader election LeaseDuration",
    "renew_deadline": "leader election RenewDeadline",
    "retry_period": "leader election RetryPeriod",
}
# client-go's JitterUntil factor: RenewDeadline must exceed RetryPeriod times it.
JITTER = LeaderElectionConfig(identity="-").jitter_factor


@dataclass(frozen=True)
class Settings:
    name: str
    keepalive_time: float = 30.0
    keepalive_timeout: float = 10.0
    livez_timeout: float = 2.0
    readyz_timeout: float = 2.0
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise FieldError(
                "name", f"must be lower-case letters, digits, '.', '_' or '-', not {self.name!r}"
            )
        for key in KEYS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise FieldError(key, f"must be a number of seconds, not {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise FieldError(key, f"must be a positive number of seconds, not {value!r}")
        # client-go's NewLeaderElector checks, in its order.
        if self.renew_deadline >= self.lease_duration:
            raise FieldError(
                "renew_deadline",
                f"must be below lease_duration ({self.lease_duration:g} s), "
                f"not {self.renew_deadline:g}",
            )
        if self.renew_deadline <= JITTER * self.retry_period:
            raise FieldError(
                "retry_period",
                f"must be below renew_deadline / {JITTER:g} ({self.renew_deadline / JITTER:.3g} s),"
                f" not {self.retry_period:g}",
            )

    def values(self) -> dict[str, float]:
        """The timings by key (no name)."""
        return {key: getattr(self, key) for key in KEYS}

    def words(self) -> str:
        """``keepalive 30/10 s, checks 2/2 s, election 15/10/2 s``."""
        return (
            f"keepalive {self.keepalive_time:g}/{self.keepalive_timeout:g} s, "
            f"livez/readyz {self.livez_timeout:g}/{self.readyz_timeout:g} s, "
            f"election {self.lease_duration:g}/{self.renew_deadline:g}/{self.retry_period:g} s"
        )

    def plane(self, base: PlaneConfig | None = None) -> PlaneConfig:
        """``base`` (default: the engine's plane) with these timings, unscaled."""
        base = base or PlaneConfig()
        client: ClientConfig = replace(
            base.client,
            keepalive_time=self.keepalive_time,
            keepalive_timeout=self.keepalive_timeout,
            health_check_timeout=self.livez_timeout,
            ready_check_timeout=self.readyz_timeout,
        )
        election = replace(
            base.election,
            lease_duration=self.lease_duration,
            renew_deadline=self.renew_deadline,
            retry_period=self.retry_period,
        )
        # client-go gives each lock request max(1 s, RenewDeadline / 2).
        return replace(
            base,
            client=client,
            election=election,
            election_request_timeout=election.request_timeout,
        )


BUILTINS: dict[str, Settings] = {
    s.name: s
    for s in (
        Settings("client-go"),
        Settings("openshift", lease_duration=137, renew_deadline=107, retry_period=26),
        # Notices a bad member within seconds (keepalive, checks) and hands a
        # lease on in under 10 s.
        Settings(
            "tight",
            keepalive_time=10,
            keepalive_timeout=3,
            livez_timeout=1,
            readyz_timeout=1,
            lease_duration=8,
            renew_deadline=5,
            retry_period=1,
        ),
    )
}


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, dict | list):
        return "a table" if isinstance(value, dict) else "an array"
    return repr(value)


def _one(name: str, raw: Any) -> Settings:
    where = f"settings.{name}"
    if not isinstance(raw, dict):
        raise FieldError(where, f"must be a table: write [settings.{name}]")
    for key, value in raw.items():
        if key not in KEYS:
            close = difflib.get_close_matches(key, list(KEYS), n=1)
            hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(KEYS)}"
            raise FieldError(f"{where}.{key}", f"unknown key; {hint}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FieldError(
                f"{where}.{key}", f"must be a number of seconds, not {_describe(value)}"
            )
    if name in BUILTINS:
        raise FieldError(where, f"{name!r} is a built-in set: give yours another name")
    try:
        return Settings(name, **{k: float(v) for k, v in raw.items()})
    except FieldError as error:
        if error.path == "name":
            raise FieldError(where, error.problem) from None
        raise error.within(where) from None


def from_toml(text: str, source: str = "settings") -> dict[str, Settings]:
    """The sets in ``text`` by name, checked whole; ValueError ``source: path: problem``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{source}: not valid TOML: {error}") from None
    try:
        for key in data:
            if key != "settings":
                raise FieldError(key, "unknown table; write [settings.NAME] tables")
        sets = data.get("settings")
        if not isinstance(sets, dict) or not sets:
            raise FieldError("settings", "missing: write one [settings.NAME] table per set")
        return {name: _one(name, raw) for name, raw in sets.items()}
    except FieldError as error:
        raise ValueError(f"{source}: {error}") from None


def load(path: Path) -> dict[str, Settings]:
    try:
        text = path.read_text()
    except OSError as error:
        raise ValueError(f"cannot read settings file {path}: {error.strerror}") from None
    return from_toml(text, str(path))
