/* An installer's customers and their equipment: clients, sites, recorders
 * (and dashcams, recorders of kind "dashcam") and channels. */
#include "controller/api_int.h"
#include "controller/revoke.h"
#include "proto/c2d_proto.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Channels of one recorder: the largest NVRs have 64. */
#define CHANNELS_MAX 64
/* Channels of a dashcam: road, cabin and a few more. */
#define DASHCAM_CHANNELS_MAX 8
/* Serial numbers and models: what a label holds. */
#define SERIAL_MAX 64
/* Device ids are the certificates' CNs (proto/c2d_proto.h). */
#define DEVICE_ID_MAX 64

/* The AI algorithms a channel may run (issue 4 checks them against the
 * client's AI subscription). */
static const char *const ai_algorithms[] = {
    "person",    "vehicle",    "face", "license_plate", "intrusion", "line_crossing",
    "loitering", "fire_smoke", NULL,
};

/* --- Clients --- */

static const ctl_field client_fields[] = {
    {"name", CTL_F_STRING, true, 1, API_NAME_MAX, NULL, false},
    {"email", CTL_F_STRING, true, 1, API_EMAIL_MAX, NULL, false},
    {"phone", CTL_F_STRING, false, 1, 32, NULL, true},
    {"address", CTL_F_STRING, false, 1, 256, NULL, true},
    {"notes", CTL_F_TEXT, false, 0, API_TEXT_MAX, NULL, true},
};

/* The guide: a client's email is its account with the marketplace; it is
 * set once. */
static const char *const client_fixed[] = {"email", NULL};

static int client_prepare(api_ctx *x, const cJSON *before, cJSON *after, ctl_dir_obj *o,
                          api_keys *keys)
{
    (void)o, (void)keys;
    return before ? 0 : api_email_field(x, after, "email");
}

static const char *const client_filters[] = {"email", "name", NULL};

static const api_kind client_kind = {
    .kind = CTL_KIND_CLIENT,
    .noun = "client",
    .plural = "clients",
    .perm_get = CTL_PERM_CUSTOMER_GET,
    .perm_add = CTL_PERM_CUSTOMER_CREATE,
    .perm_modify = CTL_PERM_CUSTOMER_MODIFY,
    .perm_delete = CTL_PERM_CUSTOMER_DELETE,
    .create = client_fields,
    .ncreate = sizeof(client_fields) / sizeof(client_fields[0]),
    .fixed = client_fixed,
    .child_kind = CTL_KIND_SITE,
    .child_plural = "sites",
    .filters = client_filters,
    .prepare = client_prepare,
};

/* --- Sites --- */

static const ctl_field site_fields[] = {
    {"name", CTL_F_STRING, true, 1, API_NAME_MAX, NULL, false},
    {"client_id", CTL_F_ID, true, 0, 0, NULL, false},
    {"address", CTL_F_STRING, false, 1, 256, NULL, true},
    {"time_zone", CTL_F_STRING, false, 1, API_NAME_MAX, NULL, true},
};

static const char *const site_filters[] = {"name", NULL};

static const api_kind site_kind = {
    .kind = CTL_KIND_SITE,
    .noun = "site",
    .plural = "sites",
    .perm_get = CTL_PERM_SITE_GET,
    .perm_add = CTL_PERM_SITE_CREATE,
    .perm_modify = CTL_PERM_SITE_MODIFY,
    .perm_delete = CTL_PERM_SITE_DELETE,
    .create = site_fields,
    .ncreate = sizeof(site_fields) / sizeof(site_fields[0]),
    .parent_kind = CTL_KIND_CLIENT,
    .parent_field = "client_id",
    .child_kind = CTL_KIND_RECORDER,
    .child_plural = "recorders",
    .filters = site_filters,
};

/* --- Recorders and dashcams --- */

static bool is_dashcam(const cJSON *j)
{
    const char *k = api_jstr(j, "kind");
    return k && strcmp(k, "dashcam") == 0;
}

static bool is_recorder(const cJSON *j)
{
    return !is_dashcam(j);
}

static const ctl_field recorder_fields[] = {
    {"name", CTL_F_STRING, true, 1, API_NAME_MAX, NULL, false},
    {"serial", CTL_F_STRING, true, 1, SERIAL_MAX, NULL, false},
    {"model", CTL_F_STRING, true, 1, API_NAME_MAX, NULL, false},
    {"site_id", CTL_F_ID, true, 0, 0, NULL, false},
    {"channels", CTL_F_INT, false, 1, CHANNELS_MAX, NULL, false},
    {"device_id", CTL_F_STRING, false, 1, DEVICE_ID_MAX, NULL, true},
};

static const ctl_field dashcam_fields[] = {
    {"name", CTL_F_STRING, true, 1, API_NAME_MAX, NULL, false},
    {"serial", CTL_F_STRING, true, 1, SERIAL_MAX, NULL, false},
    {"model", CTL_F_STRING, true, 1, API_NAME_MAX, NULL, false},
    {"plate", CTL_F_STRING, false, 1, 16, NULL, true},
    {"channels", CTL_F_INT, false, 1, DASHCAM_CHANNELS_MAX, NULL, false},
    {"device_id", CTL_F_STRING, false, 1, DEVICE_ID_MAX, NULL, true},
};

/* A recorder's serial and channel count are its hardware: fixed. */
static const char *const recorder_fixed[] = {"serial", "channels", NULL};

/* A device id is a certificate CN and an MQTT topic level: the rules the
 * CA signs and the topic parser takes (no leading '.' or '-', so never
 * ".."; never a service's "c2d-" id), not only their alphabet. */
static bool device_id_ok(const char *s)
{
    return c2d_device_id_valid(s) && !c2d_id_reserved(s);
}

/* Serial and device id are unique across all spaces: one physical box. */
static int recorder_prepare(api_ctx *x, const cJSON *before, cJSON *after, ctl_dir_obj *o,
                            api_keys *keys)
{
    const char *serial = api_jstr(after, "serial"), *dev = api_jstr(after, "device_id");
    int kind, rc;
    uint64_t id;
    if (dev && !device_id_ok(dev))
        return api_fail(x, 422, "invalid_field",
                        "field \"device_id\" may hold only letters, digits, '-', '_' and '.', "
                        "not first '.' or '-', nor start with \"c2d-\"");
    if ((rc = ctl_dir_lookup(x->t, "serial", serial, &kind, &id)) == 0 && id != o->id)
        return api_fail(x, 409, "serial_taken", "a recorder with this serial number exists");
    if (dev && (rc = ctl_dir_lookup(x->t, "device", dev, &kind, &id)) == 0 && id != o->id)
        return api_fail(x, 409, "device_taken", "another recorder has this device id");
    /* A revoked id stays revoked: its old certificate must not come back. */
    if (dev && (rc = ctl_revoke_is(x->t, dev)) != 0)
        return rc < 0 ? rc
                      : api_fail(x, 409, "device_revoked",
                                 "this device id was revoked (unpaired or deleted recorder)");
    if (!before) {
        const char *type =
            x->route->kind->perm_add == CTL_PERM_DASHCAM_ADD ? "dashcam" : "recorder";
        if (!cJSON_AddStringToObject(after, "kind", type))
            return -ENOMEM;
        if (!cJSON_GetObjectItemCaseSensitive(after, "channels") &&
            !cJSON_AddNumberToObject(after, "channels", 1))
            return -ENOMEM;
    }
    /* A recorder belongs to its site's client: kept for lists. */
    const cJSON *site = cJSON_GetObjectItemCaseSensitive(after, "site_id");
    if (cJSON_IsNumber(site)) {
        ctl_dir_obj s = {0};
        if ((rc = ctl_dir_get_in_tenant(x->t, x->c.tenant, CTL_KIND_SITE,
                                        (uint64_t)site->valuedouble, &s)) != 0)
            return rc;
        cJSON *sj = cJSON_Parse(s.json);
        double client = (double)api_jint(sj, "client_id");
        cJSON_Delete(sj);
        ctl_dir_obj_clear(&s);
        cJSON_DeleteItemFromObjectCaseSensitive(after, "client_id");
        if (!cJSON_AddNumberToObject(after, "client_id", client))
            return -ENOMEM;
    }
    if ((rc = api_keys_add(keys, "serial", "%s", serial)) != 0 ||
        (dev && (rc = api_keys_add(keys, "device", "%s", dev)) != 0))
        return rc;
    return 0;
}

int api_recorder_set_device(api_ctx *x, ctl_dir_obj *r, cJSON *rj, const char *device)
{
    cJSON *after = cJSON_Duplicate(rj, 1);
    if (!after)
        return -ENOMEM;
    api_keys keys = {.set = false};
    int rc = 0;
    /* A recorder without a device id (never paired, or unpaired) has no
     * item to replace: the new one is then added, not leaked. */
    cJSON *v = cJSON_CreateString(device);
    if (!v)
        rc = -ENOMEM;
    else if (!cJSON_ReplaceItemInObjectCaseSensitive(after, "device_id", v)) {
        cJSON_Delete(v);
        if (!cJSON_AddStringToObject(after, "device_id", device))
            rc = -ENOMEM;
    }
    if (rc == 0)
        rc = recorder_prepare(x, rj, after, r, &keys);
    if (rc == 0)
        rc = api_put_json(x->t, x->c.actor, r, after, keys.k, keys.n);
    if (rc == 0)
        rc = api_recorder_sync(x, r->id);
    cJSON_Delete(after);
    return rc;
}

/* A new device id or site reaches the ledger's cameras now. */
static int recorder_changed(api_ctx *x, const ctl_dir_obj *o, const cJSON *j)
{
    (void)j;
    return api_recorder_sync(x, o->id);
}

/* A new recorder's channels: "Channel N", backed up, no AI. */
static int recorder_created(api_ctx *x, const ctl_dir_obj *o, const cJSON *j)
{
    int64_t n = api_jint(j, "channels");
    for (int64_t i = 1; i <= n; i++) {
        char name[32];
        snprintf(name, sizeof(name), "Channel %" PRId64, i);
        cJSON *c = cJSON_CreateObject();
        if (!c || !cJSON_AddNumberToObject(c, "recorder_id", (double)o->id) ||
            !cJSON_AddNumberToObject(c, "number", (double)i) ||
            !cJSON_AddStringToObject(c, "name", name) ||
            !cJSON_AddBoolToObject(c, "cloud_backup", true) ||
            !cJSON_AddArrayToObject(c, "ai_algorithms")) {
            cJSON_Delete(c);
            return -ENOMEM;
        }
        ctl_dir_obj co = {.kind = CTL_KIND_CHANNEL, .tenant = o->tenant, .parent = o->id};
        int rc = api_put_json(x->t, x->c.actor, &co, c, NULL, 0);
        cJSON_Delete(c);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Takes the first object of a walk (its id). */
static int first_child(void *ud, const ctl_dir_obj *o)
{
    ((ctl_dir_obj *)ud)->id = o->id;
    return 1;
}

/* A recorder goes with its channels and their bookmarks; its events and
 * positions go with it; its device id is revoked (docs/pairing.md). */
static int recorder_deleting(api_ctx *x, const ctl_dir_obj *o, const cJSON *j)
{
    char key[32];
    int kind;
    uint64_t vd;
    snprintf(key, sizeof(key), "%" PRIu64, o->id);
    if (ctl_dir_lookup(x->t, "vdisk_recorder", key, &kind, &vd) == 0)
        return api_fail(x, 409, "in_use",
                        "a virtual disk covers this recorder: give the disk another recorder "
                        "(step 1) or cancel it first");
    ctl_dir_obj ch = {0};
    int rc;
    /* Channels one at a time: their bookmarks go first. */
    while ((rc = ctl_dir_list_children(x->t, o->id, CTL_KIND_CHANNEL, 0, 1, first_child, &ch,
                                       NULL)) == 1) {
        uint64_t id = ch.id;
        if ((rc = api_drop_children(x->t, x->c.actor, id, CTL_KIND_BOOKMARK)) != 0 ||
            (rc = ctl_dir_del(x->t, x->c.actor, CTL_KIND_CHANNEL, id)) != 0)
            return rc;
    }
    if (rc == 0)
        rc = api_drop_children(x->t, x->c.actor, o->id, CTL_KIND_EVENT);
    /* Positions are bookkeeping: not audited one by one. */
    if (rc == 0)
        rc = api_drop_children(x->t, NULL, o->id, CTL_KIND_LOCATION);
    const char *dev = api_jstr(j, "device_id");
    if (rc == 0 && dev)
        rc = ctl_revoke_mark(x->t, dev, o->id);
    return rc;
}

static const char *const recorder_filters[] = {"client_id", "model", "name", "serial", NULL};

const api_kind api_recorder_kind = {
    .kind = CTL_KIND_RECORDER,
    .noun = "recorder",
    .plural = "recorders",
    .perm_get = CTL_PERM_DEVICE_GET,
    .perm_add = CTL_PERM_DEVICE_ADD,
    .perm_modify = CTL_PERM_DEVICE_MODIFY,
    .perm_delete = CTL_PERM_DEVICE_DELETE,
    .create = recorder_fields,
    .ncreate = sizeof(recorder_fields) / sizeof(recorder_fields[0]),
    .parent_kind = CTL_KIND_SITE,
    .parent_field = "site_id",
    .fixed = recorder_fixed,
    .filters = recorder_filters,
    .visible = is_recorder,
    .prepare = recorder_prepare,
    .created = recorder_created,
    .deleting = recorder_deleting,
    .changed = recorder_changed,
};

static const char *const dashcam_filters[] = {"model", "name", "serial", "plate", NULL};

const api_kind api_dashcam_kind = {
    .kind = CTL_KIND_RECORDER,
    .noun = "dashcam",
    .plural = "dashcams",
    .perm_get = CTL_PERM_DASHCAM_GET,
    .perm_add = CTL_PERM_DASHCAM_ADD,
    .perm_modify = CTL_PERM_DASHCAM_MODIFY,
    .perm_delete = CTL_PERM_DASHCAM_DELETE,
    .create = dashcam_fields,
    .ncreate = sizeof(dashcam_fields) / sizeof(dashcam_fields[0]),
    .fixed = recorder_fixed,
    .filters = dashcam_filters,
    .visible = is_dashcam,
    .prepare = recorder_prepare,
    .created = recorder_created,
    .deleting = recorder_deleting,
    .changed = recorder_changed,
};

/* --- Channels --- */

static const ctl_field channel_modify_fields[] = {
    {"name", CTL_F_STRING, false, 1, API_NAME_MAX, NULL, false},
    {"cloud_backup", CTL_F_BOOL, false, 0, 0, NULL, false},
    {"ai_algorithms", CTL_F_STRINGS, false, 0, 8, NULL, false},
};

bool api_ai_algorithm_known(const char *name)
{
    for (const char *const *a = ai_algorithms; *a; a++)
        if (strcmp(*a, name) == 0)
            return true;
    return false;
}

/* What the client's AI subscriptions allow: algorithms and channels. */
typedef struct {
    const cJSON *want; /* the channel's algorithms */
    unsigned long long allowed_mask;
    int64_t channels_max;
    int subs;
} ai_allow;

static int ai_sub_cb(void *ud, const ctl_dir_obj *o)
{
    ai_allow *a = ud;
    cJSON *j = cJSON_Parse(o->json);
    const cJSON *al = cJSON_GetObjectItemCaseSensitive(j, "algorithms");
    int i = 0;
    for (const cJSON *w = a->want->child; w; w = w->next, i++)
        for (const cJSON *e = al ? al->child : NULL; e; e = e->next)
            if (cJSON_IsString(e) && strcmp(e->valuestring, w->valuestring) == 0)
                a->allowed_mask |= 1ull << i;
    a->channels_max += api_jint(j, "channels_max");
    a->subs++;
    cJSON_Delete(j);
    return 0;
}

/* Channels of the client's recorders that run AI, other than self. */
typedef struct {
    api_ctx *x;
    int64_t client;
    uint64_t self;
    int64_t count;
    int err;
} ai_count;

static int ai_chan_cb(void *ud, const ctl_dir_obj *o)
{
    ai_count *c = ud;
    if (o->id == c->self)
        return 0;
    cJSON *j = cJSON_Parse(o->json);
    c->count += cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "ai_algorithms")) > 0;
    cJSON_Delete(j);
    return 0;
}

static int ai_rec_cb(void *ud, const ctl_dir_obj *o)
{
    ai_count *c = ud;
    cJSON *j = cJSON_Parse(o->json);
    bool mine = j && api_jint(j, "client_id") == c->client;
    cJSON_Delete(j);
    if (mine)
        c->err = ctl_dir_list_children(c->x->t, o->id, CTL_KIND_CHANNEL, 0, CTL_DIR_LIST_MAX,
                                       ai_chan_cb, c, NULL);
    return c->err ? 1 : 0;
}

int api_channel_check(api_ctx *x, const ctl_dir_obj *ch, const cJSON *after)
{
    const cJSON *ai = cJSON_GetObjectItemCaseSensitive(after, "ai_algorithms");
    int i = 0, n = cJSON_GetArraySize(ai);
    for (const cJSON *e = ai ? ai->child : NULL; e; e = e->next, i++) {
        if (!api_ai_algorithm_known(e->valuestring))
            return api_fail(x, 422, "invalid_field",
                            "field \"ai_algorithms[%d]\" is not a known algorithm (person, "
                            "vehicle, face, license_plate, intrusion, line_crossing, loitering, "
                            "fire_smoke)",
                            i);
        for (const cJSON *p = ai->child; p != e; p = p->next)
            if (strcmp(p->valuestring, e->valuestring) == 0)
                return api_fail(x, 422, "invalid_field",
                                "field \"ai_algorithms[%d]\" repeats an algorithm", i);
    }
    if (n == 0)
        return 0;
    /* The recorder's client's AI subscriptions must allow each algorithm
     * and one more channel. */
    ctl_dir_obj r;
    cJSON *rj;
    int rc = api_get_json(x, CTL_KIND_RECORDER, ch->parent, &r, &rj);
    if (rc != 0)
        return rc;
    int64_t client = api_jint(rj, "client_id");
    cJSON_Delete(rj);
    ctl_dir_obj_clear(&r);
    ai_allow al = {.want = ai};
    if (client && (rc = ctl_dir_list_children(x->t, (uint64_t)client, CTL_KIND_AISUB, 0,
                                              CTL_DIR_LIST_MAX, ai_sub_cb, &al, NULL)) != 0)
        return rc;
    i = 0;
    for (const cJSON *e = ai->child; e; e = e->next, i++)
        if (!(al.allowed_mask & (1ull << i)))
            return api_fail(x, 422, "not_subscribed",
                            "field \"ai_algorithms[%d]\": no AI subscription of the client "
                            "allows \"%s\"",
                            i, e->valuestring);
    ai_count c = {x, client, ch->id, 0, 0};
    rc = ctl_dir_list_tenant(x->t, x->c.tenant, CTL_KIND_RECORDER, 0, CTL_DIR_LIST_MAX, ai_rec_cb,
                             &c, NULL);
    if (rc == 1)
        rc = c.err;
    if (rc != 0)
        return rc;
    if (c.count + 1 > al.channels_max)
        return api_fail(x, 422, "not_subscribed",
                        "the client's AI subscriptions allow %lld channel(s) with AI; %lld "
                        "already use it",
                        (long long)al.channels_max, (long long)c.count);
    return 0;
}

static int channel_prepare(api_ctx *x, const cJSON *before, cJSON *after, ctl_dir_obj *o,
                           api_keys *keys)
{
    (void)before, (void)keys;
    return api_channel_check(x, o, after);
}

/* Cloud backup on or off reaches the ledger and the device now. */
static int channel_changed(api_ctx *x, const ctl_dir_obj *o, const cJSON *j)
{
    (void)j;
    return api_recorder_sync(x, o->parent);
}

static const char *const channel_filters[] = {"cloud_backup", NULL};

static const api_kind channel_kind = {
    .kind = CTL_KIND_CHANNEL,
    .noun = "channel",
    .plural = "channels",
    .perm_get = CTL_PERM_CHANNEL_GET,
    .perm_modify = CTL_PERM_CHANNEL_MODIFY,
    .modify = channel_modify_fields,
    .nmodify = sizeof(channel_modify_fields) / sizeof(channel_modify_fields[0]),
    .parent_kind = CTL_KIND_RECORDER,
    .parent_field = "recorder_id",
    .filters = channel_filters,
    .prepare = channel_prepare,
    .changed = channel_changed,
};

const api_route api_objects_routes[] = {
    API_KIND_ROUTES("/api/v1/clients", &client_kind, CTL_PERM_CUSTOMER_GET,
                    CTL_PERM_CUSTOMER_CREATE, CTL_PERM_CUSTOMER_MODIFY, CTL_PERM_CUSTOMER_DELETE),
    API_KIND_ROUTES("/api/v1/sites", &site_kind, CTL_PERM_SITE_GET, CTL_PERM_SITE_CREATE,
                    CTL_PERM_SITE_MODIFY, CTL_PERM_SITE_DELETE),
    API_KIND_ROUTES("/api/v1/recorders", &api_recorder_kind, CTL_PERM_DEVICE_GET,
                    CTL_PERM_DEVICE_ADD, CTL_PERM_DEVICE_MODIFY, CTL_PERM_DEVICE_DELETE),
    API_KIND_ROUTES("/api/v1/dashcams", &api_dashcam_kind, CTL_PERM_DASHCAM_GET,
                    CTL_PERM_DASHCAM_ADD, CTL_PERM_DASHCAM_MODIFY, CTL_PERM_DASHCAM_DELETE),
    {"GET", "/api/v1/channels", CTL_PERM_CHANNEL_GET, NULL, 0, api_obj_list, &channel_kind},
    {"GET", "/api/v1/channels/{id}", CTL_PERM_CHANNEL_GET, NULL, 0, api_obj_get, &channel_kind},
    {"PUT", "/api/v1/channels/{id}", CTL_PERM_CHANNEL_MODIFY, NULL, 0, api_obj_modify,
     &channel_kind},
};
const size_t api_objects_nroutes = sizeof(api_objects_routes) / sizeof(api_objects_routes[0]);
