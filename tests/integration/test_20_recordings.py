"""20: getting the video back (issue 4).

A real agent uploads two clips of one camera, some time apart (a gap),
through the real broker to a controller with the API. Then over HTTP:
- the channel's recordings list every committed segment (as `segments
  --json` gives them) and the gap between the clips;
- a segment downloads byte for byte (sha256 of the ledger);
- ffprobe reads the HLS playlist over HTTP (bearer header) and the MP4
  export, and their packet counts per stream type equal the sum over the
  range's segment files;
- a playback URL plays without a header, and refuses another channel's
  segment, a forged token and an expired one;
- another space's user gets 404, a role without recording.view 403;
- the audit log holds the view, download and export with the user.
"""

import calendar
import hashlib
import json
import re
import time
import urllib.request
from pathlib import Path

import pytest

from apiclient import Api, err, start_api
from c2dtest import file_channel, run, wait_for

DEV = "rec-r"
ADMIN = "admin-r@example.com"
ADMIN_PW = "recordings admin password"
PW = "recordings user password"


def iso(us):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(us // 1_000_000)) + (
        ".%06dZ" % (us % 1_000_000))


def probe_counts(url_or_path, headers=None):
    """{codec_type: packets} of a file or URL by ffprobe -count_packets
    (each stream index once: MPEG-TS lists streams twice)."""
    cmd = ["ffprobe", "-v", "error"]
    if headers:
        cmd += ["-headers", headers]
    cmd += ["-count_packets", "-show_entries", "stream=index,codec_type,nb_read_packets",
            "-of", "json", str(url_or_path)]
    r = run(cmd, timeout=300)
    seen, out = set(), {}
    for s in json.loads(r.stdout)["streams"]:
        if s["index"] in seen:
            continue
        seen.add(s["index"])
        out[s["codec_type"]] = out.get(s["codec_type"], 0) + int(s["nb_read_packets"])
    return out


def sum_counts(paths):
    total = {}
    for p in paths:
        for k, v in probe_counts(p).items():
            total[k] = total.get(k, 0) + v
    return total


def outbox_token(ctl, email, timeout=10):
    box = Path(ctl.data_dir / "outbox")
    deadline = time.monotonic() + timeout
    while True:
        for f in sorted(box.glob("*.eml")) if box.exists() else []:
            txt = f.read_text(errors="replace")
            if re.search(r"^To:.*%s" % re.escape(email), txt, re.M | re.I):
                m = re.search(r"set-password\?token=([A-Za-z0-9_-]+)", txt)
                if m:
                    return m.group(1)
        assert time.monotonic() < deadline, "no set-password link for %s" % email
        time.sleep(0.1)


def new_user(api, tok, email, role):
    api.ok("POST", "/api/v1/users", {"email": email, "role": role}, token=tok)
    api.ok("POST", "/api/v1/set-password", {"token": outbox_token(api.ctl, email), "password": PW})
    return api.token(email, PW)


@pytest.mark.timeout(600)
def test_recordings(media, make_controller, make_agent, tmp_path):
    c = start_api(make_controller, open_mode=True)
    c.init(ADMIN, ADMIN_PW)
    c.start()
    api = Api(c.http_port())
    api.ctl = c
    tok = api.token(ADMIN, ADMIN_PW)

    client = api.ok("POST", "/api/v1/clients", {"name": "Client R", "email": "client-r@example.com"},
                    token=tok)
    site = api.ok("POST", "/api/v1/sites", {"name": "Site R", "client_id": client["id"]}, token=tok)
    rec = api.ok("POST", "/api/v1/recorders",
                 {"name": "NVR R", "serial": "NVR-R", "model": "X8", "site_id": site["id"],
                  "channels": 2, "device_id": DEV}, token=tok)
    chans = {ch["number"]: ch for ch in
             api.ok("GET", "/api/v1/channels?recorder_id=%d" % rec["id"], token=tok)["items"]}
    ch1, ch2 = chans[1]["id"], chans[2]["id"]

    # Two uploads of 20 s clips; the second starts well after the first
    # ended (the agent stamps segments from the wall clock at its start).
    a1 = make_agent(DEV, [file_channel(1, media.h264_short), file_channel(2, media.h264_short)],
                    name="agent-1")
    t_first = int(time.time() * 1e6)
    a1.start()
    a1.wait_done(240, c)
    wait_for(lambda: time.time() * 1e6 > t_first + 28e6, 60, "the first clip's end to pass")
    a2 = make_agent(DEV, [file_channel(1, media.h264_short)], name="agent-2")
    a2.start()
    a2.wait_done(240, c)

    segs = [s for s in c.segments() if s["device"] == DEV and s["channel"] == 1]
    assert len(segs) >= 4, segs
    first, last = segs[0]["start_us"], segs[-1]["start_us"] + segs[-1]["duration_us"]
    q = "?from=%s&to=%s" % (iso(first - 5_000_000), iso(last + 5_000_000))

    # The list: every segment, in order, and the gap between the clips.
    out = api.ok("GET", "/api/v1/channels/%d/recordings%s" % (ch1, q), token=tok)
    assert [i["start_us"] for i in out["items"]] == [s["start_us"] for s in segs]
    assert [i["size"] for i in out["items"]] == [s["size"] for s in segs]
    assert out["next_after"] is None
    inner = [g for g in out["gaps"] if first < g["from_us"] and g["to_us"] < last]
    assert len(inner) == 1, out["gaps"]
    assert inner[0]["to_us"] - inner[0]["from_us"] >= 3_000_000, inner
    # Pages.
    p1 = api.ok("GET", "/api/v1/channels/%d/recordings%s&limit=2" % (ch1, q), token=tok)
    assert len(p1["items"]) == 2 and p1["next_after"] == segs[1]["start_us"]
    p2 = api.ok("GET", "/api/v1/channels/%d/recordings%s&limit=2&after=%d"
                % (ch1, q, p1["next_after"]), token=tok)
    assert p2["items"][0]["start_us"] == segs[2]["start_us"]

    # A segment, byte for byte; with a range.
    s0 = segs[1]
    st, _, r = api.req("GET", "/api/v1/channels/%d/segments/%d" % (ch1, s0["start_us"]), token=tok)
    assert st == 200 and r.getheader("Content-Type") == "video/mp2t"
    assert hashlib.sha256(r.raw).hexdigest() == s0["sha256"]
    st, _, r2 = api.req("GET", "/api/v1/channels/%d/segments/%d.ts" % (ch1, s0["start_us"]),
                        token=tok, headers={"Range": "bytes=188-375"})
    assert st == 206 and r2.raw == r.raw[188:376]
    st, body, _ = api.req("GET", "/api/v1/channels/%d/segments/%d" % (ch1, s0["start_us"] + 1),
                          token=tok)
    assert st == 404 and err(body) == "not_found"

    # The playlist over HTTP: ffprobe follows the segment URIs with the
    # header; packets per type equal the segment files'.
    files = [c.data_dir / s["path"] for s in segs]
    want = sum_counts(files)
    base = "http://127.0.0.1:%d" % c.http_port()
    st, _, r = api.req("GET", "/api/v1/channels/%d/playlist.m3u8%s" % (ch1, q), token=tok)
    assert st == 200 and r.getheader("Content-Type") == "application/vnd.apple.mpegurl"
    text = r.raw.decode()
    assert text.startswith("#EXTM3U\n") and text.endswith("#EXT-X-ENDLIST\n")
    assert text.count("#EXTINF:") == len(segs) and text.count("#EXT-X-DISCONTINUITY") == 1
    got = probe_counts(base + "/api/v1/channels/%d/playlist.m3u8%s" % (ch1, q),
                       headers="Authorization: Bearer %s\r\n" % tok)
    assert got == want, (got, want)

    # The MP4 export.
    st, _, r = api.req("GET", "/api/v1/channels/%d/export.mp4%s" % (ch1, q), token=tok)
    assert st == 200 and r.getheader("Content-Type") == "video/mp4", (st, r.raw[:200])
    assert "attachment" in r.getheader("Content-Disposition")
    mp4 = tmp_path / "export.mp4"
    mp4.write_bytes(r.raw)
    assert probe_counts(mp4) == want
    assert not list((c.data_dir / "tmp").glob("*"))
    st, body, _ = api.req("GET", "/api/v1/channels/%d/export.mp4?from=%s&to=%s"
                          % (ch1, iso(first), iso(first + 7 * 3600 * 10**6)), token=tok)
    assert st == 422 and err(body) == "range_too_long"

    # Playback URL: no header; only its channel and range.
    st, pb, _ = api.req("POST", "/api/v1/channels/%d/playback" % ch1,
                        {"from": iso(first - 5_000_000), "to": iso(last + 5_000_000)}, token=tok)
    assert st == 201 and pb["url"].startswith("/api/v1/play/"), pb
    got = probe_counts(base + pb["url"])
    assert got == want, (got, want)
    with urllib.request.urlopen(base + pb["url"]) as resp:
        listed = resp.read().decode()
    assert "%d.ts" % segs[0]["start_us"] in listed
    prefix = pb["url"].rsplit("/", 1)[0]
    assert api.req("GET", "%s/%d.ts" % (prefix, segs[0]["start_us"]))[0] == 200
    ch2_segs = [s for s in c.segments() if s["device"] == DEV and s["channel"] == 2]
    assert ch2_segs
    st, body, _ = api.req("GET", "%s/%d.ts" % (prefix, ch2_segs[0]["start_us"]))
    assert st == 404 and err(body) == "not_found"
    forged = "/api/v1/play/%s/playlist.m3u8" % ("A" * 43)
    assert api.req("GET", forged)[0] == 404
    # A token whose range ends before the second clip does not serve it.
    st, pb2, _ = api.req("POST", "/api/v1/channels/%d/playback" % ch1,
                         {"from": iso(first), "to": iso(segs[0]["start_us"] + 1)}, token=tok)
    prefix2 = pb2["url"].rsplit("/", 1)[0]
    assert api.req("GET", "%s/%d.ts" % (prefix2, segs[-1]["start_us"]))[0] == 404
    # Tokens live 1 h (expiry itself is not waited for here).
    expires = calendar.timegm(time.strptime(pb["expires_at"], "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(expires - time.time() - 3600) < 120

    # Another space's user: 404 as for a missing channel.
    api.ok("POST", "/api/v1/installers", {"name": "Other", "email": "other@example.com"}, token=tok)
    api.ok("POST", "/api/v1/set-password",
           {"token": outbox_token(c, "other@example.com"), "password": PW})
    other = api.token("other@example.com", PW)
    for path in ["/api/v1/channels/%d/recordings" % ch1,
                 "/api/v1/channels/%d/segments/%d" % (ch1, s0["start_us"]),
                 "/api/v1/channels/%d/playlist.m3u8%s" % (ch1, q),
                 "/api/v1/channels/%d/export.mp4%s" % (ch1, q)]:
        st, body, _ = api.req("GET", path, token=other)
        assert st == 404 and err(body) == "not_found", (path, st, body)
    st, body, _ = api.req("POST", "/api/v1/channels/%d/playback" % ch1,
                          {"from": iso(first), "to": iso(last)}, token=other)
    assert st == 404, body

    # A role without recording.view: 403.
    api.ok("POST", "/api/v1/roles", {"name": "No video", "permissions": ["site.get"]}, token=tok)
    novideo = new_user(api, tok, "novideo@example.com", "No video")
    for path in ["/api/v1/channels/%d/recordings" % ch1,
                 "/api/v1/channels/%d/playlist.m3u8" % ch1]:
        st, body, _ = api.req("GET", path, token=novideo)
        assert st == 403 and err(body) == "forbidden", (path, st, body)

    # The audit log: who watched what.
    me = api.ok("GET", "/api/v1/me", token=tok)["user"]["id"]
    items = api.ok("GET", "/api/v1/audit?kind=channel&id=%d&limit=200" % ch1, token=tok)["items"]
    acts = [(e["action"], e["actor"]) for e in items]
    actor = "user:%d" % me
    for action in ("view", "download", "export"):
        assert (action, actor) in acts, acts
    views = [e for e in items if e["action"] == "view"]
    assert len(views) >= 3  # bearer playlist (twice: text and ffprobe) + playback URL
    assert views[-1]["after"]["channel_id"] == ch1 and views[-1]["after"]["segments"] == len(segs)
    assert c.alive()
