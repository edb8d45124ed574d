"""A client for the controller's HTTP/JSON API (docs/api.md) for the tools:
JSON over HTTP with a bearer token kept in memory only. Standard library
only (Debian's /usr/bin/python3)."""

import json
import urllib.error
import urllib.request

# The API's page size limit (docs/api.md, "Lists").
PAGE = 200


class ApiError(Exception):
    """An error answer (status, code, message), or status 0 and code
    "unreachable" when the controller could not be reached."""

    def __init__(self, status, code, message):
        super().__init__("%s (%s %s)" % (message, status, code))
        self.status, self.code, self.message = status, code, message


class Api:
    def __init__(self, base, timeout=60):
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.token = None

    def req(self, method, path, body=None):
        """The answer's JSON (None for an empty body); ApiError otherwise."""
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            r.add_header("Content-Type", "application/json")
        if self.token:
            r.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(r, timeout=self.timeout) as resp:
                txt = resp.read()
                return json.loads(txt) if txt else None
        except urllib.error.HTTPError as e:
            txt = e.read()
            try:
                err = json.loads(txt)["error"]
                raise ApiError(e.code, err.get("code"), err.get("message", "")) from None
            except (ValueError, KeyError, TypeError):
                raise ApiError(e.code, "http_%d" % e.code,
                               txt[:200].decode(errors="replace")) from None
        except (urllib.error.URLError, OSError) as e:
            raise ApiError(0, "unreachable", "cannot reach the controller at %s: %s"
                           % (self.base, getattr(e, "reason", e))) from None

    def get(self, path):
        return self.req("GET", path)

    def post(self, path, body=None):
        return self.req("POST", path, body)

    def put(self, path, body):
        return self.req("PUT", path, body)

    def items(self, path):
        """Every item of a paginated list."""
        out, after = [], None
        sep = "&" if "?" in path else "?"
        while True:
            q = "%s%slimit=%d" % (path, sep, PAGE) + ("&after=%s" % after if after else "")
            page = self.get(q)
            out += page.get("items", [])
            after = page.get("next_after")
            if not after:
                return out

    def login(self, email, password):
        """Opens a session; its token is used for every later request."""
        self.token = self.req("POST", "/api/v1/session",
                              {"email": email, "password": password})["token"]
        return self

    def logout(self):
        if self.token:
            try:
                self.req("DELETE", "/api/v1/session")
            except ApiError:
                pass
            self.token = None
