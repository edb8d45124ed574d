/* Subscriptions (issue 4): virtual disks and AI subscriptions. The
 * distributor creates, resizes and cancels them for an installer's client;
 * the installer configures a virtual disk in the guide's five steps
 * (device, drive, channels, connection, activation) and reads its details.
 *
 * A virtual disk is a directory object (kind vdisk, in the installer's
 * space, parent its client) and, once active, a disk of the same id in the
 * ledger (controller/quota.h) covering its recorder's cameras: every change
 * here is mirrored there in the same transaction (vdisk_sync). */
#include "controller/api_int.h"

#include "controller/quota.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_US (INT64_C(86400) * 1000000)
/* Retention: up to ten years. Capacity: 1 MiB .. 1 PiB. */
#define RETENTION_DAYS_MAX 3650
#define CAPACITY_MIN (1024.0 * 1024)
#define CAPACITY_MAX (1024.0 * 1024 * 1024 * 1024 * 1024)
#define ALGOS_MAX 8

static const char *const policies[] = {"overwrite", "stop", NULL};
static const char *const states[] = {"pending", "active", "suspended", NULL};

/* --- Mirroring into the ledger --- */

static ctl_ledger *ledger_of(api_ctx *x)
{
    return x->api->ledger;
}

/* The channel objects of a recorder, in id order (at most 64). */
typedef struct {
    uint64_t ids[64];
    size_t n;
} chan_list;

static int collect_chan(void *ud, const ctl_dir_obj *o)
{
    chan_list *c = ud;
    if (c->n < 64)
        c->ids[c->n++] = o->id;
    return 0;
}

/* The cap of channel id in a vdisk's camera_caps, or 0. */
static uint64_t cap_of(const cJSON *vd, uint64_t channel)
{
    const cJSON *caps = cJSON_GetObjectItemCaseSensitive(vd, "camera_caps");
    for (const cJSON *c = caps ? caps->child : NULL; c; c = c->next)
        if ((uint64_t)api_jint(c, "channel_id") == channel)
            return (uint64_t)api_jint(c, "cap_bytes");
    return 0;
}

/* Mirrors the vdisk object j (id, of tenant) into the ledger: the disk's settings and
 * the cameras of its recorder, and tells the device its config changed. */
/* An object of tenant (the disk's space: the caller may be the
 * distributor) as JSON. */
static int get_in(api_ctx *x, uint64_t tenant, int kind, uint64_t id, ctl_dir_obj *o, cJSON **j)
{
    *j = NULL;
    int rc = ctl_dir_get_in_tenant(x->t, tenant, kind, id, o);
    if (rc == 0 && !(*j = cJSON_Parse(o->json))) {
        ctl_dir_obj_clear(o);
        rc = -EIO;
    }
    return rc;
}

static int vdisk_sync(api_ctx *x, uint64_t tenant, uint64_t id, const cJSON *j)
{
    ctl_ledger *l = ledger_of(x);
    if (!l)
        return 0; /* no ledger (tests of the API alone) */
    MDB_txn *txn = ctl_dir_txn_mdb(x->t);
    const char *state = api_jstr(j, "state"), *pol = api_jstr(j, "policy");
    ctl_disk_cfg cfg = {
        .capacity = (uint64_t)api_jint(j, "capacity_bytes"),
        .retention_us = api_jint(j, "retention_days") * DAY_US,
        .policy = pol && strcmp(pol, "stop") == 0 ? CTL_DISK_STOP : CTL_DISK_OVERWRITE,
        .active = state && strcmp(state, "active") == 0,
    };
    ctl_disk_rec d;
    int rc = ctl_quota_disk_get(l, txn, id, &d);
    if (rc == -ENOENT && !cfg.active)
        return 0; /* never activated: nothing in the ledger yet */
    if ((rc != 0 && rc != -ENOENT) || (rc = ctl_quota_disk_set(l, txn, id, &cfg)) != 0 ||
        (rc = ctl_quota_disk_uncover(l, txn, id)) != 0)
        return rc;
    uint64_t rid = (uint64_t)api_jint(j, "recorder_id");
    if (!cfg.active || !rid)
        return 0;
    ctl_dir_obj r;
    cJSON *rj;
    if ((rc = get_in(x, tenant, CTL_KIND_RECORDER, rid, &r, &rj)) != 0)
        return rc == -ENOENT ? 0 : rc;
    const char *dev = api_jstr(rj, "device_id");
    chan_list cl = {.n = 0};
    if (dev)
        rc = ctl_dir_list_children(x->t, rid, CTL_KIND_CHANNEL, 0, 64, collect_chan, &cl, NULL);
    for (size_t i = 0; rc == 0 && dev && i < cl.n; i++) {
        ctl_dir_obj c;
        cJSON *cj;
        if ((rc = get_in(x, tenant, CTL_KIND_CHANNEL, cl.ids[i], &c, &cj)) != 0)
            break;
        ctl_camera_rec cam = {
            .disk = id,
            .cap = cap_of(j, cl.ids[i]),
            .backup = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cj, "cloud_backup")),
        };
        rc = ctl_quota_camera_set(l, txn, dev, (uint16_t)api_jint(cj, "number"), &cam);
        cJSON_Delete(cj);
        ctl_dir_obj_clear(&c);
    }
    if (rc == 0 && dev)
        rc = api_device_changed(x, dev);
    cJSON_Delete(rj);
    ctl_dir_obj_clear(&r);
    return rc;
}

/* The vdisk covering a recorder, if any: 0 with *id, or -ENOENT. */
static int vdisk_of_recorder(api_ctx *x, uint64_t rid, uint64_t *id)
{
    char key[32];
    int kind;
    snprintf(key, sizeof(key), "%" PRIu64, rid);
    return ctl_dir_lookup(x->t, "vdisk_recorder", key, &kind, id);
}

int api_recorder_sync(api_ctx *x, uint64_t rid)
{
    uint64_t id;
    int rc = vdisk_of_recorder(x, rid, &id);
    if (rc == -ENOENT)
        return 0;
    ctl_dir_obj o;
    cJSON *j;
    if (rc != 0 || (rc = api_get_json(x, CTL_KIND_VDISK, id, &o, &j)) != 0)
        return rc;
    rc = vdisk_sync(x, o.tenant, id, j);
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    return rc;
}

/* --- The distributor's side --- */

/* The installer {id} of the path: 0 with *inst, 404 for anything else;
 * 403 outside the distributor's space. */
static int installer_of_path(api_ctx *x, uint64_t *inst)
{
    if (!api_is_distributor(x))
        return api_fail(x, 403, "forbidden", "only the distributor's space manages subscriptions");
    ctl_dir_obj o;
    cJSON *j;
    int rc = api_path_id(x, "id", inst);
    if (rc == 0)
        rc = api_get_json(x, CTL_KIND_TENANT, *inst, &o, &j);
    if (rc != 0)
        return rc;
    const char *type = api_jstr(j, "type");
    if (!type || strcmp(type, "installer") != 0)
        rc = -ENOENT;
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    return rc;
}

/* The object {sid} of kind in installer inst's space. */
static int sub_of_path(api_ctx *x, uint64_t inst, int kind, ctl_dir_obj *o, cJSON **j)
{
    uint64_t id;
    int rc = api_path_id(x, "sid", &id);
    if (rc == 0)
        rc = ctl_dir_get_in_tenant(x->t, inst, kind, id, o);
    if (rc == 0 && !(*j = cJSON_Parse(o->json))) {
        ctl_dir_obj_clear(o);
        rc = -EIO;
    }
    return rc;
}

/* A client of installer inst named by the body: 0, or 422. */
static int client_in(api_ctx *x, uint64_t inst, uint64_t client)
{
    ctl_dir_obj c = {0};
    int rc = ctl_dir_get_in_tenant(x->t, inst, CTL_KIND_CLIENT, client, &c);
    ctl_dir_obj_clear(&c);
    if (rc == -ENOENT)
        return api_fail(x, 422, "invalid_field", "field \"client_id\": no such client");
    return rc;
}

static int answer_obj(api_ctx *x, int kind, uint64_t id, unsigned status)
{
    return api_answer_stored(x, kind, id, status);
}

static const ctl_field vdisk_create_fields[] = {
    {"client_id", CTL_F_ID, true, 0, 0, NULL, false},
    {"name", CTL_F_STRING, false, 1, API_NAME_MAX, NULL, false},
    {"capacity_bytes", CTL_F_INT, true, CAPACITY_MIN, CAPACITY_MAX, NULL, false},
    {"retention_days", CTL_F_INT, true, 1, RETENTION_DAYS_MAX, NULL, false},
    {"policy", CTL_F_STRING, false, 1, 16, policies, false},
};

/* POST /api/v1/installers/{id}/vdisks */
static int h_vdisk_create(api_ctx *x)
{
    uint64_t inst;
    int rc = installer_of_path(x, &inst);
    if (rc != 0)
        return rc;
    uint64_t client = (uint64_t)api_jint(x->body, "client_id");
    if ((rc = client_in(x, inst, client)) != 0)
        return rc;
    cJSON *j = cJSON_Duplicate(x->body, 1);
    if (!j)
        return -ENOMEM;
    /* The subscription's retention is the most the installer may keep. */
    if (!cJSON_GetObjectItemCaseSensitive(j, "policy"))
        cJSON_AddStringToObject(j, "policy", "overwrite");
    if (!cJSON_GetObjectItemCaseSensitive(j, "name"))
        cJSON_AddStringToObject(j, "name", "Virtual disk");
    if (!cJSON_AddNumberToObject(j, "retention_days_max", (double)api_jint(j, "retention_days")) ||
        !cJSON_AddStringToObject(j, "state", "pending") ||
        !cJSON_AddNullToObject(j, "recorder_id") || !cJSON_AddArrayToObject(j, "camera_caps")) {
        cJSON_Delete(j);
        return -ENOMEM;
    }
    ctl_dir_obj o = {.kind = CTL_KIND_VDISK, .tenant = inst, .parent = client};
    rc = api_put_json(x->t, x->c.actor, &o, j, NULL, 0);
    cJSON_Delete(j);
    return rc ? rc : answer_obj(x, CTL_KIND_VDISK, o.id, 201);
}

static const ctl_field vdisk_resize_fields[] = {
    {"capacity_bytes", CTL_F_INT, false, CAPACITY_MIN, CAPACITY_MAX, NULL, false},
    {"retention_days", CTL_F_INT, false, 1, RETENTION_DAYS_MAX, NULL, false},
    {"state", CTL_F_STRING, false, 1, 16, states, false},
};

/* PUT /api/v1/installers/{id}/vdisks/{sid}: the distributor resizes or
 * suspends; the rules apply from the next commit (shrinking evicts or
 * blocks as the policy says, now). */
static int h_vdisk_resize(api_ctx *x)
{
    uint64_t inst;
    ctl_dir_obj o;
    cJSON *j;
    int rc = installer_of_path(x, &inst);
    if (rc != 0 || (rc = sub_of_path(x, inst, CTL_KIND_VDISK, &o, &j)) != 0)
        return rc;
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(x->body, "capacity_bytes")))
        cJSON_ReplaceItemInObjectCaseSensitive(j, "capacity_bytes", cJSON_Duplicate(v, 1));
    if ((v = cJSON_GetObjectItemCaseSensitive(x->body, "retention_days"))) {
        cJSON_ReplaceItemInObjectCaseSensitive(j, "retention_days_max", cJSON_Duplicate(v, 1));
        if (api_jint(j, "retention_days") > (int64_t)v->valuedouble)
            cJSON_ReplaceItemInObjectCaseSensitive(j, "retention_days", cJSON_Duplicate(v, 1));
    }
    const char *st = api_jstr(x->body, "state");
    if (st && strcmp(st, "active") == 0 && strcmp(api_jstr(j, "state"), "pending") == 0)
        rc = api_fail(x, 409, "not_configured",
                      "the installer activates a disk (step 5); the distributor may suspend "
                      "or resume it");
    else if (st)
        cJSON_ReplaceItemInObjectCaseSensitive(j, "state", cJSON_CreateString(st));
    if (rc == 0 && (rc = api_put_json(x->t, x->c.actor, &o, j, NULL, 0)) == 0 &&
        (rc = vdisk_sync(x, o.tenant, o.id, j)) == 0)
        rc = answer_obj(x, CTL_KIND_VDISK, o.id, 200);
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    return rc;
}

/* DELETE /api/v1/installers/{id}/vdisks/{sid}: the subscription ends; its
 * recordings go (files deleted by the janitor after the commit). */
static int h_vdisk_cancel(api_ctx *x)
{
    uint64_t inst;
    ctl_dir_obj o;
    cJSON *j;
    int rc = installer_of_path(x, &inst);
    if (rc != 0 || (rc = sub_of_path(x, inst, CTL_KIND_VDISK, &o, &j)) != 0)
        return rc;
    uint64_t rid = (uint64_t)api_jint(j, "recorder_id");
    const char *dev = NULL;
    cJSON *rj = NULL;
    ctl_dir_obj r = {0};
    if (rid && ctl_dir_get_in_tenant(x->t, inst, CTL_KIND_RECORDER, rid, &r) == 0 &&
        (rj = cJSON_Parse(r.json)))
        dev = api_jstr(rj, "device_id");
    ctl_disk_rec d;
    if (ledger_of(x) && ctl_quota_disk_get(ledger_of(x), ctl_dir_txn_mdb(x->t), o.id, &d) == 0)
        rc = ctl_quota_disk_del(ledger_of(x), ctl_dir_txn_mdb(x->t), o.id);
    if (rc == 0)
        rc = ctl_dir_del(x->t, x->c.actor, CTL_KIND_VDISK, o.id);
    if (rc == 0 && dev)
        rc = api_device_changed(x, dev);
    if (rc == 0)
        rc = ctl_http_resp_empty(x->resp, 204);
    cJSON_Delete(rj);
    ctl_dir_obj_clear(&r);
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    return rc;
}

static const ctl_field aisub_create_fields[] = {
    {"client_id", CTL_F_ID, true, 0, 0, NULL, false},
    {"algorithms", CTL_F_STRINGS, true, 1, ALGOS_MAX, NULL, false},
    {"channels_max", CTL_F_INT, true, 1, 1024, NULL, false},
};

/* POST /api/v1/installers/{id}/ai-subscriptions */
static int h_aisub_create(api_ctx *x)
{
    uint64_t inst;
    int rc = installer_of_path(x, &inst);
    if (rc != 0)
        return rc;
    uint64_t client = (uint64_t)api_jint(x->body, "client_id");
    if ((rc = client_in(x, inst, client)) != 0)
        return rc;
    const cJSON *al = cJSON_GetObjectItemCaseSensitive(x->body, "algorithms");
    int i = 0;
    for (const cJSON *e = al->child; e; e = e->next, i++)
        if (!api_ai_algorithm_known(e->valuestring))
            return api_fail(x, 422, "invalid_field",
                            "field \"algorithms[%d]\" is not a known algorithm", i);
    ctl_dir_obj o = {.kind = CTL_KIND_AISUB, .tenant = inst, .parent = client};
    if ((rc = api_put_json(x->t, x->c.actor, &o, x->body, NULL, 0)) != 0)
        return rc;
    return answer_obj(x, CTL_KIND_AISUB, o.id, 201);
}

static int h_aisub_cancel(api_ctx *x)
{
    uint64_t inst;
    ctl_dir_obj o;
    cJSON *j;
    int rc = installer_of_path(x, &inst);
    if (rc != 0 || (rc = sub_of_path(x, inst, CTL_KIND_AISUB, &o, &j)) != 0)
        return rc;
    if ((rc = ctl_dir_del(x->t, x->c.actor, CTL_KIND_AISUB, o.id)) == 0)
        rc = ctl_http_resp_empty(x->resp, 204);
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    return rc;
}

/* GET /api/v1/installers/{id}/clients and .../vdisks: what the distributor
 * needs to sell to an installer's clients. */
typedef struct {
    cJSON *items;
    int err;
} list_walk;

static int list_cb(void *ud, const ctl_dir_obj *o)
{
    list_walk *w = ud;
    cJSON *j = api_obj_out(o);
    if (!j) {
        w->err = -ENOMEM;
        return 1;
    }
    cJSON_AddItemToArray(w->items, j);
    return 0;
}

static int list_installer_kind(api_ctx *x, int kind)
{
    uint64_t inst, after;
    size_t limit;
    int rc = installer_of_path(x, &inst);
    if (rc != 0 || (rc = api_page_args(x, &after, &limit)) != 0)
        return rc;
    list_walk w = {.items = cJSON_CreateArray()};
    size_t n = 0;
    if (!w.items)
        return -ENOMEM;
    rc = ctl_dir_list_tenant(x->t, inst, kind, after, limit, list_cb, &w, &n);
    if (rc == 1)
        rc = w.err;
    if (rc != 0) {
        cJSON_Delete(w.items);
        return rc;
    }
    cJSON *last = cJSON_GetArrayItem(w.items, (int)n - 1);
    return api_answer_page(x, w.items, n == limit && last ? (uint64_t)api_jint(last, "id") : 0);
}

static int h_inst_clients(api_ctx *x)
{
    return list_installer_kind(x, CTL_KIND_CLIENT);
}
static int h_inst_vdisks(api_ctx *x)
{
    return list_installer_kind(x, CTL_KIND_VDISK);
}
static int h_inst_aisubs(api_ctx *x)
{
    return list_installer_kind(x, CTL_KIND_AISUB);
}

/* --- The installer's side --- */

/* Details: the disk's usage and each camera's (from the ledger). */
typedef struct {
    api_ctx *x;
    cJSON *cams;
    uint64_t rid;
    int err;
} cam_detail;

static int cam_detail_cb(void *ud, const ctl_disk_camera *c)
{
    cam_detail *w = ud;
    cJSON *o = cJSON_CreateObject();
    char ts[32];
    if (!o)
        return -ENOMEM;
    cJSON_AddStringToObject(o, "device_id", c->device);
    cJSON_AddNumberToObject(o, "channel", c->channel);
    cJSON_AddNumberToObject(o, "bytes", (double)c->bytes);
    cJSON_AddNumberToObject(o, "segments", (double)c->segments);
    api_iso_time(c->oldest_us, ts, sizeof(ts));
    cJSON_AddStringToObject(o, "oldest", ts);
    api_iso_time(c->newest_us, ts, sizeof(ts));
    cJSON_AddStringToObject(o, "newest", ts);
    cJSON_AddItemToArray(w->cams, o);
    return 0;
}

static int vdisk_decorate(api_ctx *x, const ctl_dir_obj *o, cJSON *out)
{
    ctl_ledger *l = ledger_of(x);
    ctl_disk_rec d;
    memset(&d, 0, sizeof(d));
    int64_t oldest = 0, newest = 0;
    MDB_txn *txn = ctl_dir_txn_mdb(x->t);
    int rc = l ? ctl_quota_disk_get(l, txn, o->id, &d) : -ENOENT;
    if (rc != 0 && rc != -ENOENT)
        return rc;
    if (rc == 0 && (rc = ctl_quota_disk_span(l, txn, o->id, &oldest, &newest)) != 0)
        return rc;
    cJSON *u = cJSON_AddObjectToObject(out, "usage");
    cJSON *cams = cJSON_AddArrayToObject(out, "cameras");
    if (!u || !cams)
        return -ENOMEM;
    char ts[32];
    cJSON_AddNumberToObject(u, "used_bytes", (double)d.used);
    cJSON_AddNumberToObject(u, "segments", (double)d.segments);
    cJSON_AddNumberToObject(u, "protected_bytes", (double)d.protected_bytes);
    cJSON_AddNumberToObject(u, "free_bytes",
                            d.cfg.capacity > d.used ? (double)(d.cfg.capacity - d.used) : 0);
    if (d.segments) {
        api_iso_time(oldest, ts, sizeof(ts));
        cJSON_AddStringToObject(u, "oldest", ts);
        api_iso_time(newest, ts, sizeof(ts));
        cJSON_AddStringToObject(u, "newest", ts);
    } else {
        cJSON_AddNullToObject(u, "oldest");
        cJSON_AddNullToObject(u, "newest");
    }
    if (!l)
        return 0;
    cam_detail w = {x, cams, 0, 0};
    rc = ctl_quota_disk_cameras(l, txn, o->id, cam_detail_cb, &w);
    return rc == -ENOENT ? 0 : rc;
}

static const char *const vdisk_filters[] = {"client_id", "state", NULL};

/* Installers read and configure; creating is the distributor's. */
static const api_kind vdisk_kind = {
    .kind = CTL_KIND_VDISK,
    .noun = "virtual disk",
    .plural = "virtual disks",
    .perm_get = CTL_PERM_SUBSCRIPTION_GET,
    .parent_kind = CTL_KIND_CLIENT,
    .parent_field = "client_id",
    .filters = vdisk_filters,
    .decorate = vdisk_decorate,
};

static const char *const aisub_filters[] = {"client_id", NULL};

static const api_kind aisub_kind = {
    .kind = CTL_KIND_AISUB,
    .noun = "AI subscription",
    .plural = "AI subscriptions",
    .perm_get = CTL_PERM_SUBSCRIPTION_GET,
    .parent_kind = CTL_KIND_CLIENT,
    .parent_field = "client_id",
    .filters = aisub_filters,
};

/* The {id} vdisk of the caller's space. */
static int my_vdisk(api_ctx *x, ctl_dir_obj *o, cJSON **j)
{
    uint64_t id;
    int rc = api_path_id(x, "id", &id);
    return rc ? rc : api_get_json(x, CTL_KIND_VDISK, id, o, j);
}

/* Runs a step on the {id} vdisk of the caller's space, then frees it. */
static int on_vdisk(api_ctx *x, int (*fn)(api_ctx *x, ctl_dir_obj *o, cJSON *j))
{
    ctl_dir_obj o;
    cJSON *j;
    int rc = my_vdisk(x, &o, &j);
    if (rc != 0)
        return rc;
    rc = fn(x, &o, j);
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    return rc;
}

/* Stores j as the vdisk and mirrors it; answers the disk. */
static int vdisk_store(api_ctx *x, ctl_dir_obj *o, const cJSON *j, const api_keys *keys)
{
    int rc = api_put_json(x->t, x->c.actor, o, j, keys && keys->set ? keys->k : NULL,
                          keys ? keys->n : 0);
    if (rc == 0)
        rc = vdisk_sync(x, o->tenant, o->id, j);
    return rc ? rc : api_answer_stored(x, CTL_KIND_VDISK, o->id, 200);
}

static const ctl_field step_device_fields[] = {
    {"recorder_id", CTL_F_ID, true, 0, 0, NULL, false},
};

/* Step 1: the recorder the disk covers (one of the client's; one disk per
 * recorder). */
static int do_step_device(api_ctx *x, ctl_dir_obj *o, cJSON *j)
{
    ctl_dir_obj r;
    cJSON *rj = NULL;
    int rc = 0;
    uint64_t rid = (uint64_t)api_jint(x->body, "recorder_id");
    api_keys keys = {.set = false};
    if ((rc = api_get_json(x, CTL_KIND_RECORDER, rid, &r, &rj)) == -ENOENT) {
        rc = api_fail(x, 422, "invalid_field", "field \"recorder_id\": no such recorder");
    } else if (rc == 0 && api_jint(rj, "client_id") != api_jint(j, "client_id")) {
        rc = api_fail(x, 422, "invalid_field",
                      "field \"recorder_id\": the recorder belongs to another client");
        ctl_dir_obj_clear(&r);
    } else if (rc == 0) {
        ctl_dir_obj_clear(&r);
        uint64_t other;
        if (vdisk_of_recorder(x, rid, &other) == 0 && other != o->id)
            rc = api_fail(x, 409, "recorder_taken", "another virtual disk covers this recorder");
        else if ((rc = api_keys_add(&keys, "vdisk_recorder", "%" PRIu64, rid)) == 0) {
            cJSON_ReplaceItemInObjectCaseSensitive(j, "recorder_id",
                                                   cJSON_CreateNumber((double)rid));
            /* Caps of another recorder's channels no longer apply. */
            cJSON_ReplaceItemInObjectCaseSensitive(j, "camera_caps", cJSON_CreateArray());
            rc = vdisk_store(x, o, j, &keys);
        }
    }
    cJSON_Delete(rj);
    return rc;
}

static int h_step_device(api_ctx *x)
{
    return on_vdisk(x, do_step_device);
}

static const ctl_field step_drive_fields[] = {
    {"name", CTL_F_STRING, false, 1, API_NAME_MAX, NULL, false},
    {"retention_days", CTL_F_INT, false, 1, RETENTION_DAYS_MAX, NULL, false},
    {"policy", CTL_F_STRING, false, 1, 16, policies, false},
    {"camera_caps", CTL_F_ARRAY, false, 0, 64, NULL, false},
};

/* Step 2: the drive's details: name, retention (up to the subscription's),
 * policy when full, caps of cameras inside the disk. */
static int do_step_drive(api_ctx *x, ctl_dir_obj *o, cJSON *j)
{
    int rc = 0;
    const cJSON *v;
    int64_t max = api_jint(j, "retention_days_max");
    if ((v = cJSON_GetObjectItemCaseSensitive(x->body, "retention_days")) &&
        (int64_t)v->valuedouble > max)
        rc = api_fail(x, 422, "invalid_field",
                      "field \"retention_days\": the subscription keeps at most %" PRId64 " days",
                      max);
    const cJSON *caps = cJSON_GetObjectItemCaseSensitive(x->body, "camera_caps");
    uint64_t rid = (uint64_t)api_jint(j, "recorder_id");
    int i = 0;
    for (const cJSON *c = caps ? caps->child : NULL; rc == 0 && c; c = c->next, i++) {
        static const ctl_field cap_fields[] = {
            {"channel_id", CTL_F_ID, true, 0, 0, NULL, false},
            {"cap_bytes", CTL_F_INT, true, 1, CAPACITY_MAX, NULL, false},
        };
        ctl_check_err e;
        ctl_dir_obj ch = {0};
        if (ctl_check_body(c, CTL_FIELDS(cap_fields), &e) != 0) {
            rc = api_fail(x, 422, e.code, "camera_caps[%d]: %s", i, e.message);
        } else if (ctl_dir_get_in_tenant(x->t, x->c.tenant, CTL_KIND_CHANNEL,
                                         (uint64_t)api_jint(c, "channel_id"), &ch) != 0 ||
                   !rid || ch.parent != rid) {
            rc = api_fail(x, 422, "invalid_field",
                          "field \"camera_caps[%d].channel_id\": not a channel of the disk's "
                          "recorder (step 1)",
                          i);
        } else if (api_jint(c, "cap_bytes") > api_jint(j, "capacity_bytes")) {
            rc = api_fail(x, 422, "invalid_field",
                          "field \"camera_caps[%d].cap_bytes\" is larger than the disk", i);
        }
        ctl_dir_obj_clear(&ch);
    }
    for (const cJSON *it = x->body ? x->body->child : NULL; rc == 0 && it; it = it->next)
        rc = api_merge_field(j, it);
    if (rc == 0)
        rc = vdisk_store(x, o, j, NULL);
    return rc;
}

static int h_step_drive(api_ctx *x)
{
    return on_vdisk(x, do_step_drive);
}

static const ctl_field step_channels_fields[] = {
    {"channels", CTL_F_ARRAY, true, 1, 64, NULL, false},
};

/* Step 3: the recorder's channels (name, cloud backup, AI algorithms):
 * each element is a channel change as PUT /api/v1/channels/{id} takes it,
 * with its channel_id. */
static int do_step_channels(api_ctx *x, ctl_dir_obj *o, cJSON *j)
{
    int rc = 0;
    uint64_t rid = (uint64_t)api_jint(j, "recorder_id");
    if (!rid)
        rc = api_fail(x, 409, "step_missing", "choose the recorder first (step 1)");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(x->body, "channels");
    int i = 0;
    for (const cJSON *c = list ? list->child : NULL; rc == 0 && c; c = c->next, i++) {
        static const ctl_field fields[] = {
            {"channel_id", CTL_F_ID, true, 0, 0, NULL, false},
            {"name", CTL_F_STRING, false, 1, API_NAME_MAX, NULL, false},
            {"cloud_backup", CTL_F_BOOL, false, 0, 0, NULL, false},
            {"ai_algorithms", CTL_F_STRINGS, false, 0, ALGOS_MAX, NULL, false},
        };
        ctl_check_err e;
        ctl_dir_obj ch;
        cJSON *cj;
        if (ctl_check_body(c, CTL_FIELDS(fields), &e) != 0) {
            rc = api_fail(x, 422, e.code, "channels[%d]: %s", i, e.message);
            break;
        }
        uint64_t cid = (uint64_t)api_jint(c, "channel_id");
        if ((rc = api_get_json(x, CTL_KIND_CHANNEL, cid, &ch, &cj)) != 0 || ch.parent != rid) {
            if (rc == 0) {
                cJSON_Delete(cj);
                ctl_dir_obj_clear(&ch);
            }
            rc = api_fail(x, 422, "invalid_field",
                          "field \"channels[%d].channel_id\": not a channel of the disk's "
                          "recorder",
                          i);
            break;
        }
        for (const cJSON *it = c->child; rc == 0 && it; it = it->next)
            if (strcmp(it->string, "channel_id") != 0)
                rc = api_merge_field(cj, it);
        if (rc == 0)
            rc = api_channel_check(x, &ch, cj);
        if (rc == 0)
            rc = api_put_json(x->t, x->c.actor, &ch, cj, NULL, 0);
        cJSON_Delete(cj);
        ctl_dir_obj_clear(&ch);
    }
    if (rc == 0)
        rc = vdisk_store(x, o, j, NULL);
    return rc;
}

static int h_step_channels(api_ctx *x)
{
    return on_vdisk(x, do_step_channels);
}

static const ctl_field step_connection_fields[] = {
    {"device_id", CTL_F_STRING, true, 1, 64, NULL, false},
};

/* Step 4: the recorder's device id (the name it connects with; pairing
 * sets it, issue 5) and what to type on the recorder. */
static int do_step_connection(api_ctx *x, ctl_dir_obj *o, cJSON *j)
{
    ctl_dir_obj r;
    cJSON *rj;
    int rc = 0;
    uint64_t rid = (uint64_t)api_jint(j, "recorder_id");
    if (!rid) {
        rc = api_fail(x, 409, "step_missing", "choose the recorder first (step 1)");
    } else if ((rc = api_get_json(x, CTL_KIND_RECORDER, rid, &r, &rj)) == 0) {
        rc = api_recorder_set_device(x, &r, rj, api_jstr(x->body, "device_id"));
        if (rc == 0)
            rc = vdisk_store(x, o, j, NULL);
        cJSON_Delete(rj);
        ctl_dir_obj_clear(&r);
    }
    return rc;
}

static int h_step_connection(api_ctx *x)
{
    return on_vdisk(x, do_step_connection);
}

/* What is missing before activation, or NULL. */
static const char *missing(api_ctx *x, const cJSON *j, int *rc)
{
    *rc = 0;
    uint64_t rid = (uint64_t)api_jint(j, "recorder_id");
    if (!rid)
        return "step 1: no recorder chosen";
    ctl_dir_obj r;
    cJSON *rj;
    if ((*rc = api_get_json(x, CTL_KIND_RECORDER, rid, &r, &rj)) != 0) {
        if (*rc == -ENOENT)
            *rc = 0;
        return "step 1: the recorder was deleted";
    }
    const char *dev = api_jstr(rj, "device_id");
    bool has_dev = dev != NULL;
    cJSON_Delete(rj);
    ctl_dir_obj_clear(&r);
    chan_list cl = {.n = 0};
    if ((*rc = ctl_dir_list_children(x->t, rid, CTL_KIND_CHANNEL, 0, 64, collect_chan, &cl,
                                     NULL)) != 0)
        return NULL;
    int backed = 0;
    for (size_t i = 0; i < cl.n; i++) {
        ctl_dir_obj c;
        cJSON *cj;
        if ((*rc = api_get_json(x, CTL_KIND_CHANNEL, cl.ids[i], &c, &cj)) != 0)
            return NULL;
        backed += cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cj, "cloud_backup"));
        cJSON_Delete(cj);
        ctl_dir_obj_clear(&c);
    }
    if (!backed)
        return "step 3: no channel has cloud backup on";
    if (!has_dev)
        return "step 4: the recorder has no device id (pair it)";
    return NULL;
}

/* GET /api/v1/vdisks/{id}/steps */
static int do_steps(api_ctx *x, ctl_dir_obj *o, cJSON *j)
{
    int rc = 0;
    const char *why = missing(x, j, &rc);
    cJSON *out = rc == 0 ? cJSON_CreateObject() : NULL;
    if (rc == 0 && out) {
        cJSON_AddStringToObject(out, "state", api_jstr(j, "state"));
        cJSON_AddBoolToObject(out, "ready", why == NULL);
        if (why)
            cJSON_AddStringToObject(out, "missing", why);
        else
            cJSON_AddNullToObject(out, "missing");
        rc = ctl_http_resp_json(x->resp, 200, out);
    } else if (rc == 0) {
        rc = -ENOMEM;
    }
    return rc;
}

static int h_steps(api_ctx *x)
{
    return on_vdisk(x, do_steps);
}

/* Step 5: activation checks the whole. */
static int do_activate(api_ctx *x, ctl_dir_obj *o, cJSON *j)
{
    int rc = 0;
    const char *why = missing(x, j, &rc);
    const char *state = api_jstr(j, "state");
    if (rc == 0 && why)
        rc = api_fail(x, 409, "not_ready", "%s", why);
    else if (rc == 0 && state && strcmp(state, "suspended") == 0)
        rc = api_fail(x, 409, "suspended", "the distributor suspended this subscription");
    else if (rc == 0) {
        cJSON_ReplaceItemInObjectCaseSensitive(j, "state", cJSON_CreateString("active"));
        rc = vdisk_store(x, o, j, NULL);
    }
    return rc;
}

static int h_activate(api_ctx *x)
{
    return on_vdisk(x, do_activate);
}

const api_route api_subscriptions_routes[] = {
    {"GET", "/api/v1/installers/{id}/clients", CTL_PERM_INSTALLER_GET, NULL, 0, h_inst_clients,
     NULL},
    {"GET", "/api/v1/installers/{id}/vdisks", CTL_PERM_INSTALLER_GET, NULL, 0, h_inst_vdisks, NULL},
    {"POST", "/api/v1/installers/{id}/vdisks", CTL_PERM_SUBSCRIPTION_MANAGE,
     CTL_FIELDS(vdisk_create_fields), h_vdisk_create, NULL},
    {"PUT", "/api/v1/installers/{id}/vdisks/{sid}", CTL_PERM_SUBSCRIPTION_MANAGE,
     CTL_FIELDS(vdisk_resize_fields), h_vdisk_resize, NULL},
    {"DELETE", "/api/v1/installers/{id}/vdisks/{sid}", CTL_PERM_SUBSCRIPTION_MANAGE, NULL, 0,
     h_vdisk_cancel, NULL},
    {"GET", "/api/v1/installers/{id}/ai-subscriptions", CTL_PERM_INSTALLER_GET, NULL, 0,
     h_inst_aisubs, NULL},
    {"POST", "/api/v1/installers/{id}/ai-subscriptions", CTL_PERM_SUBSCRIPTION_MANAGE,
     CTL_FIELDS(aisub_create_fields), h_aisub_create, NULL},
    {"DELETE", "/api/v1/installers/{id}/ai-subscriptions/{sid}", CTL_PERM_SUBSCRIPTION_MANAGE, NULL,
     0, h_aisub_cancel, NULL},
    {"GET", "/api/v1/vdisks", CTL_PERM_SUBSCRIPTION_GET, NULL, 0, api_obj_list, &vdisk_kind},
    {"GET", "/api/v1/vdisks/{id}", CTL_PERM_SUBSCRIPTION_GET, NULL, 0, api_obj_get, &vdisk_kind},
    {"GET", "/api/v1/vdisks/{id}/steps", CTL_PERM_SUBSCRIPTION_GET, NULL, 0, h_steps, NULL},
    {"PUT", "/api/v1/vdisks/{id}/device", CTL_PERM_SUBSCRIPTION_CONFIGURE,
     CTL_FIELDS(step_device_fields), h_step_device, NULL},
    {"PUT", "/api/v1/vdisks/{id}/drive", CTL_PERM_SUBSCRIPTION_CONFIGURE,
     CTL_FIELDS(step_drive_fields), h_step_drive, NULL},
    {"PUT", "/api/v1/vdisks/{id}/channels", CTL_PERM_SUBSCRIPTION_CONFIGURE,
     CTL_FIELDS(step_channels_fields), h_step_channels, NULL},
    {"PUT", "/api/v1/vdisks/{id}/connection", CTL_PERM_SUBSCRIPTION_CONFIGURE,
     CTL_FIELDS(step_connection_fields), h_step_connection, NULL},
    {"POST", "/api/v1/vdisks/{id}/activate", CTL_PERM_SUBSCRIPTION_CONFIGURE, NULL, 0, h_activate,
     NULL},
    {"GET", "/api/v1/ai-subscriptions", CTL_PERM_SUBSCRIPTION_GET, NULL, 0, api_obj_list,
     &aisub_kind},
    {"GET", "/api/v1/ai-subscriptions/{id}", CTL_PERM_SUBSCRIPTION_GET, NULL, 0, api_obj_get,
     &aisub_kind},
};
const size_t api_subscriptions_nroutes =
    sizeof(api_subscriptions_routes) / sizeof(api_subscriptions_routes[0]);
