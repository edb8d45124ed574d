"""38: the chunk corruption test hook (C2D_TEST_CORRUPT_CHUNKS).

c2d-agent damages a share of its chunk frames after they leave the spool:
- crc:N    the frame's CRC no longer matches its payload: the controller
           answers bad_crc and the agent resumes from the controller's
           offset;
- content:N the payload changes and the CRC is made again: only the
           segment's SHA-256 at the end catches it (hash_mismatch, the
           upload is discarded) and the agent sends the segment again,
           however many times the hook strikes it (a damage the hook made
           does not use up the retries meant for a real mismatch).
Either way every segment ends stored intact (byte-identical to the agent's
kept copy, packets equal to the source's), nothing is parked or dropped,
and the spool file is never touched. A malformed value is a usage error.
"""

import re

import pytest

from c2dtest import check_upload, file_channel, run, AGENT_BIN

DEV = "rec-corrupt"
ENV = "C2D_TEST_CORRUPT_CHUNKS"


def _rejections(text, reason):
    return len(re.findall(r"segment rejected .* reason=%s " % reason, text))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode,permille,reason", [("crc", 100, "bad_crc"),
                                                   ("content", 40, "hash_mismatch")])
def test_corrupt_hook_ends_intact(media, make_controller, make_agent, mode, permille, reason):
    ctl = make_controller().start()
    # small chunks: ~16 frames per 4 s segment, so the hook strikes often
    agent = make_agent(DEV, [file_channel(1, media.h264_short), file_channel(2, media.h264_short)],
                       segment_seconds=4, chunk_bytes=8192)
    agent.start(env={ENV: "%s:%d" % (mode, permille)})
    agent.wait_done(240, ctl)
    text = agent.proc.text()
    assert "damaging chunk frames on purpose" in text
    assert _rejections(text, reason) > 0, "the hook never struck:\n" + agent.proc.tail()
    assert "segment parked" not in text and "segment dropped" not in text, agent.proc.tail()
    if mode == "content":
        assert "damaged by the test hook, send again" in text
        assert _rejections(text, "bad_crc") == 0
    segs = check_upload(ctl, agent, DEV, {1: [media.h264_short], 2: [media.h264_short]}, 4)
    assert len(segs) >= 8
    assert ctl.alive()


@pytest.mark.parametrize("value", ["crc", "crc:", "crc:x", "crc:1001", "content:-1", "bits:5",
                                   "crc:5 "])
def test_corrupt_hook_bad_value(make_agent, media, value):
    agent = make_agent(DEV, [file_channel(1, media.h264_short)])
    r = run([AGENT_BIN, "run", "-c", agent.conf, "--exit-when-done"], check=False, timeout=30,
            env={"PATH": "/usr/bin:/bin", ENV: value})
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert ENV in (r.stdout + r.stderr).decode(errors="replace")
