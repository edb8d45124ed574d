/* Unit tests for controller/directory.c with a real LMDB in a temp dir:
 * create/get/update/delete with their audit entries, tenant lists with
 * pagination, children, unique keys, tenant isolation, aborts, reopening,
 * and the segment ledger working in the same environment. */
#include "check.h"
#include "controller/directory.h"
#include "controller/ledger.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHA_1 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static char dir[256];
static char path[512];
static int64_t fake_now = 1000;

static int64_t fake_clock(void *ud)
{
    (void)ud;
    return fake_now;
}

static ctl_ledger *led;
static ctl_dir *d;

static void open_all(void)
{
    led = NULL;
    d = NULL;
    CHECK(ctl_ledger_open(path, 16 << 20, 0, &led) == 0);
    ctl_ledger_set_open_mode(led, 1); /* segments without virtual disks here */
    if (!led)
        abort();
    CHECK(ctl_dir_open(led, &d) == 0);
    if (!d)
        abort();
    ctl_dir_set_clock(d, fake_clock, NULL);
}

static void close_all(void)
{
    ctl_dir_free(d);
    ctl_ledger_free(led);
    d = NULL;
    led = NULL;
}

static ctl_dir_txn *begin(int write)
{
    ctl_dir_txn *t = NULL;
    CHECK(ctl_dir_begin(d, write, &t) == 0);
    if (!t)
        abort();
    return t;
}

/* Creates an object in its own transaction; returns its id. */
static uint64_t create(const char *actor, int kind, uint64_t tenant, uint64_t parent,
                       const char *json, const char *email)
{
    ctl_dir_txn *t = begin(1);
    ctl_dir_obj o = {.kind = kind, .tenant = tenant, .parent = parent, .json = (char *)json};
    ctl_dir_ukey k = {"email", email};
    CHECK(ctl_dir_put(t, actor, &o, email ? &k : NULL, email ? 1 : 0) == 0);
    CHECK(o.id != 0 && o.created_us == fake_now && o.updated_us == fake_now);
    CHECK(ctl_dir_commit(t) == 0);
    return o.id;
}

/* Collects the audit entries a listing passes. */
typedef struct {
    int n;
    cJSON *items[16];
    int64_t last_at;
    uint64_t last_seq;
} audit_acc;

static int audit_cb(void *ud, const ctl_dir_audit_entry *e)
{
    audit_acc *a = ud;
    if (a->n < 16)
        a->items[a->n++] = cJSON_Parse(e->json);
    a->last_at = e->at_us;
    a->last_seq = e->seq;
    return 0;
}

static void audit_free(audit_acc *a)
{
    for (int i = 0; i < a->n; i++)
        cJSON_Delete(a->items[i]);
    memset(a, 0, sizeof(*a));
}

static const char *jstr(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static const cJSON *jget(const cJSON *o, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(o, name);
}

typedef struct {
    int n;
    uint64_t ids[16];
} id_acc;

static int id_cb(void *ud, const ctl_dir_obj *o)
{
    id_acc *a = ud;
    if (a->n < 16)
        a->ids[a->n++] = o->id;
    return o->json[0] == '{' ? 0 : -1;
}

static void test_crud_audit(uint64_t *tenant_a, uint64_t *tenant_b, uint64_t *client)
{
    CHECK(strcmp(ctl_dir_kind_name(CTL_KIND_GEOFENCE), "geofence") == 0);
    CHECK(ctl_dir_kind_from_name("recorder") == CTL_KIND_RECORDER);
    CHECK(ctl_dir_kind_from_name("nope") == 0 && ctl_dir_kind_name(0) == NULL &&
          ctl_dir_kind_name(CTL_KIND_MAX + 1) == NULL);

    fake_now = 1000;
    uint64_t a =
        create("root", CTL_KIND_TENANT, 0, 0, "{\"name\":\"Installer A\"}", "a@example.com");
    uint64_t b =
        create("root", CTL_KIND_TENANT, 0, 0, "{\"name\":\"Installer B\"}", "b@example.com");
    CHECK(a != b);
    fake_now = 2000;
    uint64_t c = create("alice", CTL_KIND_CLIENT, a, 0,
                        "{\"name\":\"Acme\",\"email\":\"acme@example.com\"}", "acme@example.com");

    /* Get, then update in one transaction. */
    fake_now = 3000;
    ctl_dir_txn *t = begin(1);
    ctl_dir_obj o;
    CHECK(ctl_dir_get(t, CTL_KIND_CLIENT, c, &o) == 0);
    CHECK(o.tenant == a && o.parent == 0 && o.created_us == 2000 && o.updated_us == 2000);
    CHECK(strstr(o.json, "Acme") != NULL);
    free(o.json);
    o.json = "{\"name\":\"Acme Ltd\",\"email\":\"acme@example.com\",\"_pwhash\":\"secret\"}";
    ctl_dir_ukey k = {"email", "acme@example.com"};
    CHECK(ctl_dir_put(t, "alice", &o, &k, 1) == 0);
    CHECK(o.id == c && o.created_us == 2000 && o.updated_us == 3000);
    CHECK(ctl_dir_commit(t) == 0);

    t = begin(0);
    CHECK(ctl_dir_get(t, CTL_KIND_CLIENT, c, &o) == 0);
    CHECK(strstr(o.json, "Acme Ltd") && strstr(o.json, "_pwhash") && o.updated_us == 3000);
    ctl_dir_obj_clear(&o);
    CHECK(o.json == NULL);
    ctl_dir_obj_clear(NULL);
    CHECK(ctl_dir_get(t, CTL_KIND_SITE, c, &o) == -ENOENT); /* wrong kind */
    CHECK(ctl_dir_get(t, CTL_KIND_CLIENT, 999999, &o) == -ENOENT);
    CHECK(ctl_dir_get(t, 0, c, &o) == -EINVAL);
    /* Writes through a read transaction. */
    ctl_dir_obj w = {.kind = CTL_KIND_CLIENT, .json = "{}"};
    CHECK(ctl_dir_put(t, NULL, &w, NULL, 0) == -EROFS);
    CHECK(ctl_dir_del(t, NULL, CTL_KIND_CLIENT, c) == -EROFS);

    /* Audit of the client: create then update, with before/after; the
     * secret field is stored but not audited. */
    audit_acc acc = {0};
    ctl_dir_audit_filter f = {.kind = CTL_KIND_CLIENT, .id = c};
    size_t n = 0;
    CHECK(ctl_dir_audit_list(t, &f, 10, audit_cb, &acc, &n) == 0);
    CHECK(n == 2 && acc.n == 2);
    if (acc.n == 2) {
        CHECK(strcmp(jstr(acc.items[0], "action"), "create") == 0);
        CHECK(strcmp(jstr(acc.items[0], "actor"), "alice") == 0);
        CHECK(strcmp(jstr(acc.items[0], "kind"), "client") == 0);
        CHECK(cJSON_IsNull(jget(acc.items[0], "before")));
        CHECK(strcmp(jstr(jget(acc.items[0], "after"), "name"), "Acme") == 0);
        CHECK(cJSON_GetNumberValue(jget(acc.items[0], "at")) == 2000);
        CHECK(cJSON_GetNumberValue(jget(acc.items[0], "id")) == (double)c);
        CHECK(strcmp(jstr(acc.items[1], "action"), "update") == 0);
        CHECK(strcmp(jstr(jget(acc.items[1], "before"), "name"), "Acme") == 0);
        CHECK(strcmp(jstr(jget(acc.items[1], "after"), "name"), "Acme Ltd") == 0);
        CHECK(jget(jget(acc.items[1], "after"), "_pwhash") == NULL);
        char *txt = cJSON_PrintUnformatted(acc.items[1]);
        CHECK(txt && !strstr(txt, "secret"));
        free(txt);
    }
    audit_free(&acc);
    /* All entries, by time range, by kind, paginated. */
    ctl_dir_audit_filter all = {0};
    CHECK(ctl_dir_audit_list(t, &all, 10, audit_cb, &acc, &n) == 0);
    CHECK(n == 4);
    audit_free(&acc);
    ctl_dir_audit_filter range = {.from_us = 1500, .to_us = 3000};
    CHECK(ctl_dir_audit_list(t, &range, 10, audit_cb, &acc, &n) == 0);
    CHECK(n == 1 && acc.n == 1 && strcmp(jstr(acc.items[0], "action"), "create") == 0);
    audit_free(&acc);
    ctl_dir_audit_filter bykind = {.kind = CTL_KIND_TENANT};
    CHECK(ctl_dir_audit_list(t, &bykind, 10, audit_cb, &acc, &n) == 0);
    CHECK(n == 2);
    audit_free(&acc);
    ctl_dir_audit_filter page = {0};
    CHECK(ctl_dir_audit_list(t, &page, 3, audit_cb, &acc, &n) == 0);
    CHECK(n == 3 && acc.last_at == 2000);
    page.after_at_us = acc.last_at;
    page.after_seq = acc.last_seq;
    audit_free(&acc);
    CHECK(ctl_dir_audit_list(t, &page, 3, audit_cb, &acc, &n) == 0);
    CHECK(n == 1 && acc.last_at == 3000);
    audit_free(&acc);
    ctl_dir_audit_filter objpage = {.kind = CTL_KIND_CLIENT, .id = c};
    CHECK(ctl_dir_audit_list(t, &objpage, 1, audit_cb, &acc, &n) == 0);
    CHECK(n == 1 && acc.last_at == 2000);
    objpage.after_at_us = acc.last_at;
    objpage.after_seq = acc.last_seq;
    audit_free(&acc);
    CHECK(ctl_dir_audit_list(t, &objpage, 1, audit_cb, &acc, &n) == 0);
    CHECK(n == 1 && acc.last_at == 3000);
    audit_free(&acc);
    ctl_dir_audit_filter badf = {.id = c};
    CHECK(ctl_dir_audit_list(t, &badf, 1, audit_cb, &acc, &n) == -EINVAL);
    CHECK(ctl_dir_audit_list(t, &all, 0, audit_cb, &acc, &n) == -EINVAL);
    ctl_dir_abort(t);
    ctl_dir_abort(NULL);

    /* Bounds and bad JSON. */
    t = begin(1);
    char *big = malloc(CTL_DIR_JSON_MAX + 2);
    memset(big, ' ', CTL_DIR_JSON_MAX + 1);
    big[0] = '{';
    big[CTL_DIR_JSON_MAX] = '}';
    big[CTL_DIR_JSON_MAX + 1] = '\0';
    ctl_dir_obj bo = {.kind = CTL_KIND_CLIENT, .tenant = a, .json = big};
    CHECK(ctl_dir_put(t, "alice", &bo, NULL, 0) == -EFBIG);
    big[CTL_DIR_JSON_MAX] = '\0';
    big[CTL_DIR_JSON_MAX - 1] = '}';
    CHECK(ctl_dir_put(t, "alice", &bo, NULL, 0) == 0); /* exactly the limit */
    CHECK(ctl_dir_del(t, NULL, CTL_KIND_CLIENT, bo.id) == 0);
    free(big);
    ctl_dir_obj bad = {.kind = CTL_KIND_CLIENT, .tenant = a, .json = "[1,2]"};
    CHECK(ctl_dir_put(t, "alice", &bad, NULL, 0) == -EINVAL);
    bad.json = "{\"a\":";
    CHECK(ctl_dir_put(t, "alice", &bad, NULL, 0) == -EINVAL);
    bad.json = "{}";
    bad.kind = 99;
    CHECK(ctl_dir_put(t, "alice", &bad, NULL, 0) == -EINVAL);
    bad.kind = CTL_KIND_CLIENT;
    ctl_dir_ukey empty = {"email", ""};
    CHECK(ctl_dir_put(t, "alice", &bad, &empty, 1) == -EINVAL);
    bad.id = 424242;
    CHECK(ctl_dir_put(t, "alice", &bad, NULL, 0) == -ENOENT); /* update of nothing */
    CHECK(ctl_dir_del(t, "alice", CTL_KIND_CLIENT, 424242) == -ENOENT);
    CHECK(ctl_dir_commit(t) == 0);

    *tenant_a = a;
    *tenant_b = b;
    *client = c;
}

static void test_lists_children_unique(uint64_t a, uint64_t b, uint64_t client)
{
    /* Sites and recorders: a site with recorders is not deleted (the
     * API's 409), checked and changed in one transaction. */
    uint64_t site = create("alice", CTL_KIND_SITE, a, client, "{\"name\":\"HQ\"}", NULL);
    uint64_t recs[5];
    for (int i = 0; i < 5; i++)
        recs[i] = create("alice", CTL_KIND_RECORDER, a, site, "{\"name\":\"nvr\"}", NULL);
    create("bob", CTL_KIND_RECORDER, b, 0, "{\"name\":\"other\"}", NULL);

    ctl_dir_txn *t = begin(1);
    uint64_t count = 0;
    CHECK(ctl_dir_count_children(t, site, CTL_KIND_RECORDER, &count) == 0 && count == 5);
    CHECK(ctl_dir_count_children(t, site, CTL_KIND_CHANNEL, &count) == 0 && count == 0);
    CHECK(ctl_dir_count_children(t, client, CTL_KIND_SITE, &count) == 0 && count == 1);
    id_acc ids = {0};
    size_t n = 0;
    CHECK(ctl_dir_list_children(t, site, CTL_KIND_RECORDER, recs[1], 2, id_cb, &ids, &n) == 0);
    CHECK(n == 2 && ids.ids[0] == recs[2] && ids.ids[1] == recs[3]);

    /* Tenant lists with pagination: A has 5 recorders, B one. */
    memset(&ids, 0, sizeof(ids));
    uint64_t after = 0;
    int pages = 0;
    size_t total = 0;
    do {
        CHECK(ctl_dir_list_tenant(t, a, CTL_KIND_RECORDER, after, 2, id_cb, &ids, &n) == 0);
        total += n;
        if (n)
            after = ids.ids[ids.n - 1];
        pages++;
    } while (n == 2 && pages < 10);
    CHECK(total == 5 && pages == 3);
    for (int i = 0; i < 5 && i < ids.n; i++)
        CHECK(ids.ids[i] == recs[i]);
    memset(&ids, 0, sizeof(ids));
    CHECK(ctl_dir_list_tenant(t, b, CTL_KIND_RECORDER, 0, 100, id_cb, &ids, &n) == 0 && n == 1);
    CHECK(ctl_dir_list_tenant(t, a, CTL_KIND_RECORDER, 0, 0, id_cb, &ids, &n) == -EINVAL);
    CHECK(ctl_dir_list_tenant(t, a, CTL_KIND_RECORDER, UINT64_MAX, 5, id_cb, &ids, &n) == 0 &&
          n == 0);

    /* Moving a recorder to another parent moves its index entries. */
    ctl_dir_obj o;
    CHECK(ctl_dir_get(t, CTL_KIND_RECORDER, recs[4], &o) == 0);
    char *js = o.json;
    o.parent = 0;
    CHECK(ctl_dir_put(t, NULL, &o, NULL, 0) == 0);
    free(js);
    CHECK(ctl_dir_count_children(t, site, CTL_KIND_RECORDER, &count) == 0 && count == 4);

    /* Delete the recorders, then the site may go. */
    for (int i = 0; i < 5; i++)
        CHECK(ctl_dir_del(t, "alice", CTL_KIND_RECORDER, recs[i]) == 0);
    CHECK(ctl_dir_count_children(t, site, CTL_KIND_RECORDER, &count) == 0 && count == 0);
    CHECK(ctl_dir_del(t, "alice", CTL_KIND_SITE, site) == 0);
    memset(&ids, 0, sizeof(ids));
    CHECK(ctl_dir_list_tenant(t, a, CTL_KIND_RECORDER, 0, 100, id_cb, &ids, &n) == 0 && n == 0);
    CHECK(ctl_dir_commit(t) == 0);

    /* The delete's audit entry: before set, after null. */
    t = begin(0);
    audit_acc acc = {0};
    ctl_dir_audit_filter f = {.kind = CTL_KIND_SITE, .id = site};
    CHECK(ctl_dir_audit_list(t, &f, 10, audit_cb, &acc, &n) == 0 && n == 2);
    if (acc.n == 2) {
        CHECK(strcmp(jstr(acc.items[1], "action"), "delete") == 0);
        CHECK(strcmp(jstr(jget(acc.items[1], "before"), "name"), "HQ") == 0);
        CHECK(cJSON_IsNull(jget(acc.items[1], "after")));
    }
    audit_free(&acc);
    /* Unaudited (actor NULL) change of recs[4] left no entry. */
    ctl_dir_audit_filter f4 = {.kind = CTL_KIND_RECORDER, .id = recs[4]};
    CHECK(ctl_dir_audit_list(t, &f4, 10, audit_cb, &acc, &n) == 0 && n == 2); /* create, del */
    audit_free(&acc);
    ctl_dir_abort(t);

    /* Unique email: collision, lookup, release on delete and on change. */
    uint64_t u1 =
        create("alice", CTL_KIND_USER, a, 0, "{\"email\":\"x@example.com\"}", "x@example.com");
    t = begin(1);
    ctl_dir_obj u = {.kind = CTL_KIND_USER, .tenant = b, .json = "{}"};
    ctl_dir_ukey kx = {"email", "x@example.com"};
    CHECK(ctl_dir_put(t, "bob", &u, &kx, 1) == -EEXIST);
    CHECK(u.id == 0);
    ctl_dir_ukey ka = {"email", "a@example.com"}; /* the installer's */
    CHECK(ctl_dir_put(t, "bob", &u, &ka, 1) == -EEXIST);
    ctl_dir_ukey kt = {"token", SHA_1}; /* another namespace: free */
    ctl_dir_ukey two[2] = {{"email", "y@example.com"}, kt};
    CHECK(ctl_dir_put(t, NULL, &u, two, 2) == 0); /* the txn went on after -EEXIST */
    int kind = 0;
    uint64_t id = 0;
    CHECK(ctl_dir_lookup(t, "token", SHA_1, &kind, &id) == 0 && kind == CTL_KIND_USER &&
          id == u.id);
    CHECK(ctl_dir_lookup(t, "email", "x@example.com", &kind, &id) == 0 && id == u1);
    CHECK(ctl_dir_lookup(t, "email", "nobody@example.com", &kind, &id) == -ENOENT);
    CHECK(ctl_dir_lookup(t, "email", "", &kind, &id) == -EINVAL);
    /* Changing u's keys releases the old email. */
    ctl_dir_ukey kz = {"email", "z@example.com"}, kt_none[1] = {{"email", "unused"}};
    CHECK(ctl_dir_put(t, NULL, &u, &kz, 1) == 0);
    CHECK(ctl_dir_lookup(t, "email", "y@example.com", &kind, &id) == -ENOENT);
    CHECK(ctl_dir_lookup(t, "token", SHA_1, &kind, &id) == -ENOENT);
    /* Deleting u1 frees x@. */
    CHECK(ctl_dir_del(t, "alice", CTL_KIND_USER, u1) == 0);
    CHECK(ctl_dir_lookup(t, "email", "x@example.com", &kind, &id) == -ENOENT);
    ctl_dir_obj u2 = {.kind = CTL_KIND_USER, .tenant = b, .json = "{}"};
    CHECK(ctl_dir_put(t, "bob", &u2, &kx, 1) == 0);
    /* An update with keys NULL keeps them; an empty set releases them. */
    u2.json = "{\"name\":\"X\"}";
    CHECK(ctl_dir_put(t, "bob", &u2, NULL, 0) == 0);
    CHECK(ctl_dir_lookup(t, "email", "x@example.com", &kind, &id) == 0 && id == u2.id);
    CHECK(ctl_dir_put(t, NULL, &u, kt_none, 0) == 0);
    CHECK(ctl_dir_lookup(t, "email", "z@example.com", &kind, &id) == -ENOENT);
    CHECK(ctl_dir_commit(t) == 0);

    /* Tenant isolation: another tenant's object is -ENOENT, as a missing one. */
    t = begin(0);
    ctl_dir_obj o2;
    CHECK(ctl_dir_get_in_tenant(t, b, CTL_KIND_CLIENT, client, &o2) == -ENOENT);
    CHECK(ctl_dir_get_in_tenant(t, b, CTL_KIND_CLIENT, 777777, &o2) == -ENOENT);
    CHECK(ctl_dir_get_in_tenant(t, a, CTL_KIND_CLIENT, client, &o2) == 0);
    CHECK(o2.id == client && o2.tenant == a);
    ctl_dir_obj_clear(&o2);
    CHECK(ctl_dir_get_in_tenant(t, a, CTL_KIND_USER, u2.id, &o2) == -ENOENT);
    ctl_dir_abort(t);
}

typedef struct {
    int n;
    char values[8][8];
    uint64_t ids[8];
} ukey_acc;

static int ukey_cb(void *ud, const char *value, int kind, uint64_t id)
{
    ukey_acc *a = ud;
    if (a->n < 8 && kind == CTL_KIND_BOOKMARK) {
        snprintf(a->values[a->n], sizeof(a->values[0]), "%s", value);
        a->ids[a->n++] = id;
    }
    return strcmp(value, "stop") == 0 ? 42 : 0;
}

/* Ranges of unique keys (an ordered index), in a transaction that is
 * abandoned: ids and keys leave no trace for the tests after. */
static void test_ukey_range(uint64_t a)
{
    ctl_dir_txn *t = begin(1);
    /* Namespace "rng", and neighbours that must stay outside its walks:
     * "rn" sorts before it, "rngx" after it. */
    static const char *const vals[] = {"b1", "a2", "c", "a1", "b3"};
    uint64_t ids[5];
    for (int i = 0; i < 5; i++) {
        ctl_dir_obj o = {.kind = CTL_KIND_BOOKMARK, .tenant = a, .json = "{}"};
        ctl_dir_ukey k = {"rng", vals[i]};
        CHECK(ctl_dir_put(t, NULL, &o, &k, 1) == 0);
        ids[i] = o.id;
    }
    ctl_dir_obj n1 = {.kind = CTL_KIND_BOOKMARK, .tenant = a, .json = "{}"};
    ctl_dir_obj n2 = {.kind = CTL_KIND_BOOKMARK, .tenant = a, .json = "{}"};
    ctl_dir_ukey kn1 = {"rn", "zz"}, kn2 = {"rngx", "a0"};
    CHECK(ctl_dir_put(t, NULL, &n1, &kn1, 1) == 0);
    CHECK(ctl_dir_put(t, NULL, &n2, &kn2, 1) == 0);

    ukey_acc acc = {0};
    size_t n = 0;
    CHECK(ctl_dir_ukey_range(t, "rng", "", NULL, 0, 10, ukey_cb, &acc, &n) == 0 && n == 5);
    CHECK(acc.n == 5 && strcmp(acc.values[0], "a1") == 0 && strcmp(acc.values[4], "c") == 0);
    CHECK(acc.ids[0] == ids[3] && acc.ids[4] == ids[2]);
    memset(&acc, 0, sizeof(acc));
    CHECK(ctl_dir_ukey_range(t, "rng", "", NULL, 1, 10, ukey_cb, &acc, &n) == 0 && n == 5);
    CHECK(strcmp(acc.values[0], "c") == 0 && strcmp(acc.values[4], "a1") == 0);
    /* [a2, b3): a2, b1; backwards b1, a2; limits. */
    memset(&acc, 0, sizeof(acc));
    CHECK(ctl_dir_ukey_range(t, "rng", "a2", "b3", 0, 10, ukey_cb, &acc, &n) == 0 && n == 2);
    CHECK(strcmp(acc.values[0], "a2") == 0 && strcmp(acc.values[1], "b1") == 0);
    memset(&acc, 0, sizeof(acc));
    CHECK(ctl_dir_ukey_range(t, "rng", "a2", "b3", 1, 10, ukey_cb, &acc, &n) == 0 && n == 2);
    CHECK(strcmp(acc.values[0], "b1") == 0 && strcmp(acc.values[1], "a2") == 0);
    memset(&acc, 0, sizeof(acc));
    CHECK(ctl_dir_ukey_range(t, "rng", "b", "c", 1, 1, ukey_cb, &acc, &n) == 0 && n == 1);
    CHECK(strcmp(acc.values[0], "b3") == 0);
    /* Prefix ranges: "a" .. "b" holds a1, a2 ("b" itself would be excluded). */
    memset(&acc, 0, sizeof(acc));
    CHECK(ctl_dir_ukey_range(t, "rng", "a", "b", 0, 10, ukey_cb, &acc, &n) == 0 && n == 2);
    memset(&acc, 0, sizeof(acc));
    CHECK(ctl_dir_ukey_range(t, "rng", "d", NULL, 0, 10, ukey_cb, &acc, &n) == 0 && n == 0);
    CHECK(ctl_dir_ukey_range(t, "rng", "", "a", 1, 10, ukey_cb, &acc, &n) == 0 && n == 0);
    CHECK(ctl_dir_ukey_range(t, "rng", "b", "a", 0, 10, ukey_cb, &acc, &n) == 0 && n == 0);
    CHECK(ctl_dir_ukey_range(t, "rng", "b", "a", 1, 10, ukey_cb, &acc, &n) == 0 && n == 0);
    CHECK(ctl_dir_ukey_range(t, "none", "", NULL, 1, 10, ukey_cb, &acc, &n) == 0 && n == 0);
    /* Neighbouring namespaces alone. */
    memset(&acc, 0, sizeof(acc));
    CHECK(ctl_dir_ukey_range(t, "rn", "", NULL, 1, 10, ukey_cb, &acc, &n) == 0 && n == 1);
    CHECK(acc.ids[0] == n1.id);
    CHECK(ctl_dir_ukey_range(t, "rngx", "", NULL, 0, 10, ukey_cb, &acc, &n) == 0 && n == 1);
    /* A callback's nonzero return stops the walk. */
    ctl_dir_obj st = {.kind = CTL_KIND_BOOKMARK, .tenant = a, .json = "{}"};
    ctl_dir_ukey ks = {"rng", "stop"};
    CHECK(ctl_dir_put(t, NULL, &st, &ks, 1) == 0);
    CHECK(ctl_dir_ukey_range(t, "rng", "", NULL, 1, 10, ukey_cb, &acc, &n) == 42 && n == 0);
    /* Bad arguments. */
    CHECK(ctl_dir_ukey_range(t, "", "", NULL, 0, 10, ukey_cb, &acc, &n) == -EINVAL);
    CHECK(ctl_dir_ukey_range(t, "rng", NULL, NULL, 0, 10, ukey_cb, &acc, &n) == -EINVAL);
    CHECK(ctl_dir_ukey_range(t, "rng", "", NULL, 0, 0, ukey_cb, &acc, &n) == -EINVAL);
    CHECK(ctl_dir_ukey_range(t, "rng", "", NULL, 0, CTL_DIR_LIST_MAX + 1, ukey_cb, &acc, &n) ==
          -EINVAL);
    CHECK(ctl_dir_ukey_range(t, "rng", "", NULL, 0, 10, NULL, &acc, &n) == -EINVAL);
    ctl_dir_abort(t);
}

/* Audit notes: accesses that change nothing, listed like changes (by
 * object, by tenant), refused on a read transaction. */
static void test_audit_note(uint64_t a, uint64_t b)
{
    int64_t saved = fake_now;
    fake_now = 900000; /* apart from the other tests' entries */
    ctl_dir_txn *t = begin(1);
    cJSON *det = cJSON_CreateObject();
    cJSON_AddNumberToObject(det, "channel_id", 777);
    cJSON_AddNumberToObject(det, "segments", 3);
    CHECK(ctl_dir_audit_note(t, "user:9", a, CTL_KIND_CHANNEL, 777, "view", det) == 0);
    CHECK(ctl_dir_audit_note(t, "user:9", a, CTL_KIND_CHANNEL, 777, "export", NULL) == 0);
    CHECK(ctl_dir_audit_note(t, NULL, a, CTL_KIND_CHANNEL, 777, "view", det) == -EINVAL);
    CHECK(ctl_dir_audit_note(t, "user:9", a, 99, 777, "view", det) == -EINVAL);
    CHECK(ctl_dir_audit_note(t, "user:9", a, CTL_KIND_CHANNEL, 777, "", det) == -EINVAL);
    CHECK(ctl_dir_commit(t) == 0);
    t = begin(0);
    CHECK(ctl_dir_audit_note(t, "user:9", a, CTL_KIND_CHANNEL, 777, "view", det) == -EROFS);
    audit_acc acc = {0};
    size_t n = 0;
    ctl_dir_audit_filter f = {.kind = CTL_KIND_CHANNEL, .id = 777};
    CHECK(ctl_dir_audit_list(t, &f, 10, audit_cb, &acc, &n) == 0 && n == 2);
    if (acc.n == 2) {
        CHECK(strcmp(jstr(acc.items[0], "action"), "view") == 0);
        CHECK(strcmp(jstr(acc.items[0], "actor"), "user:9") == 0);
        CHECK(strcmp(jstr(acc.items[0], "kind"), "channel") == 0);
        CHECK(cJSON_IsNull(jget(acc.items[0], "before")));
        CHECK(cJSON_Compare(jget(acc.items[0], "after"), det, 1));
        CHECK(strcmp(jstr(acc.items[1], "action"), "export") == 0);
        CHECK(cJSON_IsNull(jget(acc.items[1], "after")));
    }
    audit_free(&acc);
    /* In the tenant's log, not in another's. */
    ctl_dir_audit_filter ta = {.tenant = a, .from_us = fake_now},
                         tb = {.tenant = b, .from_us = fake_now};
    int seen = 0;
    CHECK(ctl_dir_audit_list(t, &ta, CTL_DIR_LIST_MAX, audit_cb, &acc, &n) == 0);
    for (int i = 0; i < acc.n; i++)
        seen += strcmp(jstr(acc.items[i], "action"), "view") == 0;
    audit_free(&acc);
    CHECK(n == 2);
    CHECK(ctl_dir_audit_list(t, &tb, CTL_DIR_LIST_MAX, audit_cb, &acc, &n) == 0 && n == 0);
    audit_free(&acc);
    ctl_dir_abort(t);
    CHECK(seen == 1);
    fake_now = saved;
    CHECK(strcmp(ctl_dir_kind_name(CTL_KIND_PLAYBACK), "playback") == 0);
    cJSON_Delete(det);
}

static uint64_t max_id_seen;

static void test_abort(uint64_t a)
{
    ctl_dir_txn *t = begin(1);
    ctl_dir_obj o = {.kind = CTL_KIND_GEOFENCE, .tenant = a, .json = "{\"r\":5}"};
    ctl_dir_ukey k = {"email", "ghost@example.com"};
    CHECK(ctl_dir_put(t, "alice", &o, &k, 1) == 0);
    uint64_t ghost = o.id;
    ctl_dir_abort(t);
    t = begin(0);
    ctl_dir_obj g;
    int kind;
    uint64_t id;
    size_t n = 1;
    audit_acc acc = {0};
    id_acc ids = {0};
    CHECK(ctl_dir_get(t, CTL_KIND_GEOFENCE, ghost, &g) == -ENOENT);
    CHECK(ctl_dir_lookup(t, "email", "ghost@example.com", &kind, &id) == -ENOENT);
    CHECK(ctl_dir_list_tenant(t, a, CTL_KIND_GEOFENCE, 0, 10, id_cb, &ids, &n) == 0 && n == 0);
    ctl_dir_audit_filter f = {.kind = CTL_KIND_GEOFENCE};
    CHECK(ctl_dir_audit_list(t, &f, 10, audit_cb, &acc, &n) == 0 && n == 0);
    ctl_dir_abort(t);
    /* The id counter rolled back too. */
    uint64_t again = create("alice", CTL_KIND_GEOFENCE, a, 0, "{\"r\":6}", NULL);
    CHECK(again == ghost);
    max_id_seen = again;
}

/* Shared environment: segments commit beside the directory, and one LMDB
 * transaction can touch both. */
static void test_shared_env(void)
{
    ctl_seg_key sk;
    CHECK(ctl_seg_key_set(&sk, "rec-1", 1, 5) == 0);
    ctl_segment_rec r;
    memset(&r, 0, sizeof(r));
    r.duration_us = 10;
    r.size = 100;
    memcpy(r.sha256, SHA_1, 65);
    snprintf(r.path, sizeof(r.path), "store/rec-1/1/5.ts");
    CHECK(ctl_ledger_commit_segment(led, &sk, &r) == 0);
    ctl_usage_rec u;
    CHECK(ctl_ledger_get_usage(led, "rec-1", 1, &u) == 0 && u.bytes == 100);

    /* A directory transaction sees the ledger's databases through its txn. */
    ctl_dir_txn *t = begin(1);
    MDB_dbi seg;
    CHECK(mdb_dbi_open(ctl_dir_txn_mdb(t), "segments", 0, &seg) == 0);
    MDB_stat st;
    CHECK(mdb_stat(ctl_dir_txn_mdb(t), seg, &st) == 0 && st.ms_entries == 1);
    CHECK(ctl_dir_txn_now(t) == fake_now);
    ctl_dir_abort(t);
    CHECK(ctl_ledger_readonly(led) == 0 && ctl_ledger_env(led) != NULL);
}

static void test_reopen(uint64_t a, uint64_t client)
{
    close_all();
    /* A read-only ledger opens the directory for reading. */
    ctl_ledger *ro = NULL;
    CHECK(ctl_ledger_open(path, 16 << 20, 1, &ro) == 0);
    if (ro) {
        ctl_dir *rd = NULL;
        CHECK(ctl_dir_open(ro, &rd) == 0);
        if (rd) {
            ctl_dir_txn *t = NULL;
            CHECK(ctl_dir_begin(rd, 1, &t) == -EROFS);
            CHECK(ctl_dir_begin(rd, 0, &t) == 0);
            ctl_dir_obj o;
            CHECK(ctl_dir_get(t, CTL_KIND_CLIENT, client, &o) == 0);
            ctl_dir_obj_clear(&o);
            ctl_dir_abort(t);
        }
        ctl_dir_free(rd);
        ctl_ledger_free(ro);
    }

    open_all();
    ctl_dir_txn *t = begin(0);
    ctl_dir_obj o;
    CHECK(ctl_dir_get_in_tenant(t, a, CTL_KIND_CLIENT, client, &o) == 0);
    CHECK(o.json && strstr(o.json, "Acme Ltd") && o.created_us == 2000);
    ctl_dir_obj_clear(&o);
    int kind;
    uint64_t id;
    CHECK(ctl_dir_lookup(t, "email", "acme@example.com", &kind, &id) == 0 && id == client);
    size_t n = 0;
    audit_acc acc = {0};
    ctl_dir_audit_filter f = {.kind = CTL_KIND_CLIENT, .id = client};
    CHECK(ctl_dir_audit_list(t, &f, 10, audit_cb, &acc, &n) == 0 && n == 2);
    audit_free(&acc);
    ctl_dir_abort(t);
    /* Ids continue after a reopen. */
    uint64_t next = create("alice", CTL_KIND_EVENT, a, 0, "{}", NULL);
    CHECK(next == max_id_seen + 1);
    ctl_usage_rec u;
    CHECK(ctl_ledger_get_usage(led, "rec-1", 1, &u) == 0 && u.bytes == 100);
}

/* The directory on a read-only ledger that never had it. */
static void test_ro_fresh(void)
{
    char p2[600];
    snprintf(p2, sizeof(p2), "%s/fresh.lmdb", dir);
    ctl_ledger *l = NULL;
    CHECK(ctl_ledger_open(p2, 1 << 20, 0, &l) == 0);
    ctl_ledger_free(l);
    l = NULL;
    CHECK(ctl_ledger_open(p2, 1 << 20, 1, &l) == 0);
    if (l) {
        ctl_dir *rd = NULL;
        CHECK(ctl_dir_open(l, &rd) == -ENOENT && rd == NULL);
        ctl_ledger_free(l);
    }
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/test_directory.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof(path), "%s/ledger.lmdb", dir);
    open_all();
    uint64_t a = 0, b = 0, client = 0;
    test_crud_audit(&a, &b, &client);
    test_lists_children_unique(a, b, client);
    test_ukey_range(a);
    test_audit_note(a, b);
    test_abort(a);
    test_shared_env();
    test_reopen(a, client);
    close_all();
    test_ro_fresh();
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    ctl_dir_free(NULL);
    if (failures) {
        fprintf(stderr, "test_directory: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_directory: ok\n");
    return 0;
}
