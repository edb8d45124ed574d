"""16: the installer guide's rules and hostile input over real HTTP (issue 3,
points 3 and 4).

Rules of /work/shared/seeds/cam2drive-installer-guide.txt: a client's email
is fixed; a site holding recorders cannot be deleted; a role in use cannot
be deleted (with the count of users); users filter by role; and the audit
log shows every change with before/after, filtered by object and time.
Bad input of every kind docs/api.md names gets its documented answer and
the daemon keeps serving. test_10_api_auth.py already covers one bad JSON
body, 413 for a large body, the brute-force lock of one email, the
password change and role_in_use with one user: not repeated here."""

import json
import socket
import time

import pytest

from apiclient import Api, err, start_api

ADMIN = "admin@example.com"
ADMIN_PW = "correct horse battery"
PW = "s3cret-password"


@pytest.fixture
def api(make_controller):
    c = start_api(make_controller, http={"body_max": 4096})
    c.init(ADMIN, ADMIN_PW)
    c.start()
    a = Api(c.http_port())
    a.ctl = c
    a.adm = a.token(ADMIN, ADMIN_PW)
    yield a
    c.stop()


def client_site_recorder(api, tok, n=1):
    cl = api.ok("POST", "/api/v1/clients", {"name": "Acme %d" % n, "email": "owner%d@acme.example" % n},
                token=tok)
    site = api.ok("POST", "/api/v1/sites", {"name": "Depot %d" % n, "client_id": cl["id"]}, token=tok)
    rec = api.ok("POST", "/api/v1/recorders",
                 {"name": "NVR %d" % n, "serial": "SN-%d" % n, "model": "X8", "site_id": site["id"],
                  "channels": 2}, token=tok)
    return cl, site, rec


# ---- the guide's rules ---------------------------------------------------


def test_client_email_is_fixed(api):
    tok = api.adm
    cl = api.ok("POST", "/api/v1/clients", {"name": "Acme", "email": "owner@acme.example"}, token=tok)
    st, body, _ = api.req("PUT", "/api/v1/clients/%d" % cl["id"], {"email": "other@acme.example"},
                          token=tok)
    assert st == 422 and err(body) == "immutable_field", body
    assert "email" in body["error"]["message"]
    # A refused PUT changes nothing, even its other fields.
    st, body, _ = api.req("PUT", "/api/v1/clients/%d" % cl["id"],
                          {"name": "Renamed", "email": "other@acme.example"}, token=tok)
    assert st == 422 and err(body) == "immutable_field"
    got = api.ok("GET", "/api/v1/clients/%d" % cl["id"], token=tok)
    assert got == cl
    # The same email is accepted along with other changes.
    got = api.ok("PUT", "/api/v1/clients/%d" % cl["id"],
                 {"email": "owner@acme.example", "name": "Acme SA", "phone": "+33 1 23"}, token=tok)
    assert got["email"] == "owner@acme.example" and got["name"] == "Acme SA"
    assert got["phone"] == "+33 1 23"
    # Clearing it (null) is a change too.
    st, body, _ = api.req("PUT", "/api/v1/clients/%d" % cl["id"], {"email": None}, token=tok)
    assert st == 422, body
    assert api.ok("GET", "/api/v1/clients/%d" % cl["id"], token=tok)["email"] == "owner@acme.example"


def test_site_with_recorders_is_not_deletable(api):
    tok = api.adm
    cl, site, rec = client_site_recorder(api, tok)
    chans = api.ok("GET", "/api/v1/channels?recorder_id=%d" % rec["id"], token=tok)["items"]
    assert len(chans) == 2

    st, body, _ = api.req("DELETE", "/api/v1/sites/%d" % site["id"], token=tok)
    assert st == 409 and err(body) == "not_empty", body
    assert body["error"]["recorders"] == 1
    assert api.ok("GET", "/api/v1/sites/%d" % site["id"], token=tok) == site
    # A client holding sites is not deletable either.
    st, body, _ = api.req("DELETE", "/api/v1/clients/%d" % cl["id"], token=tok)
    assert st == 409 and err(body) == "not_empty", body
    assert body["error"]["sites"] == 1

    # A second recorder: the count follows.
    rec2 = api.ok("POST", "/api/v1/recorders", {"name": "NVR b", "serial": "SN-b", "model": "X8",
                                                "site_id": site["id"]}, token=tok)
    st, body, _ = api.req("DELETE", "/api/v1/sites/%d" % site["id"], token=tok)
    assert st == 409 and body["error"]["recorders"] == 2

    # Moving a recorder to another site empties this one as much as deleting.
    other = api.ok("POST", "/api/v1/sites", {"name": "Other", "client_id": cl["id"]}, token=tok)
    api.ok("PUT", "/api/v1/recorders/%d" % rec2["id"], {"site_id": other["id"]}, token=tok)
    api.ok("DELETE", "/api/v1/recorders/%d" % rec["id"], token=tok)
    # Its channels went with it.
    assert api.req("GET", "/api/v1/channels/%d" % chans[0]["id"], token=tok)[0] == 404
    assert api.req("DELETE", "/api/v1/sites/%d" % site["id"], token=tok)[0] == 204
    assert api.req("GET", "/api/v1/sites/%d" % site["id"], token=tok)[0] == 404
    st, body, _ = api.req("DELETE", "/api/v1/sites/%d" % other["id"], token=tok)
    assert st == 409 and body["error"]["recorders"] == 1
    api.ok("DELETE", "/api/v1/recorders/%d" % rec2["id"], token=tok)
    api.ok("DELETE", "/api/v1/sites/%d" % other["id"], token=tok)
    api.ok("DELETE", "/api/v1/clients/%d" % cl["id"], token=tok)


def test_role_in_use_counts_users_and_users_filter_by_role(api):
    tok = api.adm
    role = api.ok("POST", "/api/v1/roles", {"name": "Fitter", "permissions": ["site.get"]}, token=tok)
    users = [api.ok("POST", "/api/v1/users", {"email": "f%d@example.com" % i, "role": "Fitter"},
                    token=tok) for i in range(3)]
    for i in range(2):
        api.ok("POST", "/api/v1/users", {"email": "v%d@example.com" % i, "role": "Viewer"}, token=tok)

    st, body, _ = api.req("DELETE", "/api/v1/roles/%d" % role["id"], token=tok)
    assert st == 409 and err(body) == "role_in_use" and body["error"]["users"] == 3, body

    # Filter by role name (custom and built-in), with pagination.
    got = api.ok("GET", "/api/v1/users?role=Fitter", token=tok)
    assert sorted(u["email"] for u in got["items"]) == ["f0@example.com", "f1@example.com",
                                                         "f2@example.com"]
    page = api.ok("GET", "/api/v1/users?role=Fitter&limit=2", token=tok)
    assert len(page["items"]) == 2 and page["next_after"]
    rest = api.ok("GET", "/api/v1/users?role=Fitter&limit=2&after=%d" % page["next_after"], token=tok)
    assert [u["email"] for u in rest["items"]] == ["f2@example.com"] and rest["next_after"] is None
    got = api.ok("GET", "/api/v1/users?role=Viewer", token=tok)
    assert sorted(u["email"] for u in got["items"]) == ["v0@example.com", "v1@example.com"]
    assert api.ok("GET", "/api/v1/users?role=Nobody", token=tok)["items"] == []
    assert api.ok("GET", "/api/v1/users?role=fitter", token=tok)["items"] == []

    api.ok("DELETE", "/api/v1/users/%d" % users[0]["id"], token=tok)
    st, body, _ = api.req("DELETE", "/api/v1/roles/%d" % role["id"], token=tok)
    assert st == 409 and body["error"]["users"] == 2
    api.ok("PUT", "/api/v1/users/%d" % users[1]["id"], {"role": "User"}, token=tok)
    api.ok("PUT", "/api/v1/users/%d" % users[2]["id"], {"role": "Viewer"}, token=tok)
    assert api.req("DELETE", "/api/v1/roles/%d" % role["id"], token=tok)[0] == 204
    assert api.ok("GET", "/api/v1/users?role=Fitter", token=tok)["items"] == []
    # A user cannot be given a role that no longer exists.
    st, body, _ = api.req("PUT", "/api/v1/users/%d" % users[1]["id"], {"role": "Fitter"}, token=tok)
    assert st == 422, body


# ---- bad input -----------------------------------------------------------


def test_bad_json_bodies(api):
    tok = api.adm
    for raw in [b"[1, 2]", b'"a string"', b"42", b"null", b"true",
                b'{"name": "a", "email": "a@b.example"} trailing',
                b'{"name": "a", "email": "a@b.example",}', b'{"name": "a" "email": "x"}',
                b"{'name': 'a'}", b'{"name": "a\\x41"}']:
        st, body, _ = api.req("POST", "/api/v1/clients", raw=raw, token=tok)
        assert st == 400 and err(body) == "bad_json", (raw, st, body)
    # No body where one is needed: its fields are missing.
    st, body, _ = api.req("POST", "/api/v1/clients", raw=b"", token=tok)
    assert st == 422 and err(body) == "missing_field", body
    # A body where none is taken.
    st, body, _ = api.req("DELETE", "/api/v1/session", {"x": 1}, token=tok)
    assert st == 422 and err(body) == "unknown_field", body
    # Not JSON by its type.
    st, body, _ = api.req("POST", "/api/v1/clients", raw=b'{"name": "a", "email": "a@b.example"}',
                          token=tok, headers={"Content-Type": "text/plain"})
    assert st == 415 and err(body) == "unsupported_media_type", body
    assert api.ok("GET", "/api/v1/clients", token=tok)["items"] == []


def test_wrong_types_and_missing_fields_name_the_field(api):
    tok = api.adm
    cl, site, rec = client_site_recorder(api, tok)
    ch = api.ok("GET", "/api/v1/channels?recorder_id=%d" % rec["id"], token=tok)["items"][0]
    cases = [
        ("POST", "/api/v1/clients", {"name": 5, "email": "x@y.example"}, "name"),
        ("POST", "/api/v1/clients", {"name": "x", "email": ["x@y.example"]}, "email"),
        ("POST", "/api/v1/clients", {"name": "x", "email": "not an email"}, "email"),
        ("POST", "/api/v1/sites", {"name": "s", "client_id": str(cl["id"])}, "client_id"),
        ("POST", "/api/v1/sites", {"name": "s", "client_id": 1.5}, "client_id"),
        ("POST", "/api/v1/sites", {"name": "s", "client_id": -1}, "client_id"),
        ("POST", "/api/v1/sites", {"name": "s", "client_id": 2 ** 60}, "client_id"),
        ("POST", "/api/v1/recorders", {"name": "r", "serial": "S", "model": "m",
                                       "site_id": site["id"], "channels": "2"}, "channels"),
        ("POST", "/api/v1/recorders", {"name": "r", "serial": "S", "model": "m",
                                       "site_id": site["id"], "channels": 65}, "channels"),
        ("POST", "/api/v1/recorders", {"name": "r", "serial": "S", "model": "m",
                                       "site_id": site["id"], "channels": 0}, "channels"),
        ("POST", "/api/v1/recorders", {"name": "r", "serial": "S", "model": "m",
                                       "site_id": site["id"], "device_id": "a/b"}, "device_id"),
        ("PUT", "/api/v1/channels/%d" % ch["id"], {"cloud_backup": "yes"}, "cloud_backup"),
        ("PUT", "/api/v1/channels/%d" % ch["id"], {"ai_algorithms": ["person", 3]},
         "ai_algorithms[1]"),
        ("PUT", "/api/v1/channels/%d" % ch["id"], {"ai_algorithms": ["teleport"]},
         "ai_algorithms[0]"),
        ("PUT", "/api/v1/channels/%d" % ch["id"], {"name": {"a": 1}}, "name"),
        ("POST", "/api/v1/roles", {"name": "R", "permissions": "site.get"}, "permissions"),
        ("POST", "/api/v1/users", {"email": "u@example.com", "role": 3}, "role"),
        ("PUT", "/api/v1/me/preferences", {"language": None}, "language"),
    ]
    for method, path, body, field in cases:
        st, out, _ = api.req(method, path, body, token=tok)
        assert st == 422 and err(out) == "invalid_field", (method, path, body, st, out)
        assert '"%s"' % field in out["error"]["message"], (body, out)
    missing = [
        ("POST", "/api/v1/clients", {"name": "x"}, "email"),
        ("POST", "/api/v1/clients", {"email": "x@y.example"}, "name"),
        ("POST", "/api/v1/sites", {"name": "s"}, "client_id"),
        ("POST", "/api/v1/recorders", {"name": "r", "model": "m", "site_id": site["id"]}, "serial"),
        ("POST", "/api/v1/roles", {"name": "R"}, "permissions"),
        ("POST", "/api/v1/session", {"email": ADMIN}, "password"),
    ]
    for method, path, body, field in missing:
        st, out, _ = api.req(method, path, body, token=tok)
        assert st == 422 and err(out) == "missing_field", (method, path, body, st, out)
        assert field in out["error"]["message"], (body, out)
    # A field given twice: refused (the check would see one value and the
    # store keep the other).
    for method, path, raw, field in [
            ("POST", "/api/v1/clients", b'{"name": "ok", "email": "d@x.example", "name": "%s"}'
             % (b"x" * 300), "name"),
            ("POST", "/api/v1/users", b'{"email": "z@x.example", "role": "User", '
             b'"role": "Administrator"}', "role"),
            ("PUT", "/api/v1/clients/%d" % cl["id"], b'{"email": "%s", "email": "x@y.example"}'
             % cl["email"].encode(), "email"),
            ("POST", "/api/v1/session", b'{"email": "%s", "password": "x", "password": "%s"}'
             % (ADMIN.encode(), ADMIN_PW.encode()), "password")]:
        st, out, _ = api.req(method, path, raw=raw, token=tok)
        assert st == 422 and err(out) == "invalid_field", (raw, st, out)
        assert '"%s"' % field in out["error"]["message"], out
    # Nothing was made by any of them.
    assert api.ok("GET", "/api/v1/clients/%d" % cl["id"], token=tok) == cl
    assert len(api.ok("GET", "/api/v1/clients", token=tok)["items"]) == 1
    assert len(api.ok("GET", "/api/v1/sites", token=tok)["items"]) == 1
    assert len(api.ok("GET", "/api/v1/recorders", token=tok)["items"]) == 1
    assert api.ok("GET", "/api/v1/channels/%d" % ch["id"], token=tok) == ch


def test_long_strings(api):
    tok = api.adm
    ok = api.ok("POST", "/api/v1/clients", {"name": "n" * 64, "email": "a@b.example"}, token=tok)
    assert ok["name"] == "n" * 64
    # Limits are in bytes: 32 x "é" is 64 bytes, 33 is 66.
    ok = api.ok("POST", "/api/v1/clients", {"name": "é" * 32, "email": "c@b.example"}, token=tok)
    assert ok["name"] == "é" * 32
    long_cases = [
        ({"name": "n" * 65, "email": "d@b.example"}, "name"),
        ({"name": "é" * 33, "email": "d@b.example"}, "name"),
        ({"name": "n", "email": "d" * 250 + "@b.example"}, "email"),
        ({"name": "n", "email": "d@b.example", "notes": "x" * 2001}, "notes"),
        ({"name": "n", "email": "d@b.example", "phone": "1" * 33}, "phone"),
        ({"name": "", "email": "d@b.example"}, "name"),
    ]
    for body, field in long_cases:
        st, out, _ = api.req("POST", "/api/v1/clients", body, token=tok)
        assert st == 422 and err(out) == "invalid_field", (field, st, out)
        assert '"%s"' % field in out["error"]["message"], out
    st, out, _ = api.req("PUT", "/api/v1/clients/%d" % ok["id"], {"name": "m" * 65}, token=tok)
    assert st == 422 and '"name"' in out["error"]["message"]
    st, out, _ = api.req("PUT", "/api/v1/me/preferences", {"theme": "t" * 65}, token=tok)
    assert st == 422 and '"theme"' in out["error"]["message"]
    # Long strings in a log-in are refused, not looked up.
    st, out, _ = api.login("a" * 300 + "@example.com", ADMIN_PW)
    assert st in (401, 422), out
    assert len(api.ok("GET", "/api/v1/clients", token=tok)["items"]) == 2


def test_non_utf8_and_escapes(api):
    tok = api.adm
    bad_bytes = [b"caf\xe9", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xff", b"a\x80"]
    for bb in bad_bytes:
        raw = b'{"name": "' + bb + b'", "email": "a@b.example"}'
        st, out, _ = api.req("POST", "/api/v1/clients", raw=raw, token=tok)
        assert st == 400 and err(out) == "bad_json", (bb, st, out)
    # Lone surrogates through JSON escapes: no UTF-8 encodes them.
    for esc in [r"\ud800", r"\udc00", r"x\ud800y", r"\ud800\u0041", r"\udfff\ud800"]:
        raw = ('{"name": "%s", "email": "a@b.example"}' % esc).encode()
        st, out, _ = api.req("POST", "/api/v1/clients", raw=raw, token=tok)
        assert st == 400 and err(out) == "bad_json", (esc, st, out)
    # NUL through an escape, in a value or a key: refused, not truncated.
    for raw in [b'{"name": "abc\\u0000def", "email": "a@b.example"}',
                b'{"name": "\\u0000", "email": "a@b.example"}',
                b'{"name": "x", "email": "a@b.example\\u0000.evil"}',
                b'{"na\\u0000me": "x", "email": "a@b.example"}']:
        st, out, _ = api.req("POST", "/api/v1/clients", raw=raw, token=tok)
        assert st in (400, 422), (raw, st, out)
    # A raw NUL byte is not JSON text.
    st, out, _ = api.req("POST", "/api/v1/clients", raw=b'{"name": "a\x00b", "email": "a@b.example"}',
                         token=tok)
    assert st == 400, out
    # Control characters (escaped) are refused in names, kept in notes' whitespace.
    st, out, _ = api.req("POST", "/api/v1/clients", raw=b'{"name": "a\\u0001b", "email": "a@b.example"}',
                         token=tok)
    assert st == 422 and err(out) == "invalid_field" and '"name"' in out["error"]["message"], out
    st, out, _ = api.req("POST", "/api/v1/clients", raw=b'{"name": "a\\u0085b", "email": "a@b.example"}',
                         token=tok)
    assert st == 422 and err(out) == "invalid_field", out
    assert api.ok("GET", "/api/v1/clients", token=tok)["items"] == []

    # What is valid goes through and comes back the same: a surrogate pair,
    # an escaped backslash before "u0000" (text, not NUL), line breaks in notes.
    body = {"name": "cam \U0001F600 \u00e9", "email": "ok@b.example", "notes": "line 1\nline 2\t."}
    got = api.ok("POST", "/api/v1/clients", body, token=tok)
    assert got["name"] == body["name"] and got["notes"] == body["notes"]
    raw = b'{"name": "back\\\\u0000slash", "email": "ok2@b.example"}'
    st, got, _ = api.req("POST", "/api/v1/clients", raw=raw, token=tok)
    assert st == 201 and got["name"] == "back\\u0000slash", (st, got)
    names = sorted(c["name"] for c in api.ok("GET", "/api/v1/clients", token=tok)["items"])
    assert names == sorted([body["name"], "back\\u0000slash"])


def test_nul_escape_is_never_silently_truncated(api):
    """A string holding U+0000 must be refused whole: cJSON would keep only
    the part before it, and "a@b.example\\u0000.evil" stored as
    "a@b.example" is another value than the one sent."""
    tok = api.adm
    st, out, _ = api.req("POST", "/api/v1/clients",
                         raw=b'{"name": "Trunc\\u0000ated", "email": "t@b.example"}', token=tok)
    assert st in (400, 422), out
    assert err(out) in ("bad_json", "invalid_field"), out
    # Nothing stored, and certainly not "Trunc".
    assert api.ok("GET", "/api/v1/clients", token=tok)["items"] == []
    st, out, _ = api.req("PUT", "/api/v1/me/preferences", raw=b'{"theme": "dark\\u0000light"}',
                         token=tok)
    assert st in (400, 422), out
    assert api.ok("GET", "/api/v1/me/preferences", token=tok)["theme"] == "light"


def _raw_http(port, data, timeout=10):
    """Sends bytes as they are and returns what comes back (status line and
    headers; the body if the server sends one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                out += b
                if b"\r\n\r\n" in out:
                    head, _, rest = out.partition(b"\r\n\r\n")
                    cl = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")]
                    if cl and len(rest) >= int(cl[0].split(b":")[1]):
                        break
        except socket.timeout:
            pass
    return out


def test_routes_methods_and_request_targets(api):
    tok = api.adm
    for path in ["/api/v1/nothing", "/api/v2/me", "/api/v1/clients/1/extra", "/api/v1/clients/abc",
                 "/api/v1/clients/0", "/api/v1/clients/-1", "/api/v1/clients/99999999999999999999",
                 "/api/v1/clients/1e3", "/api/v1/clients/%31", "/", "/api", "/api/v1"]:
        st, out, _ = api.req("GET", path, token=tok)
        assert st == 404 and err(out) == "not_found", (path, st, out)
    # No token: unknown routes still answer 404 (no route, no authentication).
    assert api.req("GET", "/api/v1/nothing")[0] == 404

    for method, path, allow in [("PATCH", "/api/v1/clients", {"GET", "POST"}),
                                ("DELETE", "/api/v1/me", {"GET"}),
                                ("GET", "/api/v1/session", {"POST", "DELETE"}),
                                ("POST", "/api/v1/clients/1", {"GET", "PUT", "DELETE"}),
                                ("DELETE", "/api/v1/channels/1", {"GET", "PUT"}),
                                ("PUT", "/api/v1/audit", {"GET"})]:
        st, out, r = api.req(method, path, token=tok)
        assert st == 405 and err(out) == "method_not_allowed", (method, path, st, out)
        got = {m.strip() for m in (r.getheader("Allow") or "").split(",") if m.strip()}
        assert allow <= got and not ({"PATCH", method} & got), (method, path, got)

    # Bad bytes in the request target: 400 bad_request.
    for path in ["/api/v1/us%zzers", "/api/v1/us%00ers", "/api/v1/users%ff",
                 "/api/v1/users?role=%00", "/api/v1/users?role=%ff", "/api/v1/users?role=%c3",
                 "/api/v1/users?ro%00le=x"]:
        st, out, _ = api.req("GET", path, token=tok)
        assert st == 400 and err(out) == "bad_request", (path, st, out)
    # Query values the list checks.
    for q in ["limit=0", "limit=201", "limit=x", "after=x", "after=-1", "limit=1e2"]:
        st, out, _ = api.req("GET", "/api/v1/users?" + q, token=tok)
        assert st == 422 and err(out) == "invalid_field", (q, st, out)
    # Too long a target.
    st, out, _ = api.req("GET", "/api/v1/users?role=" + "a" * 5000, token=tok)
    assert st == 414 and err(out) == "uri_too_long", (st, out)

    # A declared body over body_max is refused before it is sent.
    head = ("POST /api/v1/clients HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Authorization: Bearer %s\r\nContent-Length: 1000000000\r\n\r\n" % tok).encode()
    t0 = time.monotonic()
    out = _raw_http(api.port, head)
    assert out.startswith(b"HTTP/1.1 413"), out[:200]
    assert time.monotonic() - t0 < 5
    # Garbage instead of HTTP.
    out = _raw_http(api.port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n",
                    timeout=5)
    assert not out or out.startswith(b"HTTP/1.1 400"), out[:200]
    assert api.ok("GET", "/api/v1/me", token=tok)["user"]["email"] == ADMIN


def test_bad_percent_escape_in_query(api):
    for path in ["/api/v1/users?role=%zz", "/api/v1/users?role=a%", "/api/v1/users?ro%zzle=x"]:
        st, out, _ = api.req("GET", path, token=api.adm)
        assert st == 400 and err(out) == "bad_request", (path, st, out)


def test_forged_and_expired_tokens(make_controller):
    c = start_api(make_controller, http={"session_max_s": 3, "session_idle_s": 60})
    c.init(ADMIN, ADMIN_PW)
    c.start()
    api = Api(c.http_port())
    tok = api.token(ADMIN, ADMIN_PW)
    assert api.req("GET", "/api/v1/me", token=tok)[0] == 200

    flip = ("B" if tok[-1] != "B" else "C")
    forged = [tok[:-1] + flip, tok[1:] + tok[0], tok + "A", tok[:-1], tok.upper(),
              tok[:42] + "=", "A" * 43, "%" * 43, "é" * 22]
    for f in forged:
        st, out, r = api.req("GET", "/api/v1/me", headers={"Authorization": "Bearer " + f})
        assert st in (400, 401), (f, st, out)
        if st == 401:
            assert err(out) == "invalid_token", (f, out)
            assert r.getheader("WWW-Authenticate", "").startswith("Bearer")
    for h in ["Basic YWRtaW46cHc=", "Bearer", "Bearer  ", tok, "Token " + tok]:
        st, out, _ = api.req("GET", "/api/v1/me", headers={"Authorization": h})
        assert st == 401 and err(out) in ("unauthenticated", "invalid_token"), (h, st, out)
    # The forgeries did not end the real session.
    assert api.req("GET", "/api/v1/me", token=tok)[0] == 200

    # Absolute expiry: used all the time, the session still ends at session_max_s.
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        assert api.req("GET", "/api/v1/me", token=tok)[0] == 200
        time.sleep(0.5)
        if time.monotonic() > deadline - 0.6:
            break
    time.sleep(1.2)
    st, out, _ = api.req("GET", "/api/v1/me", token=tok)
    assert st == 401 and err(out) == "session_expired", out
    st, out, _ = api.req("GET", "/api/v1/me", token=tok)
    assert st == 401 and err(out) == "invalid_token", out
    # An ended session cannot log out either, and a new log-in works.
    assert api.req("DELETE", "/api/v1/session", token=tok)[0] == 401
    tok2 = api.token(ADMIN, ADMIN_PW)
    assert api.req("GET", "/api/v1/me", token=tok2)[0] == 200
    c.stop()


def test_brute_force_by_address_and_by_password_change(api):
    tok = api.adm
    # Failures spread over many unknown emails lock the address.
    codes = [api.login("nobody%d@example.com" % i, "guess %d xxxx" % i)[0] for i in range(5)]
    assert codes == [401] * 5
    st, out, r = api.login("nobody99@example.com", "guess 99 xxxx")
    assert st == 429 and err(out) == "too_many_requests", out
    assert int(r.getheader("Retry-After")) > 0
    # The lock holds even for the right password of a real user.
    st, out, r = api.login(ADMIN, ADMIN_PW)
    assert st == 429 and int(r.getheader("Retry-After")) > 0, out
    # Sessions made before keep working.
    assert api.req("GET", "/api/v1/me", token=tok)[0] == 200


def test_password_change_guesses_are_throttled(api):
    tok = api.adm
    body = {"old_password": "not the password", "new_password": "a new password"}
    codes = [api.req("PUT", "/api/v1/me/password", body, token=tok)[0] for _ in range(5)]
    assert codes == [403] * 5, codes
    st, out, r = api.req("PUT", "/api/v1/me/password",
                         {"old_password": ADMIN_PW, "new_password": "a new password"}, token=tok)
    assert st == 429 and err(out) == "too_many_requests", out
    assert int(r.getheader("Retry-After")) > 0
    # Nothing changed: the old password is still the one (once the lock ends
    # it logs in; here the session still works and the new one is refused).
    assert api.req("GET", "/api/v1/me", token=tok)[0] == 200
    st, out, _ = api.login(ADMIN, "a new password")
    assert st in (401, 429), out


# ---- audit ---------------------------------------------------------------


def _audit_all(api, tok, query=""):
    items, after = [], None
    while True:
        q = query + ("&" if query else "") + "limit=2" + ("&after=" + after if after else "")
        page = api.ok("GET", "/api/v1/audit?" + q, token=tok)
        items += page["items"]
        after = page["next_after"]
        if not after:
            return items


def test_audit_log(api):
    tok = api.adm
    me = api.ok("GET", "/api/v1/me", token=tok)["user"]
    actor = "user:%d" % me["id"]
    t_before = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    cl = api.ok("POST", "/api/v1/clients", {"name": "Acme", "email": "owner@acme.example"}, token=tok)
    api.ok("PUT", "/api/v1/clients/%d" % cl["id"], {"name": "Acme SA"}, token=tok)
    sup = api.ok("POST", "/api/v1/users", {"email": "sup@example.com", "role": "Supervisor",
                                           "password": PW}, token=tok)
    usr = api.ok("POST", "/api/v1/users", {"email": "usr@example.com", "role": "User",
                                           "password": PW}, token=tok)
    api.ok("POST", "/api/v1/users", {"email": "tech@example.com", "role": "Technician",
                                     "password": PW}, token=tok)
    # A refused change leaves no entry.
    api.req("PUT", "/api/v1/clients/%d" % cl["id"], {"email": "x@acme.example"}, token=tok)
    api.ok("DELETE", "/api/v1/clients/%d" % cl["id"], token=tok)

    entries = api.ok("GET", "/api/v1/audit?kind=client&id=%d" % cl["id"], token=tok)["items"]
    assert [e["action"] for e in entries] == ["create", "update", "delete"], entries
    for e in entries:
        assert e["actor"] == actor and e["kind"] == "client" and e["id"] == cl["id"]
        assert e["at"].endswith("Z") and e["cursor"]
    c, u, d = entries
    assert c["before"] is None and c["after"]["name"] == "Acme"
    assert u["before"]["name"] == "Acme" and u["after"]["name"] == "Acme SA"
    assert u["before"]["email"] == u["after"]["email"] == "owner@acme.example"
    assert d["before"]["name"] == "Acme SA" and d["after"] is None

    # Password hashes never reach the log.
    every = _audit_all(api, tok)
    assert "_pwhash" not in json.dumps(every) and PW not in json.dumps(every)
    assert any(e["kind"] == "user" and e["id"] == sup["id"] and e["action"] == "create"
               for e in every)
    assert not any(e["kind"] == "session" for e in every)
    # The full list, page by page, equals the one-page list.
    assert every == api.ok("GET", "/api/v1/audit?limit=200", token=tok)["items"]
    # Oldest first.
    assert [e["cursor"] for e in every] == sorted(
        (e["cursor"] for e in every), key=lambda s: tuple(int(x) for x in s.split(".")))

    # By kind only.
    users = _audit_all(api, tok, "kind=user")
    assert users and all(e["kind"] == "user" for e in users)
    assert {e["id"] for e in users} >= {sup["id"], usr["id"]}

    # By time: [from, to).
    t_after = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    assert api.ok("GET", "/api/v1/audit?from=" + t_after, token=tok)["items"] == []
    assert api.ok("GET", "/api/v1/audit?to=" + t_before, token=tok)["items"] == [
        e for e in every if e["at"] < t_before]
    got = api.ok("GET", "/api/v1/audit?kind=client&id=%d&from=%s&to=%s"
                 % (cl["id"], t_before, t_after), token=tok)["items"]
    assert got == entries
    first = entries[0]["at"]
    got = api.ok("GET", "/api/v1/audit?kind=client&id=%d&to=%s" % (cl["id"], first), token=tok)
    assert got["items"] == []

    for q in ["kind=spaceship", "id=%d" % cl["id"], "kind=client&id=x", "from=yesterday",
              "to=2026-13-01T00:00:00Z", "after=x", "limit=0", "limit=201"]:
        st, out, _ = api.req("GET", "/api/v1/audit?" + q, token=tok)
        assert st == 422 and err(out) == "invalid_field", (q, st, out)

    # Who may read it: audit.get (Supervisor yes; User and Technician no).
    stok = api.token("sup@example.com", PW)
    assert api.req("GET", "/api/v1/audit", token=stok)[0] == 200
    for email in ["usr@example.com", "tech@example.com"]:
        t = api.token(email, PW)
        st, out, _ = api.req("GET", "/api/v1/audit", token=t)
        assert st == 403 and err(out) == "forbidden", (email, out)
    # A custom role without audit.get.
    api.ok("POST", "/api/v1/roles", {"name": "Auditless", "permissions": ["user.get"]}, token=tok)
    api.ok("PUT", "/api/v1/users/%d" % usr["id"], {"role": "Auditless"}, token=tok)
    t = api.token("usr@example.com", PW)
    assert api.req("GET", "/api/v1/audit", token=t)[0] == 403
    assert api.req("GET", "/api/v1/users", token=t)[0] == 200
    api.ok("PUT", "/api/v1/roles/Auditless".replace("Auditless", str(
        [r for r in api.ok("GET", "/api/v1/roles", token=tok)["items"]
         if r["name"] == "Auditless"][0]["id"])),
        {"permissions": ["user.get", "audit.get"]}, token=tok)
    assert api.req("GET", "/api/v1/audit", token=t)[0] == 200
    # The daemon still serves.
    assert api.req("GET", "/api/v1/me", token=tok)[0] == 200
