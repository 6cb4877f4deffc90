"""The generated stubs match the .proto files, and the field numbers are etcd's."""

from __future__ import annotations

from pathlib import Path

from etcdlab.protos import kv_pb2, rpc_pb2
from etcdlab.protos.generate import IMPORT_PATH, PACKAGE_DIR, generate, generated_names


def test_generated_stubs_do_not_drift(tmp_path: Path) -> None:
    generate(tmp_path)
    drifted = [
        name
        for name in generated_names()
        if (tmp_path / IMPORT_PATH / name).read_bytes() != (PACKAGE_DIR / name).read_bytes()
    ]
    assert drifted == [], f"stale generated stubs, run 'make protos': {drifted}"


def test_wire_format_uses_published_field_numbers() -> None:
    # Field 11 for WatchResponse.events and 64 for Compare.range_end are the
    # irregular ones that a hand-written proto most easily gets wrong.
    events = rpc_pb2.WatchResponse.DESCRIPTOR.fields_by_name["events"]
    assert events.number == 11
    assert rpc_pb2.Compare.DESCRIPTOR.fields_by_name["range_end"].number == 64
    kv = kv_pb2.KeyValue(
        key=b"k", create_revision=1, mod_revision=2, version=3, value=b"v", lease=7
    )
    # Tag bytes: key=1 (0x0a), create=2 (0x10), mod=3 (0x18), version=4 (0x20),
    # value=5 (0x2a), lease=6 (0x30).
    assert kv.SerializeToString() == b"\x0a\x01k\x10\x01\x18\x02\x20\x03\x2a\x01v\x30\x07"


def test_services_have_etcd_method_paths() -> None:
    services = rpc_pb2.DESCRIPTOR.services_by_name
    assert services["KV"].full_name == "etcdserverpb.KV"
    assert [m.name for m in services["Lease"].methods] == [
        "LeaseGrant",
        "LeaseRevoke",
        "LeaseKeepAlive",
        "LeaseTimeToLive",
        "LeaseLeases",
    ]
    assert services["Watch"].methods_by_name["Watch"].client_streaming
