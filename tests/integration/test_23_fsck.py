"""23: `c2d-controller fsck` checks the ledger against the store (issue 4).

A real agent uploads through the real broker to a real controller (open
mode); with the controller stopped:
- `fsck --json --hashes` finds nothing and counts every segment and file;
- a deleted stored file and an orphan file are both reported (exit 1);
- `--repair` fixes them (exit 0): the record and its usage are gone, the
  orphan is in quarantine/; a second fsck finds nothing;
- fsck refuses to run while the daemon holds data_dir/controller.lock.
"""

import json
import subprocess

import pytest

from c2dtest import CONTROLLER_BIN, file_channel

DEV = "rec-f"


def fsck(ctl, *args):
    r = subprocess.run([str(CONTROLLER_BIN), "fsck", "-c", str(ctl.conf), "--json", *args],
                       capture_output=True, timeout=120)
    out = r.stdout.decode(errors="replace")
    try:
        j = json.loads(out)
    except ValueError:
        j = None
    return r.returncode, j, out + r.stderr.decode(errors="replace")


@pytest.mark.timeout(300)
def test_fsck_finds_and_repairs(media, make_controller, make_agent):
    ctl = make_controller().start()
    agent = make_agent(DEV, [file_channel(1, media.h264_short)], segment_seconds=4)
    agent.start()
    agent.wait_done(240, ctl)
    segs = ctl.segments()
    assert len(segs) >= 3

    # The daemon holds the lock: fsck does not run beside it.
    rc, j, out = fsck(ctl)
    assert rc == 1 and j is None and "running" in out, out
    ctl.stop()

    rc, j, out = fsck(ctl, "--hashes")
    assert rc == 0, out
    assert j["findings"] == [] and j["repaired"] is False
    assert j["segments"] == len(segs) and j["files"] == len(segs), out

    # Break it: one stored file gone, one orphan.
    gone = ctl.data_dir / segs[0]["path"]
    gone.unlink()
    orphan = ctl.data_dir / "store" / DEV / "1" / "123.ts"
    orphan.write_bytes(b"not a segment")
    rc, j, out = fsck(ctl, "--hashes")
    assert rc == 1, out
    kinds = sorted(f["kind"] for f in j["findings"])
    assert kinds == ["missing_file", "orphan_file"], out
    assert any(segs[0]["path"] in f["what"] for f in j["findings"])
    assert all(f["repair"] for f in j["findings"])

    rc, j, out = fsck(ctl, "--repair")
    assert rc == 0, out
    assert j["repaired"] is True and len(j["findings"]) == 2
    assert all(f["repaired"] for f in j["findings"]), out
    assert not orphan.exists()
    assert (ctl.data_dir / "quarantine" / "store" / DEV / "1" / "123.ts").exists()

    rc, j, out = fsck(ctl, "--hashes")
    assert rc == 0 and j["findings"] == [], out
    assert j["segments"] == len(segs) - 1 and j["files"] == len(segs) - 1
    left = ctl.segments()
    assert [s["path"] for s in left] == [s["path"] for s in segs[1:]]
    assert ctl.usage()["total_bytes"] == sum(s["size"] for s in segs[1:])

    # Usage errors exit 2.
    r = subprocess.run([str(CONTROLLER_BIN), "fsck", "-c", str(ctl.conf), "--email", "x@y"],
                       capture_output=True, timeout=60)
    assert r.returncode == 2
