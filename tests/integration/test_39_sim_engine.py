"""39: c2d-sim-engine, the fleet simulator's engine (tools/c2d-sim-engine.c).

A fleet directory of ordinary agent configurations (DIR/<name>/agent.json,
as c2dtest.Agent writes them: each its own device id, certificate and
state_dir), 3 devices x 2 channels of a short recording read as fast as
possible, runs in one engine process and then, as a second fleet, in two.
Each time:
- exit 0 and ONE JSON line on stdout whose counts equal what the
  controller stored (segments, bytes), no rejections or drops, ack latency
  figures for every segment;
- every device's journal (--journal-dir) has a "spooled" and an "acked"
  line for each stored segment, with its size;
- --procs 2 gives the same totals as one process.
An unpaired configuration is refused before anything starts (exit 2).
"""

import json
import time

import pytest

from c2dtest import BUILD_DIR, HOST, file_channel, run

ENGINE = BUILD_DIR / "tools" / "c2d-sim-engine"
SEG_S = 4


def _fleet(make_agent, media, fleet, prefix, n=3):
    for i in range(1, n + 1):
        make_agent("%s-%d" % (prefix, i),
                   [file_channel(1, media.h264_short), file_channel(2, media.h264_short)],
                   name="%s/%s-%d" % (fleet, prefix, i), segment_seconds=SEG_S)


def _engine(args, timeout=240):
    r = run([ENGINE, "run"] + args, check=False, timeout=timeout)
    out = r.stdout.decode(errors="replace").strip().splitlines()
    err = r.stderr.decode(errors="replace")
    print("c2d-sim-engine %s\n%s" % (" ".join(map(str, args)), "\n".join(out)))
    assert len(out) == 1, "stdout: %r\nstderr: %s" % (out, err[-3000:])
    return r.returncode, json.loads(out[0]), err


def _journal(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _check_run(ctl, summary, journal_dir, prefix, procs):
    segs = [s for s in ctl.segments() if s["device"].startswith(prefix + "-")]
    assert len({s["device"] for s in segs}) == 3
    assert summary["devices"] == 3 and summary["channels"] == 6
    assert summary["procs"] == procs
    assert summary["segments_made"] == len(segs), (summary, len(segs))
    assert summary["segments_acked"] == len(segs)
    assert summary["segments_unacked"] == 0
    assert summary["segments_rejected"] == 0 and summary["segments_dropped"] == 0
    assert summary["bytes_acked"] == sum(s["size"] for s in segs)
    assert summary["errors"] == {}, summary["errors"]
    lat = summary["ack_latency_ms"]
    assert lat["n"] == len(segs)
    assert 0 <= lat["p50"] <= lat["p99"] <= lat["max"]
    assert summary["ingest_MBps"] > 0
    assert summary["seconds"] > 0
    assert summary["engine_cpu_s"] > 0 and summary["engine_peak_rss_kib"] > 0
    for dev in {s["device"] for s in segs}:
        lines = _journal(journal_dir / (dev + ".jsonl"))
        for ln in lines:
            assert set(ln) >= {"ev", "ch", "start", "bytes", "t_us", "reason"}, ln
        by = {}
        for ln in lines:
            by.setdefault((ln["ev"], ln["ch"], ln["start"]), []).append(ln)
        mine = [s for s in segs if s["device"] == dev]
        for s in mine:
            key = (s["channel"], s["start_us"])
            for ev in ("spooled", "acked"):
                got = by.get((ev,) + key)
                assert got and len(got) == 1, "%s: no single %s line for %s" % (dev, ev, key)
                assert got[0]["bytes"] == s["size"] and got[0]["reason"] is None
        assert len(lines) == 2 * len(mine), "%s: %d journal lines for %d segments" % (
            dev, len(lines), len(mine))
        spooled = {(ln["ch"], ln["start"]): ln["t_us"] for ln in lines if ln["ev"] == "spooled"}
        for ln in lines:
            if ln["ev"] == "acked":
                assert ln["t_us"] >= spooled[(ln["ch"], ln["start"])]
    return segs


@pytest.mark.timeout(600)
def test_engine_one_and_two_procs(media, make_controller, make_agent, tmp_path):
    assert ENGINE.exists(), "%s is not built" % ENGINE
    ctl = make_controller().start()

    _fleet(make_agent, media, "fleet1", "sima")
    j1 = tmp_path / "journal1"
    rc, s1, err = _engine(["--fleet", tmp_path / "fleet1", "--journal-dir", j1,
                           "--progress-s", "1"])
    assert rc == 0, (s1, err[-3000:])
    assert "c2d-sim-engine:" in err and "connected" in err  # progress lines
    segs1 = _check_run(ctl, s1, j1, "sima", 1)
    # 20 s in 4 s segments: about 5 per channel
    assert len(segs1) >= 24

    _fleet(make_agent, media, "fleet2", "simb")
    j2 = tmp_path / "journal2"
    rc, s2, err = _engine(["--fleet", tmp_path / "fleet2", "--journal-dir", j2, "--procs", "2",
                           "--progress-s", "1"])
    assert rc == 0, (s2, err[-3000:])
    segs2 = _check_run(ctl, s2, j2, "simb", 2)
    for k in ("devices", "channels", "segments_made", "segments_acked", "bytes_acked"):
        assert s1[k] == s2[k], (k, s1[k], s2[k])
    assert len(segs2) == len(segs1)

    # Again on the first fleet: nothing left to do, nothing made, exit 0 at once.
    rc, s3, err = _engine(["--fleet", tmp_path / "fleet1", "--progress-s", "0"])
    assert rc == 0, (s3, err[-3000:])
    assert s3["segments_made"] == 0 and s3["segments_acked"] == 0
    assert ctl.alive()


@pytest.mark.timeout(120)
def test_engine_seconds_and_refusals(media, make_controller, make_agent, tmp_path):
    ctl = make_controller().start()
    # realtime: 20 s of video cannot finish in 3 s; the engine stops there
    make_agent("simc-1", [file_channel(1, media.h264_short, realtime=True)],
               name="fleet/simc-1", segment_seconds=SEG_S)
    t0 = time.monotonic()
    rc, s, err = _engine(["--fleet", tmp_path / "fleet", "--seconds", "3"], timeout=60)
    assert time.monotonic() - t0 < 20
    assert s["devices"] == 1 and s["seconds"] < 10
    assert rc in (0, 1), err  # 0 only if nothing made was left unacked
    assert (rc == 0) == (s["segments_unacked"] == 0)

    # an unpaired configuration: refused, nothing runs
    d = tmp_path / "fleet-unpaired" / "rec-x"
    d.mkdir(parents=True)
    (d / "agent.json").write_text(json.dumps({
        "serial": "SN-UNPAIRED", "state_dir": str(d / "state"),
        "pairing": {"host": HOST, "port": 1, "ca_file": str(d / "ca.crt")},
        "channels": [file_channel(1, media.h264_short)]}))
    r = run([ENGINE, "run", "--fleet", tmp_path / "fleet-unpaired"], check=False, timeout=30)
    assert r.returncode == 2, r
    assert b"not paired" in r.stderr
    assert r.stdout == b""

    # bad command lines
    for args in (["--fleet"], ["--procs", "0", "--fleet", "x"], ["--corrupt", "crc:2000"],
                 ["--speed", "-1", "--fleet", "x"], ["--bogus", "1"]):
        r = run([ENGINE, "run"] + args, check=False, timeout=30)
        assert r.returncode == 2, (args, r)
    r = run([ENGINE, "run", "--fleet", tmp_path / "nothing-here"], check=False, timeout=30)
    assert r.returncode == 2
    assert ctl.alive()
