/* The API's core: dispatch (authentication, permission, body check,
 * transaction), the generic object handlers and shared helpers. The
 * endpoints live in api_account.c, api_space.c, api_objects.c and
 * api_dashcam.c; api_int.h explains how they fit. */
#include "controller/api_int.h"

#include "common/c2d_log.h"
#include "common/c2d_time.h"
#include "controller/token.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A session's last use is written back at most this often, so that reads
 * do not each cost a durable commit; the idle expiry is this coarse. */
#define TOUCH_US (60 * INT64_C(1000000))
/* Role unique-key value: tenant id, ':' and the name. */
#define ROLE_KEY_MAX (24 + API_NAME_MAX)
/* Objects one list walk reads before it gives the page back. */
#define WALK_BATCH 100

struct api_binding {
    ctl_api *api;
    const api_route *route;
};

/* --- Small helpers --- */

void api_lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

int ctl_api_email_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 3 || n > API_EMAIL_MAX)
        return 0;
    const char *at = strchr(s, '@');
    if (!at || at == s || at[1] == '\0' || strchr(at + 1, '@'))
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p >= 0x7f || *p == '"' || *p == '\\' || *p == '<' || *p == '>' ||
            *p == ',' || *p == ';')
            return 0;
    return 1;
}

void api_iso_time(int64_t us, char *buf, size_t len)
{
    time_t s = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int api_parse_id(const char *s, uint64_t *out)
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

const char *api_jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int64_t api_jint(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

int api_fail(api_ctx *x, unsigned status, const char *code, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int rc = ctl_http_resp_error(x->resp, status, code, "%s", msg);
    return rc ? rc : 1;
}

int api_answer(api_ctx *x, unsigned status, cJSON *body)
{
    if (!body)
        return -ENOMEM;
    return ctl_http_resp_json(x->resp, status, body);
}

/* "2026-11-30T08:00:00Z" is 20 bytes; room for a fraction of 6 digits. */
#define TIME_MIN_LEN 20
#define TIME_MAX_LEN API_TIME_MAX

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *s, int n, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Parses an RFC 3339 UTC time, "YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z" from 1970
 * on, to µs since the epoch: 0 or -EINVAL. Offsets other than Z are
 * refused: the API speaks UTC only. */
int api_parse_time(const char *s, int64_t *us)
{
    static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    size_t n = s ? strlen(s) : 0;
    unsigned y, mo, d, h, mi, sec, frac = 0;
    if (n < TIME_MIN_LEN || n > TIME_MAX_LEN || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
        s[13] != ':' || s[16] != ':' || s[n - 1] != 'Z' || digits(s, 4, &y) ||
        digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) || digits(s + 11, 2, &h) ||
        digits(s + 14, 2, &mi) || digits(s + 17, 2, &sec))
        return -EINVAL;
    if (n > TIME_MIN_LEN) { /* ".f" up to 6 digits */
        int nf = (int)(n - TIME_MIN_LEN) - 1;
        if (s[19] != '.' || nf < 1 || digits(s + 20, nf, &frac))
            return -EINVAL;
        for (int i = nf; i < 6; i++)
            frac *= 10;
    }
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap ? 1u : 0u) ||
        h > 23 || mi > 59 || sec > 59)
        return -EINVAL;
    int64_t days = days_from_civil(y, mo, d);
    *us = ((days * 86400 + h * 3600 + mi * 60 + sec) * 1000000) + frac;
    return 0;
}

/* A time query argument: 0 with *us set (0 if absent), or 1 with a 422
 * answered naming it. */
static int query_time(api_ctx *x, const char *name, int64_t *us)
{
    const char *s = ctl_http_req_query(x->req, name);
    *us = 0;
    if (s && api_parse_time(s, us) != 0)
        return api_fail(x, 422, "invalid_field",
                        "query \"%s\" must be an RFC 3339 UTC time (2026-11-30T08:00:00Z)", name);
    return 0;
}

/* ?from= and ?to=: 0 with the range set (to 0: open), or 1 answered. */
int api_query_range(api_ctx *x, int64_t *from, int64_t *to)
{
    int rc = query_time(x, "from", from);
    if (rc == 0)
        rc = query_time(x, "to", to);
    if (rc == 0 && ctl_http_req_query(x->req, "to") && *to <= *from)
        return api_fail(x, 422, "invalid_field", "query \"to\" must be after \"from\"");
    return rc;
}

int api_page_args(api_ctx *x, uint64_t *after, size_t *limit)
{
    const char *s = ctl_http_req_query(x->req, "after");
    *after = 0;
    *limit = API_PAGE_DEFAULT;
    if (s && api_parse_id(s, after) != 0)
        return api_fail(x, 422, "invalid_field", "query \"after\" must be an id");
    s = ctl_http_req_query(x->req, "limit");
    if (s) {
        uint64_t v;
        if (api_parse_id(s, &v) != 0 || v > API_PAGE_MAX)
            return api_fail(x, 422, "invalid_field", "query \"limit\" must be 1..%d", API_PAGE_MAX);
        *limit = (size_t)v;
    }
    return 0;
}

int api_answer_page(api_ctx *x, cJSON *items, uint64_t next)
{
    cJSON *out = cJSON_CreateObject();
    if (!out || !items) {
        cJSON_Delete(out);
        cJSON_Delete(items);
        return -ENOMEM;
    }
    cJSON_AddItemToObject(out, "items", items);
    if (next)
        cJSON_AddNumberToObject(out, "next_after", (double)next);
    else
        cJSON_AddNullToObject(out, "next_after");
    return ctl_http_resp_json(x->resp, 200, out);
}

int api_path_id(api_ctx *x, const char *name, uint64_t *id)
{
    return api_parse_id(ctl_http_req_param(x->req, name), id) == 0 ? 0 : -ENOENT;
}

int api_keys_add(api_keys *k, const char *ns, const char *fmt, ...)
{
    if (k->n >= CTL_DIR_UKEYS_MAX || strlen(ns) > CTL_DIR_UKEY_NS_MAX)
        return -EINVAL;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(k->value[k->n], sizeof(k->value[k->n]), fmt, ap);
    va_end(ap);
    if (n <= 0 || (size_t)n >= sizeof(k->value[k->n]))
        return -EINVAL;
    snprintf(k->ns[k->n], sizeof(k->ns[k->n]), "%s", ns);
    k->k[k->n].ns = k->ns[k->n];
    k->k[k->n].value = k->value[k->n];
    k->n++;
    k->set = true;
    return 0;
}

int api_put_json(ctl_dir_txn *t, const char *actor, ctl_dir_obj *o, const cJSON *j,
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

cJSON *api_obj_out(const ctl_dir_obj *o)
{
    cJSON *j = cJSON_Parse(o->json);
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
    cJSON_AddNumberToObject(j, "id", (double)o->id);
    api_iso_time(o->created_us, ts, sizeof(ts));
    cJSON_AddStringToObject(j, "created_at", ts);
    api_iso_time(o->updated_us, ts, sizeof(ts));
    if (!cJSON_AddStringToObject(j, "updated_at", ts)) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

int api_get_json(api_ctx *x, int kind, uint64_t id, ctl_dir_obj *o, cJSON **j)
{
    memset(o, 0, sizeof(*o));
    *j = NULL;
    int rc = ctl_dir_get_in_tenant(x->t, x->c.tenant, kind, id, o);
    if (rc != 0)
        return rc;
    if (!(*j = cJSON_Parse(o->json))) {
        ctl_dir_obj_clear(o);
        return -EIO;
    }
    return 0;
}

bool api_is_distributor(api_ctx *x)
{
    ctl_dir_obj o = {0};
    if (ctl_dir_get(x->t, CTL_KIND_TENANT, x->c.tenant, &o) != 0)
        return false;
    cJSON *j = cJSON_Parse(o.json);
    const char *type = api_jstr(j, "type");
    bool yes = type && strcmp(type, "distributor") == 0;
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    return yes;
}

/* --- Roles and sessions --- */

static int role_key(uint64_t tenant, const char *name, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%" PRIu64 ":%s", tenant, name);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

int api_role_resolve(ctl_dir_txn *t, uint64_t tenant, const char *name, api_role *out)
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

typedef struct {
    uint64_t ids[WALK_BATCH];
    size_t n;
} id_page;

static int collect_id(void *ud, const ctl_dir_obj *o)
{
    id_page *p = ud;
    p->ids[p->n++] = o->id;
    return 0;
}

int api_end_sessions(ctl_dir_txn *t, uint64_t user, uint64_t keep)
{
    uint64_t after = 0;
    for (;;) {
        id_page p = {.n = 0};
        int rc = ctl_dir_list_children(t, user, CTL_KIND_SESSION, after, WALK_BATCH, collect_id, &p,
                                       NULL);
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

int api_drop_children(ctl_dir_txn *t, const char *actor, uint64_t parent, int kind)
{
    for (;;) {
        id_page p = {.n = 0};
        int rc = ctl_dir_list_children(t, parent, kind, 0, WALK_BATCH, collect_id, &p, NULL);
        if (rc != 0 || p.n == 0)
            return rc;
        for (size_t i = 0; i < p.n; i++)
            if ((rc = ctl_dir_del(t, actor, kind, p.ids[i])) != 0)
                return rc;
    }
}

int api_drop_tenant_kind(ctl_dir_txn *t, const char *actor, uint64_t tenant, int kind)
{
    for (;;) {
        id_page p = {.n = 0};
        int rc = ctl_dir_list_tenant(t, tenant, kind, 0, WALK_BATCH, collect_id, &p, NULL);
        if (rc != 0 || p.n == 0)
            return rc;
        for (size_t i = 0; i < p.n; i++)
            if ((rc = ctl_dir_del(t, actor, kind, p.ids[i])) != 0)
                return rc;
    }
}

int api_email_field(api_ctx *x, cJSON *j, const char *field)
{
    const char *v = api_jstr(j, field);
    if (!v)
        return 0;
    char email[API_EMAIL_MAX + 1];
    snprintf(email, sizeof(email), "%s", v);
    api_lower(email);
    if (!ctl_api_email_valid(email))
        return api_fail(x, 422, "invalid_field", "field \"%s\" is not an email address", field);
    return cJSON_ReplaceItemInObjectCaseSensitive(j, field, cJSON_CreateString(email)) ? 0
                                                                                       : -ENOMEM;
}

int api_fail_count(api_ctx *x, unsigned status, const char *code, const char *name, uint64_t n,
                   const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cJSON *out = cJSON_CreateObject(), *e = cJSON_CreateObject();
    if (!out || !e || !cJSON_AddStringToObject(e, "code", code) ||
        !cJSON_AddStringToObject(e, "message", msg) ||
        !cJSON_AddNumberToObject(e, name, (double)n)) {
        cJSON_Delete(out);
        cJSON_Delete(e);
        return -ENOMEM;
    }
    cJSON_AddItemToObject(out, "error", e);
    int rc = ctl_http_resp_json(x->resp, status, out);
    return rc ? rc : 1;
}

/* --- Authentication --- */

static void caller_clear(api_caller *c)
{
    cJSON_Delete(c->user_json);
    c->user_json = NULL;
}

static int unauthorized(api_ctx *x, const char *code, const char *msg)
{
    int rc = ctl_http_resp_header(x->resp, "WWW-Authenticate", "Bearer");
    if (rc == 0)
        rc = ctl_http_resp_error(x->resp, 401, code, "%s", msg);
    return rc ? rc : 1;
}

/* Reads the session of the bearer token in x->t: 0 with c->session,
 * c->tenant and c->user set; 1 answered (401); or -errno. An expired
 * session is deleted (the caller commits). */
static int load_session(api_ctx *x, int64_t *last_out, ctl_dir_obj *s, cJSON **sj)
{
    char hash[CTL_TOKEN_HASH_SIZE];
    const char *bearer = ctl_http_req_bearer(x->req);
    if (!bearer)
        return unauthorized(x, "unauthenticated", "a bearer token is required");
    if (ctl_token_hash(bearer, hash) != 0)
        return unauthorized(x, "invalid_token", "the token is not valid");
    int kind;
    uint64_t sid;
    int rc = ctl_dir_lookup(x->t, "token", hash, &kind, &sid);
    if (rc == 0 && kind != CTL_KIND_SESSION)
        rc = -ENOENT;
    if (rc == 0)
        rc = ctl_dir_get(x->t, CTL_KIND_SESSION, sid, s);
    if (rc == -ENOENT)
        return unauthorized(x, "invalid_token", "the token is not valid");
    if (rc != 0)
        return rc;
    if (!(*sj = cJSON_Parse(s->json)))
        return -EIO;
    int64_t now = ctl_dir_txn_now(x->t);
    int64_t last = api_jint(*sj, "last_us");
    if (now >= api_jint(*sj, "expires_us") || now >= last + x->api->idle_us) {
        if ((rc = ctl_dir_del(x->t, NULL, CTL_KIND_SESSION, sid)) != 0)
            return rc;
        if ((rc = unauthorized(x, "session_expired", "the session has expired")) != 1)
            return rc;
        return 2; /* answered, but commit the deletion */
    }
    x->c.session = sid;
    x->c.tenant = s->tenant;
    x->c.user = (uint64_t)api_jint(*sj, "user");
    *last_out = last;
    return 0;
}

/* True if the caller's role allows need. */
static bool allowed(const api_caller *c, int need)
{
    if (!c->role.role.can_login)
        return false;
    if (need == API_NEED_SESSION)
        return true;
    if (need == API_NEED_ACCOUNT)
        return !c->role.role.map_only;
    return ctl_perm_set_has(&c->role.role.perms, (ctl_perm)need);
}

int api_begin_auth(api_ctx *x, int need)
{
    memset(&x->c, 0, sizeof(x->c));
    x->t = NULL;
    int rc = ctl_dir_begin(x->api->dir, 1, &x->t);
    if (rc != 0)
        return rc;
    ctl_dir_obj s = {0}, u = {0};
    cJSON *sj = NULL;
    int64_t last = 0;
    rc = load_session(x, &last, &s, &sj);
    if (rc == 2) { /* expired and deleted */
        rc = ctl_dir_commit(x->t);
        x->t = NULL;
        rc = rc ? rc : 1;
        goto out;
    }
    if (rc != 0)
        goto fail;
    rc = ctl_dir_get_in_tenant(x->t, x->c.tenant, CTL_KIND_USER, x->c.user, &u);
    if (rc == -ENOENT) {
        rc = unauthorized(x, "invalid_token", "the token is not valid");
        goto fail;
    }
    if (rc != 0)
        goto fail;
    if (!(x->c.user_json = cJSON_Parse(u.json))) {
        rc = -EIO;
        goto fail;
    }
    rc = api_role_resolve(x->t, x->c.tenant, api_jstr(x->c.user_json, "role"), &x->c.role);
    if (rc == -ENOENT) { /* cannot happen (a role in use is not deleted): no rights */
        memset(&x->c.role, 0, sizeof(x->c.role));
        x->c.role.role.can_login = true;
        rc = 0;
    }
    if (rc != 0)
        goto fail;
    snprintf(x->c.actor, sizeof(x->c.actor), "user:%" PRIu64, x->c.user);
    int64_t now = ctl_dir_txn_now(x->t);
    if (now - last >= TOUCH_US) {
        cJSON_ReplaceItemInObjectCaseSensitive(sj, "last_us", cJSON_CreateNumber((double)now));
        if ((rc = api_put_json(x->t, NULL, &s, sj, NULL, 0)) != 0)
            goto fail;
    }
    if (!allowed(&x->c, need)) {
        /* Commit the refreshed session: the caller is known, only refused. */
        rc = ctl_dir_commit(x->t);
        x->t = NULL;
        caller_clear(&x->c);
        if (rc == 0) {
            if (need >= 0)
                rc = api_fail(x, 403, "forbidden", "this needs the permission %s",
                              ctl_perm_name((ctl_perm)need));
            else
                rc = api_fail(x, 403, "forbidden", "this role cannot use this endpoint");
        }
        goto out;
    }
    rc = 0;
    goto out;
fail:
    ctl_dir_abort(x->t);
    x->t = NULL;
    caller_clear(&x->c);
out:
    cJSON_Delete(sj);
    ctl_dir_obj_clear(&s);
    ctl_dir_obj_clear(&u);
    return rc;
}

/* Answers a directory error the client caused; other errors are returned
 * (500). */
static int dir_error(api_ctx *x, int rc)
{
    switch (rc) {
    case -ENOENT:
        return ctl_http_resp_error(x->resp, 404, "not_found", "no such object");
    case -EEXIST:
        return ctl_http_resp_error(x->resp, 409, "conflict", "already exists");
    case -EFBIG:
        return ctl_http_resp_error(x->resp, 413, "payload_too_large", "object too large");
    default:
        return rc;
    }
}

int api_end(api_ctx *x, int rc)
{
    caller_clear(&x->c);
    ctl_dir_txn *t = x->t;
    x->t = NULL;
    if (rc == 0)
        return t ? ctl_dir_commit(t) : 0;
    ctl_dir_abort(t);
    if (rc > 0)
        return 0; /* answered */
    return dir_error(x, rc);
}

/* The one HTTP handler of every route. */
static int dispatch(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    const struct api_binding *b = ud;
    const api_route *r = b->route;
    api_ctx x = {.api = b->api, .req = req, .resp = resp, .route = r};
    x.body = ctl_http_req_json(req);
    int rc;
    if (r->need != API_NEED_NONE && (rc = api_begin_auth(&x, r->need)) != 0)
        return rc > 0 ? 0 : rc;
    const ctl_field *f = r->body;
    size_t nf = r->nbody;
    bool partial = false;
    if (r->kind && !f) { /* generic: the kind's tables */
        const api_kind *k = r->kind;
        if (strcmp(r->method, "POST") == 0) {
            f = k->create, nf = k->ncreate;
        } else if (strcmp(r->method, "PUT") == 0) {
            /* Without its own table a change takes any of the fields. */
            partial = !k->modify;
            f = k->modify ? k->modify : k->create;
            nf = k->modify ? k->nmodify : k->ncreate;
        }
    }
    ctl_check_err e;
    if (f && (partial ? ctl_check_body_partial(x.body, f, nf, &e)
                      : ctl_check_body(x.body, f, nf, &e)) != 0)
        rc = api_fail(&x, 422, e.code, "%s", e.message);
    else if (!f && x.body && x.body->child)
        rc = api_fail(&x, 422, "unknown_field", "this endpoint takes no body");
    else
        rc = r->fn(&x);
    rc = api_end(&x, rc);
    /* Committed: devices whose config changed hear of it. */
    for (size_t i = 0; i < x.ndevices; i++) {
        if (rc == 0 && x.api->device_changed)
            x.api->device_changed(x.api->device_changed_ud, x.devices[i]);
        free(x.devices[i]);
    }
    if (x.mail_body) {
        /* Committed: the message may go. A failure is logged, not
         * answered: the link exists and a new one can be asked for. */
        if (rc == 0 && x.api->mail) {
            int mrc = x.api->mail(x.api->mail_ud, x.mail_to, x.mail_subject, x.mail_body);
            if (mrc != 0)
                c2d_warn("mail to a user of the API failed: %s", strerror(-mrc));
        } else if (rc == 0) {
            c2d_info("set-password link made; no outbox configured to send it");
        }
        free(x.mail_to), free(x.mail_subject), free(x.mail_body);
    }
    return rc;
}

/* --- Generic object handlers --- */

static const api_kind *kind_of(api_ctx *x)
{
    return x->route->kind;
}

/* Reads the {id} object of the route's kind in the caller's tenant; objects
 * the description does not serve answer 404 like missing ones. */
static int load_obj(api_ctx *x, ctl_dir_obj *o, cJSON **j)
{
    const api_kind *k = kind_of(x);
    uint64_t id;
    int rc = api_path_id(x, "id", &id);
    if (rc == 0)
        rc = api_get_json(x, k->kind, id, o, j);
    if (rc == 0 && k->visible && !k->visible(*j)) {
        cJSON_Delete(*j);
        ctl_dir_obj_clear(o);
        *j = NULL;
        rc = -ENOENT;
    }
    return rc;
}

static cJSON *public_form(api_ctx *x, const ctl_dir_obj *o, int *rc)
{
    const api_kind *k = kind_of(x);
    cJSON *out = api_obj_out(o);
    *rc = out ? 0 : -ENOMEM;
    if (out && k->decorate && (*rc = k->decorate(x, o, out)) != 0) {
        cJSON_Delete(out);
        out = NULL;
    }
    return out;
}

typedef struct {
    api_ctx *x;
    const api_kind *k;
    cJSON *items;
    size_t want, got;
    uint64_t last_seen, prev_taken, last_taken;
    int err;
} obj_walk;

/* True if the object matches the list's ?field=value filters. */
static bool matches(api_ctx *x, const api_kind *k, const cJSON *j)
{
    if (k->visible && !k->visible(j))
        return false;
    if (k->match && !k->match(x, j))
        return false;
    for (const char *const *f = k->filters; f && *f; f++) {
        const char *want = ctl_http_req_query(x->req, *f);
        if (!want)
            continue;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, *f);
        char num[32];
        const char *have = NULL;
        if (cJSON_IsString(v))
            have = v->valuestring;
        else if (cJSON_IsBool(v))
            have = cJSON_IsTrue(v) ? "true" : "false";
        else if (cJSON_IsNumber(v))
            snprintf(num, sizeof(num), "%.0f", v->valuedouble), have = num;
        if (!have || strcmp(have, want) != 0)
            return false;
    }
    return true;
}

static int obj_walk_cb(void *ud, const ctl_dir_obj *o)
{
    obj_walk *w = ud;
    w->last_seen = o->id;
    cJSON *j = cJSON_Parse(o->json);
    bool take = j && matches(w->x, w->k, j);
    cJSON_Delete(j);
    if (!take)
        return 0;
    int rc;
    cJSON *out = public_form(w->x, o, &rc);
    if (!out) {
        w->err = rc;
        return 1;
    }
    cJSON_AddItemToArray(w->items, out);
    w->prev_taken = w->last_taken;
    w->last_taken = o->id;
    if (++w->got == w->want)
        return 1; /* page full */
    return 0;
}

int api_obj_list(api_ctx *x)
{
    const api_kind *k = kind_of(x);
    uint64_t after, parent = 0;
    size_t limit;
    int rc = api_page_args(x, &after, &limit);
    if (rc == 0 && k->check_query)
        rc = k->check_query(x);
    if (rc != 0)
        return rc;
    /* ?<parent_field>=ID lists one parent's children (404 outside the
     * tenant, as for any object). */
    const char *ps = k->parent_field ? ctl_http_req_query(x->req, k->parent_field) : NULL;
    if (ps) {
        ctl_dir_obj p = {0};
        if (api_parse_id(ps, &parent) != 0)
            return api_fail(x, 422, "invalid_field", "query \"%s\" must be an id", k->parent_field);
        if ((rc = ctl_dir_get_in_tenant(x->t, x->c.tenant, k->parent_kind, parent, &p)) != 0)
            return rc;
        ctl_dir_obj_clear(&p);
    }
    /* One more than the page: if it comes, there is a next page. */
    obj_walk w = {.x = x, .k = k, .items = cJSON_CreateArray(), .want = limit + 1};
    if (!w.items)
        return -ENOMEM;
    for (;;) {
        size_t n = 0;
        uint64_t from = w.last_seen ? w.last_seen : after;
        if (parent)
            rc =
                ctl_dir_list_children(x->t, parent, k->kind, from, WALK_BATCH, obj_walk_cb, &w, &n);
        else
            rc = ctl_dir_list_tenant(x->t, x->c.tenant, k->kind, from, WALK_BATCH, obj_walk_cb, &w,
                                     &n);
        if (rc == 1)
            rc = w.err;
        if (rc != 0 || w.got == w.want || n < WALK_BATCH)
            break;
    }
    if (rc != 0) {
        cJSON_Delete(w.items);
        return rc;
    }
    uint64_t next = 0;
    if (w.got == w.want) {
        cJSON_DeleteItemFromArray(w.items, (int)limit);
        next = w.prev_taken;
    }
    return api_answer_page(x, w.items, next);
}

int api_device_changed(api_ctx *x, const char *device)
{
    for (size_t i = 0; i < x->ndevices; i++)
        if (strcmp(x->devices[i], device) == 0)
            return 0;
    if (x->ndevices == API_DEVICES_MAX)
        return 0; /* more than a request changes: the daemon republishes all at start */
    if (!(x->devices[x->ndevices] = strdup(device)))
        return -ENOMEM;
    x->ndevices++;
    return 0;
}

int api_answer_stored(api_ctx *x, int kind, uint64_t id, unsigned status)
{
    ctl_dir_obj o = {0};
    int rc = ctl_dir_get(x->t, kind, id, &o);
    if (rc != 0)
        return rc;
    cJSON *out = kind_of(x) && kind_of(x)->kind == kind ? public_form(x, &o, &rc) : api_obj_out(&o);
    rc = out ? api_answer(x, status, out) : (rc ? rc : -ENOMEM);
    ctl_dir_obj_clear(&o);
    return rc;
}

int api_obj_get(api_ctx *x)
{
    ctl_dir_obj o;
    cJSON *j;
    int rc = load_obj(x, &o, &j);
    if (rc != 0)
        return rc;
    cJSON *out = public_form(x, &o, &rc);
    if (out)
        rc = api_answer(x, 200, out);
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    return rc;
}

/* Checks the parent named in j (create, or a move): 0 with o->parent set,
 * or 1 with a 422 answered (a parent that is missing, of another tenant or
 * not served by the parent description). */
static int check_parent(api_ctx *x, const cJSON *j, ctl_dir_obj *o)
{
    const api_kind *k = kind_of(x);
    if (!k->parent_kind)
        return 0;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k->parent_field);
    if (cJSON_IsNull(v) || !v) {
        o->parent = 0;
        return 0;
    }
    uint64_t pid = (uint64_t)v->valuedouble;
    ctl_dir_obj p = {0};
    int rc = ctl_dir_get_in_tenant(x->t, x->c.tenant, k->parent_kind, pid, &p);
    bool ok = rc == 0;
    if (ok && k->parent_desc && k->parent_desc->visible) {
        cJSON *pj = cJSON_Parse(p.json);
        ok = pj && k->parent_desc->visible(pj);
        cJSON_Delete(pj);
    }
    ctl_dir_obj_clear(&p);
    if (rc != 0 && rc != -ENOENT)
        return rc;
    if (!ok)
        return api_fail(x, 422, "invalid_field", "field \"%s\": no such %s", k->parent_field,
                        ctl_dir_kind_name(k->parent_kind));
    o->parent = pid;
    return 0;
}

int api_obj_create(api_ctx *x)
{
    const api_kind *k = kind_of(x);
    cJSON *j = x->body ? cJSON_Duplicate(x->body, 1) : cJSON_CreateObject();
    if (!j)
        return -ENOMEM;
    /* Nulls mean "none": not stored. */
    for (cJSON *it = j->child, *next; it; it = next) {
        next = it->next;
        if (cJSON_IsNull(it))
            cJSON_Delete(cJSON_DetachItemViaPointer(j, it));
    }
    ctl_dir_obj o = {.kind = k->kind, .tenant = x->c.tenant};
    api_keys keys = {.set = false};
    int rc = check_parent(x, j, &o);
    if (rc == 0 && k->prepare)
        rc = k->prepare(x, NULL, j, &o, &keys);
    if (rc == 0)
        rc = api_put_json(x->t, x->c.actor, &o, j, keys.set ? keys.k : NULL, keys.n);
    if (rc == 0 && k->created)
        rc = k->created(x, &o, j);
    if (rc == 0 && k->changed)
        rc = k->changed(x, &o, j);
    if (rc == 0)
        rc = api_answer_stored(x, k->kind, o.id, 201);
    cJSON_Delete(j);
    return rc;
}

int api_merge_field(cJSON *obj, const cJSON *field)
{
    cJSON_DeleteItemFromObjectCaseSensitive(obj, field->string);
    if (cJSON_IsNull(field))
        return 0;
    cJSON *copy = cJSON_Duplicate(field, 1);
    if (!copy || !cJSON_AddItemToObject(obj, field->string, copy)) {
        cJSON_Delete(copy);
        return -ENOMEM;
    }
    return 0;
}

int api_obj_modify(api_ctx *x)
{
    const api_kind *k = kind_of(x);
    ctl_dir_obj o;
    cJSON *before;
    int rc = load_obj(x, &o, &before);
    if (rc != 0)
        return rc;
    cJSON *after = cJSON_Duplicate(before, 1);
    if (!after)
        rc = -ENOMEM;
    for (const cJSON *it = x->body ? x->body->child : NULL; rc == 0 && it; it = it->next) {
        for (const char *const *f = k->fixed; f && *f; f++) {
            const cJSON *old = cJSON_GetObjectItemCaseSensitive(before, *f);
            if (strcmp(*f, it->string) == 0 && !(old && cJSON_Compare(old, it, 1)))
                rc = api_fail(x, 422, "immutable_field",
                              "field \"%s\" of a %s is fixed at creation and cannot be changed", *f,
                              k->noun);
        }
        if (rc != 0)
            break;
        rc = api_merge_field(after, it);
    }
    api_keys keys = {.set = false};
    if (rc == 0 && k->parent_field && cJSON_GetObjectItemCaseSensitive(x->body, k->parent_field))
        rc = check_parent(x, after, &o);
    if (rc == 0 && k->prepare)
        rc = k->prepare(x, before, after, &o, &keys);
    if (rc == 0)
        rc = api_put_json(x->t, x->c.actor, &o, after, keys.set ? keys.k : NULL, keys.n);
    if (rc == 0 && k->changed)
        rc = k->changed(x, &o, after);
    if (rc == 0)
        rc = api_answer_stored(x, k->kind, o.id, 200);
    cJSON_Delete(before);
    cJSON_Delete(after);
    ctl_dir_obj_clear(&o);
    return rc;
}

int api_obj_delete(api_ctx *x)
{
    const api_kind *k = kind_of(x);
    ctl_dir_obj o;
    cJSON *j;
    int rc = load_obj(x, &o, &j);
    if (rc != 0)
        return rc;
    if (k->child_kind) {
        uint64_t n = 0;
        if ((rc = ctl_dir_count_children(x->t, o.id, k->child_kind, &n)) == 0 && n > 0)
            rc = api_fail_count(x, 409, "not_empty", k->child_plural, n,
                                "the %s still holds %s (%" PRIu64 "): move or delete them first",
                                k->noun, k->child_plural, n);
    }
    if (rc == 0 && k->deleting)
        rc = k->deleting(x, &o, j);
    if (rc == 0 && (rc = ctl_dir_del(x->t, x->c.actor, k->kind, o.id)) == 0)
        rc = ctl_http_resp_empty(x->resp, 204);
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    return rc;
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
    a->link_us = (p && p->link_ttl_s ? p->link_ttl_s : CTL_API_LINK_TTL_S) * 1000000;
    a->pw_iter = p ? p->pw_iterations : 0;
    a->mail = p ? p->mail : NULL;
    a->mail_ud = p ? p->mail_ud : NULL;
    snprintf(a->link_base, sizeof(a->link_base), "%s",
             p && p->link_base && p->link_base[0] ? p->link_base : "http://localhost");
    a->ledger = p ? p->ledger : NULL;
    a->cutoff = p ? p->retention_cutoff : NULL;
    a->cutoff_ud = p ? p->retention_ud : NULL;
    a->device_changed = p ? p->device_changed : NULL;
    a->device_changed_ud = p ? p->device_changed_ud : NULL;
    a->devstate = p ? p->devstate : NULL;
    int rc = 0;
    if (p && p->data_dir && !(a->data_dir = strdup(p->data_dir))) {
        rc = -ENOMEM;
        goto fail;
    }
    rc = ctl_throttle_new(NULL, &a->thr);
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

void ctl_api_set_link_base(ctl_api *a, const char *base)
{
    snprintf(a->link_base, sizeof(a->link_base), "%s", base && base[0] ? base : "http://localhost");
}

void ctl_api_free(ctl_api *a)
{
    if (!a)
        return;
    ctl_throttle_free(a->thr);
    free(a->bindings);
    free(a->data_dir);
    free(a);
}

/* Every module's routes (api_int.h), in the order they are bound. */
static const struct {
    const api_route *r;
    const size_t *n;
} route_mods[] = {
    {api_account_routes, &api_account_nroutes},
    {api_space_routes, &api_space_nroutes},
    {api_objects_routes, &api_objects_nroutes},
    {api_dashcam_routes, &api_dashcam_nroutes},
    {api_recordings_routes, &api_recordings_nroutes},
    {api_subscriptions_routes, &api_subscriptions_nroutes},
    {api_state_routes, &api_state_nroutes},
    {api_pairing_routes, &api_pairing_nroutes},
};
#define N_ROUTE_MODS (sizeof(route_mods) / sizeof(route_mods[0]))

int ctl_api_routes(ctl_api *a, ctl_http *h)
{
    size_t total = 0;
    for (size_t m = 0; m < N_ROUTE_MODS; m++)
        total += *route_mods[m].n;
    struct api_binding *b = realloc(a->bindings, total * sizeof(*b));
    if (!b)
        return -ENOMEM;
    a->bindings = b;
    a->nbindings = 0;
    for (size_t m = 0; m < N_ROUTE_MODS; m++) {
        for (size_t i = 0; i < *route_mods[m].n; i++) {
            const api_route *r = &route_mods[m].r[i];
            b[a->nbindings] = (struct api_binding){a, r};
            int rc = ctl_http_route(h, r->method, r->pattern, dispatch, &b[a->nbindings]);
            if (rc != 0)
                return rc;
            a->nbindings++;
        }
    }
    return 0;
}

/* The routes of every module, for docs and tests: calls fn for each. */
void ctl_api_each_route(void (*fn)(void *ud, const char *method, const char *pattern, int need),
                        void *ud)
{
    for (size_t m = 0; m < N_ROUTE_MODS; m++)
        for (size_t i = 0; i < *route_mods[m].n; i++) {
            const api_route *r = &route_mods[m].r[i];
            fn(ud, r->method, r->pattern, r->need);
        }
}
