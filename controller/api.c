#include "controller/api.h"

#include "common/c2d_time.h"
#include "controller/password.h"
#include "controller/perm.h"
#include "controller/throttle.h"
#include "controller/token.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* An email is at most 254 bytes (RFC 5321 path limit). */
#define EMAIL_MAX 254
/* Role names and preference values: short labels. */
#define NAME_MAX_LEN 64
/* List pages: default and largest page a client may ask for. */
#define PAGE_DEFAULT 50
#define PAGE_MAX 200
/* A session's last use is written back at most this often, so that reads
 * do not each cost a durable commit; the idle expiry is this coarse. */
#define TOUCH_US (60 * INT64_C(1000000))
/* Audit actor text: "user:" and a 64-bit id. */
#define ACTOR_MAX 32
/* Role unique-key value: tenant id, ':' and the name. */
#define ROLE_KEY_MAX (24 + NAME_MAX_LEN)

struct ctl_api {
    ctl_dir *dir;
    ctl_rng *rng;
    ctl_throttle *thr;
    int64_t idle_us, max_us;
    unsigned pw_iter;
    /* Verified against when the email is unknown, so that the answer takes
     * as long as for a wrong password. */
    char dummy_hash[CTL_PW_ENCODED_MAX];
};

/* --- Small helpers --- */

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

int ctl_api_email_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 3 || n > EMAIL_MAX)
        return 0;
    const char *at = strchr(s, '@');
    if (!at || at == s || at[1] == '\0' || strchr(at + 1, '@'))
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == 0x7f)
            return 0;
    return 1;
}

/* A name from a request, safe to quote in an error message. */
static void safe_name(const char *in, char *out, size_t len)
{
    size_t i = 0;
    for (; in && in[i] && i + 1 < len && i < NAME_MAX_LEN; i++) {
        unsigned char c = (unsigned char)in[i];
        out[i] = (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') ? '?' : (char)c;
    }
    out[i] = '\0';
}

static void iso_time(int64_t us, char *buf, size_t len)
{
    time_t s = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Parses a decimal object id (1..2^53, what JSON carries exactly). */
static int parse_id(const char *s, uint64_t *out)
{
    if (!s || !*s || strlen(s) > 16)
        return -EINVAL;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v == 0 || v > (UINT64_C(1) << 53))
        return -EINVAL;
    *out = v;
    return 0;
}

static int role_key(uint64_t tenant, const char *name, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%" PRIu64 ":%s", tenant, name);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int64_t jint(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

/* Answers a directory error the client caused; other errors are returned
 * (500). */
static int dir_error(ctl_http_resp *resp, int rc)
{
    switch (rc) {
    case -ENOENT:
        return ctl_http_resp_error(resp, 404, "not_found", "no such object");
    case -EEXIST:
        return ctl_http_resp_error(resp, 409, "conflict", "already exists");
    case -EFBIG:
        return ctl_http_resp_error(resp, 413, "payload_too_large", "object too large");
    default:
        return rc;
    }
}

/* --- Request validation: one table per body --- */

typedef enum { V_STRING, V_ARRAY } vtype;

typedef struct {
    const char *name;
    vtype type;
    bool required;
    size_t max; /* strings: most bytes */
} vfield;

/* Checks body against the table: 0 if it fits, 1 with a 422 answered
 * naming the field (unknown, wrong type, missing, too long), or a negative
 * errno. NULL (no body) is the empty object. */
static int validate(ctl_http_resp *resp, const cJSON *body, const vfield *f, size_t n)
{
    char name[NAME_MAX_LEN + 1];
    if (body) {
        for (const cJSON *it = body->child; it; it = it->next) {
            size_t i = 0;
            while (i < n && strcmp(f[i].name, it->string) != 0)
                i++;
            if (i == n) {
                safe_name(it->string, name, sizeof(name));
                int rc =
                    ctl_http_resp_error(resp, 422, "unknown_field", "unknown field \"%s\"", name);
                return rc ? rc : 1;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        const cJSON *v = body ? cJSON_GetObjectItemCaseSensitive(body, f[i].name) : NULL;
        int rc = 0;
        if (!v) {
            if (!f[i].required)
                continue;
            rc = ctl_http_resp_error(resp, 422, "missing_field", "field \"%s\" is required",
                                     f[i].name);
        } else if (f[i].type == V_STRING && !cJSON_IsString(v)) {
            rc = ctl_http_resp_error(resp, 422, "invalid_field", "field \"%s\" must be a string",
                                     f[i].name);
        } else if (f[i].type == V_ARRAY && !cJSON_IsArray(v)) {
            rc = ctl_http_resp_error(resp, 422, "invalid_field", "field \"%s\" must be an array",
                                     f[i].name);
        } else if (f[i].type == V_STRING && strlen(v->valuestring) > f[i].max) {
            rc = ctl_http_resp_error(resp, 422, "invalid_field",
                                     "field \"%s\" is longer than %zu bytes", f[i].name, f[i].max);
        } else {
            continue;
        }
        return rc ? rc : 1;
    }
    return 0;
}

#define VALIDATE(resp, body, table) validate(resp, body, table, sizeof(table) / sizeof(table[0]))

/* --- Roles --- */

typedef struct {
    ctl_role role;
    bool builtin;
    uint64_t id; /* custom roles */
} role_info;

/* Resolves a role name in tenant: 0, or -ENOENT. */
static int role_resolve(ctl_dir_txn *t, uint64_t tenant, const char *name, role_info *out)
{
    memset(out, 0, sizeof(*out));
    if (!name)
        return -ENOENT;
    if (ctl_role_builtin_find(name, &out->role) == CTL_PERM_OK) {
        out->builtin = true;
        return 0;
    }
    char key[ROLE_KEY_MAX];
    int kind, rc;
    uint64_t id;
    if (role_key(tenant, name, key, sizeof(key)) != 0)
        return -ENOENT;
    if ((rc = ctl_dir_lookup(t, "role", key, &kind, &id)) != 0)
        return rc;
    ctl_dir_obj o = {0};
    if ((rc = ctl_dir_get_in_tenant(t, tenant, CTL_KIND_ROLE, id, &o)) != 0)
        return rc;
    cJSON *j = cJSON_Parse(o.json);
    ctl_dir_obj_clear(&o);
    if (!j)
        return -EIO;
    ctl_perm_set s = {0};
    ctl_perm_set_from_json(cJSON_GetObjectItemCaseSensitive(j, "permissions"), &s, NULL, 0);
    cJSON_Delete(j);
    out->role.name = NULL; /* the caller has the name */
    out->role.perms = s;
    out->role.can_login = true;
    out->role.map_only = false;
    out->id = id;
    return 0;
}

/* --- Authentication --- */

typedef struct {
    uint64_t user, tenant, session;
    char actor[ACTOR_MAX];
    role_info role;
    cJSON *user_json; /* the stored user, owned */
} caller;

static void caller_clear(caller *c)
{
    cJSON_Delete(c->user_json);
    c->user_json = NULL;
}

/* What an endpoint needs besides a valid session. */
#define NEED_SESSION (-2) /* nothing: log out */
#define NEED_ACCOUNT (-1) /* the caller's own account: refused to map-only roles */

static int unauthorized(ctl_http_resp *resp, const char *code, const char *msg)
{
    int rc = ctl_http_resp_header(resp, "WWW-Authenticate", "Bearer");
    if (rc == 0)
        rc = ctl_http_resp_error(resp, 401, code, "%s", msg);
    return rc ? rc : 1;
}

/* Begins the request's write transaction and authenticates: bearer token ->
 * session (expiry checked, last use refreshed) -> user -> role, then checks
 * need (a ctl_perm, NEED_ACCOUNT or NEED_SESSION). 0 with *tp open and c
 * filled (caller_clear it); 1 when a response was answered (no transaction
 * left open); or a negative errno. */
static int begin_auth(ctl_api *a, ctl_http_req *req, ctl_http_resp *resp, int need,
                      ctl_dir_txn **tp, caller *c)
{
    memset(c, 0, sizeof(*c));
    char hash[CTL_TOKEN_HASH_SIZE];
    const char *bearer = ctl_http_req_bearer(req);
    if (!bearer)
        return unauthorized(resp, "unauthenticated", "a bearer token is required");
    if (ctl_token_hash(bearer, hash) != 0)
        return unauthorized(resp, "invalid_token", "the token is not valid");
    ctl_dir_txn *t;
    int rc = ctl_dir_begin(a->dir, 1, &t);
    if (rc != 0)
        return rc;
    int kind;
    uint64_t sid;
    ctl_dir_obj s = {0};
    cJSON *sj = NULL;
    rc = ctl_dir_lookup(t, "token", hash, &kind, &sid);
    if (rc == 0 && kind != CTL_KIND_SESSION)
        rc = -ENOENT;
    if (rc == 0)
        rc = ctl_dir_get(t, CTL_KIND_SESSION, sid, &s);
    if (rc == -ENOENT) {
        ctl_dir_abort(t);
        return unauthorized(resp, "invalid_token", "the token is not valid");
    }
    if (rc != 0)
        goto fail;
    if (!(sj = cJSON_Parse(s.json))) {
        rc = -EIO;
        goto fail;
    }
    int64_t now = ctl_dir_txn_now(t);
    int64_t last = jint(sj, "last_us");
    if (now >= jint(sj, "expires_us") || now >= last + a->idle_us) {
        rc = ctl_dir_del(t, NULL, CTL_KIND_SESSION, sid);
        if (rc != 0 || (rc = ctl_dir_commit(t)) != 0) {
            t = NULL;
            goto fail;
        }
        t = NULL;
        cJSON_Delete(sj);
        ctl_dir_obj_clear(&s);
        return unauthorized(resp, "session_expired", "the session has expired");
    }
    c->session = sid;
    c->tenant = s.tenant;
    c->user = (uint64_t)jint(sj, "user");
    ctl_dir_obj u = {0};
    rc = ctl_dir_get_in_tenant(t, c->tenant, CTL_KIND_USER, c->user, &u);
    if (rc == -ENOENT) {
        ctl_dir_abort(t);
        cJSON_Delete(sj);
        ctl_dir_obj_clear(&s);
        return unauthorized(resp, "invalid_token", "the token is not valid");
    }
    if (rc != 0)
        goto fail;
    c->user_json = cJSON_Parse(u.json);
    ctl_dir_obj_clear(&u);
    if (!c->user_json) {
        rc = -EIO;
        goto fail;
    }
    rc = role_resolve(t, c->tenant, jstr(c->user_json, "role"), &c->role);
    if (rc == -ENOENT) /* cannot happen (a role in use is not deleted): no rights */
        memset(&c->role, 0, sizeof(c->role)), c->role.role.can_login = true, rc = 0;
    if (rc != 0)
        goto fail;
    snprintf(c->actor, sizeof(c->actor), "user:%" PRIu64, c->user);
    if (now - last >= TOUCH_US) {
        cJSON_ReplaceItemInObjectCaseSensitive(sj, "last_us", cJSON_CreateNumber((double)now));
        char *txt = cJSON_PrintUnformatted(sj);
        if (!txt) {
            rc = -ENOMEM;
            goto fail;
        }
        free(s.json);
        s.json = txt;
        if ((rc = ctl_dir_put(t, NULL, &s, NULL, 0)) != 0)
            goto fail;
    }
    cJSON_Delete(sj);
    ctl_dir_obj_clear(&s);
    bool ok = true;
    if (!c->role.role.can_login)
        ok = false;
    else if (need == NEED_ACCOUNT)
        ok = !c->role.role.map_only;
    else if (need >= 0)
        ok = ctl_perm_set_has(&c->role.role.perms, (ctl_perm)need);
    if (!ok) {
        /* Commit the refreshed session: the caller is known, only refused. */
        if ((rc = ctl_dir_commit(t)) != 0) {
            t = NULL;
            goto fail;
        }
        caller_clear(c);
        if (need >= 0)
            rc = ctl_http_resp_error(resp, 403, "forbidden", "this needs the permission %s",
                                     ctl_perm_name((ctl_perm)need));
        else
            rc = ctl_http_resp_error(resp, 403, "forbidden", "this role cannot use this endpoint");
        return rc ? rc : 1;
    }
    *tp = t;
    return 0;
fail:
    ctl_dir_abort(t);
    cJSON_Delete(sj);
    ctl_dir_obj_clear(&s);
    caller_clear(c);
    return rc;
}

/* Ends a handler's transaction: commits if rc is 0, else aborts; returns
 * the handler's result (a directory error the client caused is answered). */
static int finish(ctl_dir_txn *t, ctl_http_resp *resp, caller *c, int rc)
{
    caller_clear(c);
    if (rc == 0)
        return ctl_dir_commit(t);
    ctl_dir_abort(t);
    if (rc > 0)
        return 0; /* answered */
    return dir_error(resp, rc);
}

/* --- Output --- */

/* The public form of a stored user: no '_' fields, with id and times. */
static cJSON *user_out(uint64_t id, const char *json, int64_t created_us, int64_t updated_us)
{
    cJSON *j = cJSON_Parse(json);
    if (!j)
        return NULL;
    cJSON *it = j->child;
    while (it) {
        cJSON *next = it->next;
        if (it->string && it->string[0] == '_')
            cJSON_Delete(cJSON_DetachItemViaPointer(j, it));
        it = next;
    }
    char ts[32];
    cJSON_AddNumberToObject(j, "id", (double)id);
    iso_time(created_us, ts, sizeof(ts));
    cJSON_AddStringToObject(j, "created_at", ts);
    iso_time(updated_us, ts, sizeof(ts));
    cJSON_AddStringToObject(j, "updated_at", ts);
    return j;
}

static cJSON *user_out_obj(const ctl_dir_obj *o)
{
    return user_out(o->id, o->json, o->created_us, o->updated_us);
}

static int answer(ctl_http_resp *resp, unsigned status, cJSON *body)
{
    if (!body)
        return -ENOMEM;
    return ctl_http_resp_json(resp, status, body);
}

/* --- Sessions --- */

static const vfield login_fields[] = {
    {"email", V_STRING, true, EMAIL_MAX},
    {"password", V_STRING, true, CTL_PW_MAX_LEN},
};

static int too_many(ctl_http_resp *resp, int64_t retry_us)
{
    char v[24];
    snprintf(v, sizeof(v), "%" PRId64, (retry_us + 999999) / 1000000);
    int rc = ctl_http_resp_header(resp, "Retry-After", v);
    if (rc == 0)
        rc = ctl_http_resp_error(resp, 429, "too_many_requests",
                                 "too many failed log-ins: try again in %s s", v);
    return rc;
}

static int h_login(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    ctl_api *a = ud;
    const cJSON *body = ctl_http_req_json(req);
    int rc = VALIDATE(resp, body, login_fields);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    char email[EMAIL_MAX + 1], addr[80];
    snprintf(email, sizeof(email), "%s", jstr(body, "email"));
    lower(email);
    const char *pw = jstr(body, "password");
    if (ctl_http_req_remote(req, addr, sizeof(addr)) != 0)
        snprintf(addr, sizeof(addr), "unknown");
    int64_t retry = 0;
    if (ctl_throttle_login_check(a->thr, email, addr, c2d_mono_us(), &retry) == -EAGAIN)
        return too_many(resp, retry);

    /* Look the user up, then verify outside any transaction. */
    ctl_dir_txn *t;
    if ((rc = ctl_dir_begin(a->dir, 0, &t)) != 0)
        return rc;
    char hash[CTL_PW_ENCODED_MAX];
    snprintf(hash, sizeof(hash), "%s", a->dummy_hash);
    bool known = false;
    uint64_t uid = 0;
    int kind;
    if (ctl_dir_lookup(t, "email", email, &kind, &uid) == 0 && kind == CTL_KIND_USER) {
        ctl_dir_obj u = {0};
        if (ctl_dir_get(t, CTL_KIND_USER, uid, &u) == 0) {
            cJSON *j = cJSON_Parse(u.json);
            const char *h = jstr(j, "_pwhash");
            if (h && strlen(h) < sizeof(hash)) {
                snprintf(hash, sizeof(hash), "%s", h);
                known = true;
            }
            cJSON_Delete(j);
            ctl_dir_obj_clear(&u);
        }
    }
    ctl_dir_abort(t);
    bool ok = ctl_pw_verify(pw, strlen(pw), hash) == CTL_PW_OK && known;
    ctl_throttle_login_result(a->thr, email, addr, ok, c2d_mono_us(), NULL);
    if (!ok)
        return unauthorized(resp, "bad_credentials", "wrong email or password") > 0 ? 0 : -ENOMEM;

    /* Create the session in one write transaction. */
    char token[CTL_TOKEN_SIZE], thash[CTL_TOKEN_HASH_SIZE];
    if ((rc = ctl_token_new(a->rng, token, thash)) != 0)
        return rc;
    if ((rc = ctl_dir_begin(a->dir, 1, &t)) != 0)
        return rc;
    ctl_dir_obj u = {0};
    cJSON *uj = NULL, *sj = NULL, *out = NULL;
    role_info role;
    if ((rc = ctl_dir_get(t, CTL_KIND_USER, uid, &u)) != 0)
        goto fail;
    if (!(uj = cJSON_Parse(u.json))) {
        rc = -EIO;
        goto fail;
    }
    if ((rc = role_resolve(t, u.tenant, jstr(uj, "role"), &role)) == 0 && !role.role.can_login) {
        ctl_dir_abort(t);
        t = NULL;
        rc = ctl_http_resp_error(resp, 403, "login_disabled", "this user's role cannot log in");
        goto out;
    }
    int64_t now = ctl_dir_txn_now(t), expires = now + a->max_us;
    sj = cJSON_CreateObject();
    if (!sj || !cJSON_AddNumberToObject(sj, "user", (double)uid) ||
        !cJSON_AddNumberToObject(sj, "expires_us", (double)expires) ||
        !cJSON_AddNumberToObject(sj, "last_us", (double)now)) {
        rc = -ENOMEM;
        goto fail;
    }
    ctl_dir_obj s = {.kind = CTL_KIND_SESSION, .tenant = u.tenant, .parent = uid};
    if (!(s.json = cJSON_PrintUnformatted(sj))) {
        rc = -ENOMEM;
        goto fail;
    }
    ctl_dir_ukey key = {"token", thash};
    rc = ctl_dir_put(t, NULL, &s, &key, 1);
    free(s.json);
    if (rc != 0)
        goto fail;
    rc = ctl_dir_commit(t);
    t = NULL;
    if (rc != 0)
        goto fail;
    char ts[32];
    iso_time(expires, ts, sizeof(ts));
    out = cJSON_CreateObject();
    cJSON *uo = user_out_obj(&u);
    if (!out || !uo || !cJSON_AddStringToObject(out, "token", token) ||
        !cJSON_AddStringToObject(out, "expires_at", ts)) {
        cJSON_Delete(uo);
        rc = -ENOMEM;
        goto fail;
    }
    cJSON_AddItemToObject(out, "user", uo);
    rc = ctl_http_resp_json(resp, 201, out);
    out = NULL;
    goto out;
fail:
    ctl_dir_abort(t);
out:
    cJSON_Delete(out);
    cJSON_Delete(sj);
    cJSON_Delete(uj);
    ctl_dir_obj_clear(&u);
    return rc;
}

static int h_logout(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    ctl_api *a = ud;
    ctl_dir_txn *t;
    caller c;
    int rc = begin_auth(a, req, resp, NEED_SESSION, &t, &c);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    rc = ctl_dir_del(t, NULL, CTL_KIND_SESSION, c.session);
    if (rc == 0)
        rc = ctl_http_resp_empty(resp, 204);
    return finish(t, resp, &c, rc);
}

/* Collects ids from a list walk. */
typedef struct {
    uint64_t ids[100];
    size_t n;
} id_page;

static int collect_id(void *ud, const ctl_dir_obj *o)
{
    id_page *p = ud;
    p->ids[p->n++] = o->id;
    return 0;
}

/* Deletes every session of user except keep (0: all). */
static int end_sessions(ctl_dir_txn *t, uint64_t user, uint64_t keep)
{
    uint64_t after = 0;
    for (;;) {
        id_page p = {.n = 0};
        int rc = ctl_dir_list_children(t, user, CTL_KIND_SESSION, after, 100, collect_id, &p, NULL);
        if (rc != 0)
            return rc;
        if (p.n == 0)
            return 0;
        for (size_t i = 0; i < p.n; i++)
            if (p.ids[i] != keep && (rc = ctl_dir_del(t, NULL, CTL_KIND_SESSION, p.ids[i])) != 0)
                return rc;
        after = p.ids[p.n - 1];
    }
}

/* Replaces o's JSON with j (printed) and stores it with actor. */
static int put_json(ctl_dir_txn *t, const char *actor, ctl_dir_obj *o, const cJSON *j,
                    const ctl_dir_ukey *keys, size_t n)
{
    char *txt = cJSON_PrintUnformatted(j);
    if (!txt)
        return -ENOMEM;
    char *old = o->json;
    o->json = txt;
    int rc = ctl_dir_put(t, actor, o, keys, n);
    o->json = old;
    free(txt);
    return rc;
}

/* --- The caller's account --- */

static int h_me(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    ctl_api *a = ud;
    ctl_dir_txn *t;
    caller c;
    int rc = begin_auth(a, req, resp, NEED_ACCOUNT, &t, &c);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    ctl_dir_obj u = {0};
    if ((rc = ctl_dir_get(t, CTL_KIND_USER, c.user, &u)) == 0) {
        cJSON *out = cJSON_CreateObject(), *role = cJSON_CreateObject();
        cJSON *uo = user_out_obj(&u);
        cJSON *perms = ctl_perm_set_to_json(&c.role.role.perms);
        if (!out || !role || !uo || !perms) {
            cJSON_Delete(out), cJSON_Delete(role), cJSON_Delete(uo), cJSON_Delete(perms);
            rc = -ENOMEM;
        } else {
            cJSON_AddStringToObject(role, "name", jstr(c.user_json, "role"));
            cJSON_AddBoolToObject(role, "builtin", c.role.builtin);
            cJSON_AddBoolToObject(role, "can_login", c.role.role.can_login);
            cJSON_AddBoolToObject(role, "map_only", c.role.role.map_only);
            cJSON_AddItemToObject(out, "user", uo);
            cJSON_AddItemToObject(out, "role", role);
            cJSON_AddItemToObject(out, "permissions", perms);
            rc = ctl_http_resp_json(resp, 200, out);
        }
        ctl_dir_obj_clear(&u);
    }
    return finish(t, resp, &c, rc);
}

static const vfield password_fields[] = {
    {"old_password", V_STRING, true, CTL_PW_MAX_LEN},
    {"new_password", V_STRING, true, CTL_PW_MAX_LEN},
};

static int h_password(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    ctl_api *a = ud;
    const cJSON *body = ctl_http_req_json(req);
    int rc = VALIDATE(resp, body, password_fields);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    const char *oldpw = jstr(body, "old_password"), *newpw = jstr(body, "new_password");
    ctl_dir_txn *t;
    caller c;
    if ((rc = begin_auth(a, req, resp, NEED_ACCOUNT, &t, &c)) != 0)
        return rc > 0 ? 0 : rc;
    char old_hash[CTL_PW_ENCODED_MAX] = "", email[EMAIL_MAX + 1] = "", addr[80];
    const char *h = jstr(c.user_json, "_pwhash");
    if (h)
        snprintf(old_hash, sizeof(old_hash), "%s", h);
    snprintf(email, sizeof(email), "%s",
             jstr(c.user_json, "email") ? jstr(c.user_json, "email") : "");
    uint64_t session = c.session;
    if ((rc = finish(t, resp, &c, 0)) != 0)
        return rc;
    /* Hashing and verifying run outside the transaction; the old password
     * is guessed through the same throttle as log-ins. */
    if (ctl_http_req_remote(req, addr, sizeof(addr)) != 0)
        snprintf(addr, sizeof(addr), "unknown");
    int64_t retry = 0;
    if (ctl_throttle_login_check(a->thr, email, addr, c2d_mono_us(), &retry) == -EAGAIN)
        return too_many(resp, retry);
    bool ok = old_hash[0] && ctl_pw_verify(oldpw, strlen(oldpw), old_hash) == CTL_PW_OK;
    ctl_throttle_login_result(a->thr, email, addr, ok, c2d_mono_us(), NULL);
    if (!ok)
        return ctl_http_resp_error(resp, 403, "wrong_password", "the old password is wrong");
    char new_hash[CTL_PW_ENCODED_MAX];
    ctl_pw_err pe =
        ctl_pw_hash(a->rng, newpw, strlen(newpw), a->pw_iter, new_hash, sizeof(new_hash));
    if (pe == CTL_PW_TOO_SHORT || pe == CTL_PW_TOO_LONG)
        return ctl_http_resp_error(resp, 422, "invalid_field", "field \"new_password\": %s",
                                   ctl_pw_strerror(pe));
    if (pe != CTL_PW_OK)
        return -EIO;
    /* Again under the session: it may have ended meanwhile. */
    if ((rc = begin_auth(a, req, resp, NEED_ACCOUNT, &t, &c)) != 0)
        return rc > 0 ? 0 : rc;
    ctl_dir_obj u = {0};
    if ((rc = ctl_dir_get(t, CTL_KIND_USER, c.user, &u)) == 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(c.user_json, "_pwhash");
        if (!cJSON_AddStringToObject(c.user_json, "_pwhash", new_hash))
            rc = -ENOMEM;
        if (rc == 0)
            rc = put_json(t, c.actor, &u, c.user_json, NULL, 0);
        if (rc == 0)
            rc = end_sessions(t, c.user, session);
        if (rc == 0)
            rc = ctl_http_resp_empty(resp, 204);
        ctl_dir_obj_clear(&u);
    }
    return finish(t, resp, &c, rc);
}

static const vfield pref_fields[] = {
    {"theme", V_STRING, false, NAME_MAX_LEN},
    {"language", V_STRING, false, NAME_MAX_LEN},
    {"date_format", V_STRING, false, NAME_MAX_LEN},
    {"time_zone", V_STRING, false, NAME_MAX_LEN},
};
static const char *const pref_defaults[] = {"light", "en", "YYYY-MM-DD", "UTC"};

/* The user's preferences with defaults filled in; a new object. */
static cJSON *prefs_of(const cJSON *user)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(user, "preferences");
    cJSON *out = cJSON_CreateObject();
    for (size_t i = 0; out && i < sizeof(pref_fields) / sizeof(pref_fields[0]); i++) {
        const char *v = jstr(p, pref_fields[i].name);
        if (!cJSON_AddStringToObject(out, pref_fields[i].name, v ? v : pref_defaults[i])) {
            cJSON_Delete(out);
            return NULL;
        }
    }
    return out;
}

static int h_prefs_get(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    ctl_api *a = ud;
    ctl_dir_txn *t;
    caller c;
    int rc = begin_auth(a, req, resp, NEED_ACCOUNT, &t, &c);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    rc = answer(resp, 200, prefs_of(c.user_json));
    return finish(t, resp, &c, rc);
}

static int h_prefs_put(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    ctl_api *a = ud;
    const cJSON *body = ctl_http_req_json(req);
    int rc = VALIDATE(resp, body, pref_fields);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    ctl_dir_txn *t;
    caller c;
    if ((rc = begin_auth(a, req, resp, NEED_ACCOUNT, &t, &c)) != 0)
        return rc > 0 ? 0 : rc;
    cJSON *p = prefs_of(c.user_json);
    for (size_t i = 0; p && i < sizeof(pref_fields) / sizeof(pref_fields[0]); i++) {
        const char *v = jstr(body, pref_fields[i].name);
        if (v &&
            !cJSON_ReplaceItemInObjectCaseSensitive(p, pref_fields[i].name, cJSON_CreateString(v)))
            rc = -ENOMEM;
    }
    cJSON *copy = p ? cJSON_Duplicate(p, 1) : NULL;
    if (!p || !copy)
        rc = -ENOMEM;
    ctl_dir_obj u = {0};
    if (rc == 0 && (rc = ctl_dir_get(t, CTL_KIND_USER, c.user, &u)) == 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(c.user_json, "preferences");
        cJSON_AddItemToObject(c.user_json, "preferences", copy);
        copy = NULL;
        rc = put_json(t, c.actor, &u, c.user_json, NULL, 0);
        ctl_dir_obj_clear(&u);
    }
    cJSON_Delete(copy);
    if (rc == 0) {
        rc = ctl_http_resp_json(resp, 200, p);
        p = NULL;
    }
    cJSON_Delete(p);
    return finish(t, resp, &c, rc);
}

/* --- Users of a space --- */

/* Reads ?after= and ?limit=: 0, or 1 with a 422 answered. */
static int page_args(ctl_http_req *req, ctl_http_resp *resp, uint64_t *after, size_t *limit)
{
    const char *s = ctl_http_req_query(req, "after");
    *after = 0;
    *limit = PAGE_DEFAULT;
    if (s && parse_id(s, after) != 0) {
        int rc = ctl_http_resp_error(resp, 422, "invalid_field", "query \"after\" must be an id");
        return rc ? rc : 1;
    }
    s = ctl_http_req_query(req, "limit");
    if (s) {
        uint64_t v;
        if (parse_id(s, &v) != 0 || v > PAGE_MAX) {
            int rc = ctl_http_resp_error(resp, 422, "invalid_field",
                                         "query \"limit\" must be 1..%d", PAGE_MAX);
            return rc ? rc : 1;
        }
        *limit = (size_t)v;
    }
    return 0;
}

typedef struct {
    const char *role; /* filter, or NULL */
    cJSON *items;
    size_t want, got;
    uint64_t last_seen;
    int err;
} user_walk;

static int user_walk_cb(void *ud, const ctl_dir_obj *o)
{
    user_walk *w = ud;
    w->last_seen = o->id;
    if (w->role) {
        cJSON *j = cJSON_Parse(o->json);
        const char *r = jstr(j, "role");
        bool match = r && strcmp(r, w->role) == 0;
        cJSON_Delete(j);
        if (!match)
            return 0;
    }
    cJSON *u = user_out_obj(o);
    if (!u) {
        w->err = -ENOMEM;
        return 1;
    }
    cJSON_AddItemToArray(w->items, u);
    if (++w->got == w->want)
        return 1; /* page full */
    return 0;
}

static int h_users_list(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    ctl_api *a = ud;
    uint64_t after;
    size_t limit;
    int rc = page_args(req, resp, &after, &limit);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    ctl_dir_txn *t;
    caller c;
    if ((rc = begin_auth(a, req, resp, CTL_PERM_USER_GET, &t, &c)) != 0)
        return rc > 0 ? 0 : rc;
    user_walk w = {
        .role = ctl_http_req_query(req, "role"), .items = cJSON_CreateArray(), .want = limit};
    bool more = false;
    if (!w.items)
        rc = -ENOMEM;
    while (rc == 0) {
        size_t n = 0;
        uint64_t from = w.last_seen ? w.last_seen : after;
        rc = ctl_dir_list_tenant(t, c.tenant, CTL_KIND_USER, from, 100, user_walk_cb, &w, &n);
        if (rc == 1) { /* stopped: page full or error */
            rc = w.err;
            more = rc == 0;
            break;
        }
        if (rc != 0 || n < 100)
            break;
    }
    if (rc == 0) {
        cJSON *out = cJSON_CreateObject();
        if (!out) {
            rc = -ENOMEM;
        } else {
            cJSON_AddItemToObject(out, "items", w.items);
            w.items = NULL;
            if (more)
                cJSON_AddNumberToObject(out, "next_after", (double)w.last_seen);
            else
                cJSON_AddNullToObject(out, "next_after");
            rc = ctl_http_resp_json(resp, 200, out);
        }
    }
    cJSON_Delete(w.items);
    return finish(t, resp, &c, rc);
}

/* Checks a role name from a body exists in the tenant: 0, or 1 with 422. */
static int check_role(ctl_dir_txn *t, ctl_http_resp *resp, uint64_t tenant, const char *name)
{
    role_info ri;
    int rc = role_resolve(t, tenant, name, &ri);
    if (rc == -ENOENT) {
        char n[NAME_MAX_LEN + 1];
        safe_name(name, n, sizeof(n));
        rc = ctl_http_resp_error(resp, 422, "invalid_field", "field \"role\": no role \"%s\"", n);
        return rc ? rc : 1;
    }
    return rc;
}

static const vfield user_add_fields[] = {
    {"email", V_STRING, true, EMAIL_MAX},
    {"role", V_STRING, true, NAME_MAX_LEN},
    {"password", V_STRING, false, CTL_PW_MAX_LEN},
};

static int h_user_add(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    ctl_api *a = ud;
    const cJSON *body = ctl_http_req_json(req);
    int rc = VALIDATE(resp, body, user_add_fields);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    char email[EMAIL_MAX + 1];
    snprintf(email, sizeof(email), "%s", jstr(body, "email"));
    lower(email);
    if (!ctl_api_email_valid(email))
        return ctl_http_resp_error(resp, 422, "invalid_field",
                                   "field \"email\" is not an email address");
    /* Authorise before the costly hash, then hash outside the transaction. */
    ctl_dir_txn *t;
    caller c;
    if ((rc = begin_auth(a, req, resp, CTL_PERM_USER_ADD, &t, &c)) != 0)
        return rc > 0 ? 0 : rc;
    if ((rc = finish(t, resp, &c, 0)) != 0)
        return rc;
    const char *pw = jstr(body, "password");
    char hash[CTL_PW_ENCODED_MAX] = "";
    if (pw) {
        ctl_pw_err pe = ctl_pw_hash(a->rng, pw, strlen(pw), a->pw_iter, hash, sizeof(hash));
        if (pe == CTL_PW_TOO_SHORT || pe == CTL_PW_TOO_LONG)
            return ctl_http_resp_error(resp, 422, "invalid_field", "field \"password\": %s",
                                       ctl_pw_strerror(pe));
        if (pe != CTL_PW_OK)
            return -EIO;
    }
    if ((rc = begin_auth(a, req, resp, CTL_PERM_USER_ADD, &t, &c)) != 0)
        return rc > 0 ? 0 : rc;
    cJSON *j = NULL;
    if ((rc = check_role(t, resp, c.tenant, jstr(body, "role"))) != 0)
        goto done;
    j = cJSON_CreateObject();
    if (!j || !cJSON_AddStringToObject(j, "email", email) ||
        !cJSON_AddStringToObject(j, "role", jstr(body, "role")) ||
        (hash[0] && !cJSON_AddStringToObject(j, "_pwhash", hash))) {
        rc = -ENOMEM;
        goto done;
    }
    ctl_dir_obj u = {.kind = CTL_KIND_USER, .tenant = c.tenant};
    ctl_dir_ukey key = {"email", email};
    rc = put_json(t, c.actor, &u, j, &key, 1);
    if (rc == -EEXIST) {
        rc = ctl_http_resp_error(resp, 409, "email_taken", "a user with this email exists");
        rc = rc ? rc : 1;
        goto done;
    }
    if (rc == 0) {
        char *txt = cJSON_PrintUnformatted(j);
        int64_t now = ctl_dir_txn_now(t);
        rc = txt ? answer(resp, 201, user_out(u.id, txt, now, now)) : -ENOMEM;
        free(txt);
    }
done:
    cJSON_Delete(j);
    return finish(t, resp, &c, rc);
}

/* Begins an authorised request on the user {id} of the caller's tenant. */
static int begin_user(ctl_api *a, ctl_http_req *req, ctl_http_resp *resp, int need, ctl_dir_txn **t,
                      caller *c, ctl_dir_obj *u)
{
    int rc = begin_auth(a, req, resp, need, t, c);
    if (rc != 0)
        return rc;
    uint64_t id;
    memset(u, 0, sizeof(*u));
    if (parse_id(ctl_http_req_param(req, "id"), &id) != 0)
        rc = -ENOENT;
    else
        rc = ctl_dir_get_in_tenant(*t, c->tenant, CTL_KIND_USER, id, u);
    if (rc != 0) {
        rc = finish(*t, resp, c, rc);
        return rc ? rc : 1;
    }
    return 0;
}

static int h_user_get(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    ctl_dir_txn *t;
    caller c;
    ctl_dir_obj u;
    int rc = begin_user(ud, req, resp, CTL_PERM_USER_GET, &t, &c, &u);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    rc = answer(resp, 200, user_out_obj(&u));
    ctl_dir_obj_clear(&u);
    return finish(t, resp, &c, rc);
}

static const vfield user_mod_fields[] = {
    {"role", V_STRING, true, NAME_MAX_LEN},
};

static int h_user_put(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    const cJSON *body = ctl_http_req_json(req);
    int rc = VALIDATE(resp, body, user_mod_fields);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    ctl_dir_txn *t;
    caller c;
    ctl_dir_obj u;
    if ((rc = begin_user(ud, req, resp, CTL_PERM_USER_MODIFY, &t, &c, &u)) != 0)
        return rc > 0 ? 0 : rc;
    cJSON *j = cJSON_Parse(u.json);
    if (!j)
        rc = -EIO;
    if (rc == 0)
        rc = check_role(t, resp, c.tenant, jstr(body, "role"));
    if (rc == 0 &&
        !cJSON_ReplaceItemInObjectCaseSensitive(j, "role", cJSON_CreateString(jstr(body, "role"))))
        rc = -ENOMEM;
    if (rc == 0)
        rc = put_json(t, c.actor, &u, j, NULL, 0);
    if (rc == 0) {
        char *txt = cJSON_PrintUnformatted(j);
        rc = txt ? answer(resp, 200, user_out(u.id, txt, u.created_us, ctl_dir_txn_now(t)))
                 : -ENOMEM;
        free(txt);
    }
    cJSON_Delete(j);
    ctl_dir_obj_clear(&u);
    return finish(t, resp, &c, rc);
}

static int h_user_del(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    ctl_dir_txn *t;
    caller c;
    ctl_dir_obj u;
    int rc = begin_user(ud, req, resp, CTL_PERM_USER_REMOVE, &t, &c, &u);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    if (u.id == c.user) {
        rc = ctl_http_resp_error(resp, 409, "cannot_delete_self", "a user cannot delete itself");
        rc = rc ? rc : 1;
    }
    if (rc == 0)
        rc = end_sessions(t, u.id, 0);
    if (rc == 0)
        rc = ctl_dir_del(t, c.actor, CTL_KIND_USER, u.id);
    if (rc == 0)
        rc = ctl_http_resp_empty(resp, 204);
    ctl_dir_obj_clear(&u);
    return finish(t, resp, &c, rc);
}

/* --- Roles --- */

/* Users of tenant holding role name: counted, or (rename non-NULL) moved to
 * rename with actor. */
typedef struct {
    const char *name;
    uint64_t count;
    uint64_t last; /* the last user the walk saw */
    id_page page;
} role_users;

static int role_users_cb(void *ud, const ctl_dir_obj *o)
{
    role_users *r = ud;
    r->last = o->id;
    cJSON *j = cJSON_Parse(o->json);
    const char *role = jstr(j, "role");
    if (role && strcmp(role, r->name) == 0) {
        r->count++;
        r->page.ids[r->page.n++] = o->id;
    }
    cJSON_Delete(j);
    return 0;
}

static int role_users_walk(ctl_dir_txn *t, uint64_t tenant, const char *name, const char *rename,
                           const char *actor, uint64_t *count)
{
    role_users r = {.name = name};
    uint64_t after = 0;
    for (;;) {
        size_t n = 0;
        r.page.n = 0;
        /* At most 100 per walk, so the page of ids cannot overflow. */
        int rc = ctl_dir_list_tenant(t, tenant, CTL_KIND_USER, after, 100, role_users_cb, &r, &n);
        if (rc != 0)
            return rc;
        for (size_t i = 0; rename && i < r.page.n; i++) {
            ctl_dir_obj u = {0};
            if ((rc = ctl_dir_get(t, CTL_KIND_USER, r.page.ids[i], &u)) != 0)
                return rc;
            cJSON *j = cJSON_Parse(u.json);
            if (!j ||
                !cJSON_ReplaceItemInObjectCaseSensitive(j, "role", cJSON_CreateString(rename)))
                rc = -ENOMEM;
            if (rc == 0)
                rc = put_json(t, actor, &u, j, NULL, 0);
            cJSON_Delete(j);
            ctl_dir_obj_clear(&u);
            if (rc != 0)
                return rc;
        }
        if (n < 100)
            break;
        after = r.last;
    }
    if (count)
        *count = r.count;
    return 0;
}

static cJSON *role_out(const char *id_str, uint64_t id, const char *name, const ctl_role *r,
                       bool builtin)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *p = ctl_perm_set_to_json(&r->perms);
    if (!o || !p) {
        cJSON_Delete(o);
        cJSON_Delete(p);
        return NULL;
    }
    if (id_str)
        cJSON_AddStringToObject(o, "id", id_str);
    else
        cJSON_AddNumberToObject(o, "id", (double)id);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddBoolToObject(o, "builtin", builtin);
    cJSON_AddBoolToObject(o, "can_login", r->can_login);
    cJSON_AddBoolToObject(o, "map_only", r->map_only);
    cJSON_AddItemToObject(o, "permissions", p);
    return o;
}

typedef struct {
    cJSON *items;
    int err;
} role_walk;

static int role_walk_cb(void *ud, const ctl_dir_obj *o)
{
    role_walk *w = ud;
    cJSON *j = cJSON_Parse(o->json);
    ctl_role r = {.can_login = true};
    ctl_perm_set_from_json(cJSON_GetObjectItemCaseSensitive(j, "permissions"), &r.perms, NULL, 0);
    const char *name = jstr(j, "name");
    cJSON *item = role_out(NULL, o->id, name ? name : "", &r, false);
    cJSON_Delete(j);
    if (!item) {
        w->err = -ENOMEM;
        return 1;
    }
    cJSON_AddItemToArray(w->items, item);
    return 0;
}

static int h_roles_list(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    ctl_api *a = ud;
    ctl_dir_txn *t;
    caller c;
    int rc = begin_auth(a, req, resp, CTL_PERM_ROLE_GET, &t, &c);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    role_walk w = {.items = cJSON_CreateArray()};
    if (!w.items)
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < ctl_role_builtin_count(); i++) {
        ctl_role r;
        ctl_role_builtin_at(i, &r);
        cJSON *item = role_out(r.name, 0, r.name, &r, true);
        if (!item)
            rc = -ENOMEM;
        else
            cJSON_AddItemToArray(w.items, item);
    }
    /* Custom roles: a space holds few; CTL_DIR_LIST_MAX bounds the page. */
    if (rc == 0 && (rc = ctl_dir_list_tenant(t, c.tenant, CTL_KIND_ROLE, 0, CTL_DIR_LIST_MAX,
                                             role_walk_cb, &w, NULL)) == 1)
        rc = w.err;
    if (rc == 0) {
        cJSON *out = cJSON_CreateObject();
        if (!out) {
            rc = -ENOMEM;
        } else {
            cJSON_AddItemToObject(out, "items", w.items);
            w.items = NULL;
            rc = ctl_http_resp_json(resp, 200, out);
        }
    }
    cJSON_Delete(w.items);
    return finish(t, resp, &c, rc);
}

/* Checks a role body's name and permissions: 0 with *set filled, or 1 with
 * a 409/422 answered. */
static int role_body(ctl_dir_txn *t, ctl_http_resp *resp, uint64_t tenant, const cJSON *body,
                     uint64_t self, ctl_perm_set *set)
{
    int rc = 0;
    const char *name = jstr(body, "name");
    ctl_role br;
    role_info ri;
    if (name && name[0] == '\0') {
        rc = ctl_http_resp_error(resp, 422, "invalid_field", "field \"name\" is empty");
        return rc ? rc : 1;
    }
    if (name && (ctl_role_builtin_find(name, &br) == CTL_PERM_OK ||
                 (role_resolve(t, tenant, name, &ri) == 0 && ri.id != self))) {
        rc = ctl_http_resp_error(resp, 409, "role_exists", "a role of this name exists");
        return rc ? rc : 1;
    }
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "permissions");
    char err[128];
    if (p && ctl_perm_set_from_json(p, set, err, sizeof(err)) != CTL_PERM_OK) {
        rc = ctl_http_resp_error(resp, 422, "invalid_field", "field \"permissions\": %s", err);
        return rc ? rc : 1;
    }
    return 0;
}

static const vfield role_create_fields[] = {
    {"name", V_STRING, true, NAME_MAX_LEN},
    {"permissions", V_ARRAY, true, 0},
};

static int h_role_create(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    ctl_api *a = ud;
    const cJSON *body = ctl_http_req_json(req);
    int rc = VALIDATE(resp, body, role_create_fields);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    ctl_dir_txn *t;
    caller c;
    if ((rc = begin_auth(a, req, resp, CTL_PERM_ROLE_CREATE, &t, &c)) != 0)
        return rc > 0 ? 0 : rc;
    ctl_perm_set set = {0};
    cJSON *j = NULL;
    const char *name = jstr(body, "name");
    if ((rc = role_body(t, resp, c.tenant, body, 0, &set)) != 0)
        goto done;
    j = cJSON_CreateObject();
    cJSON *p = ctl_perm_set_to_json(&set);
    if (!j || !p || !cJSON_AddStringToObject(j, "name", name)) {
        cJSON_Delete(p);
        rc = -ENOMEM;
        goto done;
    }
    cJSON_AddItemToObject(j, "permissions", p);
    char key[ROLE_KEY_MAX];
    if ((rc = role_key(c.tenant, name, key, sizeof(key))) != 0)
        goto done;
    ctl_dir_obj o = {.kind = CTL_KIND_ROLE, .tenant = c.tenant};
    ctl_dir_ukey uk = {"role", key};
    if ((rc = put_json(t, c.actor, &o, j, &uk, 1)) == 0) {
        ctl_role r = {.perms = set, .can_login = true};
        rc = answer(resp, 201, role_out(NULL, o.id, name, &r, false));
    }
done:
    cJSON_Delete(j);
    return finish(t, resp, &c, rc);
}

/* Begins an authorised request on the role {id}: built-in names answer 403
 * builtin_role, ids of other tenants 404. */
static int begin_role(ctl_api *a, ctl_http_req *req, ctl_http_resp *resp, int need, ctl_dir_txn **t,
                      caller *c, ctl_dir_obj *o, cJSON **j)
{
    int rc = begin_auth(a, req, resp, need, t, c);
    if (rc != 0)
        return rc;
    const char *ids = ctl_http_req_param(req, "id");
    ctl_role br;
    uint64_t id;
    memset(o, 0, sizeof(*o));
    *j = NULL;
    if (ctl_role_builtin_find(ids, &br) == CTL_PERM_OK) {
        rc = ctl_http_resp_error(resp, 403, "builtin_role", "built-in roles cannot be changed");
        rc = rc ? rc : 1;
    } else if (parse_id(ids, &id) != 0) {
        rc = -ENOENT;
    } else if ((rc = ctl_dir_get_in_tenant(*t, c->tenant, CTL_KIND_ROLE, id, o)) == 0 &&
               !(*j = cJSON_Parse(o->json))) {
        rc = -EIO;
    }
    if (rc != 0) {
        ctl_dir_obj_clear(o);
        rc = finish(*t, resp, c, rc);
        return rc ? rc : 1;
    }
    return 0;
}

static const vfield role_mod_fields[] = {
    {"name", V_STRING, false, NAME_MAX_LEN},
    {"permissions", V_ARRAY, false, 0},
};

static int h_role_put(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    const cJSON *body = ctl_http_req_json(req);
    int rc = VALIDATE(resp, body, role_mod_fields);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    ctl_dir_txn *t;
    caller c;
    ctl_dir_obj o;
    cJSON *j;
    if ((rc = begin_role(ud, req, resp, CTL_PERM_ROLE_MODIFY, &t, &c, &o, &j)) != 0)
        return rc > 0 ? 0 : rc;
    ctl_perm_set set = {0};
    ctl_perm_set_from_json(cJSON_GetObjectItemCaseSensitive(j, "permissions"), &set, NULL, 0);
    char old[NAME_MAX_LEN + 1], name[NAME_MAX_LEN + 1], key[ROLE_KEY_MAX];
    snprintf(old, sizeof(old), "%s", jstr(j, "name") ? jstr(j, "name") : "");
    snprintf(name, sizeof(name), "%s", jstr(body, "name") ? jstr(body, "name") : old);
    if ((rc = role_body(t, resp, c.tenant, body, o.id, &set)) != 0)
        goto done;
    cJSON *p = ctl_perm_set_to_json(&set);
    if (!p || !cJSON_ReplaceItemInObjectCaseSensitive(j, "permissions", p) ||
        !cJSON_ReplaceItemInObjectCaseSensitive(j, "name", cJSON_CreateString(name))) {
        rc = -ENOMEM;
        goto done;
    }
    if ((rc = role_key(c.tenant, name, key, sizeof(key))) != 0)
        goto done;
    ctl_dir_ukey uk = {"role", key};
    if ((rc = put_json(t, c.actor, &o, j, &uk, 1)) != 0)
        goto done;
    if (strcmp(old, name) != 0 &&
        (rc = role_users_walk(t, c.tenant, old, name, c.actor, NULL)) != 0)
        goto done;
    ctl_role r = {.perms = set, .can_login = true};
    rc = answer(resp, 200, role_out(NULL, o.id, name, &r, false));
done:
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    return finish(t, resp, &c, rc);
}

static int h_role_del(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    ctl_dir_txn *t;
    caller c;
    ctl_dir_obj o;
    cJSON *j;
    int rc = begin_role(ud, req, resp, CTL_PERM_ROLE_DELETE, &t, &c, &o, &j);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    uint64_t users = 0;
    const char *name = jstr(j, "name");
    if ((rc = role_users_walk(t, c.tenant, name ? name : "", NULL, NULL, &users)) == 0) {
        if (users > 0) {
            cJSON *out = cJSON_CreateObject(), *e = cJSON_CreateObject();
            char msg[96];
            snprintf(msg, sizeof(msg), "the role is held by %" PRIu64 " user%s", users,
                     users == 1 ? "" : "s");
            if (!out || !e || !cJSON_AddStringToObject(e, "code", "role_in_use") ||
                !cJSON_AddStringToObject(e, "message", msg) ||
                !cJSON_AddNumberToObject(e, "users", (double)users)) {
                cJSON_Delete(out), cJSON_Delete(e);
                rc = -ENOMEM;
            } else {
                cJSON_AddItemToObject(out, "error", e);
                rc = ctl_http_resp_json(resp, 409, out);
                rc = rc ? rc : 1;
            }
        } else if ((rc = ctl_dir_del(t, c.actor, CTL_KIND_ROLE, o.id)) == 0) {
            rc = ctl_http_resp_empty(resp, 204);
        }
    }
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    return finish(t, resp, &c, rc);
}

/* --- Set-up --- */

int ctl_api_new(ctl_dir *dir, ctl_rng *rng, const ctl_api_params *p, ctl_api **out)
{
    ctl_api *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->dir = dir;
    a->rng = rng;
    a->idle_us = (p && p->session_idle_s ? p->session_idle_s : CTL_API_SESSION_IDLE_S) * 1000000;
    a->max_us = (p && p->session_max_s ? p->session_max_s : CTL_API_SESSION_MAX_S) * 1000000;
    a->pw_iter = p ? p->pw_iterations : 0;
    int rc = ctl_throttle_new(NULL, &a->thr);
    if (rc != 0)
        goto fail;
    /* A hash of random bytes with the same cost as real ones. */
    unsigned char junk[24];
    char pw[2 * sizeof(junk) + 1];
    if ((rc = ctl_rng_bytes(rng, junk, sizeof(junk))) != 0)
        goto fail;
    for (size_t i = 0; i < sizeof(junk); i++)
        snprintf(pw + 2 * i, 3, "%02x", junk[i]);
    if (ctl_pw_hash(rng, pw, strlen(pw), a->pw_iter, a->dummy_hash, sizeof(a->dummy_hash)) !=
        CTL_PW_OK) {
        rc = -EIO;
        goto fail;
    }
    *out = a;
    return 0;
fail:
    ctl_api_free(a);
    return rc;
}

void ctl_api_free(ctl_api *a)
{
    if (!a)
        return;
    ctl_throttle_free(a->thr);
    free(a);
}

int ctl_api_routes(ctl_api *a, ctl_http *h)
{
    static const struct {
        const char *method, *pattern;
        ctl_http_handler fn;
    } routes[] = {
        {"POST", "/api/v1/session", h_login},
        {"DELETE", "/api/v1/session", h_logout},
        {"GET", "/api/v1/me", h_me},
        {"PUT", "/api/v1/me/password", h_password},
        {"GET", "/api/v1/me/preferences", h_prefs_get},
        {"PUT", "/api/v1/me/preferences", h_prefs_put},
        {"GET", "/api/v1/users", h_users_list},
        {"POST", "/api/v1/users", h_user_add},
        {"GET", "/api/v1/users/{id}", h_user_get},
        {"PUT", "/api/v1/users/{id}", h_user_put},
        {"DELETE", "/api/v1/users/{id}", h_user_del},
        {"GET", "/api/v1/roles", h_roles_list},
        {"POST", "/api/v1/roles", h_role_create},
        {"PUT", "/api/v1/roles/{id}", h_role_put},
        {"DELETE", "/api/v1/roles/{id}", h_role_del},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        int rc = ctl_http_route(h, routes[i].method, routes[i].pattern, routes[i].fn, a);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int ctl_api_init_distributor(ctl_dir *dir, const char *email_in, const char *pwhash)
{
    char email[EMAIL_MAX + 1];
    if (!ctl_api_email_valid(email_in) || !pwhash)
        return -EINVAL;
    snprintf(email, sizeof(email), "%s", email_in);
    lower(email);
    ctl_dir_txn *t;
    int rc = ctl_dir_begin(dir, 1, &t);
    if (rc != 0)
        return rc;
    int kind;
    uint64_t id;
    cJSON *tj = NULL, *uj = NULL;
    if ((rc = ctl_dir_lookup(t, "init", "distributor", &kind, &id)) != -ENOENT) {
        rc = rc == 0 ? -EEXIST : rc;
        goto fail;
    }
    tj = cJSON_CreateObject();
    uj = cJSON_CreateObject();
    if (!tj || !uj || !cJSON_AddStringToObject(tj, "name", "distributor") ||
        !cJSON_AddStringToObject(tj, "type", "distributor") ||
        !cJSON_AddStringToObject(uj, "email", email) ||
        !cJSON_AddStringToObject(uj, "role", CTL_ROLE_ADMINISTRATOR) ||
        !cJSON_AddStringToObject(uj, "_pwhash", pwhash)) {
        rc = -ENOMEM;
        goto fail;
    }
    ctl_dir_obj to = {.kind = CTL_KIND_TENANT};
    ctl_dir_ukey tk = {"init", "distributor"};
    if ((rc = put_json(t, "init", &to, tj, &tk, 1)) != 0)
        goto fail;
    ctl_dir_obj uo = {.kind = CTL_KIND_USER, .tenant = to.id};
    ctl_dir_ukey uk = {"email", email};
    if ((rc = put_json(t, "init", &uo, uj, &uk, 1)) != 0)
        goto fail;
    cJSON_Delete(tj);
    cJSON_Delete(uj);
    return ctl_dir_commit(t);
fail:
    ctl_dir_abort(t);
    cJSON_Delete(tj);
    cJSON_Delete(uj);
    return rc;
}
