"""13: the dashcam clearance table over real HTTP (issue 3, point 1).

For each of the five dashcam user types and each row of the seed's
"Security clearance details" (seeds/dashcam-user-clearances.txt), the
action is allowed or refused exactly as the table says, every cell:
"Allowed" is a 2xx and the change really happened (read back as the
Administrator); "Not allowed" is 403 "forbidden" and nothing changed. Every
cell gets fresh objects made by the Administrator. Restricted cannot log
in. User - Map Viewer (the seed's prose) reaches the two map endpoints and
log-out, and gets 403 on every other route of the route tables.

The table is parsed from the seed itself, so the test follows it: a row
with no request below fails the test."""

import itertools
import os
import re
from pathlib import Path

import pytest

from apiclient import (REPO, Api, api_routes, device_event, device_location, err, fill,
                       public_routes, start_api)

ADMIN = "admin@example.com"
ADMIN_PW = "correct horse battery"
PW = "s3cret-password"
COLUMNS = ["Administrator", "Supervisor", "User", "Restricted"]
MAP_VIEWER = "User - Map Viewer"

SEED_NAME = "dashcam-user-clearances.txt"


def _seed_path():
    cands = []
    if os.environ.get("C2D_SEEDS_DIR"):
        cands.append(Path(os.environ["C2D_SEEDS_DIR"]) / SEED_NAME)
    cands += [REPO / "seeds" / SEED_NAME, REPO.parent / "shared" / "seeds" / SEED_NAME,
              Path("/work/shared/seeds") / SEED_NAME]
    return next((p for p in cands if p.is_file()), None)


def parse_seed(text):
    """[(action, {column: True/False})] from the seed's table: cells are
    separated by '|', the header names the four columns, then each row is
    an action and four "Allowed"/"Not allowed" cells."""
    body = text.split("Security clearance details", 1)[1]
    cells = [c.strip() for c in body.split("|")]
    cells = [c for c in cells if c and not re.fullmatch(r"-+", c)]
    assert cells[:4] == COLUMNS, "unexpected header: %s" % cells[:4]
    rows = []
    rest = cells[4:]
    assert len(rest) % 5 == 0, "the table's cells do not make rows of 5: %s" % rest
    for i in range(0, len(rest), 5):
        action, vals = rest[i], rest[i + 1:i + 5]
        assert all(v in ("Allowed", "Not allowed") for v in vals), (action, vals)
        rows.append((action, {c: v == "Allowed" for c, v in zip(COLUMNS, vals)}))
    return rows


def parse_doc_table():
    """The same table as docs/permissions.md copies it (A / –)."""
    rows = []
    txt = (REPO / "docs" / "permissions.md").read_text()
    part = txt.split("## The clearance table, row by row", 1)[1].split("\n## ", 1)[0]
    for line in part.splitlines():
        m = re.match(r"\|\s*([^|`]+?)\s*\|\s*`[^`]+`\s*\|(.*)\|\s*$", line)
        if m:
            vals = [v.strip() for v in m.group(2).split("|")]
            rows.append((m.group(1), {c: v == "A" for c, v in zip(COLUMNS, vals)}))
    return rows


def clearance_rows():
    p = _seed_path()
    if p:
        return parse_seed(p.read_text()), str(p)
    return parse_doc_table(), "docs/permissions.md (seed not found)"


_n = itertools.count(1)


def uniq(prefix):
    return "%s-%d" % (prefix, next(_n))


class World:
    """The controller, the Administrator's token and fixture makers."""

    def __init__(self, api, adm, broker, pki):
        self.api, self.adm, self.broker, self.pki = api, adm, broker, pki
        self.cam = None  # the dashcam whose device makes events

    def ok(self, *a, **k):
        return self.api.ok(*a, token=self.adm, **k)

    def get(self, path):
        st, out, _ = self.api.req("GET", path, token=self.adm)
        return st, out

    def dashcam(self, device_id=None):
        b = {"name": uniq("Van"), "serial": uniq("DC"), "model": "D2"}
        if device_id:
            b["device_id"] = device_id
        return self.ok("POST", "/api/v1/dashcams", b)

    def channel(self):
        d = self.dashcam()
        return self.ok("GET", "/api/v1/channels?recorder_id=%d" % d["id"])["items"][0]

    def group(self):
        return self.ok("POST", "/api/v1/groups", {"name": uniq("Group"),
                                                  "dashcam_ids": [self.dashcam()["id"]]})

    def bookmark(self):
        return self.ok("POST", "/api/v1/bookmarks", bookmark_body(self.channel()["id"]))

    def geofence(self):
        return self.ok("POST", "/api/v1/geofences", geofence_body())

    def user(self):
        return self.ok("POST", "/api/v1/users", {"email": uniq("u") + "@example.com", "role": "User"})

    def driver(self):
        return self.ok("POST", "/api/v1/drivers", {"name": uniq("Driver"),
                                                   "license_number": uniq("LIC")})

    def event(self):
        if self.cam is None:
            self.cam = self.dashcam(device_id="dc-clear")
        kind = "e_%d" % next(_n)
        return device_event(self.api, self.adm, self.broker, self.pki, "dc-clear", self.cam["id"],
                            event=kind, eid=kind)


def bookmark_body(channel_id):
    return {"channel_id": channel_id, "name": uniq("Mark"), "start": "2026-11-30T08:00:00Z",
            "end": "2026-11-30T08:10:00Z"}


def geofence_body():
    return {"name": uniq("Zone"), "alert_on": "enter",
            "shape": {"type": "circle", "center": {"lat": 48.85, "lon": 2.35}, "radius_m": 300}}


# One entry per row of the table: setup(world) -> ctx (made by the
# Administrator); act(world, ctx) -> (method, path, body); changed(world, ctx,
# answer) and unchanged(world, ctx) read back as the Administrator and
# return an error text or None.


def _same(w, path, want):
    st, out = w.get(path)
    if st != 200 or out != want:
        return "GET %s: %d %s, expected it unchanged: %s" % (path, st, out, want)
    return None


def _gone(w, path):
    st, out = w.get(path)
    return None if st == 404 else "GET %s after delete: %d %s" % (path, st, out)


def _list_has(w, path, pred, want):
    st, out = w.get(path)
    if st != 200:
        return "GET %s: %d %s" % (path, st, out)
    n = sum(1 for i in out["items"] if pred(i))
    return None if n == want else "GET %s: %d matching items, expected %d" % (path, n, want)


def _modified(path, field, value):
    def check(w, ctx, ans):
        st, out = w.get(path(ctx))
        return None if st == 200 and out.get(field) == value else "GET %s: %s" % (path(ctx), out)
    return check


def _created(list_path, field):
    def changed(w, ctx, ans):
        return _list_has(w, list_path(ctx), lambda i: i.get(field) == ctx["want"], 1)

    def unchanged(w, ctx):
        return _list_has(w, list_path(ctx), lambda i: i.get(field) == ctx["want"], 0)
    return changed, unchanged


def obj_rows():
    rows = {}

    def crud(base, make, new_body, field, value):
        """Modify and delete rows of an object kind."""
        modify = dict(
            setup=lambda w: {"obj": make(w)},
            act=lambda w, c: ("PUT", "%s/%d" % (base, c["obj"]["id"]), new_body),
            changed=_modified(lambda c: "%s/%d" % (base, c["obj"]["id"]), field, value),
            unchanged=lambda w, c: _same(w, "%s/%d" % (base, c["obj"]["id"]), c["obj"]))
        delete = dict(
            setup=lambda w: {"obj": make(w)},
            act=lambda w, c: ("DELETE", "%s/%d" % (base, c["obj"]["id"]), None),
            changed=lambda w, c, a: _gone(w, "%s/%d" % (base, c["obj"]["id"])),
            unchanged=lambda w, c: _same(w, "%s/%d" % (base, c["obj"]["id"]), c["obj"]))
        return modify, delete

    # Dashcams.
    ch, un = _created(lambda c: "/api/v1/dashcams?serial=" + c["want"], "serial")
    rows["Add dashcam"] = dict(
        setup=lambda w: {"want": uniq("DC")},
        act=lambda w, c: ("POST", "/api/v1/dashcams", {"name": "New van", "serial": c["want"],
                                                       "model": "D2"}),
        changed=ch, unchanged=un)
    rows["Modify dashcam"], rows["Delete dashcam"] = crud(
        "/api/v1/dashcams", World.dashcam, {"name": "Renamed van", "plate": "ZZ-999-ZZ"},
        "plate", "ZZ-999-ZZ")

    # Groups.
    ch, un = _created(lambda c: "/api/v1/groups?name=" + c["want"], "name")
    rows["Add group"] = dict(
        setup=lambda w: {"want": uniq("Group"), "cam": w.dashcam()},
        act=lambda w, c: ("POST", "/api/v1/groups", {"name": c["want"],
                                                     "dashcam_ids": [c["cam"]["id"]]}),
        changed=ch, unchanged=un)
    rows["Modify group"], rows["Delete group"] = crud(
        "/api/v1/groups", World.group, {"description": "edited"}, "description", "edited")

    # Bookmarks (no modify: the table has add and remove only).
    def bm_list(c):
        return "/api/v1/bookmarks?channel_id=%d" % c["ch"]["id"]
    rows["Add bookmark"] = dict(
        setup=lambda w: {"ch": w.channel()},
        act=lambda w, c: ("POST", "/api/v1/bookmarks", bookmark_body(c["ch"]["id"])),
        changed=lambda w, c, a: _list_has(w, bm_list(c), lambda i: True, 1),
        unchanged=lambda w, c: _list_has(w, bm_list(c), lambda i: True, 0))
    _, rows["Remove bookmark"] = crud("/api/v1/bookmarks", World.bookmark, None, None, None)

    # Geofences.
    def gf_add(w, c):
        b = geofence_body()
        b["name"] = c["want"]
        return ("POST", "/api/v1/geofences", b)
    ch, un = _created(lambda c: "/api/v1/geofences?name=" + c["want"], "name")
    rows["Add geofence"] = dict(setup=lambda w: {"want": uniq("Zone")}, act=gf_add, changed=ch,
                                unchanged=un)
    rows["Modify geofence"], rows["Remove geofence"] = crud(
        "/api/v1/geofences", World.geofence, {"alert_on": "exit"}, "alert_on", "exit")

    # Events: made by a device; people acknowledge them.
    rows["Modify events"] = dict(
        setup=lambda w: {"obj": w.event()},
        act=lambda w, c: ("PUT", "/api/v1/events/%d" % c["obj"]["id"],
                          {"acknowledged": True, "note": "seen"}),
        changed=lambda w, c, a: (_modified(lambda c: "/api/v1/events/%d" % c["obj"]["id"],
                                           "acknowledged", True)(w, c, a)
                                 or _modified(lambda c: "/api/v1/events/%d" % c["obj"]["id"],
                                              "note", "seen")(w, c, a)),
        unchanged=lambda w, c: _same(w, "/api/v1/events/%d" % c["obj"]["id"], c["obj"]))

    # Users.
    def users_with(w, c, n):
        return _list_has(w, "/api/v1/users?role=User&limit=200",
                         lambda i: i["email"] == c["want"], n)
    rows["Add user"] = dict(
        setup=lambda w: {"want": uniq("new") + "@example.com"},
        act=lambda w, c: ("POST", "/api/v1/users", {"email": c["want"], "role": "User"}),
        changed=lambda w, c, a: users_with(w, c, 1),
        unchanged=lambda w, c: users_with(w, c, 0))
    rows["Modify user"], rows["Remove user"] = crud(
        "/api/v1/users", World.user, {"role": "Supervisor"}, "role", "Supervisor")

    # Regional settings: one object per space; the act flips the units.
    def rs_setup(w):
        return {"obj": w.ok("GET", "/api/v1/settings/regional")}

    def rs_act(w, c):
        return ("PUT", "/api/v1/settings/regional",
                {"units": "imperial" if c["obj"]["units"] == "metric" else "metric"})
    rows["Regional settings"] = dict(
        setup=rs_setup, act=rs_act,
        changed=lambda w, c, a: _modified(lambda c: "/api/v1/settings/regional", "units",
                                          rs_act(w, c)[2]["units"])(w, c, a),
        unchanged=lambda w, c: _same(w, "/api/v1/settings/regional", c["obj"]))

    # Drivers.
    ch, un = _created(lambda c: "/api/v1/drivers?license_number=" + c["want"], "license_number")
    rows["Create driver"] = dict(
        setup=lambda w: {"want": uniq("LIC")},
        act=lambda w, c: ("POST", "/api/v1/drivers", {"name": "New driver",
                                                      "license_number": c["want"]}),
        changed=ch, unchanged=un)
    rows["Modify drivers"], rows["Remove drivers"] = crud(
        "/api/v1/drivers", World.driver, {"phone": "+33 6 12 34 56 78"}, "phone",
        "+33 6 12 34 56 78")

    # A read: "changed" is that the answer holds the driver.
    def got_driver(w, c, ans):
        ids = [d["id"] for d in (ans or {}).get("items", [])]
        return None if c["obj"]["id"] in ids else "the list lacks driver %d: %s" % (c["obj"]["id"], ans)
    rows["Get drivers"] = dict(
        setup=lambda w: {"obj": w.driver()},
        act=lambda w, c: ("GET", "/api/v1/drivers?limit=200", None),
        changed=got_driver,
        unchanged=lambda w, c: _same(w, "/api/v1/drivers/%d" % c["obj"]["id"], c["obj"]))
    return rows


ROWS = obj_rows()


@pytest.fixture
def world(make_controller, broker, pki):
    c = start_api(make_controller)
    c.init(ADMIN, ADMIN_PW)
    c.start()
    api = Api(c.http_port())
    api.ctl = c
    w = World(api, api.token(ADMIN, ADMIN_PW), broker, pki)
    yield w
    c.stop()


def test_seed_table_is_read():
    rows, where = clearance_rows()
    assert len(rows) >= 20, (where, rows)
    names = [r for r, _ in rows]
    assert len(names) == len(set(names)), names
    # Every row has a request here.
    assert [r for r in names if r not in ROWS] == [], "rows of %s with no request" % where
    # The repository's documented copy agrees with the seed, cell by cell.
    if _seed_path():
        assert parse_doc_table() == rows, "docs/permissions.md's table differs from the seed"


@pytest.mark.timeout(180)
def test_every_cell(world):
    api, w = world.api, world
    rows, where = clearance_rows()
    tokens = {"Administrator": w.adm}
    emails = {}
    for role in COLUMNS[1:]:
        emails[role] = role.lower() + "@example.com"
        w.ok("POST", "/api/v1/users", {"email": emails[role], "role": role, "password": PW})
    for role in ("Supervisor", "User"):
        tokens[role] = api.token(emails[role], PW)

    # Restricted cannot log in: it reaches nothing, so every cell of its
    # column must be "Not allowed".
    st, out, _ = api.login(emails["Restricted"], PW)
    assert st == 403 and err(out) == "login_disabled", out
    assert "token" not in out
    assert [a for a, cells in rows if cells["Restricted"]] == [], \
        "%s allows Restricted an action, but Restricted cannot log in" % where

    failures = []
    for action, cells in rows:
        spec = ROWS[action]
        for role in ("Administrator", "Supervisor", "User"):
            ctx = spec["setup"](w)
            method, path, body = spec["act"](w, ctx)
            st, out, _ = api.req(method, path, body, token=tokens[role])
            cell = "%s / %s: %s %s -> %d %s" % (action, role, method, path, st, out)
            if cells[role]:
                if not 200 <= st < 300:
                    failures.append(cell + " (table: Allowed)")
                elif spec["changed"](w, ctx, out):
                    failures.append(cell + " (answered 2xx but: %s)" % spec["changed"](w, ctx, out))
            else:
                if st != 403 or err(out) != "forbidden":
                    failures.append(cell + " (table: Not allowed)")
                elif spec["unchanged"](w, ctx):
                    failures.append(cell + " (refused but: %s)" % spec["unchanged"](w, ctx))
    assert not failures, "cells that differ from %s:\n%s" % (where, "\n".join(failures))
    # The refusals did not end anyone's session.
    for role, t in tokens.items():
        assert api.req("GET", "/api/v1/me", token=t)[0] == 200, role


@pytest.mark.timeout(120)
def test_map_viewer_reaches_only_the_map(world):
    api, w = world.api, world
    cam = w.dashcam(device_id="dc-map")
    w.ok("POST", "/api/v1/users", {"email": "map@example.com", "role": MAP_VIEWER, "password": PW})
    tok = api.token("map@example.com", PW)
    pos = device_location(api, w.adm, w.broker, w.pki, "dc-map", cam["id"])
    w.event()  # an event exists: the map must not show it

    # The live map and trips: positions only, no event data.
    st, live, _ = api.req("GET", "/api/v1/map/live", token=tok)
    assert st == 200, live
    mine = [p for p in live["items"] if p["dashcam_id"] == cam["id"]]
    assert len(mine) == 1 and mine[0]["lat"] == pos["lat"], live
    allowed_keys = {"dashcam_id", "name", "at", "lat", "lon", "speed_kmh", "heading"}
    for p in live["items"]:
        assert set(p) <= allowed_keys, p
    st, trips, _ = api.req("GET", "/api/v1/map/trips?dashcam_id=%d" % cam["id"], token=tok)
    assert st == 200 and trips["items"], trips
    for p in trips["items"]:
        assert "event" not in p and "severity" not in p, p

    # Every other route of the API: 403, whatever the ids and bodies.
    ids = {"dashcams": cam["id"]}
    skip = set(public_routes())  # no session at all: no role to refuse
    reached = {("GET", "/api/v1/map/live"), ("GET", "/api/v1/map/trips"),
               ("DELETE", "/api/v1/session")}
    wrong = []
    for method, pat in api_routes():
        if (method, pat) in skip or (method, pat) in reached:
            continue
        path = fill(pat, ids.get(pat.split("/")[3], 1))
        body = {} if method in ("POST", "PUT") else None
        st, out, _ = api.req(method, path, body, token=tok)
        if st != 403 or err(out) != "forbidden":
            wrong.append((method, path, st, out))
    assert not wrong, "routes a map viewer reached: %s" % wrong
    # The map's own routes with other methods are refused too (405 or 403).
    for method in ("POST", "PUT", "DELETE"):
        st, out, _ = api.req(method, "/api/v1/map/live", token=tok)
        assert st in (403, 405), (method, st, out)
    # The refusals did not change anything nor end the session.
    st, live2, _ = api.req("GET", "/api/v1/map/live", token=tok)
    assert st == 200 and live2 == live
    assert api.req("DELETE", "/api/v1/session", token=tok)[0] == 204
    assert api.req("GET", "/api/v1/map/live", token=tok)[0] == 401
