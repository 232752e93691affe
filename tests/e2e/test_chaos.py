"""The chaos run's short form (bench/chaos.py): open-loop load on `tandem up --prefill 2 --decode 2`
while a decode worker and a prefill worker are killed (SIGKILL) and one of each is stopped for
5 s (SIGSTOP). Every request completes and equals the fault-free run of the same schedule."""
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import chaos  # noqa: E402


def test_no_request_lost_or_changed_under_kills_and_stops(tmp_path):
    out = tmp_path / "chaos.json"
    code = chaos.main(["--requests", "24", "--rate", "2", "--faults", "4", "--max-tokens", "24", "--out", str(out)])
    summary = json.loads(out.read_text())["summary"]
    assert [f["fault"] for f in summary["faults"]] == chaos.FAULTS
    assert all(f["pid"] for f in summary["faults"]), "every fault found its victim"
    assert summary["failed"] == 0, summary["errors"]
    assert summary["outputs_equal_to_fault_free"] == summary["requests"]
    assert code == 0
