"""11: the ledger survives kill -9 during a burst of concurrent API writes.

Issue 3: "The ledger survives kill -9 during a burst of concurrent writes
from 20 clients: after restart every acknowledged change is there and
nothing half-written is."

20 client threads, sharing 5 admin sessions, write as fast as they
can on objects of their own: create roles with random permissions, create
users (without a password: PBKDF2 costs ~0.3 s a hash) holding those roles,
change a role's permissions, move a user to another role, delete a user.
Each client keeps, per object, the set of states it may now be in: an
acknowledged (2xx received) change fixes the state, a request sent without
an answer ("unknown", only at the kill) adds the new state to the possible
ones. After 1.5-3 s the controller is killed with SIGKILL and restarted on
the same data directory; then through the API:

  - every object is in one of its possible states (acknowledged content,
    the id the create answered), and an unanswered create either fully
    happened or not at all;
  - nothing half-written: users' roles exist, permissions are valid names,
    emails and role names are unique, ?role=R lists exactly the users of R,
    GET /users/{id} matches the list, no object nobody asked for;
  - the sessions made before the bursts still work, and log-in works;
  - the controller log has no "corrupt" or "MDB_" error.

Three cycles on the same data directory (so later bursts also change what
earlier ones made). C2D_TEST_SEED fixes the clients' choices and the kill
times (default fixed; thread scheduling still varies run to run).
"""

import http.client
import json
import os
import random
import re
import socket
import struct
import threading
import time
import traceback
import urllib.parse

import pytest

from c2dtest import HOST, wait_for

ADMIN = "admin@example.com"
ADMIN_PW = "correct horse battery"
CLIENTS = 20
# Admin sessions the clients share: a log-in costs ~0.3 s of PBKDF2 (more on
# a loaded machine), so not one each.
SESSIONS = 5
CYCLES = 3
KILL_AFTER = (1.5, 3.0)  # seconds of burst before the kill
# Custom roles created per client and cycle: GET /api/v1/roles lists at most
# CTL_DIR_LIST_MAX (1000) custom roles; 20 * 12 * 3 = 720 stay under it.
ROLES_PER_CYCLE = 12
SEED = int(os.environ.get("C2D_TEST_SEED", 20261130))
ABSENT = None  # the state of an object that does not exist


class Unsent(Exception):
    """No connection: nothing reached the controller."""


class Lost(Exception):
    """Sent, but no answer came: the change may or may not have happened."""


def call(port, method, path, body=None, token=None, timeout=20):
    """(status, JSON body) of one request on a fresh connection; raises
    Unsent or Lost."""
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        try:
            c.connect()
        except OSError as e:
            raise Unsent(e)
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
        except (OSError, http.client.HTTPException) as e:
            raise Lost(e)
        # The answer is complete: reset rather than leave a TIME_WAIT socket
        # (thousands a second would crowd the machine's ephemeral ports).
        if c.sock is not None:  # None when the server closed it
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return r.status, (json.loads(txt) if txt else None)
    finally:
        c.close()


def ok(port, method, path, body=None, token=None, status=200):
    st, ans = call(port, method, path, body, token, timeout=60)
    assert st == status, "%s %s: %d %s" % (method, path, st, ans)
    return ans


def listen_port(ctl, nth):
    """The port of the nth `http listening on` line (1-based): the log
    accumulates over restarts and each start binds a new free port."""
    def found():
        m = re.findall(r"http listening on \S+:(\d+)$", ctl.log_text(), re.M)
        return int(m[nth - 1]) if len(m) >= nth else None

    return wait_for(found, 15, "controller http listener (start %d)" % nth, on_timeout=ctl.diag)


class Obj:
    """A role (key: its name) or a user (key: its email) one client made,
    with the states it may be in: ABSENT, a frozenset of permission names
    (role) or a role name (user)."""

    def __init__(self, kind, key):
        self.kind = kind
        self.key = key
        self.id = None  # from an acknowledged create, or seen after a restart
        self.states = {ABSENT}
        self.log = []  # (cycle, action, value, outcome) for failure messages

    def record(self, cycle, action, value, outcome, state):
        self.log.append((cycle, action, sorted(value) if isinstance(value, frozenset) else value,
                         outcome))
        if outcome == "ack":
            self.states = {state}
        elif outcome == "unknown":
            self.states = self.states | {state}
        # "refused" (a non-2xx answer): the transaction was not committed

    def present(self):
        return len(self.states) == 1 and ABSENT not in self.states

    def state(self):
        assert len(self.states) == 1
        return next(iter(self.states))

    def describe(self):
        return "%s %r (id %s): may be %s; history %s" % (
            self.kind, self.key, self.id, [sorted(s) if isinstance(s, frozenset) else s
                                           for s in self.states], self.log)


class Client:
    """One writer. Its objects live across cycles; a burst runs in a new
    thread each cycle and stops at the first request that gets no answer
    (the controller is gone), so only that last request is unknown."""

    def __init__(self, idx, token, perms, builtins):
        self.idx = idx
        self.token = token
        self.perms = perms
        self.builtins = builtins
        self.roles = {}  # name -> Obj
        self.users = {}  # email -> Obj
        self.errors = []  # refusals, wrong answers, a crash of the thread
        self.acked = self.unknown = 0
        self.ended = None  # monotonic time the burst saw the controller go
        self.why = None  # and how
        self.slowest = 0.0  # longest answered request of the burst, seconds

    def burst(self, port, cycle, stop):
        self.slowest = 0.0
        try:
            self._burst(port, cycle, stop)
        except Exception:
            self.errors.append("client %d crashed:\n%s" % (self.idx, traceback.format_exc()))

    def _perm_subset(self, rng):
        return frozenset(p for p in self.perms if rng.random() < 0.3)

    def _burst(self, port, cycle, stop):
        rng = random.Random("%d-%d-%d" % (SEED, cycle, self.idx))
        made_roles = made_users = 0
        while not stop.is_set():
            roles = sorted(n for n, o in self.roles.items() if o.present())
            users = sorted(e for e, o in self.users.items() if o.present())
            r = rng.random()
            if made_roles < ROLES_PER_CYCLE and (r < 0.2 or not roles):
                name = "c%d-t%d-r%d" % (cycle, self.idx, made_roles)
                made_roles += 1
                o = self.roles[name] = Obj("role", name)
                perms = self._perm_subset(rng)
                go = self.send(port, cycle, o, "create", perms, "POST", "/api/v1/roles",
                               {"name": name, "permissions": sorted(perms)}, 201, perms)
            elif r < 0.55 or not users:
                email = "c%d-t%d-u%d@example.com" % (cycle, self.idx, made_users)
                made_users += 1
                o = self.users[email] = Obj("user", email)
                role = rng.choice(roles) if roles and rng.random() < 0.8 else rng.choice(
                    self.builtins)
                go = self.send(port, cycle, o, "create", role, "POST", "/api/v1/users",
                               {"email": email, "role": role}, 201, role)
            elif r < 0.7 and roles:
                o = self.roles[rng.choice(roles)]
                perms = self._perm_subset(rng)
                go = self.send(port, cycle, o, "permissions", perms, "PUT",
                               "/api/v1/roles/%d" % o.id, {"permissions": sorted(perms)}, 200,
                               perms)
            elif r < 0.9:
                o = self.users[rng.choice(users)]
                choices = [n for n in roles + self.builtins if n != o.state()]
                role = rng.choice(choices)
                go = self.send(port, cycle, o, "role", role, "PUT", "/api/v1/users/%d" % o.id,
                               {"role": role}, 200, role)
            else:
                o = self.users[rng.choice(users)]
                go = self.send(port, cycle, o, "delete", None, "DELETE",
                               "/api/v1/users/%d" % o.id, None, 204, ABSENT)
            if not go:
                return

    def send(self, port, cycle, o, action, value, method, path, body, want, state):
        """Sends one change and records its outcome on o; False once the
        controller is gone."""
        t0 = time.monotonic()
        try:
            st, ans = call(port, method, path, body, self.token)
        except Unsent as e:
            self.ended, self.why = time.monotonic(), "%s %s: not sent: %r" % (method, path, e)
            return False
        except Lost as e:
            self.ended, self.why = time.monotonic(), "%s %s: no answer: %r" % (method, path, e)
            self.unknown += 1
            o.record(cycle, action, value, "unknown", state)
            return False
        if st != want:  # every request is valid: a refusal is a bug
            o.record(cycle, action, value, "refused", state)
            self.errors.append("client %d: %s %s %s -> %d %s"
                               % (self.idx, method, path, body, st, ans))
            return True
        self.acked += 1
        self.slowest = max(self.slowest, time.monotonic() - t0)
        o.record(cycle, action, value, "ack", state)
        if action == "create":
            o.id = ans["id"]
            got = (ans.get("name"), frozenset(ans.get("permissions", ()))) if o.kind == "role" \
                else (ans.get("email"), ans.get("role"))
            if got != (o.key, state):
                self.errors.append("client %d: %s %s answered %s" % (self.idx, method, body, ans))
        elif action == "permissions" and frozenset(ans["permissions"]) != state:
            self.errors.append("client %d: %s %s %s answered %s" % (self.idx, method, path, body,
                                                                    ans))
        elif action == "role" and ans["role"] != state:
            self.errors.append("client %d: %s %s %s answered %s" % (self.idx, method, path, body,
                                                                    ans))
        return True


def all_users(port, token, role=None):
    out = []
    after = None
    while True:
        q = {"limit": 200}
        if role is not None:
            q["role"] = role
        if after is not None:
            q["after"] = after
        page = ok(port, "GET", "/api/v1/users?" + urllib.parse.urlencode(q), token=token)
        out += page["items"]
        after = page["next_after"]
        if after is None:
            return out


def verify(port, clients, cycle, valid_perms):
    """Checks the restarted controller against what the clients know, then
    settles every object on the state it was found in."""
    st, ans = call(port, "POST", "/api/v1/session", {"email": ADMIN, "password": ADMIN_PW},
                   timeout=60)
    assert st == 201, "admin cannot log in after the restart: %d %s" % (st, ans)
    tok = ans["token"]
    for t in sorted({cl.token for cl in clients}):  # acknowledged before the bursts
        st, ans = call(port, "GET", "/api/v1/me", token=t)
        assert st == 200, "a session is gone after the restart: %d %s" % (st, ans)

    roles = ok(port, "GET", "/api/v1/roles", token=tok)["items"]
    custom = [r for r in roles if not r["builtin"]]
    assert len(custom) < 1000, "GET /roles may be truncated (%d custom roles)" % len(custom)
    names = [r["name"] for r in roles]
    assert len(names) == len(set(names)), "role names listed twice: %s" % sorted(
        n for n in set(names) if names.count(n) > 1)
    ids = [r["id"] for r in custom]
    assert len(ids) == len(set(ids)), "role ids listed twice"
    for r in roles:
        p = r["permissions"]
        assert len(p) == len(set(p)) and set(p) <= valid_perms, "role %s: bad permissions %s" % (
            r["name"], p)

    users = all_users(port, tok)
    uids = [u["id"] for u in users]
    assert uids == sorted(set(uids)), "user ids not unique and ascending: %s" % uids
    emails = [u["email"] for u in users]
    assert len(emails) == len(set(emails)), "two users share an email: %s" % sorted(
        e for e in set(emails) if emails.count(e) > 1)
    for u in users:
        assert u["role"] in names, "user %s holds role %r, which does not exist" % (
            u["email"], u["role"])
    admin = [u for u in users if u["email"] == ADMIN]
    assert len(admin) == 1 and admin[0]["role"] == "Administrator", admin

    # ?role=R agrees with the full list, for every role.
    for name in names:
        want = sorted(u["id"] for u in users if u["role"] == name)
        got = sorted(u["id"] for u in all_users(port, tok, role=name))
        assert got == want, "GET /users?role=%s lists %s, the users holding it are %s" % (
            name, got, want)
    # A sample read one by one agrees with the list.
    for u in random.Random("%d-%d" % (SEED, cycle)).sample(users, min(30, len(users))):
        got = ok(port, "GET", "/api/v1/users/%d" % u["id"], token=tok)
        assert got == u, "GET /users/%d: %s, listed as %s" % (u["id"], got, u)

    # Every object a client made is in a state it may be in.
    by_name = {r["name"]: r for r in custom}
    by_email = {u["email"]: u for u in users}
    known_roles, known_users = set(), set()
    for cl in clients:
        for kind, objs, listed, known in (("role", cl.roles, by_name, known_roles),
                                          ("user", cl.users, by_email, known_users)):
            for key, o in list(objs.items()):
                known.add(key)
                found = listed.get(key)
                if found is None:
                    state = ABSENT
                elif kind == "role":
                    state = frozenset(found["permissions"])
                else:
                    state = found["role"]
                assert state in o.states, "after restart %d: found %s; %s" % (
                    cycle + 1, found, o.describe())
                if found is not None and o.id is not None:
                    assert found["id"] == o.id, "after restart %d: found id %s; %s" % (
                        cycle + 1, found["id"], o.describe())
                if found is None:
                    del objs[key]  # never made, or deleted: nothing more to do with it
                else:
                    o.states = {state}
                    o.id = found["id"]
    phantom = sorted(set(by_name) - known_roles) + sorted(set(by_email) - known_users - {ADMIN})
    assert not phantom, "objects no client asked for: %s" % phantom
    return len(custom), len(users)


@pytest.mark.timeout(180)
def test_kill9_during_concurrent_writes(make_controller):
    print("C2D_TEST_SEED=%d" % SEED)
    kill_rng = random.Random(SEED)
    ctl = make_controller(http={"listen": HOST, "port": 0})
    ctl.init(ADMIN, ADMIN_PW)
    ctl.start()
    starts = 1
    port = listen_port(ctl, starts)

    st, ans = call(port, "POST", "/api/v1/session", {"email": ADMIN, "password": ADMIN_PW},
                   timeout=60)
    assert st == 201, ans
    me = ok(port, "GET", "/api/v1/me", token=ans["token"])
    perms = sorted(me["permissions"])
    roles = ok(port, "GET", "/api/v1/roles", token=ans["token"])["items"]
    builtins = sorted(r["name"] for r in roles if r["builtin"])
    valid_perms = set(perms).union(*(r["permissions"] for r in roles))

    tokens = []
    for _ in range(SESSIONS):
        st, ans = call(port, "POST", "/api/v1/session", {"email": ADMIN, "password": ADMIN_PW},
                       timeout=60)
        assert st == 201, ans
        tokens.append(ans["token"])
    clients = [Client(i, tokens[i % SESSIONS], perms, builtins) for i in range(CLIENTS)]

    threads = []
    stop = threading.Event()
    summary = []
    try:
        for cycle in range(CYCLES):
            stop = threading.Event()
            threads = [threading.Thread(target=cl.burst, args=(port, cycle, stop), daemon=True,
                                        name="client-%d" % cl.idx) for cl in clients]
            acked0 = sum(cl.acked for cl in clients)
            unknown0 = sum(cl.unknown for cl in clients)
            delay = kill_rng.uniform(*KILL_AFTER)
            for t in threads:
                t.start()
            time.sleep(delay)
            assert ctl.alive(), "the controller died during the burst\n" + ctl.diag()
            t_kill = time.monotonic()
            ctl.kill9()
            stop.set()
            for t in threads:
                t.join(30)
            assert not [t.name for t in threads if t.is_alive()], "client threads hang"
            errors = [e for cl in clients for e in cl.errors]
            assert not errors, "cycle %d:\n%s" % (cycle + 1, "\n".join(errors[:20]))
            early = ["client %d, %.3f s before the kill: %s" % (cl.idx, t_kill - cl.ended, cl.why)
                     for cl in clients if cl.ended is not None and cl.ended < t_kill]
            assert not early, "cycle %d: requests failed while the controller ran:\n%s\n%s" % (
                cycle + 1, "\n".join(early), ctl.diag())

            ctl.start()
            starts += 1
            port = listen_port(ctl, starts)
            t0 = time.monotonic()
            n_roles, n_users = verify(port, clients, cycle, valid_perms)
            t_verify = time.monotonic() - t0
            log = ctl.log_text()
            bad = [ln for ln in log.splitlines() if re.search(r"corrupt|MDB_", ln, re.I)]
            assert not bad, "controller log:\n%s" % "\n".join(bad[:20])
            acked = sum(cl.acked for cl in clients) - acked0
            unknown = sum(cl.unknown for cl in clients) - unknown0
            summary.append((delay, acked, unknown))
            print("cycle %d: killed after %.2f s: %d changes acknowledged (slowest %.2f s), "
                  "%d unanswered; now %d custom roles, %d users (checked in %.1f s)"
                  % (cycle + 1, delay, acked, max(cl.slowest for cl in clients), unknown,
                     n_roles, n_users, t_verify))
            assert acked >= 20, "cycle %d: only %d changes were acknowledged" % (cycle + 1, acked)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        ctl.stop()
    # 20 clients always have requests in flight: a kill that caught none
    # three times over would mean the test no longer tests anything.
    assert sum(u for _, _, u in summary) > 0, "no request was in flight at any kill: %s" % summary
