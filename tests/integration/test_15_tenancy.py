"""15: tenancy over real HTTP (issue 3, point 2): two installers with
clients, sites, recorders, channels, dashcams, users, roles, groups,
drivers, geofences, bookmarks and events; every endpoint tried across the
boundary answers 404 (or 422 for a reference in a body) and changes
nothing; and the installers' set-password links.

The distributor (c2d-controller init) creates the installers; each
installer's first user sets a password through the link the controller
writes to its outbox (docs/api.md; controller/mailer.h)."""

import re
import time
from pathlib import Path

import pytest

from apiclient import Api, api_routes, device_event, device_location, err, fill, start_api

DIST = "dist@example.com"
DIST_PW = "distributor password"
PW = "installer password"
MISSING = 9007199254740000  # an id no object has (below 2^53)


def outbox_link(ctl, email, timeout=10):
    """The token of the newest set-password link mailed to email."""
    box = Path(ctl.cfg.get("mail", {}).get("outbox_dir") or ctl.data_dir / "outbox")
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for f in sorted(box.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns) if box.exists() else []:
            txt = f.read_text(errors="replace")
            if re.search(r"^To:.*%s" % re.escape(email), txt, re.M | re.I):
                m = re.search(r"set-password\?token=([A-Za-z0-9_-]+)", txt)
                if m:
                    found.append(m.group(1))
        if found:
            return found[-1]
        assert time.monotonic() < deadline, "no set-password link for %s in %s" % (email, box)
        time.sleep(0.1)


def make_installer(api, dist, name, email):
    inst = api.ok("POST", "/api/v1/installers", {"name": name, "email": email}, token=dist)
    token = outbox_link(api.ctl, email)
    api.ok("POST", "/api/v1/set-password", {"token": token, "password": PW})
    return inst, token


def build_space(api, tok, tag, broker, pki, dist=None, inst=None):
    """Every kind of object in the caller's space: {kind segment: object}.
    With the distributor's token and the installer, also its subscriptions."""
    o = {}
    o["clients"] = api.ok("POST", "/api/v1/clients",
                          {"name": "Client " + tag, "email": "client-%s@example.com" % tag}, token=tok)
    o["sites"] = api.ok("POST", "/api/v1/sites", {"name": "Site " + tag, "client_id": o["clients"]["id"]},
                        token=tok)
    o["recorders"] = api.ok("POST", "/api/v1/recorders",
                            {"name": "NVR " + tag, "serial": "NVR-" + tag, "model": "X8",
                             "site_id": o["sites"]["id"], "channels": 2, "device_id": "nvr-" + tag},
                            token=tok)
    o["channels"] = api.ok("GET", "/api/v1/channels?recorder_id=%d" % o["recorders"]["id"],
                           token=tok)["items"][0]
    o["dashcams"] = api.ok("POST", "/api/v1/dashcams",
                           {"name": "Van " + tag, "serial": "DC-" + tag, "model": "D2",
                            "plate": "AB-%s-12" % tag, "device_id": "dc-" + tag}, token=tok)
    o["roles"] = api.ok("POST", "/api/v1/roles",
                        {"name": "Role " + tag, "permissions": ["site.get", "user.get"]}, token=tok)
    o["users"] = api.ok("POST", "/api/v1/users",
                        {"email": "user-%s@example.com" % tag, "role": "Role " + tag}, token=tok)
    o["groups"] = api.ok("POST", "/api/v1/groups",
                         {"name": "Group " + tag, "dashcam_ids": [o["dashcams"]["id"]]}, token=tok)
    o["drivers"] = api.ok("POST", "/api/v1/drivers",
                          {"name": "Driver " + tag, "license_number": "LIC-" + tag}, token=tok)
    o["geofences"] = api.ok("POST", "/api/v1/geofences",
                            {"name": "Zone " + tag,
                             "shape": {"type": "circle", "center": {"lat": 48.85, "lon": 2.35},
                                       "radius_m": 500},
                             "dashcam_ids": [o["dashcams"]["id"]]}, token=tok)
    o["bookmarks"] = api.ok("POST", "/api/v1/bookmarks",
                            {"channel_id": o["channels"]["id"], "name": "Mark " + tag,
                             "start": "2026-11-30T08:00:00Z", "end": "2026-11-30T08:05:00Z"},
                            token=tok)
    api.ok("PUT", "/api/v1/dashcams/%d/driver" % o["dashcams"]["id"], {"driver_id": o["drivers"]["id"]},
           token=tok)
    o["dashcams"] = api.ok("GET", "/api/v1/dashcams/%d" % o["dashcams"]["id"], token=tok)
    api.ok("PUT", "/api/v1/settings/regional", {"time_zone": "Europe/Paris", "units": "metric"},
           token=tok)
    o["events"] = device_event(api, tok, broker, pki, "dc-" + tag, o["dashcams"]["id"],
                               event="harsh_brake")
    device_location(api, tok, broker, pki, "dc-" + tag, o["dashcams"]["id"])
    if dist:
        o["vdisks"] = api.ok("POST", "/api/v1/installers/%d/vdisks" % inst["id"],
                             {"client_id": o["clients"]["id"], "capacity_bytes": 1 << 30,
                              "retention_days": 30}, token=dist)
        api.ok("PUT", "/api/v1/vdisks/%d/device" % o["vdisks"]["id"],
               {"recorder_id": o["recorders"]["id"]}, token=tok)
        o["ai-subscriptions"] = api.ok("POST", "/api/v1/installers/%d/ai-subscriptions" % inst["id"],
                                       {"client_id": o["clients"]["id"], "algorithms": ["person"],
                                        "channels_max": 1}, token=dist)
        o["vdisks"] = api.ok("GET", "/api/v1/vdisks/%d" % o["vdisks"]["id"], token=tok)
    return o


# Routes that are not about one space's objects: tried separately below.
NOT_TENANT = ("/api/v1/session", "/api/v1/set-password", "/api/v1/installers", "/api/v1/play/")
# Routes of a channel's recordings that answer 404 when it has none (the
# test's channels record nothing): tried across the boundary, not as reads
# of one's own objects.
NO_RECORDINGS = ("/segments/", "/export.mp4", "/playlist.m3u8")

# A valid body for a PUT/POST on an {id} route (else the body check's 422
# would answer before the lookup's 404).
def body_for(method, pattern, mine):
    if method not in ("PUT", "POST"):
        return None
    if pattern.endswith("/password-link") or pattern.endswith("/pairing-code"):
        return None
    if pattern.endswith("/driver"):
        return {"driver_id": mine["drivers"]["id"]}
    if pattern.endswith("/playback"):
        return {"from": "2026-11-30T08:00:00Z", "to": "2026-11-30T09:00:00Z"}
    if pattern.endswith("/activate"):
        return None
    if pattern.startswith("/api/v1/vdisks/"):
        step = pattern.rsplit("/", 1)[1]
        return {"device": {"recorder_id": mine["recorders"]["id"]},
                "drive": {"name": "Hijacked"},
                "channels": {"channels": [{"channel_id": mine["channels"]["id"]}]},
                "connection": {"device_id": "hijack-1"}}[step]
    seg = pattern.split("/")[3]
    return {"users": {"role": "User"}, "events": {"acknowledged": True, "note": "x"},
            "roles": {"name": "Hijacked"}}.get(seg, {"name": "Hijacked"})


def snapshot(api, tok, o):
    """Raw bytes of every GET route of the space as its owner sees it."""
    snap = {}
    for method, pat in api_routes():
        if method != "GET" or pat.startswith(NOT_TENANT) or any(n in pat for n in NO_RECORDINGS):
            continue
        if "{" in pat:
            path = fill(pat, o[pat.split("/")[3]]["id"])
            if pat.endswith("/recordings"):  # a fixed range: the default one moves
                path += "?from=2026-11-30T00:00:00Z&to=2026-11-30T01:00:00Z"
        elif pat == "/api/v1/map/trips":
            path = pat + "?dashcam_id=%d" % o["dashcams"]["id"]
        else:
            path = pat + ("?limit=200" if pat != "/api/v1/settings/regional" else "")
        st, _, r = api.req("GET", path, token=tok)
        snap[path] = (st, r.raw)
    return snap


@pytest.mark.timeout(120)
def test_installers_are_walled_off(make_controller, broker, pki):
    c = start_api(make_controller)
    c.init(DIST, DIST_PW)
    c.start()
    api = Api(c.http_port())
    api.ctl = c
    dist = api.token(DIST, DIST_PW)

    ia, _ = make_installer(api, dist, "Installer A", "inst-a@example.com")
    ib, _ = make_installer(api, dist, "Installer B", "inst-b@example.com")
    ta = api.token("inst-a@example.com", PW)
    tb = api.token("inst-b@example.com", PW)
    a_users = {api.ok("GET", "/api/v1/me", token=ta)["user"]["id"]}

    a = build_space(api, ta, "a", broker, pki, dist, ia)
    b = build_space(api, tb, "b", broker, pki, dist, ib)
    a_users.add(a["users"]["id"])
    b_ids = {v["id"] for v in b.values()}
    before = snapshot(api, tb, b)
    assert all(st == 200 for st, _ in before.values()), {p: st for p, (st, _) in before.items()}
    audit_b = api.ok("GET", "/api/v1/audit?limit=200", token=tb)["items"]

    # Every {id} route with B's ids: 404 not_found, as a missing object.
    unmapped, wrong, tried = [], [], set()
    for method, pat in api_routes():
        if "{" not in pat or pat.startswith(NOT_TENANT):
            continue
        seg = pat.split("/")[3]
        if seg not in b:
            unmapped.append((method, pat))
            continue
        body = body_for(method, pat, a)
        # Control: the same request on A's own object is not a 404.
        if method == "GET" and not any(n in pat for n in NO_RECORDINGS):
            st, out, _ = api.req(method, fill(pat, a[seg]["id"]), token=ta)
            assert st == 200, (method, pat, st, out)
        st, out, _ = api.req(method, fill(pat, b[seg]["id"]), body, token=ta)
        tried.add((method, pat))
        miss_st, miss, _ = api.req(method, fill(pat, MISSING), body, token=ta)
        if not (st == 404 and err(out) == "not_found" and (st, out) == (miss_st, miss)):
            wrong.append((method, pat, st, out, miss_st, miss))
    assert not unmapped, "routes with an id this test does not know how to fill: %s" % unmapped
    assert not wrong, "answers across the boundary: %s" % wrong
    assert {("PUT", "/api/v1/dashcams/{id}/driver"), ("DELETE", "/api/v1/users/{id}"),
            ("POST", "/api/v1/users/{id}/password-link"), ("PUT", "/api/v1/events/{id}"),
            ("DELETE", "/api/v1/bookmarks/{id}")} <= tried, sorted(tried)

    # Lists filtered by B's parents: as for a missing parent; never B's items.
    params = {"client_id": "clients", "site_id": "sites", "recorder_id": "recorders",
              "channel_id": "channels", "dashcam_id": "dashcams", "driver_id": "drivers"}
    lists = [pat for m, pat in api_routes()
             if m == "GET" and "{" not in pat and not pat.startswith(NOT_TENANT)]
    for pat in lists:
        for p, seg in params.items():
            st, out, _ = api.req("GET", "%s?%s=%d" % (pat, p, b[seg]["id"]), token=ta)
            mst, mout, _ = api.req("GET", "%s?%s=%d" % (pat, p, MISSING), token=ta)
            assert (st, out) == (mst, mout), (pat, p, st, out, mst, mout)
            if st == 200 and isinstance(out, dict) and "items" in out:
                assert not {i.get("id") for i in out["items"]} & b_ids, (pat, p, out)
    for pat, p, seg in [("/api/v1/sites", "client_id", "clients"),
                        ("/api/v1/recorders", "site_id", "sites"),
                        ("/api/v1/channels", "recorder_id", "recorders"),
                        ("/api/v1/bookmarks", "channel_id", "channels"),
                        ("/api/v1/events", "recorder_id", "dashcams"),
                        ("/api/v1/map/trips", "dashcam_id", "dashcams")]:
        st, out, _ = api.req("GET", "%s?%s=%d" % (pat, p, b[seg]["id"]), token=ta)
        assert st == 404 and err(out) == "not_found", (pat, p, st, out)
    # Unfiltered lists hold none of B's objects.
    for pat in lists:
        q = "?dashcam_id=%d" % a["dashcams"]["id"] if pat == "/api/v1/map/trips" else ""
        st, out, r = api.req("GET", pat + q, token=ta)
        assert st == 200, (pat, st, out)
        for it in out.get("items", []) if isinstance(out, dict) else []:
            assert it.get("id") not in b_ids and it.get("dashcam_id") not in b_ids, (pat, it)
        assert b"-b@example.com" not in r.raw and b"Client b" not in r.raw, (pat, r.raw[:300])
    st, out, _ = api.req("GET", "/api/v1/users?role=Role%20b", token=ta)
    assert st == 200 and out["items"] == [], out

    # Bodies that reference B's objects: 422 invalid_field naming the field.
    refs = [
        ("POST", "/api/v1/sites", {"name": "S", "client_id": b["clients"]["id"]}, "client_id"),
        ("PUT", "/api/v1/sites/%d" % a["sites"]["id"], {"client_id": b["clients"]["id"]}, "client_id"),
        ("POST", "/api/v1/recorders", {"name": "R", "serial": "X-1", "model": "m",
                                       "site_id": b["sites"]["id"]}, "site_id"),
        ("PUT", "/api/v1/recorders/%d" % a["recorders"]["id"], {"site_id": b["sites"]["id"]}, "site_id"),
        ("POST", "/api/v1/groups", {"name": "G", "dashcam_ids": [a["dashcams"]["id"], b["dashcams"]["id"]]},
         "dashcam_ids[1]"),
        ("PUT", "/api/v1/groups/%d" % a["groups"]["id"], {"dashcam_ids": [b["dashcams"]["id"]]},
         "dashcam_ids[0]"),
        ("POST", "/api/v1/geofences", {"name": "Z", "shape": {"type": "circle", "center": {"lat": 1, "lon": 1},
                                                             "radius_m": 10},
                                       "dashcam_ids": [b["dashcams"]["id"]]}, "dashcam_ids[0]"),
        ("POST", "/api/v1/bookmarks", {"channel_id": b["channels"]["id"], "name": "M",
                                       "start": "2026-11-30T08:00:00Z", "end": "2026-11-30T08:01:00Z"},
         "channel_id"),
        ("PUT", "/api/v1/dashcams/%d/driver" % a["dashcams"]["id"], {"driver_id": b["drivers"]["id"]},
         "driver_id"),
        ("POST", "/api/v1/users", {"email": "x-a@example.com", "role": "Role b"}, "role"),
        ("PUT", "/api/v1/users/%d" % a["users"]["id"], {"role": "Role b"}, "role"),
    ]
    for method, path, body, field in refs:
        st, out, _ = api.req(method, path, body, token=ta)
        assert st == 422 and err(out) == "invalid_field", (method, path, body, st, out)
        assert field.split("[")[0] in out["error"]["message"], (method, path, out)
    # Unique names and serials are per space or global, and say nothing more
    # than "taken" about the other space (no 500, no B's data in the answer).
    st, out, r = api.req("POST", "/api/v1/dashcams", {"name": "Dup", "serial": "DC-b", "model": "D2"},
                         token=ta)
    assert st == 409 and b"Van b" not in r.raw, (st, out)
    # Audit: A cannot read B's entries even by naming B's objects.
    for seg, kind in [("clients", "client"), ("users", "user"), ("dashcams", "recorder"),
                      ("drivers", "driver"), ("groups", "group")]:
        out = api.ok("GET", "/api/v1/audit?kind=%s&id=%d" % (kind, b[seg]["id"]), token=ta)
        assert out["items"] == [], (seg, out)
    # The installer endpoints are the distributor's.
    for method, path, body in [("GET", "/api/v1/installers", None),
                               ("POST", "/api/v1/installers", {"name": "X", "email": "x@example.com"}),
                               ("GET", "/api/v1/installers/%d" % ib["id"], None),
                               ("PUT", "/api/v1/installers/%d" % ib["id"], {"name": "Mine"}),
                               ("DELETE", "/api/v1/installers/%d" % ib["id"], None),
                               ("POST", "/api/v1/installers/%d/password-link" % ib["id"], None)]:
        st, out, _ = api.req(method, path, body, token=ta)
        assert st == 403 and err(out) == "forbidden", (method, path, st, out)

    # B's space is byte-identical, and its log holds nothing by A.
    after = snapshot(api, tb, b)
    changed = {p: (before[p], after[p]) for p in before if before[p] != after[p]}
    assert not changed, changed
    audit_b2 = api.ok("GET", "/api/v1/audit?limit=200", token=tb)["items"]
    assert audit_b2 == audit_b
    actors_a = {"user:%d" % u for u in a_users}
    assert not [e for e in audit_b2 if e["actor"] in actors_a]
    # And A's log holds nothing about B's objects.
    audit_a = api.ok("GET", "/api/v1/audit?limit=200", token=ta)["items"]
    assert not [e for e in audit_a if e["id"] in b_ids], audit_a

    # The distributor's space holds neither installer's objects.
    for pat in ("/api/v1/clients", "/api/v1/dashcams", "/api/v1/drivers"):
        assert api.ok("GET", pat, token=dist)["items"] == []
    st, out, _ = api.req("GET", "/api/v1/clients/%d" % b["clients"]["id"], token=dist)
    assert st == 404, out
    c.stop()


def test_set_password_link(make_controller):
    c = start_api(make_controller)
    c.init(DIST, DIST_PW)
    c.start()
    api = Api(c.http_port())
    api.ctl = c
    dist = api.token(DIST, DIST_PW)
    inst = api.ok("POST", "/api/v1/installers", {"name": "Inst", "email": "Inst@Example.com"},
                  token=dist)
    assert inst["email"] == "inst@example.com" and inst["name"] == "Inst"
    token = outbox_link(c, "inst@example.com")
    # No log-in before a password is set.
    assert api.login("inst@example.com", PW)[0] == 401
    st, out, _ = api.req("GET", "/api/v1/set-password?token=" + token)
    assert st == 200 and out["email"] == "inst@example.com" and out["expires_at"].endswith("Z"), out
    st, out, _ = api.req("POST", "/api/v1/set-password", {"token": token, "password": "short"})
    assert st == 422, out  # a refused password does not spend the link
    api.ok("POST", "/api/v1/set-password", {"token": token, "password": PW})
    # Single use.
    st, out, _ = api.req("POST", "/api/v1/set-password", {"token": token, "password": PW + "2"})
    assert st == 410 and err(out) == "invalid_link", out
    st, out, _ = api.req("GET", "/api/v1/set-password?token=" + token)
    assert st == 410 and err(out) == "invalid_link", out
    for bad in ["A" * 43, token[:-1], "", "x"]:
        st, out, _ = api.req("POST", "/api/v1/set-password", {"token": bad, "password": PW})
        assert st in (410, 422), (bad, st, out)
    t = api.token("inst@example.com", PW)
    me = api.ok("GET", "/api/v1/me", token=t)
    assert me["role"]["name"] == "Administrator"
    # The installer manages its own space, not installers.
    for method, path in [("GET", "/api/v1/installers"), ("GET", "/api/v1/installers/%d" % inst["id"])]:
        st, out, _ = api.req(method, path, token=t)
        assert st == 403 and err(out) == "forbidden", out
    st, out, _ = api.req("POST", "/api/v1/installers", {"name": "X", "email": "x@example.com"}, token=t)
    assert st == 403 and err(out) == "forbidden", out
    # A new link replaces the old one; its use ends the user's sessions.
    api.ok("POST", "/api/v1/installers/%d/password-link" % inst["id"], token=dist, want=(202,))
    time.sleep(1.1)  # the outbox orders by time: tell the two messages apart
    t2 = outbox_link(c, "inst@example.com")
    assert t2 != token
    api.ok("POST", "/api/v1/set-password", {"token": t2, "password": PW + "-new"})
    assert api.req("GET", "/api/v1/me", token=t)[0] == 401
    assert api.login("inst@example.com", PW + "-new")[0] == 201
    c.stop()


def test_set_password_link_expires(make_controller):
    c = start_api(make_controller, http={"link_ttl_s": 1})
    c.init(DIST, DIST_PW)
    c.start()
    api = Api(c.http_port())
    api.ctl = c
    dist = api.token(DIST, DIST_PW)
    api.ok("POST", "/api/v1/installers", {"name": "Late", "email": "late@example.com"}, token=dist)
    token = outbox_link(c, "late@example.com")
    time.sleep(1.5)
    st, out, _ = api.req("GET", "/api/v1/set-password?token=" + token)
    assert st == 410 and err(out) == "invalid_link", out
    st, out, _ = api.req("POST", "/api/v1/set-password", {"token": token, "password": PW})
    assert st == 410 and err(out) == "invalid_link", out
    assert api.login("late@example.com", PW)[0] == 401
    c.stop()
