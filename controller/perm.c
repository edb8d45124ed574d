/* Named permissions and built-in roles: see perm.h and docs/permissions.md. */
#include "controller/perm.h"

#include <stdio.h>
#include <string.h>

/* Built-in roles, as bits of perm_def.roles. */
enum {
    DA = 1u << 0, /* dashcam Administrator */
    DS = 1u << 1, /* dashcam Supervisor */
    DU = 1u << 2, /* dashcam User */
    DR = 1u << 3, /* dashcam Restricted (holds nothing) */
    DM = 1u << 4, /* dashcam User - Map Viewer */
    CA = 1u << 5, /* Cam2Drive Admin */
    CT = 1u << 6, /* Cam2Drive Technician */
    CV = 1u << 7, /* Cam2Drive Viewer */
};

/* Held by both administrators (everything). */
#define ADM (DA | CA)
/* Reads of the dashcam platform's User and the Viewer, plus the supervisor. */
#define READ_ALL (ADM | DS | DU | CV)

typedef struct {
    const char *name;
    const char *what;
    bool read;
    unsigned roles;
} perm_def;

/* The one list. Designated initialisers keep it aligned with the enum; the
 * unit test checks that no entry is missing. Rows of the clearance table are
 * marked "table:" with the row's action; docs/permissions.md says why the
 * other cells are what they are. */
static const perm_def perms[CTL_PERM_COUNT] = {
    [CTL_PERM_CUSTOMER_CREATE] = {"customer.create", "Add a client (customer) to the space", false,
                                  ADM | DS},
    [CTL_PERM_CUSTOMER_MODIFY] = {"customer.modify", "Edit a client (not its email)", false,
                                  ADM | DS},
    [CTL_PERM_CUSTOMER_DELETE] = {"customer.delete", "Delete a client", false, ADM | DS},
    [CTL_PERM_CUSTOMER_GET] = {"customer.get", "List and view clients", true, READ_ALL | CT},
    [CTL_PERM_SITE_CREATE] = {"site.create", "Add a site to a client", false, ADM | DS | CT},
    [CTL_PERM_SITE_MODIFY] = {"site.modify", "Edit a site", false, ADM | DS | CT},
    [CTL_PERM_SITE_DELETE] = {"site.delete", "Delete a site that holds no recorders", false,
                              ADM | DS | CT},
    [CTL_PERM_SITE_GET] = {"site.get", "List and view sites", true, READ_ALL | CT},
    [CTL_PERM_DEVICE_ADD] = {"device.add", "Add a recorder (device) to a site", false,
                             ADM | DS | CT},
    [CTL_PERM_DEVICE_MODIFY] = {"device.modify", "Edit a recorder", false, ADM | DS | CT},
    [CTL_PERM_DEVICE_DELETE] = {"device.delete", "Delete a recorder", false, ADM | DS | CT},
    [CTL_PERM_DEVICE_GET] = {"device.get", "List and view recorders", true, READ_ALL | CT},
    [CTL_PERM_CHANNEL_MODIFY] = {"channel.modify",
                                 "Edit a channel (name, cloud backup, AI algorithms)", false,
                                 ADM | DS | CT},
    [CTL_PERM_CHANNEL_GET] = {"channel.get", "List and view channels", true, READ_ALL | CT},
    /* table: Add dashcam, Modify dashcam, Delete dashcam */
    [CTL_PERM_DASHCAM_ADD] = {"dashcam.add", "Add a dashcam", false, ADM | DS | CT},
    [CTL_PERM_DASHCAM_MODIFY] = {"dashcam.modify", "Edit a dashcam", false, ADM | DS | CT},
    [CTL_PERM_DASHCAM_DELETE] = {"dashcam.delete", "Delete a dashcam", false, ADM | DS | CT},
    [CTL_PERM_DASHCAM_GET] = {"dashcam.get", "List and view dashcams", true, READ_ALL | CT},
    /* table: Add group, Modify group, Delete group */
    [CTL_PERM_GROUP_ADD] = {"group.add", "Create a group of dashcams", false, ADM | DS},
    [CTL_PERM_GROUP_MODIFY] = {"group.modify", "Edit a group (name, members)", false, ADM | DS},
    [CTL_PERM_GROUP_DELETE] = {"group.delete", "Delete a group", false, ADM | DS},
    [CTL_PERM_GROUP_GET] = {"group.get", "List and view groups", true, READ_ALL},
    /* table: Add bookmark, Remove bookmark */
    [CTL_PERM_BOOKMARK_ADD] = {"bookmark.add", "Bookmark a channel's time range", false,
                               ADM | DS | DU},
    [CTL_PERM_BOOKMARK_REMOVE] = {"bookmark.remove", "Remove a bookmark", false, ADM | DS | DU},
    [CTL_PERM_BOOKMARK_GET] = {"bookmark.get", "List and view bookmarks", true, READ_ALL},
    /* table: Add geofence, Modify geofence, Remove geofence */
    [CTL_PERM_GEOFENCE_ADD] = {"geofence.add", "Create a geofence (circle or polygon)", false,
                               ADM | DS},
    [CTL_PERM_GEOFENCE_MODIFY] = {"geofence.modify", "Edit a geofence", false, ADM | DS},
    [CTL_PERM_GEOFENCE_REMOVE] = {"geofence.remove", "Remove a geofence", false, ADM | DS},
    [CTL_PERM_GEOFENCE_GET] = {"geofence.get", "List and view geofences", true, READ_ALL},
    /* table: Modify events */
    [CTL_PERM_EVENT_MODIFY] = {"event.modify", "Modify an event (acknowledge, note)", false,
                               ADM | DS},
    [CTL_PERM_EVENT_GET] = {"event.get", "List and view events", true, READ_ALL},
    /* table: Add user, Modify user, Remove user */
    [CTL_PERM_USER_ADD] = {"user.add", "Add a user to the space with a role", false, ADM},
    [CTL_PERM_USER_MODIFY] = {"user.modify", "Change a user's role", false, ADM},
    [CTL_PERM_USER_REMOVE] = {"user.remove", "Remove a user from the space", false, ADM},
    [CTL_PERM_USER_GET] = {"user.get", "List users (email, role; filter by role)", true,
                           ADM | DS | CV},
    [CTL_PERM_ROLE_CREATE] = {"role.create", "Create a role", false, ADM},
    [CTL_PERM_ROLE_MODIFY] = {"role.modify", "Edit a role's name and permissions", false, ADM},
    [CTL_PERM_ROLE_DELETE] = {"role.delete", "Delete a role no user holds", false, ADM},
    [CTL_PERM_ROLE_GET] = {"role.get", "List and view roles", true, ADM | DS | CV},
    /* table: Regional settings */
    [CTL_PERM_REGIONAL_SETTINGS_MODIFY] = {"regional_settings.modify",
                                           "Change the space's regional settings (time zone, "
                                           "units, date format)",
                                           false, ADM | DS},
    [CTL_PERM_REGIONAL_SETTINGS_GET] = {"regional_settings.get",
                                        "View the space's regional settings", true, READ_ALL | CT},
    /* table: Create driver, Modify drivers, Remove drivers, Get drivers */
    [CTL_PERM_DRIVER_CREATE] = {"driver.create", "Create a driver", false, ADM},
    [CTL_PERM_DRIVER_MODIFY] = {"driver.modify", "Edit a driver", false, ADM},
    [CTL_PERM_DRIVER_REMOVE] = {"driver.remove", "Remove a driver", false, ADM},
    [CTL_PERM_DRIVER_GET] = {"driver.get", "List and view drivers", true, READ_ALL},
    [CTL_PERM_DRIVER_ASSIGN] = {"driver.assign", "Assign a driver to a dashcam", false, ADM},
    [CTL_PERM_SUBSCRIPTION_GET] = {"subscription.get",
                                   "View subscriptions (virtual disks, AI) and their details", true,
                                   READ_ALL | CT},
    [CTL_PERM_SUBSCRIPTION_CONFIGURE] = {"subscription.configure", "Configure a virtual disk",
                                         false, ADM | DS},
    [CTL_PERM_RECORDING_VIEW] = {"recording.view", "Play back and download recordings", true,
                                 READ_ALL | CT},
    [CTL_PERM_AUDIT_GET] = {"audit.get", "Read the audit log", true, ADM | DS | CV},
    [CTL_PERM_MAP_LIVE_LOCATION] = {"map.live_location", "See dashcams' live location on the map",
                                    true, READ_ALL | DM},
    [CTL_PERM_MAP_TRIP_HISTORY] = {"map.trip_history", "See trip history on the map", true,
                                   READ_ALL | DM},
    /* The distributor's space only: the endpoints refuse other spaces. */
    [CTL_PERM_INSTALLER_CREATE] = {"installer.create",
                                   "Create an installer account (distributor only)", false, ADM},
    [CTL_PERM_INSTALLER_MODIFY] = {"installer.modify",
                                   "Rename an installer, send a new set-password link", false, ADM},
    [CTL_PERM_INSTALLER_DELETE] = {"installer.delete", "Delete an installer with an empty space",
                                   false, ADM},
    [CTL_PERM_INSTALLER_GET] = {"installer.get", "List and view installers", true, ADM | DS | CV},
    [CTL_PERM_SUBSCRIPTION_MANAGE] = {"subscription.manage",
                                      "Create, resize and cancel installers' subscriptions "
                                      "(distributor only)",
                                      false, ADM},
};

typedef struct {
    const char *name;
    unsigned bit;
    bool can_login;
    bool map_only;
} role_def;

static const role_def roles[] = {
    {CTL_ROLE_ADMINISTRATOR, DA, true, false}, {CTL_ROLE_SUPERVISOR, DS, true, false},
    {CTL_ROLE_USER, DU, true, false},          {CTL_ROLE_RESTRICTED, DR, false, false},
    {CTL_ROLE_MAP_VIEWER, DM, true, true},     {CTL_ROLE_ADMIN, CA, true, false},
    {CTL_ROLE_TECHNICIAN, CT, true, false},    {CTL_ROLE_VIEWER, CV, true, false},
};

#define NROLES (sizeof(roles) / sizeof(roles[0]))

static bool valid(ctl_perm p)
{
    return (int)p >= 0 && (int)p < (int)CTL_PERM_COUNT;
}

const char *ctl_perm_strerror(ctl_perm_err err)
{
    switch (err) {
    case CTL_PERM_OK:
        return "success";
    case CTL_PERM_E_NOT_ARRAY:
        return "permissions must be an array of names";
    case CTL_PERM_E_NOT_STRING:
        return "a permission must be a string";
    case CTL_PERM_E_UNKNOWN:
        return "unknown permission";
    case CTL_PERM_E_DUPLICATE:
        return "duplicate permission";
    case CTL_PERM_E_NOMEM:
        return "out of memory";
    case CTL_PERM_E_NOT_FOUND:
        return "no such built-in role";
    }
    return "unknown error";
}

const char *ctl_perm_name(ctl_perm p)
{
    return valid(p) ? perms[p].name : NULL;
}

const char *ctl_perm_describe(ctl_perm p)
{
    return valid(p) ? perms[p].what : NULL;
}

bool ctl_perm_is_read(ctl_perm p)
{
    return valid(p) && perms[p].read;
}

ctl_perm_err ctl_perm_from_name(const char *name, ctl_perm *out)
{
    if (!name)
        return CTL_PERM_E_UNKNOWN;
    /* 52 short names: a linear scan is cheaper than anything cleverer. */
    for (int i = 0; i < (int)CTL_PERM_COUNT; i++) {
        if (strcmp(perms[i].name, name) == 0) {
            *out = (ctl_perm)i;
            return CTL_PERM_OK;
        }
    }
    return CTL_PERM_E_UNKNOWN;
}

void ctl_perm_set_clear(ctl_perm_set *s)
{
    memset(s, 0, sizeof(*s));
}

void ctl_perm_set_fill(ctl_perm_set *s)
{
    ctl_perm_set_clear(s);
    for (int i = 0; i < (int)CTL_PERM_COUNT; i++)
        ctl_perm_set_add(s, (ctl_perm)i);
}

void ctl_perm_set_add(ctl_perm_set *s, ctl_perm p)
{
    if (valid(p))
        s->w[(unsigned)p / 64] |= UINT64_C(1) << ((unsigned)p % 64);
}

void ctl_perm_set_remove(ctl_perm_set *s, ctl_perm p)
{
    if (valid(p))
        s->w[(unsigned)p / 64] &= ~(UINT64_C(1) << ((unsigned)p % 64));
}

bool ctl_perm_set_has(const ctl_perm_set *s, ctl_perm p)
{
    return valid(p) && (s->w[(unsigned)p / 64] >> ((unsigned)p % 64) & 1u);
}

size_t ctl_perm_set_count(const ctl_perm_set *s)
{
    size_t n = 0;
    for (int i = 0; i < (int)CTL_PERM_COUNT; i++)
        n += ctl_perm_set_has(s, (ctl_perm)i);
    return n;
}

bool ctl_perm_set_equal(const ctl_perm_set *a, const ctl_perm_set *b)
{
    return ctl_perm_set_subset(a, b) && ctl_perm_set_subset(b, a);
}

bool ctl_perm_set_subset(const ctl_perm_set *sub, const ctl_perm_set *super)
{
    for (size_t i = 0; i < CTL_PERM_WORDS; i++)
        if (sub->w[i] & ~super->w[i])
            return false;
    return true;
}

/* Copies at most CTL_PERM_NAME_MAX bytes of s into dst (room for
 * CTL_PERM_NAME_MAX + 4), JSON- and log-safe: printable ASCII other than
 * '"' and '\\' kept, everything else '?', "..." if truncated. */
static void safe_copy(char *dst, const char *s)
{
    size_t i = 0;
    for (; s[i] && i < CTL_PERM_NAME_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[i] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '?';
    }
    if (s[i]) {
        memcpy(dst + i, "...", 3);
        i += 3;
    }
    dst[i] = '\0';
}

ctl_perm_err ctl_perm_set_from_json(const cJSON *array, ctl_perm_set *out, char *err, size_t errlen)
{
    ctl_perm_set s = {{0}};
    ctl_perm_err rc = CTL_PERM_OK;
    char shown[CTL_PERM_NAME_MAX + 4];
    size_t idx = 0;
    const cJSON *it;

    if (!array || !cJSON_IsArray(array)) {
        rc = CTL_PERM_E_NOT_ARRAY;
        if (err && errlen)
            snprintf(err, errlen, "%s", ctl_perm_strerror(rc));
        return rc;
    }
    cJSON_ArrayForEach(it, array)
    {
        ctl_perm p;
        if (!cJSON_IsString(it) || !it->valuestring) {
            rc = CTL_PERM_E_NOT_STRING;
            if (err && errlen)
                snprintf(err, errlen, "permission at index %zu is not a string", idx);
            return rc;
        }
        if (ctl_perm_from_name(it->valuestring, &p) != CTL_PERM_OK) {
            rc = CTL_PERM_E_UNKNOWN;
            safe_copy(shown, it->valuestring);
            if (err && errlen)
                snprintf(err, errlen, "unknown permission \"%s\" at index %zu", shown, idx);
            return rc;
        }
        if (ctl_perm_set_has(&s, p)) {
            rc = CTL_PERM_E_DUPLICATE;
            if (err && errlen)
                snprintf(err, errlen, "duplicate permission \"%s\" at index %zu", perms[p].name,
                         idx);
            return rc;
        }
        ctl_perm_set_add(&s, p);
        idx++;
    }
    *out = s;
    return CTL_PERM_OK;
}

cJSON *ctl_perm_set_to_json(const ctl_perm_set *s)
{
    cJSON *arr = cJSON_CreateArray();
    if (!arr)
        goto fail;
    for (int i = 0; i < (int)CTL_PERM_COUNT; i++) {
        cJSON *str;
        if (!ctl_perm_set_has(s, (ctl_perm)i))
            continue;
        str = cJSON_CreateString(perms[i].name);
        if (!str || !cJSON_AddItemToArray(arr, str)) {
            cJSON_Delete(str);
            goto fail;
        }
    }
    return arr;
fail:
    cJSON_Delete(arr);
    return NULL;
}

size_t ctl_role_builtin_count(void)
{
    return NROLES;
}

ctl_perm_err ctl_role_builtin_at(size_t i, ctl_role *out)
{
    ctl_role r;
    if (i >= NROLES)
        return CTL_PERM_E_NOT_FOUND;
    r.name = roles[i].name;
    r.can_login = roles[i].can_login;
    r.map_only = roles[i].map_only;
    ctl_perm_set_clear(&r.perms);
    for (int p = 0; p < (int)CTL_PERM_COUNT; p++)
        if (perms[p].roles & roles[i].bit)
            ctl_perm_set_add(&r.perms, (ctl_perm)p);
    *out = r;
    return CTL_PERM_OK;
}

ctl_perm_err ctl_role_builtin_find(const char *name, ctl_role *out)
{
    if (!name)
        return CTL_PERM_E_NOT_FOUND;
    for (size_t i = 0; i < NROLES; i++)
        if (strcmp(roles[i].name, name) == 0)
            return ctl_role_builtin_at(i, out);
    return CTL_PERM_E_NOT_FOUND;
}
