"""Each member's recovery after each heal, from the member health samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from etcdlab.common.timeline import FaultKind, FaultWindow, Timeline
from etcdlab.report.recovery import member_recovery
from etcdlab.report.render import build_report, summary, write_report
from tests.synthetic import base, probe


def two_heals(scale: float) -> Timeline:
    """Loss on etcd-0 from 100 s to 400 s, a pause of etcd-1 from 600 s to 700 s;
    members sampled every 2 s (unscaled seconds)."""
    timeline = base(FaultKind.LOSS, scale=scale)
    timeline.faults.append(FaultWindow(600 * scale, 700 * scale, FaultKind.PAUSE, "etcd-1"))
    for t in range(0, 1200, 2):
        # etcd-0 unhealthy through the loss and 6 s beyond the heal, with one
        # healthy sample before that; etcd-1 through its pause and 2 s more;
        # etcd-2 never after the first heal, and down from 1000 s to the end.
        probe(timeline, (t, not (100 <= t < 406) or t == 402), who="etcd-0")
        probe(timeline, (t, not (600 <= t < 702)), who="etcd-1")
        probe(timeline, (t, t < 1000), who="etcd-2")
    return timeline


@pytest.mark.parametrize("scale", [1.0, 0.1])
def test_each_heal_gives_each_member_its_time_to_healthy_for_good(scale: float) -> None:
    loss, pause = member_recovery(two_heals(scale))
    assert loss.fault.kind is FaultKind.LOSS and loss.healed_at == pytest.approx(300)
    # A healthy sample between unhealthy ones is not the recovery: the last
    # unhealthy one is at 404 s, the next sample 2 s later.
    assert loss.members == pytest.approx({"etcd-0": 6.0, "etcd-1": 0.0, "etcd-2": 0.0})
    assert loss.slowest == pytest.approx(6.0)
    assert loss.resolution == pytest.approx(2.0)
    # After the second heal, etcd-2 goes down and stays down to the end.
    assert pause.healed_at == pytest.approx(600)
    assert pause.members == pytest.approx({"etcd-0": 0.0, "etcd-1": 2.0, "etcd-2": None})
    assert pause.slowest is None


def test_a_member_down_until_the_next_fault_never_recovered_from_the_first() -> None:
    timeline = two_heals(1.0)
    probe(timeline, *((t, False) for t in range(401, 600, 2)), who="etcd-2")
    loss, _ = member_recovery(timeline)
    assert loss.members["etcd-2"] is None


def test_the_report_records_every_heal_in_json_summary_and_page(tmp_path: Path) -> None:
    report, paths = write_report(two_heals(0.1), tmp_path)
    first, second = report["member_recovery"]
    assert first == {
        "kind": "loss",
        "target": "etcd-0",
        "healed_at": 300.0,
        "members": {"etcd-0": 6.0, "etcd-1": 0.0, "etcd-2": 0.0},
        "slowest": 6.0,
        "resolution": 2.0,
    }
    assert second["members"]["etcd-2"] is None and second["slowest"] is None
    lines = summary(report).splitlines()
    assert (
        "  Members after the loss on etcd-0 healed at 300.0 s: etcd-0 6.0 s, etcd-1 healthy "
        "throughout, etcd-2 healthy throughout (sampled every 2 s)." in lines
    )
    assert (
        "  Members after the pause on etcd-1 healed at 600.0 s: etcd-0 healthy throughout, "
        "etcd-1 2.0 s, etcd-2 not healthy again (sampled every 2 s)." in lines
    )
    page = paths.html.read_text()
    table = page.split('<h2 id="recovery">', 1)[1].split("</table>", 1)[0]
    assert "<td>pause on etcd-1</td><td>600.0</td>" in table
    assert "<td>6.0 s</td>" in table and "<td>not healthy again</td>" in table


def test_a_run_without_faults_or_member_samples_has_no_recovery() -> None:
    assert build_report(base(None))["member_recovery"] == []
    (heal,) = build_report(base(FaultKind.LOSS))["member_recovery"]
    assert heal["members"] == {} and heal["slowest"] is None and heal["resolution"] is None
