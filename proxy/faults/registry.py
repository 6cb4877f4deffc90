"""The fault kinds by name, and the one place faults are built from a spec.

A spec is Toxiproxy's toxic (``type``, ``name``, ``stream``, ``toxicity``,
``attributes``), as the control API's JSON and a TOML file write it, a
command-line ``--fault`` (``kind:key=value,...``) or a kind's shorthand flags
(``--latency 50ms``), or keywords from Python (the pytest marker). Every
fault built here is in real seconds; the caller scales it where it enters a
link (:meth:`~etcdlab.proxy.faults.base.Fault.scaled`).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from etcdlab.proxy.faults.base import BOTH, DIRECTIONS, DOWNSTREAM, Fault, Flag, spelled

KINDS: dict[str, type[Fault]] = {}
# Toxiproxy type -> (kind, the attribute values that type must carry).
_ALIASES: dict[str, tuple[type[Fault], Mapping[str, Any]]] = {}

F = TypeVar("F", bound=type[Fault])


def register(cls: F) -> F:
    """Make ``cls`` a fault kind known by its ``kind`` name (a class decorator)."""
    names = [cls.kind, *(alias.type for alias in cls.aliases)]
    taken = [name for name in names if name in KINDS or name in _ALIASES]
    if not cls.kind or taken:
        raise ValueError(f"fault kind {cls.__name__}: name {taken or cls.kind!r} taken or empty")
    KINDS[cls.kind] = cls
    for alias in cls.aliases:
        _ALIASES[alias.type] = (cls, alias.fixed)
    return cls


def unregister(cls: type[Fault]) -> None:
    KINDS.pop(cls.kind, None)
    for alias in cls.aliases:
        _ALIASES.pop(alias.type, None)


@contextmanager
def registered(cls: type[Fault]) -> Iterator[type[Fault]]:
    """``cls`` is a kind while the block runs (for kinds defined in tests)."""
    register(cls)
    try:
        yield cls
    finally:
        unregister(cls)


def kind_named(name: Any) -> type[Fault]:
    if isinstance(name, str) and name in KINDS:
        return KINDS[name]
    raise ValueError(f"unknown fault kind {spelled(name)}; known: {', '.join(sorted(KINDS))}")


# -- from the control API's JSON and TOML -------------------------------------------


def from_toxic(body: Mapping[str, Any], default_stream: str = DOWNSTREAM) -> Fault:
    """A fault from a Toxiproxy-style toxic: ``name``, ``type``, ``stream``,
    ``toxicity``, ``attributes`` (durations in milliseconds; ``dialer`` among them).

    Toxiproxy's default stream is ``downstream``; config files pass ``both``.
    """
    if "type" not in body:
        raise ValueError(f"missing required field: type (one of {', '.join(sorted(KINDS))})")
    kind = body["type"]
    attributes = dict(_mapping("attributes", body.get("attributes") or {}))
    cls, fixed = _ALIASES.get(kind, (None, {})) if isinstance(kind, str) else (None, {})
    if cls is None:
        try:
            cls = kind_named(kind)
        except ValueError as error:
            raise ValueError(f"type: {error}") from None
    for key, value in fixed.items():
        if attributes.pop(key, value) != value:
            raise ValueError(
                f"{key}: Toxiproxy's {kind} is supported with {key} {spelled(value)} only"
            )
    stream = _stream(body.get("stream", default_stream))
    name = body.get("name") or ""
    if not isinstance(name, str):
        raise ValueError(f"name must be a string, not {spelled(name)}")
    dialer = attributes.pop("dialer", None)
    if dialer is not None and not isinstance(dialer, str):
        raise ValueError(f"dialer must be a string, not {spelled(dialer)}")
    return cls.from_json(
        attributes,
        direction=stream,
        name=name,
        toxicity=body.get("toxicity", 1.0),
        dialer=dialer,
    )


def to_toxic(fault: Fault) -> dict[str, Any]:
    """The toxic the control API shows for ``fault``, as it was written (unscaled)."""
    written = fault.as_written
    attributes = written.to_json()
    if written.dialer:
        attributes["dialer"] = written.dialer
    return {
        "name": written.name,
        "type": written.kind,
        "stream": written.direction,
        "toxicity": written.toxicity,
        "attributes": attributes,
    }


# Keys of a [[links.faults]] table that are not the fault's attributes.
_TOXIC_FIELDS = ("type", "stream", "name", "toxicity")


def from_table(table: Mapping[str, Any]) -> Fault:
    """A fault from a TOML table: the toxic's fields with the attributes beside them
    (``type = "latency"``, ``latency = 50``), stream ``both`` unless given."""
    return from_toxic(
        {
            **{key: table[key] for key in _TOXIC_FIELDS if key in table},
            "attributes": {k: v for k, v in table.items() if k not in _TOXIC_FIELDS},
        },
        default_stream=BOTH,
    )


# -- from Python keywords -------------------------------------------------------------


_COMMON = ("direction", "name", "toxicity", "dialer")


def from_keywords(kind: str, attributes: Mapping[str, Any]) -> Fault:
    """A fault of ``kind`` from Python values (seconds); ``direction``, ``name``,
    ``toxicity`` and ``dialer`` may be among them."""
    cls = kind_named(kind)
    common = {k: attributes[k] for k in _COMMON if k in attributes}
    rest = {k: v for k, v in attributes.items() if k not in common}
    try:
        return cls.build(rest, **common)
    except TypeError as error:
        raise ValueError(f"{kind}: {error}") from None


# -- from the command line ------------------------------------------------------------


def add_flags(parser: argparse.ArgumentParser) -> None:
    """``--fault KIND[:key=value,...]`` (repeatable), each kind's shorthands, ``--method``."""
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND[:KEY=VALUE,...]",
        help="add a fault of any kind, e.g. frames:probability=0.3,messages=true or "
        "latency:latency=50ms,stream=upstream (durations need a unit); repeatable. "
        "Keys: the kind's attributes (docs/PROXY.md), and stream (upstream, downstream, "
        "both), name, toxicity (0-1: the share of connections it acts on), dialer (raw "
        f"links). Kinds: {', '.join(sorted(KINDS))}",
    )
    added: dict[str, list[Flag]] = {}
    for cls in KINDS.values():
        for flag in cls.flags:
            added.setdefault(flag.option, []).append(flag)
    for option, flags in added.items():
        models = sorted((f for f in flags if f.model is not None), key=lambda f: not f.default)
        chosen = models[0] if models else flags[0]
        if not models:
            parser.add_argument(option, metavar="VALUE", help=chosen.help)
            continue
        parser.add_argument(
            option,
            metavar="VALUE",
            help=f"{chosen.help} (--{option.lstrip('-')}-model {chosen.model}, the default)",
        )
        parser.add_argument(
            f"{option}-model",
            choices=[f.model for f in models],
            default=chosen.model,
            help=f"what {option} means. "
            + " ".join(
                f"{f.model}{' (the default)' if f is chosen else ''}: {f.help}." for f in models
            ),
        )
    parser.add_argument(
        "--method",
        help="limit the faults given by shorthand flags to one gRPC method or service, e.g. "
        "etcdserverpb.Lease/LeaseKeepAlive or etcdserverpb.KV (HTTP/2 links only)",
    )


def from_flags(args: argparse.Namespace) -> list[Fault]:
    """The faults ``args`` asks for (see :func:`add_flags`); ValueError naming the flag."""
    faults = [from_text(spec) for spec in args.fault]
    method = args.method
    limited = False
    for cls in KINDS.values():
        values: dict[str, str] = {}
        for flag in cls.flags:
            value = getattr(args, _dest(flag.option), None)
            if value is None:
                continue
            chosen = getattr(args, _dest(flag.option) + "_model", None)
            if flag.model is not None and chosen != flag.model:
                continue
            values[flag.param] = value
        if not values:
            continue
        takes_method = any(p.unit == "method" for p in cls.params())
        if method is not None and takes_method:
            values["method"] = method
            limited = True
        try:
            faults.append(cls.from_text(values))
        except ValueError as error:
            raise ValueError(_on_flags(str(error), cls.flags, values)) from None
    if method is not None and not limited:
        raise ValueError("--method: no fault given by flags takes a method filter")
    return faults


def _on_flags(message: str, flags: tuple[Flag, ...], values: Mapping[str, str]) -> str:
    """A kind's error about its field (``latency: ...``, ``probability must ...``)
    said of the flag that set it (``--latency: ...``, ``--loss: must ...``)."""
    given = [(flag.param, flag.option) for flag in flags if flag.param in values]
    if "method" in values:
        given.append(("method", "--method"))
    for param, option in given:
        for joint in (": ", " "):
            if message.startswith(param + joint):
                return f"{option}: {message.removeprefix(param + joint)}"
    return f"{', '.join(option for _, option in given)}: {message}"


def from_text(spec: str) -> Fault:
    """A fault from ``KIND[:key=value,...]``; ``stream``, ``name``, ``toxicity`` and
    ``dialer`` may be among the keys."""
    kind, _, rest = spec.partition(":")
    try:
        cls = kind_named(kind.strip())
        values: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in rest.split(","))):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"not key=value: {item!r}")
            values[key.strip()] = value.strip()
        common: dict[str, Any] = {}
        if "stream" in values:
            common["direction"] = _stream(values.pop("stream"))
        if "name" in values:
            common["name"] = values.pop("name")
        if "dialer" in values:
            common["dialer"] = values.pop("dialer")
        if "toxicity" in values:
            text = values.pop("toxicity")
            try:
                common["toxicity"] = float(text)
            except ValueError:
                raise ValueError(f"toxicity must be a number, not {text!r}") from None
        return cls.from_text(values, **common)
    except ValueError as error:
        raise ValueError(f"--fault {spec}: {error}") from None


def _stream(value: Any) -> str:
    if value not in DIRECTIONS:
        raise ValueError(f"stream must be one of {', '.join(DIRECTIONS)}, not {spelled(value)}")
    return str(value)


def _dest(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def _mapping(name: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be an object, not {spelled(value)}")
    return value
