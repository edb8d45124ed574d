"""The people API, first slice (issue 3): init, sessions, the caller's
account, users and roles over real HTTP against a running controller.

Each test starts its own controller (and so its own throttle table): all
requests come from 127.0.0.1, whose address key the brute-force test locks.
"""
import time

import pytest

from apiclient import Api, err

ADMIN = "admin@example.com"
ADMIN_PW = "correct horse battery"
PW = "s3cret-password"


@pytest.fixture
def api(make_controller):
    c = make_controller(http={"listen": "127.0.0.1", "port": 0, "body_max": 4096})
    c.init(ADMIN, ADMIN_PW)
    c.start()
    a = Api(c.http_port())
    a.ctl = c
    yield a
    c.stop()


def test_init_once_and_login(api):
    r = api.ctl.init("other@example.com", ADMIN_PW, check=False)
    assert r.returncode == 1
    assert b"already initialised" in r.stderr

    st, body, _ = api.login(ADMIN, ADMIN_PW)
    assert st == 201, body
    assert len(body["token"]) == 43 and body["expires_at"].endswith("Z")
    assert body["user"]["email"] == ADMIN and "_pwhash" not in body["user"]
    tok = body["token"]

    st, me, _ = api.req("GET", "/api/v1/me", token=tok)
    assert st == 200, me
    assert me["role"]["name"] == "Administrator"
    assert "user.add" in me["permissions"]

    # Login is by case-insensitive email.
    assert api.login(ADMIN.upper(), ADMIN_PW)[0] == 201

    st, body, _ = api.login(ADMIN, "wrong password!")
    assert st == 401 and err(body) == "bad_credentials"
    st, body, _ = api.login("nobody@example.com", ADMIN_PW)
    assert st == 401 and err(body) == "bad_credentials"

    # Tokens: missing, forged, logged out.
    assert api.req("GET", "/api/v1/me")[0] == 401
    st, body, _ = api.req("GET", "/api/v1/me", token="A" * 43)
    assert st == 401 and err(body) == "invalid_token"
    st, body, _ = api.req("GET", "/api/v1/me", token="not a token")
    assert st == 401
    assert api.req("DELETE", "/api/v1/session", token=tok)[0] == 204
    assert api.req("GET", "/api/v1/me", token=tok)[0] == 401

    # Preferences.
    tok = api.token(ADMIN, ADMIN_PW)
    st, p, _ = api.req("GET", "/api/v1/me/preferences", token=tok)
    assert st == 200 and p["theme"] == "light"
    st, p, _ = api.req("PUT", "/api/v1/me/preferences", {"theme": "dark", "time_zone": "Europe/Paris"},
                       token=tok)
    assert st == 200 and p["theme"] == "dark" and p["language"] == "en"
    st, p, _ = api.req("GET", "/api/v1/me/preferences", token=tok)
    assert p["theme"] == "dark" and p["time_zone"] == "Europe/Paris"
    st, body, _ = api.req("PUT", "/api/v1/me/preferences", {"colour": "red"}, token=tok)
    assert st == 422 and "colour" in body["error"]["message"]
    st, body, _ = api.req("PUT", "/api/v1/me/preferences", {"theme": 3}, token=tok)
    assert st == 422 and "theme" in body["error"]["message"]


def test_bad_input(api):
    tok = api.token(ADMIN, ADMIN_PW)
    st, body, _ = api.req("POST", "/api/v1/users", raw=b"{not json", token=tok)
    assert st == 400 and err(body) == "bad_json"
    st, body, _ = api.req("POST", "/api/v1/users", {"email": "a@b.c", "role": "User", "x": 1},
                          token=tok)
    assert st == 422 and err(body) == "unknown_field" and '"x"' in body["error"]["message"]
    st, body, _ = api.req("POST", "/api/v1/users", {"email": 5, "role": "User"}, token=tok)
    assert st == 422 and "email" in body["error"]["message"]
    st, body, _ = api.req("POST", "/api/v1/users", {"role": "User"}, token=tok)
    assert st == 422 and err(body) == "missing_field"
    st, body, _ = api.req("POST", "/api/v1/users", {"email": "a@b.c", "role": "Nope"}, token=tok)
    assert st == 422 and "role" in body["error"]["message"]
    st, body, _ = api.req("POST", "/api/v1/users",
                          {"email": "a@b.c", "role": "User", "password": "x" * 5000}, token=tok)
    assert st == 413
    st, body, _ = api.req("GET", "/api/v1/users/999999", token=tok)
    assert st == 404
    st, body, _ = api.req("GET", "/api/v1/nothing", token=tok)
    assert st == 404
    # The daemon keeps serving.
    assert api.req("GET", "/api/v1/me", token=tok)[0] == 200


def test_users_roles_and_permissions(api):
    adm = api.token(ADMIN, ADMIN_PW)
    roles = ["Administrator", "Supervisor", "User", "Restricted", "User - Map Viewer"]
    ids = {}
    for r in roles:
        email = r.replace(" ", "").replace("-", "").lower() + "@example.com"
        st, u, _ = api.req("POST", "/api/v1/users", {"email": email, "role": r, "password": PW},
                           token=adm)
        assert st == 201, u
        assert u["role"] == r
        ids[r] = (u["id"], email)
    st, body, _ = api.req("POST", "/api/v1/users",
                          {"email": ids["User"][1], "role": "User", "password": PW}, token=adm)
    assert st == 409 and err(body) == "email_taken"

    # Restricted cannot log in, even with the right password.
    st, body, _ = api.login(ids["Restricted"][1], PW)
    assert st == 403 and err(body) == "login_disabled"

    sup = api.token(ids["Supervisor"][1], PW)
    st, body, _ = api.req("POST", "/api/v1/users", {"email": "x@example.com", "role": "User"},
                          token=sup)
    assert st == 403 and err(body) == "forbidden"
    assert api.req("GET", "/api/v1/users", token=sup)[0] == 200  # user.get
    usr = api.token(ids["User"][1], PW)
    assert api.req("GET", "/api/v1/users", token=usr)[0] == 403
    assert api.req("GET", "/api/v1/me", token=usr)[0] == 200
    mapv = api.token(ids["User - Map Viewer"][1], PW)
    assert api.req("GET", "/api/v1/me", token=mapv)[0] == 403
    assert api.req("GET", "/api/v1/me/preferences", token=mapv)[0] == 403
    assert api.req("GET", "/api/v1/users", token=mapv)[0] == 403
    assert api.req("DELETE", "/api/v1/session", token=mapv)[0] == 204

    # Filter by role, and pagination.
    st, body, _ = api.req("GET", "/api/v1/users?role=Supervisor", token=adm)
    assert st == 200 and [u["email"] for u in body["items"]] == [ids["Supervisor"][1]]
    st, body, _ = api.req("GET", "/api/v1/users?role=Administrator", token=adm)
    assert sorted(u["email"] for u in body["items"]) == sorted([ADMIN, ids["Administrator"][1]])
    st, body, _ = api.req("GET", "/api/v1/users?limit=2", token=adm)
    assert len(body["items"]) == 2 and body["next_after"]
    seen = [u["id"] for u in body["items"]]
    while body["next_after"]:
        st, body, _ = api.req("GET", "/api/v1/users?limit=2&after=%d" % body["next_after"],
                              token=adm)
        seen += [u["id"] for u in body["items"]]
    assert len(seen) == 6 and len(set(seen)) == 6

    # Roles: built-in ones listed and fixed; custom ones created, in use.
    st, body, _ = api.req("GET", "/api/v1/roles", token=adm)
    names = [r["name"] for r in body["items"]]
    for r in roles + ["Admin", "Technician", "Viewer"]:
        assert r in names
    st, body, _ = api.req("DELETE", "/api/v1/roles/Administrator", token=adm)
    assert st == 403 and err(body) == "builtin_role"
    st, body, _ = api.req("POST", "/api/v1/roles",
                          {"name": "Fitter", "permissions": ["site.get", "site.explode"]}, token=adm)
    assert st == 422 and "site.explode" in body["error"]["message"]
    st, role, _ = api.req("POST", "/api/v1/roles",
                          {"name": "Fitter", "permissions": ["site.get", "user.get"]}, token=adm)
    assert st == 201, role
    st, body, _ = api.req("POST", "/api/v1/roles", {"name": "Fitter", "permissions": []}, token=adm)
    assert st == 409
    st, body, _ = api.req("POST", "/api/v1/roles", {"name": "Viewer", "permissions": []}, token=adm)
    assert st == 409
    st, body, _ = api.req("POST", "/api/v1/roles", {"name": "X", "permissions": []}, token=sup)
    assert st == 403
    st, fu, _ = api.req("POST", "/api/v1/users",
                        {"email": "fitter@example.com", "role": "Fitter", "password": PW}, token=adm)
    assert st == 201
    fit = api.token("fitter@example.com", PW)
    assert api.req("GET", "/api/v1/users", token=fit)[0] == 200
    assert api.req("GET", "/api/v1/roles", token=fit)[0] == 403
    st, body, _ = api.req("DELETE", "/api/v1/roles/%d" % role["id"], token=adm)
    assert st == 409 and err(body) == "role_in_use" and body["error"]["users"] == 1
    # Renaming a role carries its users along.
    st, body, _ = api.req("PUT", "/api/v1/roles/%d" % role["id"], {"name": "Installer"}, token=adm)
    assert st == 200 and body["name"] == "Installer"
    st, body, _ = api.req("GET", "/api/v1/users?role=Installer", token=adm)
    assert [u["email"] for u in body["items"]] == ["fitter@example.com"]
    # Edit the user's role, then the role is free to delete.
    st, body, _ = api.req("PUT", "/api/v1/users/%d" % fu["id"], {"role": "Viewer"}, token=adm)
    assert st == 200 and body["role"] == "Viewer"
    assert api.req("DELETE", "/api/v1/roles/%d" % role["id"], token=adm)[0] == 204
    assert api.req("DELETE", "/api/v1/roles/%d" % role["id"], token=adm)[0] == 404

    # Deleting users: not oneself; a deleted user's sessions end.
    st, me, _ = api.req("GET", "/api/v1/me", token=adm)
    st, body, _ = api.req("DELETE", "/api/v1/users/%d" % me["user"]["id"], token=adm)
    assert st == 409
    assert api.req("DELETE", "/api/v1/users/%d" % fu["id"], token=sup)[0] == 403
    assert api.req("DELETE", "/api/v1/users/%d" % fu["id"], token=adm)[0] == 204
    assert api.req("GET", "/api/v1/me", token=fit)[0] == 401
    assert api.req("GET", "/api/v1/users/%d" % fu["id"], token=adm)[0] == 404


def test_change_password(api):
    a1 = api.token(ADMIN, ADMIN_PW)
    a2 = api.token(ADMIN, ADMIN_PW)
    st, body, _ = api.req("PUT", "/api/v1/me/password",
                          {"old_password": "not the password", "new_password": "a new password"},
                          token=a1)
    assert st == 403 and err(body) == "wrong_password"
    st, body, _ = api.req("PUT", "/api/v1/me/password",
                          {"old_password": ADMIN_PW, "new_password": "short"}, token=a1)
    assert st == 422 and "new_password" in body["error"]["message"]
    st, body, _ = api.req("PUT", "/api/v1/me/password", {"new_password": "a new password"},
                          token=a1)
    assert st == 422 and "old_password" in body["error"]["message"]
    st, body, _ = api.req("PUT", "/api/v1/me/password",
                          {"old_password": ADMIN_PW, "new_password": "a new password"}, token=a1)
    assert st == 204, body
    assert api.req("GET", "/api/v1/me", token=a1)[0] == 200
    assert api.req("GET", "/api/v1/me", token=a2)[0] == 401
    assert api.login(ADMIN, ADMIN_PW)[0] == 401
    assert api.login(ADMIN, "a new password")[0] == 201


def test_brute_force_is_refused(api):
    codes = [api.login(ADMIN, "guess number %d" % i)[0] for i in range(5)]
    assert codes == [401] * 5
    st, body, r = api.login(ADMIN, ADMIN_PW)
    assert st == 429 and err(body) == "too_many_requests"
    assert int(r.getheader("Retry-After")) > 0
    # Still serving other requests.
    assert api.req("GET", "/api/v1/me")[0] == 401


def test_session_expiry(make_controller):
    c = make_controller(http={"port": 0, "session_idle_s": 1})
    c.init(ADMIN, ADMIN_PW)
    c.start()
    api = Api(c.http_port())
    tok = api.token(ADMIN, ADMIN_PW)
    assert api.req("GET", "/api/v1/me", token=tok)[0] == 200
    time.sleep(2.2)
    st, body, _ = api.req("GET", "/api/v1/me", token=tok)
    assert st == 401 and err(body) == "session_expired"
    assert api.req("GET", "/api/v1/me", token=tok)[0] == 401
    c.stop()
