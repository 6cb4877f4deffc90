"""The pytest plugin, exercised the way a user suite uses it (pytester)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

USER_SUITE = """
import grpc
from etcdlab.protos import rpc_pb2, rpc_pb2_grpc


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
    result = pytester.runpytest_subprocess("--etcdlab-time-scale=nan")
    result.stderr.fnmatch_lines(["*--etcdlab-time-scale must be a positive finite number*"])
    assert result.ret != 0


FAULT_SUITE = """
import grpc
import json
from pathlib import Path

import pytest

from etcdlab.client.errors import ContextError
from etcdlab.protos import rpc_pb2, rpc_pb2_grpc


def read(address, timeout=5.0):
    with grpc.insecure_channel(address) as channel:
        return rpc_pb2_grpc.KVStub(channel).Range(rpc_pb2.RangeRequest(key=b"k"), timeout=timeout)


def test_sync_blackhole_block(fault_proxy, faults):
    first = fault_proxy.addresses[0]
    read(first)
    with faults.blackhole(0):
        with pytest.raises(grpc.RpcError) as info:
            read(first, timeout=0.5)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        read(fault_proxy.addresses[1])
    read(first)


def test_links_follow_the_options(fault_proxy, etcdlab_settings):
    assert [link.seed for link in fault_proxy.links] == [7, 7, 7]
    assert fault_proxy.driver.scale == 0.2


@pytest.mark.etcdlab_fault("blackhole", member=0)
def test_marker_applies_for_the_whole_test(fault_proxy):
    with pytest.raises(grpc.RpcError):
        read(fault_proxy.addresses[0], timeout=0.5)
    read(fault_proxy.addresses[2])


@pytest.mark.asyncio
async def test_async_client_under_loss(etcd_client, faults):
    await etcd_client.put(b"k", b"v")
    async with faults.loss(0, 0.3):
        for _ in range(5):
            reply = await etcd_client.get(b"k", timeout=10)
            assert reply.kvs[0].value == b"v"


@pytest.mark.asyncio
async def test_user_deadline_too_tight_under_blackhole(etcd_client, faults):
    await etcd_client.put(b"k", b"v")
    async with faults.blackhole(None):
        try:
            await etcd_client.get(b"k", timeout=0.3)
        except ContextError:
            raise AssertionError("read did not survive the outage")
"""


def test_user_suite_with_faults_passes_and_fails_for_the_right_reason(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(FAULT_SUITE)
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--etcdlab-session-cluster",
        "--etcdlab-time-scale=0.2",
        "--etcdlab-seed=7",
    )
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(
        ["*test_user_deadline_too_tight_under_blackhole*", "*read did not survive the outage*"]
    )


def test_anyio_suite_uses_the_client_factory(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time

        import pytest

        pytestmark = pytest.mark.anyio


        @pytest.fixture
        def anyio_backend():
            return "asyncio"


        async def test_put_get_under_latency(etcd_client_factory, faults):
            async with etcd_client_factory() as client:
                await client.put(b"a", b"1")
                with faults.latency(None, 0.05):
                    started = time.monotonic()
                    reply = await client.get(b"a", timeout=10)
                    # 50 ms each way is the least the proxy adds to a round trip.
                    assert time.monotonic() - started >= 0.1
                assert reply.kvs[0].value == b"1"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--etcdlab-members=1")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('"bogus", member=0', 'unknown fault kind "bogus"'),
        ('"loss", member=0, p=2', "probability must be between 0 and 1"),
        ('"loss", member=1, p=0.2', "member must be None or indexes 0..0: 1"),
        ("member=0", "needs one positional argument: the fault kind"),
    ],
)
def test_bad_fault_marker_stops_the_session_with_one_line(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        f"""
        import pytest

        def test_fine():
            pass

        @pytest.mark.etcdlab_fault({marker})
        def test_x(fault_proxy):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--etcdlab-members=1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (error,) = [line for line in result.stderr.lines if line.strip()]
    test = "test_bad_fault_marker_stops_the_session_with_one_line.py::test_x"
    assert error.startswith(f"ERROR: {test}: etcdlab_fault: {message}"), error
    result.assert_outcomes()  # nothing ran, not even the good test


def test_a_user_suite_sees_no_warnings(pytester: pytest.Pytester) -> None:
    """Every fixture and the marker, in a suite that turns warnings into errors.

    pytest-asyncio itself warns when a suite leaves its fixture loop scope unset,
    with or without etcdlab (docs/PYTEST.md says to set it); a suite that sets
    it hears nothing from etcdlab.
    """
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = session\n")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.etcdlab_fault("latency", member=0, latency=0.01)
        @pytest.mark.asyncio
        async def test_everything(etcd_cluster, etcd_endpoints, fault_proxy, faults, etcd_client):
            await etcd_client.put(b"k", b"v")
            with faults.loss(0, 0.1):
                assert (await etcd_client.get(b"k", timeout=10)).kvs[0].value == b"v"

        @pytest.mark.anyio
        async def test_anyio(etcd_client_factory):
            async with etcd_client_factory() as client:
                await client.put(b"a", b"1")

        @pytest.fixture
        def anyio_backend():
            return "asyncio"
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--etcdlab-members=1", "-W", "error", "-r", "w"
    )
    result.assert_outcomes(passed=2, warnings=0)
    # Configuration-time warnings are printed, not counted.
    assert "Warning:" not in result.stdout.str() + result.stderr.str()


def test_docs_example_runs(pytester: pytest.Pytester) -> None:
    guide = (Path(__file__).parents[2] / "docs" / "PYTEST.md").read_text()
    section = guide.split("## Example: your code under 30% loss", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    pytester.makepyfile(test_flags=example)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--etcdlab-time-scale=0.2", "--etcdlab-session-cluster"
    )
    result.assert_outcomes(passed=2)


def test_interrupted_run_leaves_no_etcd_and_no_proxy(pytester: pytest.Pytester) -> None:
    record = pytester.path / "record.json"
    after = pytester.path / "after.json"
    pytester.makeconftest(
        f"""
        import json
        import socket

        def pytest_unconfigure(config):
            # Still inside the pytest process: teardown must already have closed the links.
            refused = []
            for address in json.load(open({str(record)!r}))["proxies"]:
                host, port = address.rsplit(":", 1)
                try:
                    socket.create_connection((host, int(port)), timeout=5).close()
                    refused.append(False)
                except ConnectionRefusedError:
                    refused.append(True)
            json.dump(refused, open({str(after)!r}, "w"))
        """
    )
    pytester.makepyfile(
        f"""
        import json

        def test_interrupted(etcd_cluster, fault_proxy, faults):
            with open({str(record)!r}, "w") as out:
                json.dump({{"pids": etcd_cluster.pids(), "proxies": fault_proxy.addresses}}, out)
            with faults.blackhole(None):
                raise KeyboardInterrupt
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--etcdlab-members=1")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert json.loads(after.read_text()) == [True]
    for pid in json.loads(record.read_text())["pids"]:
        assert not _is_etcd(pid), f"etcd {pid} outlived the run"


def _is_etcd(pid: int) -> bool:
    try:
        return "etcd" in Path(f"/proc/{pid}/cmdline").read_text()
    except FileNotFoundError:
        return False
