"""Fixtures for the end-to-end tests: a real `tandem up` cluster driven over HTTP.

Needs TANDEM_BIN (the tandem binary) and TANDEM_MODEL (the bundled GGUF); run_e2e.sh sets both.
Each cluster runs for the whole session and is stopped with SIGTERM at the end, which must
exit 0 (a clean stop is part of what is tested).
"""
import pytest

from cluster import Cluster


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("logs"))


@pytest.fixture(scope="session")
def disagg(log_dir):
    """Router + 1 prefill + 1 decode worker: every prompt crosses the KV transfer."""
    # Fixed worker counts: these tests read the workers' pages (test_controller.py runs the controller).
    c = Cluster("disagg", ["--prefill", "1", "--decode", "1", "--no-controller"], log_dir)
    yield c
    assert c.stop() == 0, f"tandem up did not stop cleanly; log: {open(c.log_path).read()[-4000:]}"


@pytest.fixture(scope="session")
def mixed(log_dir):
    """Router + 1 mixed worker: no disaggregation."""
    c = Cluster("mixed", ["--prefill", "0", "--decode", "0", "--mixed", "1"], log_dir)
    yield c
    assert c.stop() == 0, f"tandem up did not stop cleanly; log: {open(c.log_path).read()[-4000:]}"
