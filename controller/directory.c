#include "controller/directory.h"
#include "common/c2d_lmdb.h"

#include "common/c2d_time.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

/* Object record: version, tenant, parent, created, updated (BE64 each),
 * unique-key block length BE16, the block (ns \0 value \0 ...), JSON + NUL. */
#define REC_VERSION 1
#define REC_HDR (1 + 8 + 8 + 8 + 8 + 2)
#define UKEY_LEN (CTL_DIR_UKEY_NS_MAX + 1 + CTL_DIR_UKEY_VALUE_MAX + 1)
#define UKEYS_BLOCK_MAX (CTL_DIR_UKEYS_MAX * UKEY_LEN)
#define OBJ_KEY 9  /* kind + id */
#define IDX_KEY 17 /* owner + kind + id */
#define AUDIT_KEY 16
#define AUDIT_OBJ_KEY (OBJ_KEY + AUDIT_KEY)
#define AUDIT_HDR 9 /* kind + id, then JSON + NUL */

struct ctl_dir {
    MDB_env *env;
    int readonly;
    MDB_dbi objects, by_tenant, by_parent, unique, audit, audit_obj, audit_tenant, meta;
    int64_t (*now)(void *ud);
    void *now_ud;
};

struct ctl_dir_txn {
    ctl_dir *d;
    MDB_txn *txn;
    int write;
    int64_t now;
};

static const char *const kind_names[CTL_KIND_MAX + 1] = {
    [CTL_KIND_TENANT] = "tenant",
    [CTL_KIND_CLIENT] = "client",
    [CTL_KIND_SITE] = "site",
    [CTL_KIND_RECORDER] = "recorder",
    [CTL_KIND_CHANNEL] = "channel",
    [CTL_KIND_USER] = "user",
    [CTL_KIND_ROLE] = "role",
    [CTL_KIND_SESSION] = "session",
    [CTL_KIND_GROUP] = "group",
    [CTL_KIND_BOOKMARK] = "bookmark",
    [CTL_KIND_GEOFENCE] = "geofence",
    [CTL_KIND_EVENT] = "event",
    [CTL_KIND_DRIVER] = "driver",
    [CTL_KIND_SETTINGS] = "settings",
    [CTL_KIND_LINK] = "link",
    [CTL_KIND_LOCATION] = "location",
    [CTL_KIND_PLAYBACK] = "playback",
    [CTL_KIND_VDISK] = "vdisk",
    [CTL_KIND_AISUB] = "ai_subscription",
};

const char *ctl_dir_kind_name(int kind)
{
    return kind >= 1 && kind <= CTL_KIND_MAX ? kind_names[kind] : NULL;
}

int ctl_dir_kind_from_name(const char *name)
{
    for (int k = 1; name && k <= CTL_KIND_MAX; k++)
        if (strcmp(kind_names[k], name) == 0)
            return k;
    return 0;
}

static int kind_valid(int kind)
{
    return kind >= 1 && kind <= CTL_KIND_MAX;
}

/* For writes after the first change: every failure is fatal to the txn,
 * and none may be mistaken for the recoverable -ENOENT/-EEXIST. */
static int werr(int rc)
{
    rc = c2d_mdb_errno(rc);
    return rc == -ENOENT || rc == -EEXIST ? -EIO : rc;
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static uint64_t get_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static void obj_key(uint8_t k[OBJ_KEY], int kind, uint64_t id)
{
    k[0] = (uint8_t)kind;
    put_be(k + 1, id, 8);
}

static void idx_key(uint8_t k[IDX_KEY], uint64_t owner, int kind, uint64_t id)
{
    put_be(k, owner, 8);
    obj_key(k + 8, kind, id);
}

static int64_t clock_default(void *ud)
{
    (void)ud;
    return c2d_now_us();
}

int ctl_dir_open(ctl_ledger *l, ctl_dir **out)
{
    ctl_dir *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->env = ctl_ledger_env(l);
    d->readonly = ctl_ledger_readonly(l);
    d->now = clock_default;
    static const char *const names[] = {"dir_objects", "dir_by_tenant",   "dir_by_parent",
                                        "dir_unique",  "dir_audit",       "dir_audit_obj",
                                        "dir_meta",    "dir_audit_tenant"};
    MDB_dbi *dbis[] = {&d->objects, &d->by_tenant, &d->by_parent, &d->unique,
                       &d->audit,   &d->audit_obj, &d->meta,      &d->audit_tenant};
    MDB_txn *txn;
    int rc = c2d_mdb_errno(mdb_txn_begin(d->env, NULL, d->readonly ? MDB_RDONLY : 0, &txn));
    if (rc != 0)
        goto fail;
    for (size_t i = 0; rc == 0 && i < sizeof(names) / sizeof(names[0]); i++)
        rc = c2d_mdb_errno(mdb_dbi_open(txn, names[i], d->readonly ? 0 : MDB_CREATE, dbis[i]));
    if (rc != 0) {
        mdb_txn_abort(txn);
        goto fail;
    }
    if ((rc = c2d_mdb_errno(mdb_txn_commit(txn))) != 0) /* commit keeps the handles open */
        goto fail;
    *out = d;
    return 0;
fail:
    free(d);
    return rc;
}

void ctl_dir_free(ctl_dir *d)
{
    free(d);
}

void ctl_dir_set_clock(ctl_dir *d, int64_t (*now)(void *ud), void *ud)
{
    d->now = now ? now : clock_default;
    d->now_ud = now ? ud : NULL;
}

int ctl_dir_begin(ctl_dir *d, int write, ctl_dir_txn **out)
{
    if (write && d->readonly)
        return -EROFS;
    ctl_dir_txn *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    int rc = c2d_mdb_errno(mdb_txn_begin(d->env, NULL, write ? 0 : MDB_RDONLY, &t->txn));
    if (rc != 0) {
        free(t);
        return rc;
    }
    t->d = d;
    t->write = write != 0;
    int64_t now = d->now(d->now_ud);
    t->now = now < 0 ? 0 : now;
    *out = t;
    return 0;
}

int ctl_dir_commit(ctl_dir_txn *t)
{
    int rc = c2d_mdb_errno(mdb_txn_commit(t->txn));
    free(t);
    return rc;
}

void ctl_dir_abort(ctl_dir_txn *t)
{
    if (!t)
        return;
    mdb_txn_abort(t->txn);
    free(t);
}

MDB_txn *ctl_dir_txn_mdb(ctl_dir_txn *t)
{
    return t->txn;
}

int64_t ctl_dir_txn_now(const ctl_dir_txn *t)
{
    return t->now;
}

void ctl_dir_obj_clear(ctl_dir_obj *obj)
{
    if (!obj)
        return;
    free(obj->json);
    memset(obj, 0, sizeof(*obj));
}

/* A decoded object record; pointers into the database value. */
typedef struct {
    uint64_t tenant, parent;
    int64_t created_us, updated_us;
    const uint8_t *ukeys;
    size_t ukeys_len;
    const char *json;
    size_t json_len; /* without the NUL */
} rec_view;

static int decode_rec(const MDB_val *v, rec_view *r)
{
    const uint8_t *p = v->mv_data;
    if (v->mv_size < REC_HDR + 1 || p[0] != REC_VERSION)
        return -EIO;
    size_t ul = (size_t)get_be(p + 33, 2);
    if (ul > UKEYS_BLOCK_MAX || REC_HDR + ul + 1 > v->mv_size)
        return -EIO;
    size_t jl = v->mv_size - REC_HDR - ul - 1;
    const char *json = (const char *)p + REC_HDR + ul;
    if (json[jl] != '\0' || memchr(json, '\0', jl) || jl > CTL_DIR_JSON_MAX)
        return -EIO;
    if (ul > 0 && p[REC_HDR + ul - 1] != '\0')
        return -EIO;
    r->tenant = get_be(p + 1, 8);
    r->parent = get_be(p + 9, 8);
    r->created_us = (int64_t)get_be(p + 17, 8);
    r->updated_us = (int64_t)get_be(p + 25, 8);
    r->ukeys = p + REC_HDR;
    r->ukeys_len = ul;
    r->json = json;
    r->json_len = jl;
    return 0;
}

/* Reads the record of (kind, id) into r (views into the database). */
static int read_rec(ctl_dir_txn *t, int kind, uint64_t id, rec_view *r)
{
    uint8_t k[OBJ_KEY];
    obj_key(k, kind, id);
    MDB_val mk = {OBJ_KEY, k}, mv;
    int rc = c2d_mdb_errno(mdb_get(t->txn, t->d->objects, &mk, &mv));
    return rc != 0 ? rc : decode_rec(&mv, r);
}

static void view_to_obj(int kind, uint64_t id, const rec_view *r, ctl_dir_obj *o)
{
    o->kind = kind;
    o->id = id;
    o->tenant = r->tenant;
    o->parent = r->parent;
    o->created_us = r->created_us;
    o->updated_us = r->updated_us;
    o->json = (char *)r->json;
}

int ctl_dir_get(ctl_dir_txn *t, int kind, uint64_t id, ctl_dir_obj *out)
{
    if (!kind_valid(kind) || id == 0)
        return -EINVAL;
    rec_view r;
    int rc = read_rec(t, kind, id, &r);
    if (rc != 0)
        return rc;
    char *json = malloc(r.json_len + 1);
    if (!json)
        return -ENOMEM;
    memcpy(json, r.json, r.json_len + 1);
    view_to_obj(kind, id, &r, out);
    out->json = json;
    return 0;
}

int ctl_dir_get_in_tenant(ctl_dir_txn *t, uint64_t tenant, int kind, uint64_t id, ctl_dir_obj *out)
{
    if (!kind_valid(kind) || id == 0)
        return -EINVAL;
    rec_view r;
    int rc = read_rec(t, kind, id, &r);
    if (rc != 0)
        return rc;
    if (r.tenant != tenant)
        return -ENOENT; /* exactly as if missing */
    return ctl_dir_get(t, kind, id, out);
}

/* Unique keys: validates and encodes keys into block (ns \0 value \0 ...). */
static int encode_ukeys(const ctl_dir_ukey *keys, size_t n, uint8_t *block, size_t *len)
{
    if (n > CTL_DIR_UKEYS_MAX || (n > 0 && !keys))
        return -EINVAL;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (!keys[i].ns || !keys[i].value)
            return -EINVAL;
        size_t nl = strnlen(keys[i].ns, CTL_DIR_UKEY_NS_MAX + 1);
        size_t vl = strnlen(keys[i].value, CTL_DIR_UKEY_VALUE_MAX + 1);
        if (nl == 0 || nl > CTL_DIR_UKEY_NS_MAX || vl == 0 || vl > CTL_DIR_UKEY_VALUE_MAX)
            return -EINVAL;
        memcpy(block + off, keys[i].ns, nl + 1);
        memcpy(block + off + nl + 1, keys[i].value, vl + 1);
        off += nl + vl + 2;
    }
    *len = off;
    return 0;
}

/* Walks an encoded block: *pos is advanced; returns the key's length
 * (ns \0 value), 0 at the end. */
static size_t next_ukey(const uint8_t *block, size_t len, size_t *pos, const uint8_t **key)
{
    if (*pos >= len)
        return 0;
    const uint8_t *p = block + *pos;
    size_t nl = strnlen((const char *)p, len - *pos);
    size_t vl = *pos + nl + 1 < len ? strnlen((const char *)p + nl + 1, len - *pos - nl - 1) : 0;
    *key = p;
    *pos += nl + vl + 2;
    return nl + 1 + vl;
}

/* -EEXIST if some key of block is held by an object other than (kind, id). */
static int check_ukeys(ctl_dir_txn *t, const uint8_t *block, size_t len, int kind, uint64_t id)
{
    size_t pos = 0, kl;
    const uint8_t *key;
    while ((kl = next_ukey(block, len, &pos, &key)) != 0) {
        MDB_val mk = {kl, (void *)key}, mv;
        int rc = c2d_mdb_errno(mdb_get(t->txn, t->d->unique, &mk, &mv));
        if (rc == -ENOENT)
            continue;
        if (rc != 0)
            return rc;
        if (mv.mv_size != OBJ_KEY)
            return -EIO;
        const uint8_t *v = mv.mv_data;
        if (v[0] != kind || get_be(v + 1, 8) != id)
            return -EEXIST;
    }
    return 0;
}

/* Puts (owner 1) or deletes (0) every key of block for (kind, id). */
static int write_ukeys(ctl_dir_txn *t, const uint8_t *block, size_t len, int kind, uint64_t id,
                       int put)
{
    size_t pos = 0, kl;
    const uint8_t *key;
    uint8_t ov[OBJ_KEY];
    obj_key(ov, kind, id);
    while ((kl = next_ukey(block, len, &pos, &key)) != 0) {
        MDB_val mk = {kl, (void *)key}, mv = {OBJ_KEY, ov};
        int rc = put ? mdb_put(t->txn, t->d->unique, &mk, &mv, 0)
                     : mdb_del(t->txn, t->d->unique, &mk, NULL);
        if (rc != 0 && !(rc == MDB_NOTFOUND && !put))
            return werr(rc);
    }
    return 0;
}

static int write_idx(ctl_dir_txn *t, MDB_dbi dbi, uint64_t owner, int kind, uint64_t id, int put)
{
    uint8_t k[IDX_KEY];
    idx_key(k, owner, kind, id);
    MDB_val mk = {IDX_KEY, k}, mv = {0, (void *)""};
    int rc = put ? mdb_put(t->txn, dbi, &mk, &mv, 0) : mdb_del(t->txn, dbi, &mk, NULL);
    return rc == MDB_NOTFOUND && !put ? 0 : werr(rc);
}

/* Increments counter name of dir_meta (first value 1) into *out. */
static int next_counter(ctl_dir_txn *t, const char *name, uint64_t *out)
{
    MDB_val mk = {strlen(name), (void *)name}, mv;
    uint64_t v = 0;
    int rc = mdb_get(t->txn, t->d->meta, &mk, &mv);
    if (rc == MDB_SUCCESS) {
        if (mv.mv_size != 8)
            return -EIO;
        v = get_be(mv.mv_data, 8);
    } else if (rc != MDB_NOTFOUND) {
        return werr(rc);
    }
    uint8_t b[8];
    put_be(b, ++v, 8);
    mv.mv_size = 8;
    mv.mv_data = b;
    if ((rc = mdb_put(t->txn, t->d->meta, &mk, &mv, 0)) != 0)
        return werr(rc);
    *out = v;
    return 0;
}

/* Removes the fields whose names begin with '_' (secrets) from a copy. */
static void strip_secrets(cJSON *o)
{
    cJSON *it = o ? o->child : NULL;
    while (it) {
        cJSON *next = it->next;
        if (it->string && it->string[0] == '_')
            cJSON_Delete(cJSON_DetachItemViaPointer(o, it));
        it = next;
    }
}

/* Adds the text JSON of an object as field name (null if json is NULL). */
static int add_snapshot(cJSON *entry, const char *name, const char *json)
{
    cJSON *v = json ? cJSON_Parse(json) : cJSON_CreateNull();
    if (!v)
        return -ENOMEM; /* stored texts parsed when they were put */
    strip_secrets(v);
    return cJSON_AddItemToObject(entry, name, v) ? 0 : -ENOMEM;
}

/* Writes the audit entry of a change; before/after NULL for none. */
static int write_audit(ctl_dir_txn *t, const char *actor, uint64_t tenant, int kind, uint64_t id,
                       const char *action, const char *before, const char *after)
{
    cJSON *e = cJSON_CreateObject();
    char *text = NULL;
    uint8_t *val = NULL;
    int rc = -ENOMEM;
    if (!e || !cJSON_AddStringToObject(e, "actor", actor) ||
        !cJSON_AddNumberToObject(e, "at", (double)t->now) ||
        !cJSON_AddNumberToObject(e, "tenant", (double)tenant) ||
        !cJSON_AddStringToObject(e, "kind", ctl_dir_kind_name(kind)) ||
        !cJSON_AddNumberToObject(e, "id", (double)id) ||
        !cJSON_AddStringToObject(e, "action", action))
        goto out;
    if ((rc = add_snapshot(e, "before", before)) != 0 ||
        (rc = add_snapshot(e, "after", after)) != 0)
        goto out;
    rc = -ENOMEM;
    if (!(text = cJSON_PrintUnformatted(e)))
        goto out;
    size_t tl = strlen(text);
    if (!(val = malloc(AUDIT_HDR + tl + 1)))
        goto out;
    obj_key(val, kind, id);
    memcpy(val + AUDIT_HDR, text, tl + 1);
    uint64_t seq;
    if ((rc = next_counter(t, "audit_seq", &seq)) != 0)
        goto out;
    uint8_t k[AUDIT_OBJ_KEY];
    obj_key(k, kind, id);
    put_be(k + OBJ_KEY, (uint64_t)t->now, 8);
    put_be(k + OBJ_KEY + 8, seq, 8);
    MDB_val mk = {AUDIT_KEY, k + OBJ_KEY}, mv = {AUDIT_HDR + tl + 1, val};
    if ((rc = werr(mdb_put(t->txn, t->d->audit, &mk, &mv, 0))) != 0)
        goto out;
    MDB_val ok = {AUDIT_OBJ_KEY, k}, ov = {0, (void *)""};
    if ((rc = werr(mdb_put(t->txn, t->d->audit_obj, &ok, &ov, 0))) != 0)
        goto out;
    uint8_t tk[8 + AUDIT_KEY];
    put_be(tk, tenant, 8);
    memcpy(tk + 8, k + OBJ_KEY, AUDIT_KEY);
    MDB_val tkv = {sizeof(tk), tk};
    rc = werr(mdb_put(t->txn, t->d->audit_tenant, &tkv, &ov, 0));
out:
    free(val);
    free(text);
    cJSON_Delete(e);
    return rc;
}

int ctl_dir_put(ctl_dir_txn *t, const char *actor, ctl_dir_obj *obj, const ctl_dir_ukey *keys,
                size_t n)
{
    if (!t->write)
        return -EROFS;
    if (!obj || !kind_valid(obj->kind) || !obj->json)
        return -EINVAL;
    size_t jl = strnlen(obj->json, CTL_DIR_JSON_MAX + 1);
    if (jl > CTL_DIR_JSON_MAX)
        return -EFBIG;
    cJSON *parsed = cJSON_ParseWithOpts(obj->json, NULL, 1);
    int is_obj = cJSON_IsObject(parsed);
    cJSON_Delete(parsed);
    if (!is_obj)
        return -EINVAL;
    uint8_t block[UKEYS_BLOCK_MAX];
    size_t ul = 0;
    int rc = encode_ukeys(keys, n, block, &ul);
    if (rc != 0)
        return rc;

    /* Checks first: until the first write, a refusal leaves t untouched. */
    int kind = obj->kind;
    uint64_t id = obj->id;
    rec_view old;
    char *before = NULL;
    uint8_t *oldkeys = NULL, *val = NULL;
    size_t oldkeys_len = 0;
    if (id != 0) {
        if ((rc = read_rec(t, kind, id, &old)) != 0)
            return rc;
        /* Copies: the views die with the first write. */
        before = malloc(old.json_len + 1);
        oldkeys = malloc(old.ukeys_len + 1);
        if (!before || !oldkeys) {
            rc = -ENOMEM;
            goto out;
        }
        memcpy(before, old.json, old.json_len + 1);
        memcpy(oldkeys, old.ukeys, old.ukeys_len);
        oldkeys_len = old.ukeys_len;
        if (!keys) { /* NULL keeps the object's keys */
            memcpy(block, old.ukeys, old.ukeys_len);
            ul = old.ukeys_len;
        }
    }
    if ((rc = check_ukeys(t, block, ul, kind, id)) != 0)
        goto out;
    if (!(val = malloc(REC_HDR + ul + jl + 1))) {
        rc = -ENOMEM;
        goto out;
    }

    /* Writes. */
    int64_t created = id != 0 ? old.created_us : t->now;
    if (id == 0 && (rc = next_counter(t, "next_id", &id)) != 0)
        goto out;
    if (before) {
        if ((rc = write_ukeys(t, oldkeys, oldkeys_len, kind, id, 0)) != 0 ||
            (rc = write_idx(t, t->d->by_tenant, old.tenant, kind, id, 0)) != 0 ||
            (old.parent && (rc = write_idx(t, t->d->by_parent, old.parent, kind, id, 0)) != 0))
            goto out;
    }
    val[0] = REC_VERSION;
    put_be(val + 1, obj->tenant, 8);
    put_be(val + 9, obj->parent, 8);
    put_be(val + 17, (uint64_t)created, 8);
    put_be(val + 25, (uint64_t)t->now, 8);
    put_be(val + 33, ul, 2);
    memcpy(val + REC_HDR, block, ul);
    memcpy(val + REC_HDR + ul, obj->json, jl + 1);
    uint8_t k[OBJ_KEY];
    obj_key(k, kind, id);
    MDB_val mk = {OBJ_KEY, k}, mv = {REC_HDR + ul + jl + 1, val};
    if ((rc = werr(mdb_put(t->txn, t->d->objects, &mk, &mv, 0))) != 0 ||
        (rc = write_ukeys(t, block, ul, kind, id, 1)) != 0 ||
        (rc = write_idx(t, t->d->by_tenant, obj->tenant, kind, id, 1)) != 0 ||
        (obj->parent && (rc = write_idx(t, t->d->by_parent, obj->parent, kind, id, 1)) != 0))
        goto out;
    if (actor && (rc = write_audit(t, actor, obj->tenant, kind, id, before ? "update" : "create",
                                   before, obj->json)) != 0)
        goto out;
    obj->id = id;
    obj->created_us = created;
    obj->updated_us = t->now;
out:
    free(val);
    free(before);
    free(oldkeys);
    return rc;
}

int ctl_dir_del(ctl_dir_txn *t, const char *actor, int kind, uint64_t id)
{
    if (!t->write)
        return -EROFS;
    if (!kind_valid(kind) || id == 0)
        return -EINVAL;
    rec_view old;
    int rc = read_rec(t, kind, id, &old);
    if (rc != 0)
        return rc;
    char *before = malloc(old.json_len + 1);
    uint8_t *oldkeys = malloc(old.ukeys_len + 1);
    if (!before || !oldkeys) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(before, old.json, old.json_len + 1);
    memcpy(oldkeys, old.ukeys, old.ukeys_len);
    uint64_t tenant = old.tenant, parent = old.parent;
    size_t oldkeys_len = old.ukeys_len;
    uint8_t k[OBJ_KEY];
    obj_key(k, kind, id);
    MDB_val mk = {OBJ_KEY, k};
    if ((rc = werr(mdb_del(t->txn, t->d->objects, &mk, NULL))) != 0 ||
        (rc = write_ukeys(t, oldkeys, oldkeys_len, kind, id, 0)) != 0 ||
        (rc = write_idx(t, t->d->by_tenant, tenant, kind, id, 0)) != 0 ||
        (parent && (rc = write_idx(t, t->d->by_parent, parent, kind, id, 0)) != 0))
        goto out;
    if (actor)
        rc = write_audit(t, actor, tenant, kind, id, "delete", before, NULL);
out:
    free(before);
    free(oldkeys);
    return rc;
}

int ctl_dir_audit_note(ctl_dir_txn *t, const char *actor, uint64_t tenant, int kind, uint64_t id,
                       const char *action, const cJSON *detail)
{
    if (!t->write)
        return -EROFS;
    if (!actor || !*actor || !action || !*action || !kind_valid(kind))
        return -EINVAL;
    char *text = NULL;
    if (detail && !(text = cJSON_PrintUnformatted(detail)))
        return -ENOMEM;
    int rc = write_audit(t, actor, tenant, kind, id, action, NULL, text);
    cJSON_free(text);
    return rc;
}

int ctl_dir_lookup(ctl_dir_txn *t, const char *ns, const char *value, int *kind, uint64_t *id)
{
    uint8_t block[UKEY_LEN];
    size_t len;
    ctl_dir_ukey key = {ns, value};
    int rc = encode_ukeys(&key, 1, block, &len);
    if (rc != 0)
        return rc;
    MDB_val mk = {len - 1, block}, mv; /* without the last NUL */
    if ((rc = c2d_mdb_errno(mdb_get(t->txn, t->d->unique, &mk, &mv))) != 0)
        return rc;
    if (mv.mv_size != OBJ_KEY)
        return -EIO;
    const uint8_t *v = mv.mv_data;
    if (!kind_valid(v[0]))
        return -EIO;
    *kind = v[0];
    *id = get_be(v + 1, 8);
    return 0;
}

/* Compares a value of dir_unique (vl bytes) with the string s, as LMDB
 * orders keys: memcmp, then the shorter first. */
static int value_cmp(const uint8_t *v, size_t vl, const char *s)
{
    size_t sl = strlen(s);
    int c = memcmp(v, s, vl < sl ? vl : sl);
    return c != 0 ? c : (vl > sl) - (vl < sl);
}

int ctl_dir_ukey_range(ctl_dir_txn *t, const char *ns, const char *from, const char *to,
                       int reverse, size_t limit, ctl_dir_ukey_cb cb, void *ud, size_t *n)
{
    size_t nl = ns ? strnlen(ns, CTL_DIR_UKEY_NS_MAX + 1) : 0;
    size_t fl = from ? strnlen(from, CTL_DIR_UKEY_VALUE_MAX + 1) : 0;
    size_t tl = to ? strnlen(to, CTL_DIR_UKEY_VALUE_MAX + 1) : 0;
    if (nl == 0 || nl > CTL_DIR_UKEY_NS_MAX || !from || fl > CTL_DIR_UKEY_VALUE_MAX ||
        tl > CTL_DIR_UKEY_VALUE_MAX || !cb || limit == 0 || limit > CTL_DIR_LIST_MAX)
        return -EINVAL;
    /* Forward from ns \0 from; backward from just below ns \0 to, or below
     * ns \1 (past every key of ns) without an upper bound. */
    uint8_t start[UKEY_LEN];
    memcpy(start, ns, nl);
    start[nl] = reverse && !to ? 1 : 0;
    size_t sl = nl + 1;
    if (!reverse || to) {
        memcpy(start + sl, reverse ? to : from, reverse ? tl : fl);
        sl += reverse ? tl : fl;
    }
    MDB_cursor *cur;
    int rc = c2d_mdb_errno(mdb_cursor_open(t->txn, t->d->unique, &cur));
    if (rc != 0)
        return rc;
    MDB_val k = {sl, start}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (reverse && mrc == MDB_SUCCESS)
        mrc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    else if (reverse && mrc == MDB_NOTFOUND)
        mrc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    size_t count = 0;
    char value[CTL_DIR_UKEY_VALUE_MAX + 1];
    while (mrc == MDB_SUCCESS && count < limit) {
        const uint8_t *p = k.mv_data;
        if (k.mv_size < nl + 1 || memcmp(p, ns, nl) != 0 || p[nl] != 0)
            break;
        const uint8_t *val = p + nl + 1;
        size_t vl = k.mv_size - nl - 1;
        if (reverse ? value_cmp(val, vl, from) < 0 : to && value_cmp(val, vl, to) >= 0)
            break;
        const uint8_t *ov = v.mv_data;
        if (vl > CTL_DIR_UKEY_VALUE_MAX || v.mv_size != OBJ_KEY || !kind_valid(ov[0])) {
            rc = -EIO;
            break;
        }
        memcpy(value, val, vl);
        value[vl] = '\0';
        if ((rc = cb(ud, value, ov[0], get_be(ov + 1, 8))) != 0)
            break;
        count++;
        mrc = mdb_cursor_get(cur, &k, &v, reverse ? MDB_PREV : MDB_NEXT);
    }
    if (rc == 0 && mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
        rc = c2d_mdb_errno(mrc);
    mdb_cursor_close(cur);
    if (n)
        *n = count;
    return rc;
}

/* Walks index dbi from (owner, kind, after_id + 1) while the key is of
 * (owner, kind); cb NULL only counts. */
static int list_idx(ctl_dir_txn *t, MDB_dbi dbi, uint64_t owner, int kind, uint64_t after_id,
                    size_t limit, ctl_dir_obj_cb cb, void *ud, uint64_t *count)
{
    *count = 0;
    if (after_id == UINT64_MAX)
        return 0;
    MDB_cursor *cur;
    int rc = c2d_mdb_errno(mdb_cursor_open(t->txn, dbi, &cur));
    if (rc != 0)
        return rc;
    uint8_t start[IDX_KEY];
    idx_key(start, owner, kind, after_id + 1);
    MDB_val k = {IDX_KEY, start}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (mrc == MDB_SUCCESS && *count < limit) {
        if (k.mv_size != IDX_KEY || memcmp(k.mv_data, start, OBJ_KEY) != 0)
            break;
        if (cb) {
            uint64_t id = get_be((const uint8_t *)k.mv_data + 9, 8);
            rec_view r;
            ctl_dir_obj o;
            if ((rc = read_rec(t, kind, id, &r)) != 0) {
                rc = rc == -ENOENT ? -EIO : rc; /* index without its object */
                break;
            }
            view_to_obj(kind, id, &r, &o);
            if ((rc = cb(ud, &o)) != 0)
                break;
        }
        (*count)++;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (rc == 0 && mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
        rc = c2d_mdb_errno(mrc);
    mdb_cursor_close(cur);
    return rc;
}

static int list_checked(ctl_dir_txn *t, MDB_dbi dbi, uint64_t owner, int kind, uint64_t after_id,
                        size_t limit, ctl_dir_obj_cb cb, void *ud, size_t *n)
{
    if (!kind_valid(kind) || limit == 0 || limit > CTL_DIR_LIST_MAX || !cb)
        return -EINVAL;
    uint64_t count;
    int rc = list_idx(t, dbi, owner, kind, after_id, limit, cb, ud, &count);
    if (n)
        *n = (size_t)count;
    return rc;
}

int ctl_dir_list_tenant(ctl_dir_txn *t, uint64_t tenant, int kind, uint64_t after_id, size_t limit,
                        ctl_dir_obj_cb cb, void *ud, size_t *n)
{
    return list_checked(t, t->d->by_tenant, tenant, kind, after_id, limit, cb, ud, n);
}

int ctl_dir_list_children(ctl_dir_txn *t, uint64_t parent, int kind, uint64_t after_id,
                          size_t limit, ctl_dir_obj_cb cb, void *ud, size_t *n)
{
    if (parent == 0)
        return -EINVAL;
    return list_checked(t, t->d->by_parent, parent, kind, after_id, limit, cb, ud, n);
}

int ctl_dir_count_children(ctl_dir_txn *t, uint64_t parent, int kind, uint64_t *count)
{
    if (parent == 0 || !kind_valid(kind))
        return -EINVAL;
    uint64_t c;
    int rc = list_idx(t, t->d->by_parent, parent, kind, 0, SIZE_MAX, NULL, NULL, &c);
    if (rc == 0)
        *count = c;
    return rc;
}

/* Decodes an audit value and calls cb. */
static int audit_emit(const uint8_t *key, const MDB_val *v, ctl_dir_audit_cb cb, void *ud)
{
    const uint8_t *p = v->mv_data;
    if (v->mv_size < AUDIT_HDR + 1 || p[v->mv_size - 1] != '\0')
        return -EIO;
    ctl_dir_audit_entry e = {
        .at_us = (int64_t)get_be(key, 8),
        .seq = get_be(key + 8, 8),
        .kind = p[0],
        .id = get_be(p + 1, 8),
        .json = (const char *)p + AUDIT_HDR,
    };
    return cb(ud, &e);
}

int ctl_dir_audit_list(ctl_dir_txn *t, const ctl_dir_audit_filter *f, size_t limit,
                       ctl_dir_audit_cb cb, void *ud, size_t *n)
{
    if (!f || !cb || limit == 0 || limit > CTL_DIR_LIST_MAX || (f->kind && !kind_valid(f->kind)) ||
        (!f->kind && f->id))
        return -EINVAL;
    /* Start at max((from, 0), (after_at, after_seq + 1)). */
    uint64_t at = f->from_us > 0 ? (uint64_t)f->from_us : 0, seq = 0;
    if (f->after_seq) {
        uint64_t aat = f->after_at_us > 0 ? (uint64_t)f->after_at_us : 0;
        if (aat > at || (aat == at && f->after_seq + 1 > seq)) {
            at = aat;
            seq = f->after_seq + 1;
        }
    }
    uint64_t to = f->to_us > 0 ? (uint64_t)f->to_us : UINT64_MAX;
    /* Walk one index: an object's entries, a space's, or all; each index
     * key is a prefix and then the entry's (at, seq) key. */
    MDB_dbi dbi = t->d->audit;
    uint8_t start[AUDIT_OBJ_KEY];
    size_t prefix = 0;
    if (f->id) {
        dbi = t->d->audit_obj;
        obj_key(start, f->kind, f->id);
        prefix = OBJ_KEY;
    } else if (f->tenant) {
        dbi = t->d->audit_tenant;
        put_be(start, f->tenant, 8);
        prefix = 8;
    }
    put_be(start + prefix, at, 8);
    put_be(start + prefix + 8, seq, 8);
    MDB_cursor *cur;
    int rc = c2d_mdb_errno(mdb_cursor_open(t->txn, dbi, &cur));
    if (rc != 0)
        return rc;
    size_t count = 0;
    MDB_val k = {prefix + AUDIT_KEY, start}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    for (; mrc == MDB_SUCCESS && count < limit; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *key = k.mv_data;
        if (k.mv_size != prefix + AUDIT_KEY || memcmp(key, start, prefix) != 0)
            break;
        key += prefix;
        if (get_be(key, 8) >= to)
            break;
        MDB_val ev = v;
        if (prefix) {
            MDB_val ek = {AUDIT_KEY, (void *)key};
            if ((rc = c2d_mdb_errno(mdb_get(t->txn, t->d->audit, &ek, &ev))) != 0) {
                rc = rc == -ENOENT ? -EIO : rc;
                break;
            }
        }
        if (f->kind && (ev.mv_size < 1 || ((const uint8_t *)ev.mv_data)[0] != f->kind))
            continue;
        if (f->id && f->tenant) { /* the object's entries of that space only */
            uint8_t tk[8 + AUDIT_KEY];
            put_be(tk, f->tenant, 8);
            memcpy(tk + 8, key, AUDIT_KEY);
            MDB_val tkv = {sizeof(tk), tk}, tv;
            int g = mdb_get(t->txn, t->d->audit_tenant, &tkv, &tv);
            if (g == MDB_NOTFOUND)
                continue;
            if ((rc = c2d_mdb_errno(g)) != 0)
                break;
        }
        if ((rc = audit_emit(key, &ev, cb, ud)) != 0)
            break;
        count++;
    }
    if (rc == 0 && mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
        rc = c2d_mdb_errno(mrc);
    mdb_cursor_close(cur);
    if (n)
        *n = count;
    return rc;
}
