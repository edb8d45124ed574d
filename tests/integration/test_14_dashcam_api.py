"""14: the dashcam platform's objects in the API (issue 3): groups,
bookmarks, geofences, events, drivers, regional settings and the map, over
real HTTP against a running controller. Events and positions come from a
device publishing on its evt topic with its certificate, as a dashcam does.

The every-cell permission matrix is another test's; here only the Map
Viewer's reach is checked."""
import http.client
import json
import re
import time

import pytest

from c2dtest import MqttClient, wait_for

ADMIN = "admin@example.com"
ADMIN_PW = "correct horse battery"
PW = "s3cret-password"


class Api:
    def __init__(self, port):
        self.port = port

    def req(self, method, path, body=None, token=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if token:
            h["Authorization"] = "Bearer " + token
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            txt = r.read()
            return r.status, (json.loads(txt) if txt else None)
        finally:
            c.close()

    def token(self, email, password):
        st, body = self.req("POST", "/api/v1/session", {"email": email, "password": password})
        assert st == 201, (st, body)
        return body["token"]

    def ok(self, method, path, body=None, token=None, status=None):
        st, out = self.req(method, path, body, token)
        want = status or {"POST": 201, "DELETE": 204}.get(method, 200)
        assert st == want, (method, path, st, out)
        return out


def err(body):
    return body["error"]["code"]


def msg(body):
    return body["error"]["message"]


@pytest.fixture
def api(make_controller):
    c = make_controller(http={"listen": "127.0.0.1", "port": 0})
    c.init(ADMIN, ADMIN_PW)
    c.start()
    a = Api(c.http_port())
    a.ctl = c
    a.adm = a.token(ADMIN, ADMIN_PW)
    yield a
    c.stop()


def dashcam(api, name, serial, device=None, tok=None):
    body = {"name": name, "serial": serial, "model": "DC-2"}
    if device:
        body["device_id"] = device
    return api.ok("POST", "/api/v1/dashcams", body, tok or api.adm)["id"]


def recorder(api):
    cl = api.ok("POST", "/api/v1/clients", {"name": "Shop", "email": "shop@example.com"}, api.adm)
    st = api.ok("POST", "/api/v1/sites", {"name": "Main", "client_id": cl["id"]}, api.adm)
    return api.ok("POST", "/api/v1/recorders", {"name": "NVR", "serial": "NVR-1", "model": "N8",
                                                "site_id": st["id"]}, api.adm)["id"]


def installer_token(api, email="inst@example.com"):
    """A second space: an installer made by the distributor, whose
    Administrator sets a password through the emailed link."""
    api.ok("POST", "/api/v1/installers", {"name": "Acme", "email": email}, api.adm)
    outbox = api.ctl.data_dir / "outbox"
    found = []

    def link():
        for f in sorted(outbox.glob("*")) if outbox.exists() else []:
            m = re.search(r"token=([A-Za-z0-9_-]+)", f.read_text(errors="replace"))
            if m and email in f.read_text(errors="replace"):
                found.append(m.group(1))
        return bool(found)
    wait_for(link, 10, "the installer's set-password message", on_timeout=api.ctl.diag)
    st, body = api.req("POST", "/api/v1/set-password", {"token": found[-1], "password": PW})
    assert st in (200, 204), (st, body)
    return api.token(email, PW)


def user_token(api, role, email):
    api.ok("POST", "/api/v1/users", {"email": email, "role": role, "password": PW}, api.adm)
    return api.token(email, PW)


def test_groups(api):
    d1, d2 = dashcam(api, "Van 1", "S-1"), dashcam(api, "Van 2", "S-2")
    nvr = recorder(api)

    g = api.ok("POST", "/api/v1/groups", {"name": "Fleet A", "dashcam_ids": [d1, d2]}, api.adm)
    assert g["dashcam_ids"] == [d1, d2] and g["name"] == "Fleet A"
    empty = api.ok("POST", "/api/v1/groups", {"name": "Empty", "description": "later"}, api.adm)
    assert empty["dashcam_ids"] == []

    st, body = api.req("POST", "/api/v1/groups", {"name": "Fleet A"}, api.adm)
    assert st == 409 and err(body) == "name_taken"
    # Not a dashcam (a recorder, a missing id), a repeated id, a bad field.
    st, body = api.req("POST", "/api/v1/groups", {"name": "B", "dashcam_ids": [d1, nvr]}, api.adm)
    assert st == 422 and err(body) == "invalid_field" and "dashcam_ids[1]" in msg(body)
    st, body = api.req("POST", "/api/v1/groups", {"name": "B", "dashcam_ids": [999999]}, api.adm)
    assert st == 422 and "dashcam_ids[0]" in msg(body)
    st, body = api.req("POST", "/api/v1/groups", {"name": "B", "dashcam_ids": [d1, d1]}, api.adm)
    assert st == 422 and err(body) == "invalid_field"
    st, body = api.req("POST", "/api/v1/groups", {"name": "B", "colour": "red"}, api.adm)
    assert st == 422 and err(body) == "unknown_field"
    st, body = api.req("POST", "/api/v1/groups", {"dashcam_ids": []}, api.adm)
    assert st == 422 and err(body) == "missing_field"

    # Another space's dashcam is no dashcam here, and its groups are not ours.
    inst = installer_token(api)
    foreign = dashcam(api, "Their van", "S-9", tok=inst)
    st, body = api.req("POST", "/api/v1/groups", {"name": "B", "dashcam_ids": [foreign]}, api.adm)
    assert st == 422 and "dashcam_ids[0]" in msg(body)
    assert api.req("GET", "/api/v1/groups/%d" % g["id"], token=inst)[0] == 404
    assert api.req("DELETE", "/api/v1/groups/%d" % g["id"], token=inst)[0] == 404
    assert api.ok("GET", "/api/v1/groups", token=inst)["items"] == []
    # The name is unique per space only.
    api.ok("POST", "/api/v1/groups", {"name": "Fleet A"}, inst)

    page = api.ok("GET", "/api/v1/groups?limit=1", token=api.adm)
    assert len(page["items"]) == 1 and page["next_after"] == g["id"]
    assert [x["name"] for x in api.ok("GET", "/api/v1/groups?name=Empty", token=api.adm)["items"]] \
        == ["Empty"]
    g2 = api.ok("PUT", "/api/v1/groups/%d" % g["id"], {"name": "Fleet B", "dashcam_ids": [d2]},
                api.adm)
    assert g2["name"] == "Fleet B" and g2["dashcam_ids"] == [d2]
    # The old name is free again.
    api.ok("PUT", "/api/v1/groups/%d" % empty["id"], {"name": "Fleet A"}, api.adm)
    st, body = api.req("PUT", "/api/v1/groups/%d" % empty["id"], {"name": "Fleet B"}, api.adm)
    assert st == 409 and err(body) == "name_taken"

    # A deleted dashcam leaves the group's answer; the next PUT drops it.
    api.ok("PUT", "/api/v1/groups/%d" % g["id"], {"dashcam_ids": [d1, d2]}, api.adm)
    api.ok("DELETE", "/api/v1/dashcams/%d" % d1, token=api.adm)
    assert api.ok("GET", "/api/v1/groups/%d" % g["id"], token=api.adm)["dashcam_ids"] == [d2]
    assert api.ok("PUT", "/api/v1/groups/%d" % g["id"], {"description": "x"},
                  api.adm)["dashcam_ids"] == [d2]

    api.ok("DELETE", "/api/v1/groups/%d" % g["id"], token=api.adm)
    assert api.req("GET", "/api/v1/groups/%d" % g["id"], token=api.adm)[0] == 404


def test_bookmarks(api):
    d = dashcam(api, "Van 1", "S-1")
    chans = api.ok("GET", "/api/v1/channels?recorder_id=%d" % d, token=api.adm)["items"]
    ch = chans[0]["id"]
    good = {"channel_id": ch, "start": "2026-11-30T08:00:00Z", "end": "2026-11-30T08:15:29Z",
            "name": "Near miss"}
    b = api.ok("POST", "/api/v1/bookmarks", dict(good, note="left lane\nat the junction"), api.adm)
    assert b["start_us"] == 1796025600000000 and b["end_us"] == 1796025600000000 + 929000000
    assert b["channel_id"] == ch and b["note"].startswith("left lane")

    for over, field in [({"end": "2026-11-30T08:00:00Z"}, "end"),
                        ({"end": "2026-11-30T07:00:00Z"}, "end"),
                        ({"end": "2026-12-01T08:00:01Z"}, "end"),
                        ({"start": "2026-11-30 08:00:00"}, "start"),
                        ({"start": "2026-02-30T08:00:00Z"}, "start"),
                        ({"start": "2026-11-30T08:00:00+01:00"}, "start"),
                        ({"name": ""}, "name")]:
        st, body = api.req("POST", "/api/v1/bookmarks", dict(good, **over), api.adm)
        assert st == 422 and err(body) == "invalid_field" and '"%s"' % field in msg(body), \
            (over, body)
    st, body = api.req("POST", "/api/v1/bookmarks", dict(good, channel_id=999999), api.adm)
    assert st == 422 and "channel_id" in msg(body)
    # Exactly 24 h is allowed, as is a fraction of a second.
    api.ok("POST", "/api/v1/bookmarks",
           dict(good, start="2026-11-30T08:00:00.5Z", end="2026-12-01T08:00:00.5Z"), api.adm)

    items = api.ok("GET", "/api/v1/bookmarks?channel_id=%d" % ch, token=api.adm)["items"]
    assert len(items) == 2
    assert api.ok("GET", "/api/v1/bookmarks?channel_id=%d" % chans[1]["id"] if len(chans) > 1
                  else "/api/v1/bookmarks?name=Nope", token=api.adm)["items"] == []
    assert api.ok("GET", "/api/v1/bookmarks/%d" % b["id"], token=api.adm)["name"] == "Near miss"
    # Bookmarks are added and removed, never changed.
    assert api.req("PUT", "/api/v1/bookmarks/%d" % b["id"], {"name": "x"}, api.adm)[0] == 405
    api.ok("DELETE", "/api/v1/bookmarks/%d" % b["id"], token=api.adm)
    assert api.req("GET", "/api/v1/bookmarks/%d" % b["id"], token=api.adm)[0] == 404

    # A User may bookmark (bookmark.add) but not make groups.
    u = user_token(api, "User", "user@example.com")
    api.ok("POST", "/api/v1/bookmarks", good, u)
    st, body = api.req("POST", "/api/v1/groups", {"name": "G"}, u)
    assert st == 403 and err(body) == "forbidden"


def test_geofences(api):
    d = dashcam(api, "Van 1", "S-1")
    circle = {"type": "circle", "center": {"lat": 48.8566, "lon": 2.3522}, "radius_m": 500}
    g = api.ok("POST", "/api/v1/geofences", {"name": "Depot", "shape": circle,
                                             "dashcam_ids": [d]}, api.adm)
    assert g["alert_on"] == "both" and g["shape"]["type"] == "circle"
    assert g["shape"]["radius_m"] == 500 and g["dashcam_ids"] == [d]

    bowtie = {"type": "polygon", "points": [{"lat": 0, "lon": 0}, {"lat": 1, "lon": 1},
                                            {"lat": 1, "lon": 0}, {"lat": 0, "lon": 1}]}
    st, body = api.req("POST", "/api/v1/geofences", {"name": "Bad", "shape": bowtie}, api.adm)
    assert st == 422 and err(body) == "invalid_field", body
    assert body["error"]["field"].startswith("shape") and "shape" in msg(body)
    st, body = api.req("POST", "/api/v1/geofences",
                       {"name": "Bad", "shape": dict(circle, radius_m=0)}, api.adm)
    assert st == 422 and body["error"]["field"] == "shape.radius_m"
    st, body = api.req("POST", "/api/v1/geofences", {"name": "Bad"}, api.adm)
    assert st == 422 and err(body) == "missing_field"
    st, body = api.req("POST", "/api/v1/geofences",
                       {"name": "Bad", "shape": circle, "alert_on": "always"}, api.adm)
    assert st == 422 and "alert_on" in msg(body)
    st, body = api.req("POST", "/api/v1/geofences",
                       {"name": "Bad", "shape": circle, "dashcam_ids": [999999]}, api.adm)
    assert st == 422 and "dashcam_ids[0]" in msg(body)

    # A closed ring is stored without its closing point.
    square = {"type": "polygon", "points": [{"lat": 0, "lon": 0}, {"lat": 0, "lon": 1},
                                            {"lat": 1, "lon": 1}, {"lat": 1, "lon": 0},
                                            {"lat": 0, "lon": 0}]}
    g2 = api.ok("PUT", "/api/v1/geofences/%d" % g["id"], {"shape": square, "alert_on": "enter"},
                api.adm)
    assert g2["alert_on"] == "enter" and len(g2["shape"]["points"]) == 4
    st, body = api.req("PUT", "/api/v1/geofences/%d" % g["id"], {"shape": bowtie}, api.adm)
    assert st == 422
    assert api.ok("GET", "/api/v1/geofences/%d" % g["id"], token=api.adm)["shape"] == g2["shape"]
    # A rename keeps the shape.
    assert api.ok("PUT", "/api/v1/geofences/%d" % g["id"], {"name": "Yard"},
                  api.adm)["shape"] == g2["shape"]
    items = api.ok("GET", "/api/v1/geofences?alert_on=enter", token=api.adm)["items"]
    assert [x["name"] for x in items] == ["Yard"]
    api.ok("DELETE", "/api/v1/geofences/%d" % g["id"], token=api.adm)
    assert api.req("GET", "/api/v1/geofences/%d" % g["id"], token=api.adm)[0] == 404


def test_drivers(api):
    d = dashcam(api, "Van 1", "S-1")
    drv = api.ok("POST", "/api/v1/drivers", {"name": "Jo", "license_number": "AB-123",
                                             "email": "Jo@Example.com", "phone": "+33 1 23"},
                 api.adm)
    assert drv["email"] == "jo@example.com"
    st, body = api.req("POST", "/api/v1/drivers", {"name": "Al", "license_number": "AB-123"},
                       api.adm)
    assert st == 409 and err(body) == "license_taken"
    st, body = api.req("POST", "/api/v1/drivers", {"name": "Al", "email": "nope"}, api.adm)
    assert st == 422 and "email" in msg(body)
    al = api.ok("POST", "/api/v1/drivers", {"name": "Al"}, api.adm)
    # Clearing a license frees it.
    api.ok("PUT", "/api/v1/drivers/%d" % drv["id"], {"license_number": None}, api.adm)
    api.ok("PUT", "/api/v1/drivers/%d" % al["id"], {"license_number": "AB-123"}, api.adm)
    assert [x["name"] for x in api.ok("GET", "/api/v1/drivers?license_number=AB-123",
                                      token=api.adm)["items"]] == ["Al"]
    assert api.ok("GET", "/api/v1/drivers/%d" % drv["id"], token=api.adm)["name"] == "Jo"

    path = "/api/v1/dashcams/%d/driver" % d
    out = api.ok("PUT", path, {"driver_id": drv["id"]}, api.adm)
    assert out["driver_id"] == drv["id"] and out["id"] == d
    assert api.ok("GET", "/api/v1/dashcams/%d" % d, token=api.adm)["driver_id"] == drv["id"]
    st, body = api.req("PUT", path, {"driver_id": 999999}, api.adm)
    assert st == 422 and "driver_id" in msg(body)
    st, body = api.req("PUT", path, {}, api.adm)
    assert st == 422 and err(body) == "missing_field"
    assert api.req("PUT", "/api/v1/dashcams/999999/driver", {"driver_id": None}, api.adm)[0] == 404
    assert api.req("PUT", "/api/v1/dashcams/%d/driver" % recorder(api), {"driver_id": None},
                   api.adm)[0] == 404
    out = api.ok("PUT", path, {"driver_id": None}, api.adm)
    assert "driver_id" not in out
    # A Supervisor lacks driver.assign.
    sup = user_token(api, "Supervisor", "sup@example.com")
    st, body = api.req("PUT", path, {"driver_id": al["id"]}, sup)
    assert st == 403 and "driver.assign" in msg(body)

    # Deleting a driver unassigns it.
    api.ok("PUT", path, {"driver_id": al["id"]}, api.adm)
    api.ok("DELETE", "/api/v1/drivers/%d" % al["id"], token=api.adm)
    assert "driver_id" not in api.ok("GET", "/api/v1/dashcams/%d" % d, token=api.adm)
    assert api.req("GET", "/api/v1/drivers/%d" % al["id"], token=api.adm)[0] == 404


def test_regional_settings(api):
    base = "/api/v1/settings/regional"
    assert api.ok("GET", base, token=api.adm) == {
        "time_zone": "UTC", "units": "metric", "date_format": "YYYY-MM-DD", "time_format": "24h"}
    out = api.ok("PUT", base, {"time_zone": "Europe/Paris", "units": "imperial"}, api.adm)
    assert out == {"time_zone": "Europe/Paris", "units": "imperial", "date_format": "YYYY-MM-DD",
                   "time_format": "24h"}
    out = api.ok("PUT", base, {"time_format": "12h", "date_format": "DD/MM/YYYY"}, api.adm)
    assert out["time_zone"] == "Europe/Paris" and out["time_format"] == "12h"
    assert api.ok("GET", base, token=api.adm) == out
    for zone in ["Mars/Olympus", "Europe", "../../etc/passwd", "/etc/passwd", "zone.tab",
                 "Europe//Paris", "x" * 65, ""]:
        st, body = api.req("PUT", base, {"time_zone": zone}, api.adm)
        assert st == 422 and "time_zone" in msg(body), (zone, body)
    st, body = api.req("PUT", base, {"units": "furlongs"}, api.adm)
    assert st == 422 and "units" in msg(body)
    st, body = api.req("PUT", base, {"language": "fr"}, api.adm)
    assert st == 422 and err(body) == "unknown_field"
    api.ok("PUT", base, {"time_zone": "UTC"}, api.adm)
    audit = api.ok("GET", "/api/v1/audit?kind=settings", token=api.adm)["items"]
    assert len(audit) == 3 and audit[0]["action"] == "create", audit
    # A User reads them but may not change them.
    u = user_token(api, "User", "user@example.com")
    assert api.ok("GET", base, token=u)["time_format"] == "12h"
    assert api.req("PUT", base, {"units": "metric"}, u)[0] == 403


@pytest.mark.timeout(180)
def test_events_and_map(api, broker, pki):
    dev, dev2 = "dc-evt-1", "dc-evt-2"
    d = dashcam(api, "Van 1", "S-1", dev)
    d2 = dashcam(api, "Van 2", "S-2", dev2)
    nvr = recorder(api)
    now = int(time.time()) * 1000000
    t0 = now - 3600 * 1000000  # an hour ago, on a whole second
    m = MqttClient(broker, pki.cert(dev), "t-" + dev)
    evts = [
        {"v": 1, "type": "event", "id": "e-1", "at": t0, "event": "harsh_brake",
         "lat": 48.85, "lon": 2.35, "severity": "warning", "channel": 1},
        {"v": 1, "type": "event", "id": "e-2", "at": t0 + 60 * 1000000, "event": "sd_error"},
        {"v": 1, "type": "event", "id": "e-3", "at": t0 + 120 * 1000000, "event": "harsh_brake"},
    ]
    locs = [{"v": 1, "type": "location", "at": t0 + i * 1000000, "lat": 48.85 + i / 1000,
             "lon": 2.35, "speed_kmh": 50 + i, "heading": 90} for i in range(5)]
    for msg_ in evts + locs:
        m.publish("c2d/v1/d/%s/evt" % dev, json.dumps(msg_).encode())

    def stored():
        ev = api.ok("GET", "/api/v1/events", token=api.adm)["items"]
        tr = api.ok("GET", "/api/v1/map/trips?dashcam_id=%d&limit=200" % d, token=api.adm)
        return len(ev) == 3 and len(tr["items"]) == 5
    wait_for(stored, 30, "the device's events and positions", on_timeout=api.ctl.diag)
    m2 = MqttClient(broker, pki.cert(dev2), "t-" + dev2)
    m2.publish("c2d/v1/d/%s/evt" % dev2, json.dumps(dict(locs[0], lat=40.0)).encode())
    wait_for(lambda: len(api.ok("GET", "/api/v1/map/live", token=api.adm)["items"]) == 2, 30,
             "the second dashcam's position", on_timeout=api.ctl.diag)
    m.close()
    m2.close()

    # Events: lists and their filters.
    ev = api.ok("GET", "/api/v1/events", token=api.adm)["items"]
    assert [e["event"] for e in ev] == ["harsh_brake", "sd_error", "harsh_brake"]
    e1 = ev[0]
    assert e1["recorder_id"] == d and e1["acknowledged"] is False and e1["severity"] == "warning"

    def names(q):
        return [e["device_event_id"] for e in
                api.ok("GET", "/api/v1/events" + q, token=api.adm)["items"]]
    assert names("?event=harsh_brake") == ["e-1", "e-3"]
    assert names("?recorder_id=%d" % d) == ["e-1", "e-2", "e-3"]
    assert names("?recorder_id=%d" % nvr) == []
    assert names("?severity=warning") == ["e-1"]
    iso = lambda us: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(us // 1000000))  # noqa: E731
    assert names("?from=%s&to=%s" % (iso(t0 + 60 * 1000000), iso(t0 + 120 * 1000000))) == ["e-2"]
    assert names("?from=%s" % iso(t0 + 60 * 1000000)) == ["e-2", "e-3"]
    page = api.ok("GET", "/api/v1/events?event=harsh_brake&limit=1", token=api.adm)
    assert page["next_after"] == e1["id"]
    assert names("?event=harsh_brake&after=%d" % page["next_after"]) == ["e-3"]
    assert api.req("GET", "/api/v1/events?recorder_id=999999", token=api.adm)[0] == 404
    for q in ["?acknowledged=maybe", "?from=yesterday", "?from=%s&to=%s" % (iso(t0), iso(t0))]:
        st, body = api.req("GET", "/api/v1/events" + q, token=api.adm)
        assert st == 422 and err(body) == "invalid_field", (q, body)

    # Acknowledging records who and when; only acknowledged and note change.
    me = api.ok("GET", "/api/v1/me", token=api.adm)["user"]["id"]
    a = api.ok("PUT", "/api/v1/events/%d" % e1["id"], {"acknowledged": True, "note": "called"},
               api.adm)
    assert a["acknowledged"] is True and a["acknowledged_by"] == me and a["note"] == "called"
    assert a["acknowledged_at"].endswith("Z") and a["event"] == "harsh_brake"
    assert names("?acknowledged=true") == ["e-1"]
    assert names("?acknowledged=false") == ["e-2", "e-3"]
    st, body = api.req("PUT", "/api/v1/events/%d" % e1["id"], {"event": "x"}, api.adm)
    assert st == 422 and err(body) == "unknown_field"
    a = api.ok("PUT", "/api/v1/events/%d" % e1["id"], {"acknowledged": False}, api.adm)
    assert "acknowledged_by" not in a and a["note"] == "called"
    assert api.req("POST", "/api/v1/events", {}, api.adm)[0] == 405
    assert api.req("DELETE", "/api/v1/events/%d" % e1["id"], token=api.adm)[0] == 405
    # A User reads events but may not acknowledge them.
    u = user_token(api, "User", "user@example.com")
    assert api.ok("GET", "/api/v1/events/%d" % e1["id"], token=u)["id"] == e1["id"]
    assert api.req("PUT", "/api/v1/events/%d" % e1["id"], {"acknowledged": True}, u)[0] == 403

    # The map, as a Map Viewer: positions only.
    mv = user_token(api, "User - Map Viewer", "map@example.com")
    live = api.ok("GET", "/api/v1/map/live", token=mv)["items"]
    assert [x["dashcam_id"] for x in live] == [d, d2]
    assert live[0]["name"] == "Van 1" and live[0]["lat"] == pytest.approx(48.854)
    assert live[0]["speed_kmh"] == 54 and live[0]["at"] == iso(t0 + 4 * 1000000)
    assert set(live[0]) == {"dashcam_id", "name", "at", "lat", "lon", "speed_kmh", "heading"}
    assert set(live[1]) == {"dashcam_id", "name", "at", "lat", "lon", "speed_kmh", "heading"}

    trip = "/api/v1/map/trips?dashcam_id=%d" % d
    p1 = api.ok("GET", trip + "&limit=2", token=mv)
    assert [x["speed_kmh"] for x in p1["items"]] == [50, 51] and p1["next_after"]
    assert set(p1["items"][0]) == {"at", "lat", "lon", "speed_kmh", "heading"}
    p2 = api.ok("GET", trip + "&limit=2&after=%d" % p1["next_after"], token=mv)
    assert [x["speed_kmh"] for x in p2["items"]] == [52, 53]
    p3 = api.ok("GET", trip + "&limit=2&after=%d" % p2["next_after"], token=mv)
    assert [x["speed_kmh"] for x in p3["items"]] == [54] and p3["next_after"] is None
    rng = api.ok("GET", trip + "&from=%s&to=%s" % (iso(t0 + 1000000), iso(t0 + 3 * 1000000)),
                 token=mv)
    assert [x["speed_kmh"] for x in rng["items"]] == [51, 52]
    assert api.req("GET", "/api/v1/map/trips?dashcam_id=999999", token=mv)[0] == 404
    assert api.req("GET", "/api/v1/map/trips?dashcam_id=%d" % nvr, token=mv)[0] == 404
    st, body = api.req("GET", "/api/v1/map/trips", token=mv)
    assert st == 422 and "dashcam_id" in msg(body)
    st, body = api.req("GET", trip + "&from=soon", token=mv)
    assert st == 422 and "from" in msg(body)

    # The Map Viewer reaches nothing else.
    for path in ["/api/v1/events", "/api/v1/dashcams", "/api/v1/events/%d" % e1["id"],
                 "/api/v1/groups", "/api/v1/settings/regional", "/api/v1/me"]:
        st, body = api.req("GET", path, token=mv)
        assert st == 403 and err(body) == "forbidden", (path, body)
    assert api.req("DELETE", "/api/v1/session", token=mv)[0] == 204

    # Another space sees none of it.
    inst = installer_token(api)
    assert api.ok("GET", "/api/v1/map/live", token=inst)["items"] == []
    assert api.req("GET", trip, token=inst)[0] == 404
    assert api.ok("GET", "/api/v1/events", token=inst)["items"] == []
    assert api.req("GET", "/api/v1/events/%d" % e1["id"], token=inst)[0] == 404
    assert api.req("PUT", "/api/v1/events/%d" % e1["id"], {"acknowledged": True}, inst)[0] == 404
