/* Unit tests for controller/perm.c: the clearance table of
 * seeds/dashcam-user-clearances.txt, row by row and cell by cell, against
 * the built-in roles; User - Map Viewer's exact set; Restricted cannot log
 * in; the Cam2Drive examples; name round trips; JSON parse errors. */
#include "check.h"
#include "controller/perm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define Y 1 /* Allowed */
#define N 0 /* Not allowed */

/* The seed's "Security clearance details", every row, in its order: action
 * as the seed names it, the permission that gates it, then the cells for
 * Administrator, Supervisor, User, Restricted. */
static const struct {
    const char *action;
    const char *perm;
    int adm, sup, user, restricted;
} clearance[] = {
    {"Add dashcam", "dashcam.add", Y, Y, N, N},
    {"Modify dashcam", "dashcam.modify", Y, Y, N, N},
    {"Delete dashcam", "dashcam.delete", Y, Y, N, N},
    {"Add group", "group.add", Y, Y, N, N},
    {"Modify group", "group.modify", Y, Y, N, N},
    {"Delete group", "group.delete", Y, Y, N, N},
    {"Add bookmark", "bookmark.add", Y, Y, Y, N},
    {"Remove bookmark", "bookmark.remove", Y, Y, Y, N},
    {"Add geofence", "geofence.add", Y, Y, N, N},
    {"Modify geofence", "geofence.modify", Y, Y, N, N},
    {"Remove geofence", "geofence.remove", Y, Y, N, N},
    {"Modify events", "event.modify", Y, Y, N, N},
    {"Add user", "user.add", Y, N, N, N},
    {"Modify user", "user.modify", Y, N, N, N},
    {"Remove user", "user.remove", Y, N, N, N},
    {"Regional settings", "regional_settings.modify", Y, Y, N, N},
    {"Create driver", "driver.create", Y, N, N, N},
    {"Modify drivers", "driver.modify", Y, N, N, N},
    {"Remove drivers", "driver.remove", Y, N, N, N},
    {"Get drivers", "driver.get", Y, Y, Y, N},
};
#define NROWS (sizeof(clearance) / sizeof(clearance[0]))

static ctl_role role(const char *name)
{
    ctl_role r;
    memset(&r, 0, sizeof(r));
    if (ctl_role_builtin_find(name, &r) != CTL_PERM_OK) {
        fprintf(stderr, "no built-in role %s\n", name);
        failures++;
    }
    return r;
}

static ctl_perm perm(const char *name)
{
    ctl_perm p = CTL_PERM_COUNT;
    if (ctl_perm_from_name(name, &p) != CTL_PERM_OK) {
        fprintf(stderr, "no permission %s\n", name);
        failures++;
    }
    return p;
}

static void test_clearance_table(void)
{
    const char *cols[] = {CTL_ROLE_ADMINISTRATOR, CTL_ROLE_SUPERVISOR, CTL_ROLE_USER,
                          CTL_ROLE_RESTRICTED};
    ctl_perm_set used = {{0}};
    CHECK(NROWS == 20);
    for (size_t i = 0; i < NROWS; i++) {
        ctl_perm p = perm(clearance[i].perm);
        int want[4] = {clearance[i].adm, clearance[i].sup, clearance[i].user,
                       clearance[i].restricted};
        /* Each row maps to exactly one permission, and no two rows share one. */
        if (ctl_perm_set_has(&used, p)) {
            fprintf(stderr, "row \"%s\": permission %s used twice\n", clearance[i].action,
                    clearance[i].perm);
            failures++;
        }
        ctl_perm_set_add(&used, p);
        for (size_t c = 0; c < 4; c++) {
            ctl_role r = role(cols[c]);
            int got = ctl_perm_set_has(&r.perms, p);
            if (got != want[c]) {
                fprintf(stderr, "row \"%s\" (%s), %s: want %s, got %s\n", clearance[i].action,
                        clearance[i].perm, cols[c], want[c] ? "Allowed" : "Not allowed",
                        got ? "Allowed" : "Not allowed");
                failures++;
            }
        }
    }
    CHECK(ctl_perm_set_count(&used) == NROWS);
}

static void test_roles(void)
{
    ctl_perm_set all, reads = {{0}}, s = {{0}}, sub;
    ctl_role adm = role(CTL_ROLE_ADMINISTRATOR), sup = role(CTL_ROLE_SUPERVISOR),
             user = role(CTL_ROLE_USER), res = role(CTL_ROLE_RESTRICTED),
             map = role(CTL_ROLE_MAP_VIEWER), cadm = role(CTL_ROLE_ADMIN),
             tech = role(CTL_ROLE_TECHNICIAN), view = role(CTL_ROLE_VIEWER), r;

    ctl_perm_set_fill(&all);
    CHECK(ctl_perm_set_count(&all) == CTL_PERM_COUNT);
    for (int i = 0; i < (int)CTL_PERM_COUNT; i++)
        if (ctl_perm_is_read((ctl_perm)i))
            ctl_perm_set_add(&reads, (ctl_perm)i);

    /* Administrators hold everything. */
    CHECK(ctl_perm_set_equal(&adm.perms, &all));
    CHECK(ctl_perm_set_equal(&cadm.perms, &all));

    /* Restricted: nothing and no login; everyone else logs in. */
    CHECK(!res.can_login);
    CHECK(ctl_perm_set_count(&res.perms) == 0);
    CHECK(adm.can_login && sup.can_login && user.can_login && map.can_login && cadm.can_login &&
          tech.can_login && view.can_login);

    /* Map Viewer: exactly the two map permissions, and map_only. */
    ctl_perm_set_add(&s, CTL_PERM_MAP_LIVE_LOCATION);
    ctl_perm_set_add(&s, CTL_PERM_MAP_TRIP_HISTORY);
    CHECK(ctl_perm_set_equal(&map.perms, &s));
    CHECK(ctl_perm_set_count(&map.perms) == 2);
    CHECK(map.map_only);
    CHECK(!ctl_perm_set_has(&map.perms, CTL_PERM_EVENT_GET)); /* "without any event data" */
    CHECK(!adm.map_only && !sup.map_only && !user.map_only && !res.map_only && !cadm.map_only &&
          !tech.map_only && !view.map_only);

    /* Supervisor = Administrator minus managing users (and, per the table,
     * drivers); it keeps reading them. */
    sub = all;
    ctl_perm_set_remove(&sub, CTL_PERM_USER_ADD);
    ctl_perm_set_remove(&sub, CTL_PERM_USER_MODIFY);
    ctl_perm_set_remove(&sub, CTL_PERM_USER_REMOVE);
    ctl_perm_set_remove(&sub, CTL_PERM_ROLE_CREATE);
    ctl_perm_set_remove(&sub, CTL_PERM_ROLE_MODIFY);
    ctl_perm_set_remove(&sub, CTL_PERM_ROLE_DELETE);
    ctl_perm_set_remove(&sub, CTL_PERM_DRIVER_CREATE);
    ctl_perm_set_remove(&sub, CTL_PERM_DRIVER_MODIFY);
    ctl_perm_set_remove(&sub, CTL_PERM_DRIVER_REMOVE);
    ctl_perm_set_remove(&sub, CTL_PERM_DRIVER_ASSIGN);
    /* Installer accounts are accounts: managed like users. */
    ctl_perm_set_remove(&sub, CTL_PERM_INSTALLER_CREATE);
    ctl_perm_set_remove(&sub, CTL_PERM_INSTALLER_MODIFY);
    ctl_perm_set_remove(&sub, CTL_PERM_INSTALLER_DELETE);
    ctl_perm_set_remove(&sub, CTL_PERM_SUBSCRIPTION_MANAGE);
    CHECK(ctl_perm_set_equal(&sup.perms, &sub));
    CHECK(ctl_perm_set_has(&sup.perms, CTL_PERM_USER_GET));

    /* User: reads it may need plus bookmarks; no user management reads. */
    CHECK(ctl_perm_set_subset(&user.perms, &sup.perms));
    for (int i = 0; i < (int)CTL_PERM_COUNT; i++) {
        ctl_perm p = (ctl_perm)i;
        if (!ctl_perm_is_read(p))
            CHECK(ctl_perm_set_has(&user.perms, p) ==
                  (p == CTL_PERM_BOOKMARK_ADD || p == CTL_PERM_BOOKMARK_REMOVE));
    }
    CHECK(!ctl_perm_set_has(&user.perms, CTL_PERM_USER_GET));
    CHECK(!ctl_perm_set_has(&user.perms, CTL_PERM_ROLE_GET));
    CHECK(!ctl_perm_set_has(&user.perms, CTL_PERM_AUDIT_GET));
    CHECK(ctl_perm_set_has(&user.perms, CTL_PERM_RECORDING_VIEW));
    CHECK(ctl_perm_set_has(&user.perms, CTL_PERM_DASHCAM_GET));

    /* Viewer: every read permission, nothing else. */
    CHECK(ctl_perm_set_equal(&view.perms, &reads));
    CHECK(ctl_perm_set_has(&view.perms, CTL_PERM_RECORDING_VIEW));

    /* Technician: devices, sites, channels, recordings; no users or roles. */
    {
        static const ctl_perm yes[] = {
            CTL_PERM_SITE_CREATE,   CTL_PERM_SITE_MODIFY,      CTL_PERM_SITE_DELETE,
            CTL_PERM_SITE_GET,      CTL_PERM_DEVICE_ADD,       CTL_PERM_DEVICE_MODIFY,
            CTL_PERM_DEVICE_DELETE, CTL_PERM_DEVICE_GET,       CTL_PERM_CHANNEL_MODIFY,
            CTL_PERM_CHANNEL_GET,   CTL_PERM_RECORDING_VIEW,   CTL_PERM_CUSTOMER_GET,
            CTL_PERM_DASHCAM_ADD,   CTL_PERM_DASHCAM_MODIFY,   CTL_PERM_DASHCAM_DELETE,
            CTL_PERM_DASHCAM_GET,   CTL_PERM_SUBSCRIPTION_GET, CTL_PERM_REGIONAL_SETTINGS_GET,
        };
        ctl_perm_set t = {{0}};
        for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
            ctl_perm_set_add(&t, yes[i]);
        CHECK(ctl_perm_set_equal(&tech.perms, &t));
        CHECK(!ctl_perm_set_has(&tech.perms, CTL_PERM_USER_GET));
        CHECK(!ctl_perm_set_has(&tech.perms, CTL_PERM_ROLE_CREATE));
        CHECK(!ctl_perm_set_has(&tech.perms, CTL_PERM_CUSTOMER_CREATE));
    }

    /* Lookup. */
    CHECK(ctl_role_builtin_count() == 8);
    for (size_t i = 0; i < ctl_role_builtin_count(); i++) {
        ctl_role a, b;
        CHECK(ctl_role_builtin_at(i, &a) == CTL_PERM_OK);
        CHECK(ctl_role_builtin_find(a.name, &b) == CTL_PERM_OK);
        CHECK(strcmp(a.name, b.name) == 0 && ctl_perm_set_equal(&a.perms, &b.perms));
    }
    r.name = "untouched";
    CHECK(ctl_role_builtin_at(8, &r) == CTL_PERM_E_NOT_FOUND);
    CHECK(ctl_role_builtin_find("administrator", &r) == CTL_PERM_E_NOT_FOUND);
    CHECK(ctl_role_builtin_find("User - Map viewer", &r) == CTL_PERM_E_NOT_FOUND);
    CHECK(ctl_role_builtin_find("", &r) == CTL_PERM_E_NOT_FOUND);
    CHECK(ctl_role_builtin_find(NULL, &r) == CTL_PERM_E_NOT_FOUND);
    CHECK(strcmp(r.name, "untouched") == 0);
}

static void test_names(void)
{
    ctl_perm p;
    for (int i = 0; i < (int)CTL_PERM_COUNT; i++) {
        const char *n = ctl_perm_name((ctl_perm)i);
        CHECK(n != NULL);
        CHECK(ctl_perm_describe((ctl_perm)i) != NULL);
        if (!n)
            continue;
        CHECK(strlen(n) <= CTL_PERM_NAME_MAX);
        CHECK(strchr(n, '.') != NULL);
        CHECK(ctl_perm_from_name(n, &p) == CTL_PERM_OK && p == (ctl_perm)i);
        /* Read permissions are exactly *.get, recording.view and map.*. */
        CHECK(ctl_perm_is_read((ctl_perm)i) ==
              (strcmp(strchr(n, '.'), ".get") == 0 || strcmp(n, "recording.view") == 0 ||
               strncmp(n, "map.", 4) == 0));
    }
    CHECK(strcmp(ctl_perm_name(CTL_PERM_CUSTOMER_CREATE), "customer.create") == 0);
    CHECK(strcmp(ctl_perm_name(CTL_PERM_REGIONAL_SETTINGS_MODIFY), "regional_settings.modify") ==
          0);
    CHECK(strcmp(ctl_perm_name(CTL_PERM_MAP_TRIP_HISTORY), "map.trip_history") == 0);
    CHECK(ctl_perm_name(CTL_PERM_COUNT) == NULL);
    CHECK(ctl_perm_name((ctl_perm)-1) == NULL);
    CHECK(ctl_perm_describe(CTL_PERM_COUNT) == NULL);
    CHECK(!ctl_perm_is_read(CTL_PERM_COUNT));
    p = CTL_PERM_SITE_GET;
    CHECK(ctl_perm_from_name("Site.get", &p) == CTL_PERM_E_UNKNOWN);
    CHECK(ctl_perm_from_name("site.get ", &p) == CTL_PERM_E_UNKNOWN);
    CHECK(ctl_perm_from_name("", &p) == CTL_PERM_E_UNKNOWN);
    CHECK(ctl_perm_from_name(NULL, &p) == CTL_PERM_E_UNKNOWN);
    CHECK(p == CTL_PERM_SITE_GET);
    /* Out-of-range values are never in a set. */
    {
        ctl_perm_set s = {{0}};
        ctl_perm_set_add(&s, CTL_PERM_COUNT);
        ctl_perm_set_add(&s, (ctl_perm)-1);
        CHECK(ctl_perm_set_count(&s) == 0);
        CHECK(!ctl_perm_set_has(&s, CTL_PERM_COUNT));
    }
    for (int e = CTL_PERM_OK; e <= CTL_PERM_E_NOT_FOUND; e++)
        CHECK(ctl_perm_strerror((ctl_perm_err)e) != NULL);
}

/* Parses text and then the array; returns the result, err in err. */
static ctl_perm_err parse(const char *text, ctl_perm_set *out, char *err, size_t errlen)
{
    cJSON *j = cJSON_Parse(text);
    ctl_perm_err rc;
    if (!j) {
        fprintf(stderr, "bad test JSON %s\n", text);
        failures++;
        return CTL_PERM_E_NOMEM;
    }
    rc = ctl_perm_set_from_json(j, out, err, errlen);
    cJSON_Delete(j);
    return rc;
}

static void test_json(void)
{
    ctl_perm_set s, sentinel, back;
    char err[128], small[8];
    cJSON *j;
    char *text;

    /* Round trip of every role's set. */
    for (size_t i = 0; i < ctl_role_builtin_count(); i++) {
        ctl_role r;
        CHECK(ctl_role_builtin_at(i, &r) == CTL_PERM_OK);
        j = ctl_perm_set_to_json(&r.perms);
        CHECK(j != NULL);
        if (!j)
            continue;
        CHECK(cJSON_GetArraySize(j) == (int)ctl_perm_set_count(&r.perms));
        CHECK(ctl_perm_set_from_json(j, &back, NULL, 0) == CTL_PERM_OK);
        CHECK(ctl_perm_set_equal(&back, &r.perms));
        cJSON_Delete(j);
    }
    /* Names out, in enum order. */
    ctl_perm_set_clear(&s);
    ctl_perm_set_add(&s, CTL_PERM_MAP_TRIP_HISTORY);
    ctl_perm_set_add(&s, CTL_PERM_CUSTOMER_GET);
    j = ctl_perm_set_to_json(&s);
    text = j ? cJSON_PrintUnformatted(j) : NULL;
    CHECK(text && strcmp(text, "[\"customer.get\",\"map.trip_history\"]") == 0);
    free(text);
    cJSON_Delete(j);

    CHECK(parse("[]", &s, err, sizeof(err)) == CTL_PERM_OK);
    CHECK(ctl_perm_set_count(&s) == 0);
    CHECK(parse("[\"site.delete\",\"dashcam.add\"]", &s, err, sizeof(err)) == CTL_PERM_OK);
    CHECK(ctl_perm_set_count(&s) == 2 && ctl_perm_set_has(&s, CTL_PERM_SITE_DELETE) &&
          ctl_perm_set_has(&s, CTL_PERM_DASHCAM_ADD));

    /* Errors name the element; *out untouched. */
    ctl_perm_set_fill(&sentinel);
    s = sentinel;
    CHECK(parse("[\"site.get\",\"site.explode\"]", &s, err, sizeof(err)) == CTL_PERM_E_UNKNOWN);
    CHECK(strcmp(err, "unknown permission \"site.explode\" at index 1") == 0);
    CHECK(parse("[\"site.get\",3]", &s, err, sizeof(err)) == CTL_PERM_E_NOT_STRING);
    CHECK(strcmp(err, "permission at index 1 is not a string") == 0);
    CHECK(parse("[null]", &s, err, sizeof(err)) == CTL_PERM_E_NOT_STRING);
    CHECK(parse("[[\"site.get\"]]", &s, err, sizeof(err)) == CTL_PERM_E_NOT_STRING);
    CHECK(parse("{\"site.get\":true}", &s, err, sizeof(err)) == CTL_PERM_E_NOT_ARRAY);
    CHECK(parse("\"site.get\"", &s, err, sizeof(err)) == CTL_PERM_E_NOT_ARRAY);
    CHECK(strcmp(err, ctl_perm_strerror(CTL_PERM_E_NOT_ARRAY)) == 0);
    CHECK(parse("[\"user.add\",\"site.get\",\"user.add\"]", &s, err, sizeof(err)) ==
          CTL_PERM_E_DUPLICATE);
    CHECK(strcmp(err, "duplicate permission \"user.add\" at index 2") == 0);
    CHECK(ctl_perm_set_from_json(NULL, &s, err, sizeof(err)) == CTL_PERM_E_NOT_ARRAY);
    CHECK(ctl_perm_set_equal(&s, &sentinel));

    /* Unknown names are shown safely: quotes, control and non-ASCII bytes
     * become '?', long names are cut. */
    CHECK(parse("[\"a\\\"b\\n\\u00e9\"]", &s, err, sizeof(err)) == CTL_PERM_E_UNKNOWN);
    CHECK(strcmp(err, "unknown permission \"a?b???\" at index 0") == 0);
    CHECK(parse("[\"0123456789012345678901234567890123456789\"]", &s, err, sizeof(err)) ==
          CTL_PERM_E_UNKNOWN);
    CHECK(strcmp(err, "unknown permission \"01234567890123456789012345678901...\" at index 0") ==
          0);
    /* Small and absent error buffers. */
    CHECK(parse("[\"nope\"]", &s, small, sizeof(small)) == CTL_PERM_E_UNKNOWN);
    CHECK(strlen(small) == sizeof(small) - 1);
    CHECK(parse("[\"nope\"]", &s, NULL, 0) == CTL_PERM_E_UNKNOWN);
    CHECK(parse("[\"nope\"]", &s, small, 0) == CTL_PERM_E_UNKNOWN);
    CHECK(ctl_perm_set_equal(&s, &sentinel));
}

int main(void)
{
    test_clearance_table();
    test_roles();
    test_names();
    test_json();
    if (failures) {
        fprintf(stderr, "test_perm: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_perm: ok\n");
    return 0;
}
