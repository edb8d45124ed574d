"""42: a short chaos run (issue 6, "What must be shown" 2).

tools/chaos for about two minutes with a fixed seed: a fleet of real
agents paired through the API uploads to a controller on its own tmpfs
through a c2d-ca broker while the broker, the controller and agents are
killed, restarted and paused, the controller's file system is filled and
chunks are damaged in flight. The run then drains and checks itself; this
test asserts its JSON line: nothing lost, nothing counted twice, fsck
clean, memory stable, ok. C2D_TEST_SEED=N runs another seed."""

import json
import os
import subprocess

import pytest

from c2dtest import BUILD_DIR, PYTHON, REPO

SEED = 42
MINUTES = 2


@pytest.mark.timeout(900)
def test_chaos_short(tmp_path):
    seed = int(os.environ.get("C2D_TEST_SEED") or SEED)
    print("C2D_TEST_SEED=%d" % seed)
    cmd = [PYTHON, str(REPO / "tools" / "chaos"), "--seed", str(seed), "--minutes", str(MINUTES),
           "--builddir", str(BUILD_DIR), "--keep", str(tmp_path / "work")]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=840)
    err = r.stderr.decode(errors="replace")
    lines = [l for l in r.stdout.decode(errors="replace").splitlines() if l.strip()]
    assert len(lines) == 1, "expected one JSON line, got %r\n%s" % (lines, err[-6000:])
    j = json.loads(lines[0])
    print(json.dumps(j, sort_keys=True))
    assert j["seed"] == seed and j["minutes"] == MINUTES
    assert sum(j["faults"].values()) >= 10, j["faults"]
    assert j["segments_produced"] > 0 and j["stored"] > 0, j
    assert j["lost"] == 0, "%s\n%s" % (j.get("problems"), err[-6000:])
    assert j["counted_twice"] == 0, "%s\n%s" % (j.get("problems"), err[-6000:])
    assert j["fsck_findings"] == 0, "%s\n%s" % (j.get("problems"), err[-6000:])
    assert j["segments_produced"] == (j["stored"] + j["evicted"] + j["refused"] + j["dropped"]
                                      + j["backup_off"]), j
    assert j["ok"] is True and r.returncode == 0, "%s\n%s" % (j.get("problems"), err[-6000:])
