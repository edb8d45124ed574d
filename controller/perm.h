/* Named permissions, permission sets and the built-in roles (issue 3).
 *
 * The one documented list of permissions is the enum below; its names, what
 * each allows and which built-in role holds it are one table in perm.c, and
 * docs/permissions.md describes the same list. Every endpoint checks one
 * permission on the server.
 *
 * Built-in roles: the dashcam platform's Administrator, Supervisor, User,
 * Restricted and "User - Map Viewer" (exactly the clearance table of
 * seeds/dashcam-user-clearances.txt), and the Cam2Drive examples Admin,
 * Technician and Viewer.
 *
 * Pure code: no allocation except the cJSON array that
 * ctl_perm_set_to_json hands back, no global mutable state; thread safe. */
#ifndef CTL_PERM_H
#define CTL_PERM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/* Append new permissions at the end (before CTL_PERM_COUNT): the values are
 * bit positions, so reordering changes stored sets if a caller ever stores
 * the bits. Roles stored by the controller should use the names
 * (ctl_perm_set_to_json), which are stable. */
typedef enum {
    CTL_PERM_CUSTOMER_CREATE = 0,
    CTL_PERM_CUSTOMER_MODIFY,
    CTL_PERM_CUSTOMER_DELETE,
    CTL_PERM_CUSTOMER_GET,
    CTL_PERM_SITE_CREATE,
    CTL_PERM_SITE_MODIFY,
    CTL_PERM_SITE_DELETE,
    CTL_PERM_SITE_GET,
    CTL_PERM_DEVICE_ADD,
    CTL_PERM_DEVICE_MODIFY,
    CTL_PERM_DEVICE_DELETE,
    CTL_PERM_DEVICE_GET,
    CTL_PERM_CHANNEL_MODIFY,
    CTL_PERM_CHANNEL_GET,
    CTL_PERM_DASHCAM_ADD,
    CTL_PERM_DASHCAM_MODIFY,
    CTL_PERM_DASHCAM_DELETE,
    CTL_PERM_DASHCAM_GET,
    CTL_PERM_GROUP_ADD,
    CTL_PERM_GROUP_MODIFY,
    CTL_PERM_GROUP_DELETE,
    CTL_PERM_GROUP_GET,
    CTL_PERM_BOOKMARK_ADD,
    CTL_PERM_BOOKMARK_REMOVE,
    CTL_PERM_BOOKMARK_GET,
    CTL_PERM_GEOFENCE_ADD,
    CTL_PERM_GEOFENCE_MODIFY,
    CTL_PERM_GEOFENCE_REMOVE,
    CTL_PERM_GEOFENCE_GET,
    CTL_PERM_EVENT_MODIFY,
    CTL_PERM_EVENT_GET,
    CTL_PERM_USER_ADD,
    CTL_PERM_USER_MODIFY,
    CTL_PERM_USER_REMOVE,
    CTL_PERM_USER_GET,
    CTL_PERM_ROLE_CREATE,
    CTL_PERM_ROLE_MODIFY,
    CTL_PERM_ROLE_DELETE,
    CTL_PERM_ROLE_GET,
    CTL_PERM_REGIONAL_SETTINGS_MODIFY,
    CTL_PERM_REGIONAL_SETTINGS_GET,
    CTL_PERM_DRIVER_CREATE,
    CTL_PERM_DRIVER_MODIFY,
    CTL_PERM_DRIVER_REMOVE,
    CTL_PERM_DRIVER_GET,
    CTL_PERM_DRIVER_ASSIGN,
    CTL_PERM_SUBSCRIPTION_GET,
    CTL_PERM_SUBSCRIPTION_CONFIGURE,
    CTL_PERM_RECORDING_VIEW,
    CTL_PERM_AUDIT_GET,
    CTL_PERM_MAP_LIVE_LOCATION,
    CTL_PERM_MAP_TRIP_HISTORY,
    CTL_PERM_INSTALLER_CREATE,
    CTL_PERM_INSTALLER_MODIFY,
    CTL_PERM_INSTALLER_DELETE,
    CTL_PERM_INSTALLER_GET,
    CTL_PERM_SUBSCRIPTION_MANAGE,
    CTL_PERM_COUNT
} ctl_perm;

/* Longest permission name, NUL excluded ("regional_settings.modify" is 24). */
#define CTL_PERM_NAME_MAX 32

/* Words of a set: enough bits for every permission. */
#define CTL_PERM_WORDS ((CTL_PERM_COUNT + 63) / 64)

/* A set of permissions. Plain value: copy, compare with
 * ctl_perm_set_equal. Zero-initialised ({0}) is the empty set. */
typedef struct {
    uint64_t w[CTL_PERM_WORDS];
} ctl_perm_set;

typedef enum {
    CTL_PERM_OK = 0,
    CTL_PERM_E_NOT_ARRAY,  /* the JSON value is not an array */
    CTL_PERM_E_NOT_STRING, /* an element is not a string */
    CTL_PERM_E_UNKNOWN,    /* an element names no permission */
    CTL_PERM_E_DUPLICATE,  /* a permission is named twice */
    CTL_PERM_E_NOMEM,      /* allocation failed */
    CTL_PERM_E_NOT_FOUND,  /* no built-in role of that name */
} ctl_perm_err;

/* Static English text for err; never NULL. */
const char *ctl_perm_strerror(ctl_perm_err err);

/* The name of p ("customer.create"), or NULL if p is not a permission. */
const char *ctl_perm_name(ctl_perm p);

/* One line saying what p allows, or NULL if p is not a permission. */
const char *ctl_perm_describe(ctl_perm p);

/* True for read permissions (*.get, recording.view, map.*): those change
 * nothing. False for the rest and for values that are not permissions. */
bool ctl_perm_is_read(ctl_perm p);

/* Looks up a name (exact, case-sensitive). CTL_PERM_OK with *out set, or
 * CTL_PERM_E_UNKNOWN (also for NULL) and *out untouched. */
ctl_perm_err ctl_perm_from_name(const char *name, ctl_perm *out);

/* Set operations. Values of p outside the enum are ignored by add/remove
 * and are never in a set (has returns false). */
void ctl_perm_set_clear(ctl_perm_set *s);
void ctl_perm_set_fill(ctl_perm_set *s); /* every permission */
void ctl_perm_set_add(ctl_perm_set *s, ctl_perm p);
void ctl_perm_set_remove(ctl_perm_set *s, ctl_perm p);
bool ctl_perm_set_has(const ctl_perm_set *s, ctl_perm p);
size_t ctl_perm_set_count(const ctl_perm_set *s);
bool ctl_perm_set_equal(const ctl_perm_set *a, const ctl_perm_set *b);
/* True if every permission of sub is in super. */
bool ctl_perm_set_subset(const ctl_perm_set *sub, const ctl_perm_set *super);

/* Parses a JSON array of permission names (the role checkboxes) into *out.
 * The empty array is the empty set. Errors: CTL_PERM_E_NOT_ARRAY (also for
 * NULL), CTL_PERM_E_NOT_STRING, CTL_PERM_E_UNKNOWN, CTL_PERM_E_DUPLICATE.
 * On error, if err is not NULL and errlen > 0, err receives a NUL-terminated
 * message naming the element and its index, e.g.
 *   unknown permission "site.explode" at index 3
 * in which the quoted name is truncated to CTL_PERM_NAME_MAX bytes and every
 * byte outside printable ASCII (and '"' and '\\') is shown as '?', so the
 * message is safe to return in a JSON error body. *out is written only on
 * success. */
ctl_perm_err ctl_perm_set_from_json(const cJSON *array, ctl_perm_set *out, char *err,
                                    size_t errlen);

/* A new JSON array of the names in s, in enum order; NULL if allocation
 * fails. The caller frees it with cJSON_Delete. */
cJSON *ctl_perm_set_to_json(const ctl_perm_set *s);

/* A built-in role. */
typedef struct {
    const char *name; /* static: "Administrator", "Technician", ... */
    ctl_perm_set perms;
    bool can_login; /* false: the user exists but may not log in (Restricted) */
    /* true: the user reaches only the endpoints gated by perms (the map) and
     * the session ones (log in, log out); every other endpoint refuses, even
     * one that needs no permission (User - Map Viewer). */
    bool map_only;
} ctl_role;

/* Names of the built-in roles. */
#define CTL_ROLE_ADMINISTRATOR "Administrator"
#define CTL_ROLE_SUPERVISOR "Supervisor"
#define CTL_ROLE_USER "User"
#define CTL_ROLE_RESTRICTED "Restricted"
#define CTL_ROLE_MAP_VIEWER "User - Map Viewer"
#define CTL_ROLE_ADMIN "Admin"
#define CTL_ROLE_TECHNICIAN "Technician"
#define CTL_ROLE_VIEWER "Viewer"

/* How many built-in roles there are. */
size_t ctl_role_builtin_count(void);

/* The i-th built-in role (0 <= i < count) into *out: CTL_PERM_OK, or
 * CTL_PERM_E_NOT_FOUND if i is out of range (*out untouched). */
ctl_perm_err ctl_role_builtin_at(size_t i, ctl_role *out);

/* The built-in role of that name (exact, case-sensitive) into *out:
 * CTL_PERM_OK, or CTL_PERM_E_NOT_FOUND (also for NULL; *out untouched). */
ctl_perm_err ctl_role_builtin_find(const char *name, ctl_role *out);

#endif
