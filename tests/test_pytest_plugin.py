"""The pytest plugin, exercised the way a user suite uses it (pytester)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_SUITE = """
import grpc
from protos import rpc_pb2, rpc_pb2_grpc


def test_put_then_read_from_another_member(etcd_cluster, etcd_endpoints):
    assert etcd_endpoints == etcd_cluster.endpoints
    with grpc.insecure_channel(etcd_endpoints[0]) as first:
        rpc_pb2_grpc.KVStub(first).Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=5)
    with grpc.insecure_channel(etcd_endpoints[-1]) as last:
        reply = rpc_pb2_grpc.KVStub(last).Range(rpc_pb2.RangeRequest(key=b"k"), timeout=5)
    assert reply.kvs[0].value == b"v"


def test_reads_a_key_nobody_wrote(etcd_endpoints):
    with grpc.insecure_channel(etcd_endpoints[0]) as channel:
        reply = rpc_pb2_grpc.KVStub(channel).Range(rpc_pb2.RangeRequest(key=b"never"), timeout=5)
    assert reply.count == 1, "expected the key to exist"
"""


def test_user_suite_gets_a_real_cluster_and_fails_for_the_right_reason(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(USER_SUITE)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--etcdlab-members=1", "--etcdlab-session-cluster"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*expected the key to exist*"])


def test_existing_endpoints_skip_local_cluster_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_needs_local(etcd_cluster):
            raise AssertionError("must be skipped")

        def test_endpoints(etcd_endpoints):
            assert etcd_endpoints == ["10.1.2.3:2379", "10.1.2.4:2379"]
        """
    )
    result = pytester.runpytest_subprocess("--etcdlab-endpoints=10.1.2.3:2379, 10.1.2.4:2379")
    result.assert_outcomes(passed=1, skipped=1)


def test_bad_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(etcd_endpoints): pass")
    result = pytester.runpytest_subprocess("--etcdlab-endpoints=nohost")
    result.stderr.fnmatch_lines(["*--etcdlab-endpoints: 'nohost' is not HOST:PORT*"])
    assert result.ret != 0
