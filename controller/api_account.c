/* Sessions, the caller's account, users of a space and roles. */
#include "controller/api_int.h"

#include "common/c2d_time.h"
#include "controller/token.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Role unique-key value: tenant id, ':' and the name. */
#define ROLE_KEY_MAX (24 + API_NAME_MAX)
/* Users one walk of a role's holders reads at a time. */
#define ROLE_WALK 100

static int too_many(api_ctx *x, int64_t retry_us)
{
    char v[24];
    snprintf(v, sizeof(v), "%" PRId64, (retry_us + 999999) / 1000000);
    int rc = ctl_http_resp_header(x->resp, "Retry-After", v);
    if (rc != 0)
        return rc;
    return api_fail(x, 429, "too_many_requests", "too many failed log-ins: try again in %s s", v);
}

static void remote_of(api_ctx *x, char *addr, size_t len)
{
    if (ctl_http_req_remote(x->req, addr, len) != 0)
        snprintf(addr, len, "unknown");
}

/* --- Sessions --- */

static const ctl_field login_fields[] = {
    {"email", CTL_F_STRING, true, 1, API_EMAIL_MAX, NULL, false},
    {"password", CTL_F_TEXT, true, 0, CTL_PW_MAX_LEN, NULL, false},
};

/* Reads the password hash of the user with email (a dummy one if there is
 * none, so that both answers cost the same). */
static int lookup_hash(ctl_api *a, const char *email, char *hash, size_t len, uint64_t *uid)
{
    ctl_dir_txn *t;
    int rc = ctl_dir_begin(a->dir, 0, &t);
    if (rc != 0)
        return rc;
    snprintf(hash, len, "%s", a->dummy_hash);
    int kind, known = 0;
    if (ctl_dir_lookup(t, "email", email, &kind, uid) == 0 && kind == CTL_KIND_USER) {
        ctl_dir_obj u = {0};
        if (ctl_dir_get(t, CTL_KIND_USER, *uid, &u) == 0) {
            cJSON *j = cJSON_Parse(u.json);
            const char *h = api_jstr(j, "_pwhash");
            if (h && strlen(h) < len) {
                snprintf(hash, len, "%s", h);
                known = 1;
            }
            cJSON_Delete(j);
            ctl_dir_obj_clear(&u);
        }
    }
    ctl_dir_abort(t);
    return known;
}

static int h_login(api_ctx *x)
{
    ctl_api *a = x->api;
    char email[API_EMAIL_MAX + 1], addr[80];
    snprintf(email, sizeof(email), "%s", api_jstr(x->body, "email"));
    api_lower(email);
    const char *pw = api_jstr(x->body, "password");
    remote_of(x, addr, sizeof(addr));
    int64_t retry = 0;
    if (ctl_throttle_login_check(a->thr, email, addr, c2d_mono_us(), &retry) == -EAGAIN)
        return too_many(x, retry);

    /* Verify outside any transaction: it takes a quarter of a second. */
    char hash[CTL_PW_ENCODED_MAX];
    uint64_t uid = 0;
    int known = lookup_hash(a, email, hash, sizeof(hash), &uid);
    if (known < 0)
        return known;
    bool ok = ctl_pw_verify(pw, strlen(pw), hash) == CTL_PW_OK && known;
    ctl_throttle_login_result(a->thr, email, addr, ok, c2d_mono_us(), NULL);
    if (!ok) {
        int rc = ctl_http_resp_header(x->resp, "WWW-Authenticate", "Bearer");
        return rc ? rc : api_fail(x, 401, "bad_credentials", "wrong email or password");
    }

    /* Create the session in one write transaction (the dispatcher ends it). */
    char token[CTL_TOKEN_SIZE], thash[CTL_TOKEN_HASH_SIZE];
    int rc = ctl_token_new(a->rng, token, thash);
    if (rc != 0 || (rc = ctl_dir_begin(a->dir, 1, &x->t)) != 0)
        return rc;
    ctl_dir_obj u = {0};
    cJSON *uj = NULL, *sj = NULL, *out = NULL;
    api_role role;
    if ((rc = ctl_dir_get(x->t, CTL_KIND_USER, uid, &u)) != 0)
        goto done;
    if (!(uj = cJSON_Parse(u.json))) {
        rc = -EIO;
        goto done;
    }
    if (api_role_resolve(x->t, u.tenant, api_jstr(uj, "role"), &role) == 0 &&
        !role.role.can_login) {
        rc = api_fail(x, 403, "login_disabled", "this user's role cannot log in");
        goto done;
    }
    int64_t now = ctl_dir_txn_now(x->t), expires = now + a->max_us;
    sj = cJSON_CreateObject();
    if (!sj || !cJSON_AddNumberToObject(sj, "user", (double)uid) ||
        !cJSON_AddNumberToObject(sj, "expires_us", (double)expires) ||
        !cJSON_AddNumberToObject(sj, "last_us", (double)now)) {
        rc = -ENOMEM;
        goto done;
    }
    ctl_dir_obj s = {.kind = CTL_KIND_SESSION, .tenant = u.tenant, .parent = uid};
    ctl_dir_ukey key = {"token", thash};
    if ((rc = api_put_json(x->t, NULL, &s, sj, &key, 1)) != 0)
        goto done;
    char ts[32];
    api_iso_time(expires, ts, sizeof(ts));
    out = cJSON_CreateObject();
    cJSON *uo = api_obj_out(&u);
    if (!out || !uo || !cJSON_AddStringToObject(out, "token", token) ||
        !cJSON_AddStringToObject(out, "expires_at", ts)) {
        cJSON_Delete(uo);
        rc = -ENOMEM;
        goto done;
    }
    cJSON_AddItemToObject(out, "user", uo);
    rc = ctl_http_resp_json(x->resp, 201, out);
    out = NULL;
done:
    cJSON_Delete(out);
    cJSON_Delete(sj);
    cJSON_Delete(uj);
    ctl_dir_obj_clear(&u);
    return rc;
}

static int h_logout(api_ctx *x)
{
    int rc = ctl_dir_del(x->t, NULL, CTL_KIND_SESSION, x->c.session);
    return rc ? rc : ctl_http_resp_empty(x->resp, 204);
}

/* --- The caller's account --- */

static int h_me(api_ctx *x)
{
    ctl_dir_obj u = {0};
    int rc = ctl_dir_get(x->t, CTL_KIND_USER, x->c.user, &u);
    if (rc != 0)
        return rc;
    cJSON *out = cJSON_CreateObject(), *role = cJSON_CreateObject();
    cJSON *uo = api_obj_out(&u);
    cJSON *perms = ctl_perm_set_to_json(&x->c.role.role.perms);
    ctl_dir_obj_clear(&u);
    if (!out || !role || !uo || !perms) {
        cJSON_Delete(out), cJSON_Delete(role), cJSON_Delete(uo), cJSON_Delete(perms);
        return -ENOMEM;
    }
    cJSON_AddStringToObject(role, "name", api_jstr(x->c.user_json, "role"));
    cJSON_AddBoolToObject(role, "builtin", x->c.role.builtin);
    cJSON_AddBoolToObject(role, "can_login", x->c.role.role.can_login);
    cJSON_AddBoolToObject(role, "map_only", x->c.role.role.map_only);
    cJSON_AddItemToObject(out, "user", uo);
    cJSON_AddItemToObject(out, "role", role);
    cJSON_AddItemToObject(out, "permissions", perms);
    return ctl_http_resp_json(x->resp, 200, out);
}

static const ctl_field password_fields[] = {
    {"old_password", CTL_F_TEXT, true, 0, CTL_PW_MAX_LEN, NULL, false},
    {"new_password", CTL_F_TEXT, true, 0, CTL_PW_MAX_LEN, NULL, false},
};

/* Hashes a new password outside any transaction: 0 with hash set, 1 with a
 * 422 answered (field names the body field), or -EIO. */
int api_hash_password(api_ctx *x, const char *field, const char *pw, char *hash, size_t len)
{
    ctl_pw_err pe = ctl_pw_hash(x->api->rng, pw, strlen(pw), x->api->pw_iter, hash, len);
    if (pe == CTL_PW_TOO_SHORT || pe == CTL_PW_TOO_LONG)
        return api_fail(x, 422, "invalid_field", "field \"%s\": %s", field, ctl_pw_strerror(pe));
    return pe == CTL_PW_OK ? 0 : -EIO;
}

static int h_password(api_ctx *x)
{
    ctl_api *a = x->api;
    const char *oldpw = api_jstr(x->body, "old_password"),
               *newpw = api_jstr(x->body, "new_password");
    char old_hash[CTL_PW_ENCODED_MAX] = "", email[API_EMAIL_MAX + 1] = "", addr[80];
    const char *h = api_jstr(x->c.user_json, "_pwhash");
    if (h)
        snprintf(old_hash, sizeof(old_hash), "%s", h);
    snprintf(email, sizeof(email), "%s",
             api_jstr(x->c.user_json, "email") ? api_jstr(x->c.user_json, "email") : "");
    uint64_t session = x->c.session;
    int rc = api_end(x, 0);
    if (rc != 0)
        return rc;
    /* Hashing and verifying run outside the transaction; the old password
     * is guessed through the same throttle as log-ins. */
    remote_of(x, addr, sizeof(addr));
    int64_t retry = 0;
    if (ctl_throttle_login_check(a->thr, email, addr, c2d_mono_us(), &retry) == -EAGAIN)
        return too_many(x, retry);
    bool ok = old_hash[0] && ctl_pw_verify(oldpw, strlen(oldpw), old_hash) == CTL_PW_OK;
    ctl_throttle_login_result(a->thr, email, addr, ok, c2d_mono_us(), NULL);
    if (!ok)
        return api_fail(x, 403, "wrong_password", "the old password is wrong");
    char new_hash[CTL_PW_ENCODED_MAX];
    if ((rc = api_hash_password(x, "new_password", newpw, new_hash, sizeof(new_hash))) != 0)
        return rc;
    /* Again under the session: it may have ended meanwhile. */
    if ((rc = api_begin_auth(x, API_NEED_ACCOUNT)) != 0)
        return rc;
    ctl_dir_obj u = {0};
    if ((rc = ctl_dir_get(x->t, CTL_KIND_USER, x->c.user, &u)) != 0)
        return rc;
    cJSON_DeleteItemFromObjectCaseSensitive(x->c.user_json, "_pwhash");
    if (!cJSON_AddStringToObject(x->c.user_json, "_pwhash", new_hash))
        rc = -ENOMEM;
    if (rc == 0)
        rc = api_put_json(x->t, x->c.actor, &u, x->c.user_json, NULL, 0);
    if (rc == 0)
        rc = api_end_sessions(x->t, x->c.user, session);
    if (rc == 0)
        rc = ctl_http_resp_empty(x->resp, 204);
    ctl_dir_obj_clear(&u);
    return rc;
}

static const ctl_field pref_fields[] = {
    {"theme", CTL_F_STRING, false, 1, API_NAME_MAX, NULL, false},
    {"language", CTL_F_STRING, false, 1, API_NAME_MAX, NULL, false},
    {"date_format", CTL_F_STRING, false, 1, API_NAME_MAX, NULL, false},
    {"time_zone", CTL_F_STRING, false, 1, API_NAME_MAX, NULL, false},
};
static const char *const pref_defaults[] = {"light", "en", "YYYY-MM-DD", "UTC"};

/* The user's preferences with defaults filled in; a new object. */
static cJSON *prefs_of(const cJSON *user)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(user, "preferences");
    cJSON *out = cJSON_CreateObject();
    for (size_t i = 0; out && i < sizeof(pref_fields) / sizeof(pref_fields[0]); i++) {
        const char *v = api_jstr(p, pref_fields[i].name);
        if (!cJSON_AddStringToObject(out, pref_fields[i].name, v ? v : pref_defaults[i])) {
            cJSON_Delete(out);
            return NULL;
        }
    }
    return out;
}

static int h_prefs_get(api_ctx *x)
{
    return api_answer(x, 200, prefs_of(x->c.user_json));
}

static int h_prefs_put(api_ctx *x)
{
    int rc = 0;
    cJSON *p = prefs_of(x->c.user_json);
    for (size_t i = 0; p && i < sizeof(pref_fields) / sizeof(pref_fields[0]); i++) {
        const char *v = api_jstr(x->body, pref_fields[i].name);
        if (v &&
            !cJSON_ReplaceItemInObjectCaseSensitive(p, pref_fields[i].name, cJSON_CreateString(v)))
            rc = -ENOMEM;
    }
    cJSON *copy = p ? cJSON_Duplicate(p, 1) : NULL;
    if (!p || !copy)
        rc = -ENOMEM;
    ctl_dir_obj u = {0};
    if (rc == 0 && (rc = ctl_dir_get(x->t, CTL_KIND_USER, x->c.user, &u)) == 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(x->c.user_json, "preferences");
        cJSON_AddItemToObject(x->c.user_json, "preferences", copy);
        copy = NULL;
        rc = api_put_json(x->t, x->c.actor, &u, x->c.user_json, NULL, 0);
        ctl_dir_obj_clear(&u);
    }
    cJSON_Delete(copy);
    if (rc == 0) {
        rc = ctl_http_resp_json(x->resp, 200, p);
        p = NULL;
    }
    cJSON_Delete(p);
    return rc;
}

/* --- Users of a space --- */

/* Checks a role name from a body exists in the tenant: 0, or 1 with 422. */
static int check_role(api_ctx *x, const char *name)
{
    api_role ri;
    int rc = api_role_resolve(x->t, x->c.tenant, name, &ri);
    if (rc == -ENOENT)
        return api_fail(x, 422, "invalid_field", "field \"role\": no such role");
    return rc;
}

static const ctl_field user_add_fields[] = {
    {"email", CTL_F_STRING, true, 1, API_EMAIL_MAX, NULL, false},
    {"role", CTL_F_STRING, true, 1, API_NAME_MAX, NULL, false},
    {"password", CTL_F_TEXT, false, 0, CTL_PW_MAX_LEN, NULL, false},
};

static int h_user_add(api_ctx *x)
{
    char email[API_EMAIL_MAX + 1];
    snprintf(email, sizeof(email), "%s", api_jstr(x->body, "email"));
    api_lower(email);
    if (!ctl_api_email_valid(email))
        return api_fail(x, 422, "invalid_field", "field \"email\" is not an email address");
    /* Authorised by the dispatcher; hash outside the transaction. */
    int rc = api_end(x, 0);
    if (rc != 0)
        return rc;
    const char *pw = api_jstr(x->body, "password");
    char hash[CTL_PW_ENCODED_MAX] = "";
    if (pw && (rc = api_hash_password(x, "password", pw, hash, sizeof(hash))) != 0)
        return rc;
    if ((rc = api_begin_auth(x, CTL_PERM_USER_ADD)) != 0)
        return rc;
    cJSON *j = NULL;
    if ((rc = check_role(x, api_jstr(x->body, "role"))) != 0)
        goto done;
    j = cJSON_CreateObject();
    if (!j || !cJSON_AddStringToObject(j, "email", email) ||
        !cJSON_AddStringToObject(j, "role", api_jstr(x->body, "role")) ||
        (hash[0] && !cJSON_AddStringToObject(j, "_pwhash", hash))) {
        rc = -ENOMEM;
        goto done;
    }
    ctl_dir_obj u = {.kind = CTL_KIND_USER, .tenant = x->c.tenant};
    ctl_dir_ukey key = {"email", email};
    rc = api_put_json(x->t, x->c.actor, &u, j, &key, 1);
    if (rc == -EEXIST) {
        rc = api_fail(x, 409, "email_taken", "a user with this email exists");
        goto done;
    }
    /* Without a password the user gets a set-password link. */
    if (rc == 0 && !hash[0])
        rc = api_link_issue(x, u.id, email, "Your cam2drive account");
    if (rc == 0)
        rc = api_answer_stored(x, CTL_KIND_USER, u.id, 201);
done:
    cJSON_Delete(j);
    return rc;
}

static const ctl_field user_mod_fields[] = {
    {"role", CTL_F_STRING, true, 1, API_NAME_MAX, NULL, false},
};

static int user_prepare(api_ctx *x, const cJSON *before, cJSON *after, ctl_dir_obj *o,
                        api_keys *keys)
{
    (void)before, (void)after, (void)o, (void)keys;
    return check_role(x, api_jstr(x->body, "role"));
}

static int user_deleting(api_ctx *x, const ctl_dir_obj *o, const cJSON *j)
{
    (void)j;
    if (o->id == x->c.user)
        return api_fail(x, 409, "cannot_delete_self", "a user cannot delete itself");
    /* Its sessions and set-password links go with it. */
    int rc = api_end_sessions(x->t, o->id, 0);
    return rc ? rc : api_drop_children(x->t, NULL, o->id, CTL_KIND_LINK);
}

static const char *const user_filters[] = {"role", NULL};

static const api_kind user_kind = {
    .kind = CTL_KIND_USER,
    .noun = "user",
    .plural = "users",
    .perm_get = CTL_PERM_USER_GET,
    .perm_add = CTL_PERM_USER_ADD,
    .perm_modify = CTL_PERM_USER_MODIFY,
    .perm_delete = CTL_PERM_USER_REMOVE,
    .modify = user_mod_fields,
    .nmodify = sizeof(user_mod_fields) / sizeof(user_mod_fields[0]),
    .filters = user_filters,
    .prepare = user_prepare,
    .deleting = user_deleting,
};

/* --- Roles --- */

static int role_key(uint64_t tenant, const char *name, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%" PRIu64 ":%s", tenant, name);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

typedef struct {
    const char *name;
    uint64_t count;
    uint64_t last; /* the last user the walk saw */
    uint64_t ids[ROLE_WALK];
    size_t n;
} role_users;

static int role_users_cb(void *ud, const ctl_dir_obj *o)
{
    role_users *r = ud;
    r->last = o->id;
    cJSON *j = cJSON_Parse(o->json);
    const char *role = api_jstr(j, "role");
    if (role && strcmp(role, r->name) == 0) {
        r->count++;
        r->ids[r->n++] = o->id;
    }
    cJSON_Delete(j);
    return 0;
}

/* Users of tenant holding role name: counted, or (rename non-NULL) moved to
 * rename with actor. */
static int role_users_walk(ctl_dir_txn *t, uint64_t tenant, const char *name, const char *rename,
                           const char *actor, uint64_t *count)
{
    role_users r = {.name = name};
    uint64_t after = 0;
    for (;;) {
        size_t n = 0;
        r.n = 0;
        int rc =
            ctl_dir_list_tenant(t, tenant, CTL_KIND_USER, after, ROLE_WALK, role_users_cb, &r, &n);
        if (rc != 0)
            return rc;
        for (size_t i = 0; rename && i < r.n; i++) {
            ctl_dir_obj u = {0};
            if ((rc = ctl_dir_get(t, CTL_KIND_USER, r.ids[i], &u)) != 0)
                return rc;
            cJSON *j = cJSON_Parse(u.json);
            if (!j ||
                !cJSON_ReplaceItemInObjectCaseSensitive(j, "role", cJSON_CreateString(rename)))
                rc = -ENOMEM;
            if (rc == 0)
                rc = api_put_json(t, actor, &u, j, NULL, 0);
            cJSON_Delete(j);
            ctl_dir_obj_clear(&u);
            if (rc != 0)
                return rc;
        }
        if (n < ROLE_WALK)
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
    const char *name = api_jstr(j, "name");
    cJSON *item = role_out(NULL, o->id, name ? name : "", &r, false);
    cJSON_Delete(j);
    if (!item) {
        w->err = -ENOMEM;
        return 1;
    }
    cJSON_AddItemToArray(w->items, item);
    return 0;
}

static int h_roles_list(api_ctx *x)
{
    int rc = 0;
    role_walk w = {.items = cJSON_CreateArray()};
    if (!w.items)
        return -ENOMEM;
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
    if (rc == 0 && (rc = ctl_dir_list_tenant(x->t, x->c.tenant, CTL_KIND_ROLE, 0, CTL_DIR_LIST_MAX,
                                             role_walk_cb, &w, NULL)) == 1)
        rc = w.err;
    if (rc != 0) {
        cJSON_Delete(w.items);
        return rc;
    }
    cJSON *out = cJSON_CreateObject();
    if (!out) {
        cJSON_Delete(w.items);
        return -ENOMEM;
    }
    cJSON_AddItemToObject(out, "items", w.items);
    return ctl_http_resp_json(x->resp, 200, out);
}

/* Checks a role body's name and permissions: 0 with *set filled, or 1 with
 * a 409/422 answered. */
static int role_body(api_ctx *x, uint64_t self, ctl_perm_set *set)
{
    const char *name = api_jstr(x->body, "name");
    ctl_role br;
    api_role ri;
    if (name && (ctl_role_builtin_find(name, &br) == CTL_PERM_OK ||
                 (api_role_resolve(x->t, x->c.tenant, name, &ri) == 0 && ri.id != self)))
        return api_fail(x, 409, "role_exists", "a role of this name exists");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(x->body, "permissions");
    char err[128];
    if (p && ctl_perm_set_from_json(p, set, err, sizeof(err)) != CTL_PERM_OK)
        return api_fail(x, 422, "invalid_field", "field \"permissions\": %s", err);
    return 0;
}

static const ctl_field role_create_fields[] = {
    {"name", CTL_F_STRING, true, 1, API_NAME_MAX, NULL, false},
    {"permissions", CTL_F_ARRAY, true, 0, CTL_PERM_COUNT, NULL, false},
};

static int h_role_create(api_ctx *x)
{
    ctl_perm_set set = {0};
    const char *name = api_jstr(x->body, "name");
    int rc = role_body(x, 0, &set);
    if (rc != 0)
        return rc;
    cJSON *j = cJSON_CreateObject();
    cJSON *p = ctl_perm_set_to_json(&set);
    if (!j || !p || !cJSON_AddStringToObject(j, "name", name)) {
        cJSON_Delete(p);
        cJSON_Delete(j);
        return -ENOMEM;
    }
    cJSON_AddItemToObject(j, "permissions", p);
    char key[ROLE_KEY_MAX];
    ctl_dir_obj o = {.kind = CTL_KIND_ROLE, .tenant = x->c.tenant};
    ctl_dir_ukey uk = {"role", key};
    if ((rc = role_key(x->c.tenant, name, key, sizeof(key))) == 0 &&
        (rc = api_put_json(x->t, x->c.actor, &o, j, &uk, 1)) == 0) {
        ctl_role r = {.perms = set, .can_login = true};
        rc = api_answer(x, 201, role_out(NULL, o.id, name, &r, false));
    }
    cJSON_Delete(j);
    return rc;
}

/* Loads the role {id}: built-in names answer 403 builtin_role, ids of other
 * tenants 404. */
static int load_role(api_ctx *x, ctl_dir_obj *o, cJSON **j)
{
    const char *ids = ctl_http_req_param(x->req, "id");
    ctl_role br;
    uint64_t id;
    memset(o, 0, sizeof(*o));
    *j = NULL;
    if (ctl_role_builtin_find(ids, &br) == CTL_PERM_OK)
        return api_fail(x, 403, "builtin_role", "built-in roles cannot be changed");
    if (api_parse_id(ids, &id) != 0)
        return -ENOENT;
    return api_get_json(x, CTL_KIND_ROLE, id, o, j);
}

static const ctl_field role_mod_fields[] = {
    {"name", CTL_F_STRING, false, 1, API_NAME_MAX, NULL, false},
    {"permissions", CTL_F_ARRAY, false, 0, CTL_PERM_COUNT, NULL, false},
};

static int h_role_put(api_ctx *x)
{
    ctl_dir_obj o;
    cJSON *j;
    int rc = load_role(x, &o, &j);
    if (rc != 0)
        return rc;
    ctl_perm_set set = {0};
    ctl_perm_set_from_json(cJSON_GetObjectItemCaseSensitive(j, "permissions"), &set, NULL, 0);
    char old[API_NAME_MAX + 1], name[API_NAME_MAX + 1], key[ROLE_KEY_MAX];
    snprintf(old, sizeof(old), "%s", api_jstr(j, "name") ? api_jstr(j, "name") : "");
    snprintf(name, sizeof(name), "%s", api_jstr(x->body, "name") ? api_jstr(x->body, "name") : old);
    if ((rc = role_body(x, o.id, &set)) != 0)
        goto done;
    cJSON *p = ctl_perm_set_to_json(&set);
    if (!p || !cJSON_ReplaceItemInObjectCaseSensitive(j, "permissions", p) ||
        !cJSON_ReplaceItemInObjectCaseSensitive(j, "name", cJSON_CreateString(name))) {
        rc = -ENOMEM;
        goto done;
    }
    if ((rc = role_key(x->c.tenant, name, key, sizeof(key))) != 0)
        goto done;
    ctl_dir_ukey uk = {"role", key};
    if ((rc = api_put_json(x->t, x->c.actor, &o, j, &uk, 1)) != 0)
        goto done;
    if (strcmp(old, name) != 0 &&
        (rc = role_users_walk(x->t, x->c.tenant, old, name, x->c.actor, NULL)) != 0)
        goto done;
    ctl_role r = {.perms = set, .can_login = true};
    rc = api_answer(x, 200, role_out(NULL, o.id, name, &r, false));
done:
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    return rc;
}

static int h_role_del(api_ctx *x)
{
    ctl_dir_obj o;
    cJSON *j;
    int rc = load_role(x, &o, &j);
    if (rc != 0)
        return rc;
    uint64_t users = 0;
    const char *name = api_jstr(j, "name");
    if ((rc = role_users_walk(x->t, x->c.tenant, name ? name : "", NULL, NULL, &users)) == 0) {
        if (users > 0) {
            rc = api_fail_count(x, 409, "role_in_use", "users", users,
                                "the role is held by %" PRIu64 " user%s", users,
                                users == 1 ? "" : "s");
        } else if ((rc = ctl_dir_del(x->t, x->c.actor, CTL_KIND_ROLE, o.id)) == 0) {
            rc = ctl_http_resp_empty(x->resp, 204);
        }
    }
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    return rc;
}

#define F(t) t, sizeof(t) / sizeof((t)[0])

const api_route api_account_routes[] = {
    {"POST", "/api/v1/session", API_NEED_NONE, F(login_fields), h_login, NULL},
    {"DELETE", "/api/v1/session", API_NEED_SESSION, NULL, 0, h_logout, NULL},
    {"GET", "/api/v1/me", API_NEED_ACCOUNT, NULL, 0, h_me, NULL},
    {"PUT", "/api/v1/me/password", API_NEED_ACCOUNT, F(password_fields), h_password, NULL},
    {"GET", "/api/v1/me/preferences", API_NEED_ACCOUNT, NULL, 0, h_prefs_get, NULL},
    {"PUT", "/api/v1/me/preferences", API_NEED_ACCOUNT, F(pref_fields), h_prefs_put, NULL},
    {"GET", "/api/v1/users", CTL_PERM_USER_GET, NULL, 0, api_obj_list, &user_kind},
    {"POST", "/api/v1/users", CTL_PERM_USER_ADD, F(user_add_fields), h_user_add, NULL},
    {"GET", "/api/v1/users/{id}", CTL_PERM_USER_GET, NULL, 0, api_obj_get, &user_kind},
    {"PUT", "/api/v1/users/{id}", CTL_PERM_USER_MODIFY, NULL, 0, api_obj_modify, &user_kind},
    {"DELETE", "/api/v1/users/{id}", CTL_PERM_USER_REMOVE, NULL, 0, api_obj_delete, &user_kind},
    {"GET", "/api/v1/roles", CTL_PERM_ROLE_GET, NULL, 0, h_roles_list, NULL},
    {"POST", "/api/v1/roles", CTL_PERM_ROLE_CREATE, F(role_create_fields), h_role_create, NULL},
    {"PUT", "/api/v1/roles/{id}", CTL_PERM_ROLE_MODIFY, F(role_mod_fields), h_role_put, NULL},
    {"DELETE", "/api/v1/roles/{id}", CTL_PERM_ROLE_DELETE, NULL, 0, h_role_del, NULL},
};
const size_t api_account_nroutes = sizeof(api_account_routes) / sizeof(api_account_routes[0]);
