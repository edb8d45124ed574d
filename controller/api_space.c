/* Spaces: the distributor's installer accounts, one-time set-password
 * links, and the audit log of a space. */
#include "controller/api_int.h"

#include "common/c2d_log.h"
#include "controller/token.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- Set-password links --- */

int api_links_drop(api_ctx *x, uint64_t user)
{
    return api_drop_children(x->t, NULL, user, CTL_KIND_LINK);
}

int api_link_issue(api_ctx *x, uint64_t user, const char *email, const char *subject)
{
    ctl_api *a = x->api;
    ctl_dir_obj u = {0};
    int rc = ctl_dir_get(x->t, CTL_KIND_USER, user, &u);
    if (rc != 0)
        return rc;
    uint64_t tenant = u.tenant;
    ctl_dir_obj_clear(&u);
    if ((rc = api_links_drop(x, user)) != 0)
        return rc;
    char token[CTL_TOKEN_SIZE], hash[CTL_TOKEN_HASH_SIZE];
    if ((rc = ctl_token_new(a->rng, token, hash)) != 0)
        return rc;
    int64_t expires = ctl_dir_txn_now(x->t) + a->link_us;
    cJSON *j = cJSON_CreateObject();
    if (!j || !cJSON_AddNumberToObject(j, "user", (double)user) ||
        !cJSON_AddNumberToObject(j, "expires_us", (double)expires)) {
        cJSON_Delete(j);
        return -ENOMEM;
    }
    ctl_dir_obj l = {.kind = CTL_KIND_LINK, .tenant = tenant, .parent = user};
    ctl_dir_ukey key = {"link", hash};
    rc = api_put_json(x->t, NULL, &l, j, &key, 1);
    cJSON_Delete(j);
    if (rc != 0)
        return rc;
    /* The message goes out after the commit (api.c). */
    char when[32], body[1024];
    api_iso_time(expires, when, sizeof(when));
    snprintf(body, sizeof(body),
             "Hello,\n\n"
             "a cam2drive account was made for %s, or a new password was asked for.\n"
             "Choose your password here (the link works once, until %s):\n\n"
             "%s/set-password?token=%s\n\n"
             "If you did not expect this message, ignore it.\n",
             email, when, a->link_base, token);
    free(x->mail_to), free(x->mail_subject), free(x->mail_body);
    x->mail_to = strdup(email);
    x->mail_subject = strdup(subject);
    x->mail_body = strdup(body);
    if (!x->mail_to || !x->mail_subject || !x->mail_body)
        return -ENOMEM;
    return 0;
}

/* Finds a link by its token: 0 with the link object and its user, or
 * -ENOENT (unknown, used or expired). */
static int find_link(ctl_dir_txn *t, const char *token, ctl_dir_obj *l, uint64_t *user)
{
    char hash[CTL_TOKEN_HASH_SIZE];
    int kind;
    uint64_t id;
    if (ctl_token_hash(token, hash) != 0)
        return -ENOENT;
    int rc = ctl_dir_lookup(t, "link", hash, &kind, &id);
    if (rc == 0 && kind != CTL_KIND_LINK)
        rc = -ENOENT;
    if (rc == 0)
        rc = ctl_dir_get(t, CTL_KIND_LINK, id, l);
    if (rc != 0)
        return rc;
    cJSON *j = cJSON_Parse(l->json);
    bool live = j && ctl_dir_txn_now(t) < api_jint(j, "expires_us");
    *user = (uint64_t)api_jint(j, "user");
    cJSON_Delete(j);
    if (!live) {
        ctl_dir_obj_clear(l);
        return -ENOENT;
    }
    return 0;
}

static int bad_link(api_ctx *x)
{
    return api_fail(x, 410, "invalid_link",
                    "this link is not valid: it was used, replaced or has expired");
}

/* GET /api/v1/set-password?token=: whose link it is (for the page). */
static int h_link_get(api_ctx *x)
{
    const char *token = ctl_http_req_query(x->req, "token");
    if (!token)
        return api_fail(x, 422, "missing_field", "query \"token\" is required");
    int rc = ctl_dir_begin(x->api->dir, 0, &x->t);
    if (rc != 0)
        return rc;
    ctl_dir_obj l = {0}, u = {0};
    uint64_t user = 0;
    if ((rc = find_link(x->t, token, &l, &user)) == -ENOENT)
        return bad_link(x);
    if (rc == 0 && (rc = ctl_dir_get(x->t, CTL_KIND_USER, user, &u)) == 0) {
        cJSON *uj = cJSON_Parse(u.json), *lj = cJSON_Parse(l.json), *out = cJSON_CreateObject();
        char when[32];
        api_iso_time(api_jint(lj, "expires_us"), when, sizeof(when));
        if (!uj || !lj || !out || !cJSON_AddStringToObject(out, "email", api_jstr(uj, "email")) ||
            !cJSON_AddStringToObject(out, "expires_at", when)) {
            cJSON_Delete(out);
            rc = -ENOMEM;
        } else {
            rc = ctl_http_resp_json(x->resp, 200, out);
        }
        cJSON_Delete(uj);
        cJSON_Delete(lj);
    }
    ctl_dir_obj_clear(&l);
    ctl_dir_obj_clear(&u);
    return rc == -ENOENT ? bad_link(x) : rc;
}

static const ctl_field set_password_fields[] = {
    {"token", CTL_F_STRING, true, 1, 64, NULL, false},
    {"password", CTL_F_TEXT, true, 0, CTL_PW_MAX_LEN, NULL, false},
};

/* POST /api/v1/set-password {"token", "password"}: uses the link once. */
static int h_set_password(api_ctx *x)
{
    const char *token = api_jstr(x->body, "token");
    const char *pw = api_jstr(x->body, "password");
    char hash[CTL_PW_ENCODED_MAX];
    /* Check the link first (cheap), hash outside any transaction. */
    int rc = ctl_dir_begin(x->api->dir, 0, &x->t);
    if (rc != 0)
        return rc;
    ctl_dir_obj l = {0};
    uint64_t user = 0;
    rc = find_link(x->t, token, &l, &user);
    ctl_dir_abort(x->t);
    x->t = NULL;
    ctl_dir_obj_clear(&l);
    if (rc == -ENOENT)
        return bad_link(x);
    if (rc != 0)
        return rc;
    if ((rc = api_hash_password(x, "password", pw, hash, sizeof(hash))) != 0)
        return rc;
    if ((rc = ctl_dir_begin(x->api->dir, 1, &x->t)) != 0)
        return rc;
    /* Again in the write transaction: the link may have been used since. */
    if ((rc = find_link(x->t, token, &l, &user)) == -ENOENT)
        return bad_link(x);
    if (rc != 0)
        return rc;
    ctl_dir_obj_clear(&l);
    ctl_dir_obj u = {0};
    if ((rc = ctl_dir_get(x->t, CTL_KIND_USER, user, &u)) != 0)
        return rc == -ENOENT ? bad_link(x) : rc;
    cJSON *j = cJSON_Parse(u.json);
    char actor[API_ACTOR_MAX];
    snprintf(actor, sizeof(actor), "link:%" PRIu64, user);
    if (!j)
        rc = -EIO;
    if (rc == 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(j, "_pwhash");
        if (!cJSON_AddStringToObject(j, "_pwhash", hash))
            rc = -ENOMEM;
    }
    if (rc == 0)
        rc = api_put_json(x->t, actor, &u, j, NULL, 0);
    /* The link is spent; sessions made with the old password end. */
    if (rc == 0)
        rc = api_drop_children(x->t, NULL, user, CTL_KIND_LINK);
    if (rc == 0)
        rc = api_end_sessions(x->t, user, 0);
    if (rc == 0)
        rc = ctl_http_resp_empty(x->resp, 204);
    cJSON_Delete(j);
    ctl_dir_obj_clear(&u);
    return rc;
}

/* POST /api/v1/users/{id}/password-link: a new link for a user of the
 * space (the old ones stop working). */
static int h_user_link(api_ctx *x)
{
    uint64_t id;
    ctl_dir_obj u;
    cJSON *j;
    int rc = api_path_id(x, "id", &id);
    if (rc == 0)
        rc = api_get_json(x, CTL_KIND_USER, id, &u, &j);
    if (rc != 0)
        return rc;
    rc = api_link_issue(x, id, api_jstr(j, "email"), "Set your cam2drive password");
    if (rc == 0)
        rc = ctl_http_resp_empty(x->resp, 202);
    cJSON_Delete(j);
    ctl_dir_obj_clear(&u);
    return rc;
}

/* --- Installers (the distributor's space only) --- */

static bool is_installer(const cJSON *j)
{
    const char *type = api_jstr(j, "type");
    return type && strcmp(type, "installer") == 0;
}

static const ctl_field installer_create_fields[] = {
    {"name", CTL_F_STRING, true, 1, API_NAME_MAX, NULL, false},
    {"email", CTL_F_STRING, true, 1, API_EMAIL_MAX, NULL, false},
};

static const char *const installer_fixed[] = {"email", NULL};

static int installer_prepare(api_ctx *x, const cJSON *before, cJSON *after, ctl_dir_obj *o,
                             api_keys *keys)
{
    (void)o, (void)keys;
    if (before)
        return 0;
    int rc = api_email_field(x, after, "email"), kind;
    uint64_t id;
    if (rc != 0)
        return rc;
    if (ctl_dir_lookup(x->t, "email", api_jstr(after, "email"), &kind, &id) == 0)
        return api_fail(x, 409, "email_taken", "a user with this email exists");
    return cJSON_AddStringToObject(after, "type", "installer") ? 0 : -ENOMEM;
}

/* The installer's first user: its Administrator, who sets a password
 * through the link. */
static int installer_created(api_ctx *x, const ctl_dir_obj *o, const cJSON *j)
{
    const char *email = api_jstr(j, "email");
    cJSON *u = cJSON_CreateObject();
    if (!u || !cJSON_AddStringToObject(u, "email", email) ||
        !cJSON_AddStringToObject(u, "role", CTL_ROLE_ADMINISTRATOR)) {
        cJSON_Delete(u);
        return -ENOMEM;
    }
    ctl_dir_obj uo = {.kind = CTL_KIND_USER, .tenant = o->id};
    ctl_dir_ukey key = {"email", email};
    int rc = api_put_json(x->t, x->c.actor, &uo, u, &key, 1);
    cJSON_Delete(u);
    if (rc == -EEXIST)
        return api_fail(x, 409, "email_taken", "a user with this email exists");
    return rc ? rc : api_link_issue(x, uo.id, email, "Your cam2drive installer account");
}

/* Kinds whose objects make a space "not empty". */
static const int content_kinds[] = {CTL_KIND_CLIENT,  CTL_KIND_SITE,     CTL_KIND_RECORDER,
                                    CTL_KIND_GROUP,   CTL_KIND_GEOFENCE, CTL_KIND_DRIVER,
                                    CTL_KIND_BOOKMARK};

static int count_one(void *ud, const ctl_dir_obj *o)
{
    (void)o;
    ++*(size_t *)ud;
    return 1;
}

static int installer_deleting(api_ctx *x, const ctl_dir_obj *o, const cJSON *j)
{
    (void)j;
    for (size_t i = 0; i < sizeof(content_kinds) / sizeof(content_kinds[0]); i++) {
        size_t n = 0;
        int rc = ctl_dir_list_tenant(x->t, o->id, content_kinds[i], 0, 1, count_one, &n, NULL);
        if (rc != 0 && rc != 1)
            return rc;
        if (n)
            return api_fail(x, 409, "not_empty",
                            "the installer's space still holds %ss: delete them first",
                            ctl_dir_kind_name(content_kinds[i]));
    }
    /* Sessions and links are bookkeeping of the users: they go first. */
    int rc = api_drop_tenant_kind(x->t, NULL, o->id, CTL_KIND_SESSION);
    if (rc == 0)
        rc = api_drop_tenant_kind(x->t, NULL, o->id, CTL_KIND_LINK);
    if (rc == 0)
        rc = api_drop_tenant_kind(x->t, x->c.actor, o->id, CTL_KIND_USER);
    if (rc == 0)
        rc = api_drop_tenant_kind(x->t, x->c.actor, o->id, CTL_KIND_ROLE);
    if (rc == 0)
        rc = api_drop_tenant_kind(x->t, x->c.actor, o->id, CTL_KIND_SETTINGS);
    return rc;
}

static const api_kind installer_kind = {
    .kind = CTL_KIND_TENANT,
    .noun = "installer",
    .plural = "installers",
    .perm_get = CTL_PERM_INSTALLER_GET,
    .perm_add = CTL_PERM_INSTALLER_CREATE,
    .perm_modify = CTL_PERM_INSTALLER_MODIFY,
    .perm_delete = CTL_PERM_INSTALLER_DELETE,
    .create = installer_create_fields,
    .ncreate = sizeof(installer_create_fields) / sizeof(installer_create_fields[0]),
    .fixed = installer_fixed,
    .visible = is_installer,
    .prepare = installer_prepare,
    .created = installer_created,
    .deleting = installer_deleting,
};

/* Installer endpoints answer 403 outside the distributor's space. */
static int distributor_only(api_ctx *x, api_fn fn)
{
    if (!api_is_distributor(x))
        return api_fail(x, 403, "forbidden", "only the distributor's space manages installers");
    return fn(x);
}

static int h_installers_list(api_ctx *x)
{
    return distributor_only(x, api_obj_list);
}
static int h_installer_create(api_ctx *x)
{
    return distributor_only(x, api_obj_create);
}
static int h_installer_get(api_ctx *x)
{
    return distributor_only(x, api_obj_get);
}
static int h_installer_modify(api_ctx *x)
{
    return distributor_only(x, api_obj_modify);
}
static int h_installer_delete(api_ctx *x)
{
    return distributor_only(x, api_obj_delete);
}

/* First user of an installer: the one whose email the installer has. */
static int h_installer_link_inner(api_ctx *x)
{
    uint64_t id;
    ctl_dir_obj o;
    cJSON *j;
    int rc = api_path_id(x, "id", &id);
    if (rc == 0)
        rc = api_get_json(x, CTL_KIND_TENANT, id, &o, &j);
    if (rc != 0)
        return rc;
    int kind;
    uint64_t uid;
    const char *email = api_jstr(j, "email");
    if (!is_installer(j))
        rc = -ENOENT;
    else if ((rc = ctl_dir_lookup(x->t, "email", email ? email : "", &kind, &uid)) == 0)
        rc = api_link_issue(x, uid, email, "Set your cam2drive password");
    if (rc == 0)
        rc = ctl_http_resp_empty(x->resp, 202);
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    return rc;
}

static int h_installer_link(api_ctx *x)
{
    return distributor_only(x, h_installer_link_inner);
}

/* --- Audit --- */

typedef struct {
    cJSON *items;
    int64_t last_at;
    uint64_t last_seq;
    int err;
} audit_walk;

static int audit_cb(void *ud, const ctl_dir_audit_entry *e)
{
    audit_walk *w = ud;
    cJSON *j = cJSON_Parse(e->json);
    if (!j) {
        w->err = -EIO;
        return 1;
    }
    char ts[32], cursor[48];
    api_iso_time(e->at_us, ts, sizeof(ts));
    snprintf(cursor, sizeof(cursor), "%" PRId64 ".%" PRIu64, e->at_us, e->seq);
    cJSON_DeleteItemFromObjectCaseSensitive(j, "at");
    cJSON_DeleteItemFromObjectCaseSensitive(j, "tenant");
    if (!cJSON_AddStringToObject(j, "at", ts) || !cJSON_AddStringToObject(j, "cursor", cursor)) {
        cJSON_Delete(j);
        w->err = -ENOMEM;
        return 1;
    }
    cJSON_AddItemToArray(w->items, j);
    w->last_at = e->at_us;
    w->last_seq = e->seq;
    return 0;
}

static int h_audit(api_ctx *x)
{
    ctl_dir_audit_filter f = {.tenant = x->c.tenant};
    const char *s;
    size_t limit = API_PAGE_DEFAULT;
    if ((s = ctl_http_req_query(x->req, "kind")) && !(f.kind = ctl_dir_kind_from_name(s)))
        return api_fail(x, 422, "invalid_field", "query \"kind\" is not a kind of object");
    if ((s = ctl_http_req_query(x->req, "id"))) {
        if (!f.kind)
            return api_fail(x, 422, "invalid_field", "query \"id\" needs \"kind\"");
        if (api_parse_id(s, &f.id) != 0)
            return api_fail(x, 422, "invalid_field", "query \"id\" must be an id");
    }
    if ((s = ctl_http_req_query(x->req, "from")) && api_parse_time(s, &f.from_us) != 0)
        return api_fail(x, 422, "invalid_field",
                        "query \"from\" must be a time like 2026-11-30T08:00:00Z");
    if ((s = ctl_http_req_query(x->req, "to")) && api_parse_time(s, &f.to_us) != 0)
        return api_fail(x, 422, "invalid_field",
                        "query \"to\" must be a time like 2026-11-30T08:00:00Z");
    if ((s = ctl_http_req_query(x->req, "after"))) {
        char *end;
        long long at = strtoll(s, &end, 10);
        unsigned long long seq = *end == '.' ? strtoull(end + 1, &end, 10) : 0;
        if (*end || at < 0 || seq == 0)
            return api_fail(x, 422, "invalid_field", "query \"after\" must be a cursor");
        f.after_at_us = at;
        f.after_seq = seq;
    }
    if ((s = ctl_http_req_query(x->req, "limit"))) {
        uint64_t v;
        if (api_parse_id(s, &v) != 0 || v > API_PAGE_MAX)
            return api_fail(x, 422, "invalid_field", "query \"limit\" must be 1..%d", API_PAGE_MAX);
        limit = (size_t)v;
    }
    audit_walk w = {.items = cJSON_CreateArray()};
    if (!w.items)
        return -ENOMEM;
    size_t n = 0;
    int rc = ctl_dir_audit_list(x->t, &f, limit, audit_cb, &w, &n);
    if (rc == 1)
        rc = w.err;
    cJSON *out = rc == 0 ? cJSON_CreateObject() : NULL;
    if (!out) {
        cJSON_Delete(w.items);
        return rc ? rc : -ENOMEM;
    }
    cJSON_AddItemToObject(out, "items", w.items);
    if (n == limit) {
        char cursor[48];
        snprintf(cursor, sizeof(cursor), "%" PRId64 ".%" PRIu64, w.last_at, w.last_seq);
        cJSON_AddStringToObject(out, "next_after", cursor);
    } else {
        cJSON_AddNullToObject(out, "next_after");
    }
    return ctl_http_resp_json(x->resp, 200, out);
}

const api_route api_space_routes[] = {
    {"GET", "/api/v1/set-password", API_NEED_NONE, NULL, 0, h_link_get, NULL},
    {"POST", "/api/v1/set-password", API_NEED_NONE, set_password_fields,
     sizeof(set_password_fields) / sizeof(set_password_fields[0]), h_set_password, NULL},
    {"POST", "/api/v1/users/{id}/password-link", CTL_PERM_USER_MODIFY, NULL, 0, h_user_link, NULL},
    {"GET", "/api/v1/installers", CTL_PERM_INSTALLER_GET, NULL, 0, h_installers_list,
     &installer_kind},
    {"POST", "/api/v1/installers", CTL_PERM_INSTALLER_CREATE, NULL, 0, h_installer_create,
     &installer_kind},
    {"GET", "/api/v1/installers/{id}", CTL_PERM_INSTALLER_GET, NULL, 0, h_installer_get,
     &installer_kind},
    {"PUT", "/api/v1/installers/{id}", CTL_PERM_INSTALLER_MODIFY, NULL, 0, h_installer_modify,
     &installer_kind},
    {"DELETE", "/api/v1/installers/{id}", CTL_PERM_INSTALLER_DELETE, NULL, 0, h_installer_delete,
     &installer_kind},
    {"POST", "/api/v1/installers/{id}/password-link", CTL_PERM_INSTALLER_MODIFY, NULL, 0,
     h_installer_link, NULL},
    {"GET", "/api/v1/audit", CTL_PERM_AUDIT_GET, NULL, 0, h_audit, NULL},
};
const size_t api_space_nroutes = sizeof(api_space_routes) / sizeof(api_space_routes[0]);

/* --- c2d-controller init --- */

int ctl_api_init_distributor(ctl_dir *dir, ctl_rng *rng, const char *email_in, const char *pwhash,
                             int64_t link_ttl_s, char *link_token)
{
    char email[API_EMAIL_MAX + 1];
    if (!ctl_api_email_valid(email_in) || (!pwhash && (!rng || !link_token)))
        return -EINVAL;
    snprintf(email, sizeof(email), "%s", email_in);
    api_lower(email);
    ctl_dir_txn *t;
    int rc = ctl_dir_begin(dir, 1, &t);
    if (rc != 0)
        return rc;
    int kind;
    uint64_t id;
    cJSON *tj = NULL, *uj = NULL, *lj = NULL;
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
        (pwhash && !cJSON_AddStringToObject(uj, "_pwhash", pwhash))) {
        rc = -ENOMEM;
        goto fail;
    }
    ctl_dir_obj to = {.kind = CTL_KIND_TENANT};
    ctl_dir_ukey tk = {"init", "distributor"};
    if ((rc = api_put_json(t, "init", &to, tj, &tk, 1)) != 0)
        goto fail;
    ctl_dir_obj uo = {.kind = CTL_KIND_USER, .tenant = to.id};
    ctl_dir_ukey uk = {"email", email};
    if ((rc = api_put_json(t, "init", &uo, uj, &uk, 1)) != 0)
        goto fail;
    if (!pwhash) {
        char hash[CTL_TOKEN_HASH_SIZE];
        int64_t ttl = (link_ttl_s > 0 ? link_ttl_s : CTL_API_LINK_TTL_S) * 1000000;
        if ((rc = ctl_token_new(rng, link_token, hash)) != 0)
            goto fail;
        lj = cJSON_CreateObject();
        if (!lj || !cJSON_AddNumberToObject(lj, "user", (double)uo.id) ||
            !cJSON_AddNumberToObject(lj, "expires_us", (double)(ctl_dir_txn_now(t) + ttl))) {
            rc = -ENOMEM;
            goto fail;
        }
        ctl_dir_obj lo = {.kind = CTL_KIND_LINK, .tenant = to.id, .parent = uo.id};
        ctl_dir_ukey lk = {"link", hash};
        if ((rc = api_put_json(t, NULL, &lo, lj, &lk, 1)) != 0)
            goto fail;
    }
    cJSON_Delete(tj);
    cJSON_Delete(uj);
    cJSON_Delete(lj);
    return ctl_dir_commit(t);
fail:
    ctl_dir_abort(t);
    cJSON_Delete(tj);
    cJSON_Delete(uj);
    cJSON_Delete(lj);
    return rc;
}
