"""bench/compare.py's arithmetic, which turns raw `tandem bench serve` runs into the published
goodput, shifting-workload and validation figures: schedule phases, attainment aggregated over
repeats, the goodput a sweep shows, worker-seconds integrated from the 1 s samples, the
controller's applied changes, the common comparison rate and the simulator's relative error.
Standard library only (matplotlib is imported by `plot` alone). Run by tests/testing/run_pytest.sh."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
import compare  # noqa: E402


def test_schedule_phases_run_back_to_back_with_their_workloads():
    phases = compare.parse_schedule("60s@2:chat; 30s@0.5 # idle-ish\n\n90s@6:summarize:out_median=64")
    assert [(p["start_s"], p["end_s"], p["rate"], p["workload"]) for p in phases] == [
        (0.0, 60.0, 2.0, "chat"), (60.0, 90.0, 0.5, None), (90.0, 180.0, 6.0, "summarize:out_median=64")]
    assert [p["phase"] for p in phases] == [0, 1, 2]
    with pytest.raises(SystemExit, match="bad schedule phase '60@2'"):
        compare.parse_schedule("60@2")
    # The default schedule scales with the cores and parses.
    assert [p["workload"] for p in compare.parse_schedule(compare.default_schedule(8))] == [
        "summarize", "chat:out_median=400", "summarize"]


def summary(attainment, sent=10, failed=0, failures=None, ttft=(100, 200, 300)):
    return {"sent": sent, "completed": sent - failed, "failed": failed, "failures": failures or {},
            "goodput": {"attainment": attainment, "request_goodput": attainment},
            "ttft": {"count": sent, "median_ms": ttft[0], "p90_ms": ttft[1], "p99_ms": ttft[2]},
            "tpot": {"count": 0}}


def test_a_rate_point_averages_its_repeats():
    pt = compare.point(2.0, [summary(0.8, failed=1, failures={"timeout": 1}),
                             summary(1.0, ttft=(300, 400, 500)),
                             summary(0.9, failed=2, failures={"timeout": 1, "http_503": 1})], 0.9, raw=[])
    assert pt["attainment"] == pytest.approx(0.9)
    assert pt["passed"]  # the mean meets the target
    assert (pt["sent"], pt["completed"], pt["failed"]) == (30, 27, 3)
    assert pt["failures"] == {"timeout": 2, "http_503": 1}
    assert pt["ttft_ms"] == {"p50": pytest.approx(166.667), "p90": pytest.approx(266.667), "p99": pytest.approx(366.667)}
    assert pt["tpot_ms"] == {"p50": None, "p90": None, "p99": None}  # no run measured it
    assert not compare.point(2.0, [summary(0.89)], 0.9, raw=[])["passed"]


def test_a_sweeps_goodput_is_the_last_rate_before_the_first_miss():
    pts = [{"rate": r, "attainment": a} for r, a in ((4, 0.95), (1, 1.0), (2, 0.97), (8, 0.5), (16, 0.92))]
    assert compare.sweep_goodput(pts, 0.9) == 4  # 16 passes again, but after 8 missed
    assert compare.sweep_goodput(pts, 0.99) == 1
    assert compare.sweep_goodput([{"rate": 1, "attainment": 0.2}], 0.9) is None


def test_worker_seconds_integrate_the_samples_over_the_run(tmp_path):
    rows = [{"t": 0.0, "ok": True, "prefill": 1, "decode": 1},
            {"t": 1.0, "ok": True, "prefill": 1, "decode": 2},
            {"t": 2.0, "ok": False},  # a missed scrape: the previous count carries on
            {"t": 3.0, "ok": True, "prefill": 2, "decode": 2, "decode_draining": 1},
            {"t": 9.0, "ok": True, "prefill": 5}]  # after the end: ignored
    path = tmp_path / "workers.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # 1 s x 2 + 2 s x 3 + 1 s x 5 (draining ones count: they still hold a machine)
    assert compare.worker_seconds(path, 4.0) == 13.0
    assert compare.worker_seconds(tmp_path / "missing.jsonl", 4.0) == 0.0


def test_only_applied_controller_changes_inside_the_run_are_shown(tmp_path):
    log = tmp_path / "decisions.jsonl"
    entries = [{"unix_s": 1005, "action": "hold", "result": "ok", "reason": "r", "desired": {}},
               {"unix_s": 1010, "action": "add_decode", "result": "ok", "reason": "tpot", "desired": {"decode": 2}},
               {"unix_s": 1020, "action": "add_prefill", "result": "failed", "reason": "ttft", "desired": {}},
               {"unix_s": 1500, "action": "remove_decode", "result": "ok", "reason": "idle", "desired": {}}]
    log.write_text("".join(json.dumps(e) + "\n" for e in entries))
    changes = compare.controller_changes(str(log), 1000, [{"end_s": 120.0}])
    assert changes == [{"t": 10.0, "action": "add_decode", "reason": "tpot", "desired": {"decode": 2},
                        "anomalies": []}]
    assert compare.controller_changes(None, 1000, [{"end_s": 1.0}]) == []


def test_configs_are_compared_at_a_rate_every_one_ran_and_sustains():
    entries = [{"points": [{"rate": r} for r in (1, 2, 4)], "max_rate": 4},
               {"points": [{"rate": r} for r in (1, 2, 4, 8)], "max_rate": 2}]
    assert compare.common_rate(entries) == 2
    assert compare.common_rate([{"points": [{"rate": 3}], "max_rate": 1}]) == 3  # none sustains: the lowest
    assert compare.common_rate([{"points": [{"rate": 1}]}, {"points": [{"rate": 2}]}]) is None


def test_relative_error_and_slo_parsing():
    assert compare.rel_err(115, 100) == 0.15
    assert compare.rel_err(80, 100) == -0.2
    assert compare.rel_err(None, 100) is None and compare.rel_err(1, 0) is None
    assert compare.slo_ms("ttft:2000 tpot:150", "tpot") == "150"
    assert compare.slo_ms("ttft:2000", "e2el") is None


def test_validation_simulates_variants_whose_flags_tandem_plan_knows(tmp_path):
    assert compare.plan_args(None) == []
    assert compare.plan_args(["--local-prefill-ttft-slo=2000"]) == ["--local-prefill-ttft-slo=2000"]
    assert compare.plan_args(["--local-prefill-ttft-slo=2000", "--token-budget=32"]) is None
    g = {"settings": {}, "configs": {"1p1d": {"kind": "tandem"},
                                     "1p1d/cost": {"kind": "tandem", "extra_args": ["--local-prefill-ttft-slo=2000"]},
                                     "1p1d/b32": {"kind": "tandem", "extra_args": ["--token-budget=32"]},
                                     "adaptive": {"kind": "tandem", "controller": True}},
         "results": {c: {"chat": {"points": [{"rate": 1, "source": "sweep"}]}}
                     for c in ("1p1d", "1p1d/cost", "1p1d/b32", "adaptive")}}
    got = [(cfg, base, extra) for cfg, base, _, _, extra in compare.static_points(tmp_path, g, log_skips=False)]
    assert got == [("1p1d", "1p1d", []), ("1p1d/cost", "1p1d", ["--local-prefill-ttft-slo=2000"])]
