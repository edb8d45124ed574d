"""37: a recorder's recordings survive a re-pair (docs/pairing.md,
"Unpairing"; docs/api-recordings.md).

A recorder pairs and uploads a clip under its first device id; the installer
unpairs it (a hardware swap); the new box pairs with a new code, so a new
device id, and uploads another clip. Over HTTP the channel then shows both
runs: the recordings list in time order with the gap between them (also
while the recorder is unpaired), a segment of the old id downloads byte for
byte (bearer and playback URL), the HLS playlist over the whole range lists
both and ffprobe reads it, and the MP4 export holds the packets of both."""

import hashlib
import time

import pytest

from c2dtest import AGENT_BIN, Proc, file_channel, wait_for
from test_20_recordings import iso, probe_counts, sum_counts
from test_31_pairing import Story, pair
from test_33_unpair import rbroker, rpki  # noqa: F401 (fixtures)


def upload(s, tmp_path, name, media):
    """A new box (its own state_dir) pairs with a fresh code and uploads one
    clip on channel 1; returns the device id it got."""
    got = s.code()
    conf = s.agent(name, [file_channel(1, media.h264_short)])
    pair(conf, got["code"])
    a = Proc("c2d-agent", [AGENT_BIN, "run", "-c", conf, "--exit-when-done"],
             tmp_path / (name + ".log"))
    assert a.wait(240) == 0, a.tail()
    return got["device_id"]


@pytest.mark.timeout(600)
def test_recordings_survive_repair(rpki, rbroker, tmp_path, media):  # noqa: F811
    s = Story(rpki, tmp_path)
    ch = s.ok("GET", "/api/v1/channels?recorder_id=%d" % s.rec["id"])["items"][0]["id"]

    t_first = int(time.time() * 1e6)
    dev1 = upload(s, tmp_path, "box-1", media)
    old = [x for x in s.ctl.segments() if x["device"] == dev1 and x["channel"] == 1]
    assert len(old) >= 2, old
    s.ok("DELETE", "/api/v1/recorders/%d/pairing" % s.rec["id"], want=(200,))

    # Unpaired (no device id): the earlier recordings stay listed.
    q = "?from=%s&to=%s" % (iso(old[0]["start_us"] - 5_000_000), iso(int(time.time() * 1e6)
                                                                      + 3_600_000_000))
    out = s.ok("GET", "/api/v1/channels/%d/recordings%s" % (ch, q))
    assert [i["start_us"] for i in out["items"]] == [x["start_us"] for x in old], out

    # The new box: its segments must start after the first clip's end.
    wait_for(lambda: time.time() * 1e6 > t_first + 28e6, 60, "the first clip's end to pass")
    dev2 = upload(s, tmp_path, "box-2", media)
    assert dev2 != dev1
    new = [x for x in s.ctl.segments() if x["device"] == dev2 and x["channel"] == 1]
    assert len(new) >= 2 and new[0]["start_us"] > old[-1]["start_us"], (old, new)
    both = old + new
    first, last = both[0]["start_us"], both[-1]["start_us"] + both[-1]["duration_us"]
    q = "?from=%s&to=%s" % (iso(first - 5_000_000), iso(last + 5_000_000))

    # The list: both runs in time order, the gap between them, pages across.
    out = s.ok("GET", "/api/v1/channels/%d/recordings%s" % (ch, q))
    assert [i["start_us"] for i in out["items"]] == [x["start_us"] for x in both]
    assert [i["sha256"] for i in out["items"]] == [x["sha256"] for x in both]
    assert out["next_after"] is None
    inner = [g for g in out["gaps"] if first < g["from_us"] and g["to_us"] < last]
    assert len(inner) == 1, out["gaps"]
    assert inner[0]["from_us"] == old[-1]["start_us"] + old[-1]["duration_us"]
    assert inner[0]["to_us"] == new[0]["start_us"]
    n_old = len(old)
    p1 = s.ok("GET", "/api/v1/channels/%d/recordings%s&limit=%d" % (ch, q, n_old))
    assert p1["next_after"] == old[-1]["start_us"]
    p2 = s.ok("GET", "/api/v1/channels/%d/recordings%s&after=%d" % (ch, q, p1["next_after"]))
    assert [i["start_us"] for i in p2["items"]] == [x["start_us"] for x in new]

    # A segment of the old id, byte for byte; one of the new id too.
    for seg in (old[0], new[0]):
        st, _, r = s.api.req("GET", "/api/v1/channels/%d/segments/%d.ts" % (ch, seg["start_us"]),
                             token=s.tok)
        assert st == 200 and hashlib.sha256(r.raw).hexdigest() == seg["sha256"], st
        assert r.raw == (s.ctl.data_dir / seg["path"]).read_bytes()

    # The playlist over the whole range: both runs, one discontinuity;
    # ffprobe follows it with the header.
    want = sum_counts([s.ctl.data_dir / x["path"] for x in both])
    st, _, r = s.api.req("GET", "/api/v1/channels/%d/playlist.m3u8%s" % (ch, q), token=s.tok)
    text = r.raw.decode()
    assert st == 200 and text.count("#EXTINF:") == len(both), text
    assert text.count("#EXT-X-DISCONTINUITY") == 1, text
    for x in both:
        assert "segments/%d.ts\n" % x["start_us"] in text
    base = "http://127.0.0.1:%d" % s.port
    got = probe_counts(base + "/api/v1/channels/%d/playlist.m3u8%s" % (ch, q),
                       headers="Authorization: Bearer %s\r\n" % s.tok)
    assert got == want, (got, want)

    # The MP4 export over the range: the packets of both runs.
    st, _, r = s.api.req("GET", "/api/v1/channels/%d/export.mp4%s" % (ch, q), token=s.tok)
    assert st == 200 and r.getheader("Content-Type") == "video/mp4", (st, r.raw[:200])
    mp4 = tmp_path / "export.mp4"
    mp4.write_bytes(r.raw)
    assert probe_counts(mp4) == want

    # A playback URL serves the old id's segments too.
    st, pb, _ = s.api.req("POST", "/api/v1/channels/%d/playback" % ch,
                          {"from": iso(first - 5_000_000), "to": iso(last + 5_000_000)},
                          token=s.tok)
    assert st == 201, pb
    prefix = pb["url"].rsplit("/", 1)[0]
    st, _, r = s.api.req("GET", "%s/%d.ts" % (prefix, old[0]["start_us"]))
    assert st == 200 and hashlib.sha256(r.raw).hexdigest() == old[0]["sha256"]
    assert probe_counts(base + pb["url"]) == want

    # Deleting the recorder keeps today's behaviour: its channel is gone.
    s.ok("DELETE", "/api/v1/recorders/%d" % s.rec["id"], want=(200, 204))
    st, _, _ = s.api.req("GET", "/api/v1/channels/%d/recordings%s" % (ch, q), token=s.tok)
    assert st == 404
    assert s.ctl.alive()
