/* The API's route tables against the rules of issue 3: every route checks
 * one permission (or is one of the session/account endpoints), no route is
 * declared twice, and every path is documented in docs/api*.md (given as
 * arguments). */
#include "check.h"
#include "controller/api.h"
#include "controller/perm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUTES_MAX 256

static struct {
    char method[8];
    char pattern[96];
    int need;
} routes[ROUTES_MAX];
static size_t nroutes;

static void add(void *ud, const char *method, const char *pattern, int need)
{
    (void)ud;
    if (nroutes == ROUTES_MAX) {
        failures++;
        return;
    }
    snprintf(routes[nroutes].method, sizeof(routes[nroutes].method), "%s", method);
    snprintf(routes[nroutes].pattern, sizeof(routes[nroutes].pattern), "%s", pattern);
    routes[nroutes].need = need;
    nroutes++;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n)
        buf[n] = '\0';
    else
        free(buf), buf = NULL;
    fclose(f);
    return buf;
}

/* Routes that need no permission: the session and the caller's account,
 * redeeming a set-password link, and playback URLs (their token is the
 * credential, checked for recording.view when redeemed). */
static int sessionish(const char *pattern)
{
    return strcmp(pattern, "/api/v1/session") == 0 || strncmp(pattern, "/api/v1/me", 10) == 0 ||
           strcmp(pattern, "/api/v1/set-password") == 0 ||
           strncmp(pattern, "/api/v1/play/", 13) == 0;
}

int main(int argc, char **argv)
{
    ctl_api_each_route(add, NULL);
    CHECK(nroutes > 40);
    char *docs[4] = {0};
    int ndocs = 0;
    for (int i = 1; i < argc && ndocs < 4; i++) {
        docs[ndocs] = slurp(argv[i]);
        if (!docs[ndocs])
            fprintf(stderr, "cannot read %s\n", argv[i]);
        CHECK(docs[ndocs] != NULL);
        ndocs++;
    }
    for (size_t i = 0; i < nroutes; i++) {
        const char *m = routes[i].method, *p = routes[i].pattern;
        CHECK(strncmp(p, "/api/v1/", 8) == 0);
        if (routes[i].need >= 0) {
            CHECK(ctl_perm_name((ctl_perm)routes[i].need) != NULL);
            /* Reads are gated by read permissions, changes by others. */
            /* A playback token is a way to read recordings (POST: it is
             * made, but nothing the caller could not read changes). */
            int read = strcmp(m, "GET") == 0 || strcmp(p, "/api/v1/channels/{id}/playback") == 0;
            if (read != ctl_perm_is_read((ctl_perm)routes[i].need))
                fprintf(stderr, "%s %s checks %s\n", m, p, ctl_perm_name((ctl_perm)routes[i].need));
            CHECK(read == ctl_perm_is_read((ctl_perm)routes[i].need));
        } else {
            if (!sessionish(p))
                fprintf(stderr, "%s %s checks no permission\n", m, p);
            CHECK(sessionish(p));
        }
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(routes[j].method, m) != 0 || strcmp(routes[j].pattern, p) != 0);
        int documented = 0;
        for (int d = 0; d < ndocs; d++)
            if (docs[d] && strstr(docs[d], p))
                documented = 1;
        if (!documented)
            fprintf(stderr, "%s %s is not in the docs\n", m, p);
        CHECK(documented);
    }
    for (int d = 0; d < ndocs; d++)
        free(docs[d]);
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
