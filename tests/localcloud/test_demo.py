"""The demo's --fault option sets the local servers' knobs, and refuses what does not exist."""

from __future__ import annotations

import pytest

from localcloud.demo import apply_faults


def test_fault_knobs_reach_the_running_stack(demo_stack) -> None:
    _, stack, _ = demo_stack
    try:
        apply_faults(stack, ["oss.slow_down_next=2", "opensearch.fail_next_build=disk full", "opensearch-http.throttle_next=1",
                             "oss.short_pages_rate=0.3", "oss.short_pages_seed=4",
                             "opensearch.hold_switch_next_build=true", "maxcompute.sql_delay_s=0.5",
                             "tunnel.fail_next_commit=1"])
        assert stack.maxcompute.faults.sql_delay_s == 0.5 and stack.maxcompute.tunnel.faults.fail_next_commit == 1
        assert stack.oss.faults.slow_down_next == 2
        assert (stack.oss.faults.short_pages_rate, stack.oss.faults.short_pages_seed) == (0.3, 4)
        assert stack.opensearch.engine.faults.fail_next_build == "disk full"
        assert stack.opensearch.engine.faults.hold_switch_next_build is True
        assert stack.opensearch.http_faults.throttle_next == 1
    finally:
        stack.oss.faults.reset()
        stack.maxcompute.faults.sql_delay_s = 0.0
        stack.maxcompute.tunnel.faults.fail_next_commit = 0
        stack.opensearch.engine.faults.fail_next_build = None
        stack.opensearch.engine.faults.hold_switch_next_build = False
        stack.opensearch.http_faults.throttle_next = 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("oss.no_such_knob=1", "unknown OSS fault knob 'no_such_knob'"),
        ("opensearch.take=1", "EngineFaults has no knob 'take'"),
        ("dns.fail=1", "target must be oss or one of maxcompute, opensearch, opensearch-http, tunnel"),
        ("maxcompute.take=1", "MaxComputeFaults has no knob 'take'"),
        ("oss.slow_down_next", "expected TARGET.KNOB=VALUE"),
        ("oss.short_pages_rate=1", r"short_pages_rate must be in \[0, 1\)"),
    ],
)
def test_bad_fault_specs_are_refused(demo_stack, spec: str, message: str) -> None:
    _, stack, _ = demo_stack
    with pytest.raises(SystemExit, match=message):
        apply_faults(stack, [spec])
