/* The people API under /api/v1/ (issue 3, first slice): sessions, the
 * caller's account, users of a space and roles. docs/api.md lists every
 * endpoint with its permission and errors.
 *
 * Objects live in the directory (controller/directory.h):
 *   tenant   {"name", "type"}; the distributor's holds the unique key
 *            ("init", "distributor") so that init runs once
 *   user     {"email", "role" (a role name), "preferences", "_pwhash"};
 *            unique key ("email", lowercased email)
 *   role     {"name", "permissions": [names]}; unique key
 *            ("role", "<tenant id>:<name>"). Built-in roles are not stored.
 *   session  {"user", "expires_us", "last_us"}, parent the user; unique key
 *            ("token", hex SHA-256 of the bearer token); never audited.
 * Every change is made with the acting user ("user:<id>") as audit actor.
 *
 * Threads: handlers run on the HTTP server's threads; a ctl_api holds only
 * thread-safe parts (directory, random source, throttle table). Password
 * hashing and verification run outside every transaction.
 *
 * Functions return 0 or -errno. */
#ifndef CTL_API_H
#define CTL_API_H

#include "controller/directory.h"
#include "controller/http.h"
#include "controller/ledger.h"
#include "controller/recordings.h"
#include "controller/rng.h"

#include <stddef.h>
#include <stdint.h>

typedef struct ctl_api ctl_api;

/* Default session lifetimes: 30 min idle, 12 h from log-in (OWASP). */
#define CTL_API_SESSION_IDLE_S 1800
#define CTL_API_SESSION_MAX_S 43200

/* A one-time set-password link is valid this long (24 h). */
#define CTL_API_LINK_TTL_S 86400

/* Sends a message (the outbox, controller/mailer.h): 0 or -errno. Called
 * after the change that made the message was committed, on an HTTP
 * thread. */
typedef int (*ctl_api_mail_fn)(void *ud, const char *to, const char *subject, const char *body);

typedef struct {
    int64_t session_idle_s; /* 0: CTL_API_SESSION_IDLE_S */
    int64_t session_max_s;  /* 0: CTL_API_SESSION_MAX_S */
    unsigned pw_iterations; /* 0: CTL_PW_ITER_DEFAULT (others for tests) */
    int64_t link_ttl_s;     /* 0: CTL_API_LINK_TTL_S */
    /* Where set-password links go; NULL: links are only logged as made
     * (their token is never logged). */
    ctl_api_mail_fn mail;
    void *mail_ud;
    /* Put in front of "/set-password?token=..." in links, e.g.
     * "https://portal.example.com"; NULL or "": "http://localhost". */
    const char *link_base;
    /* Recordings (api_recordings.c): the ledger whose segments are served
     * (borrowed; read through the requests' own transactions, never its
     * handle's) and the data directory their paths are relative to
     * (copied; exports are made in its tmp/). ledger NULL: the recording
     * endpoints answer 503. */
    ctl_ledger *ledger;
    const char *data_dir;
    /* Retention: segments that start before the cutoff for their camera
     * are never served; NULL: no cutoff. */
    ctl_rec_cutoff_fn retention_cutoff;
    void *retention_ud;
    /* Called after a committed change of a device's config (its virtual
     * disk, channels' cloud backup): the daemon republishes its cfg
     * topic. NULL: nobody to tell. */
    void (*device_changed)(void *ud, const char *device);
    void *device_changed_ud;
    /* Live device state and alarms (controller/devstate.h), borrowed;
     * NULL: the state endpoints answer 503. */
    struct ctl_devstate *devstate;
} ctl_api_params;

/* Makes the API over dir and rng (borrowed: they must outlive it). p NULL:
 * defaults. 0, -ENOMEM or -EIO (the random source failed). *out is set only
 * on success. */
int ctl_api_new(ctl_dir *dir, ctl_rng *rng, const ctl_api_params *p, ctl_api **out);

/* Replaces the base of set-password links (once the listener's port is
 * known). Call before the server starts serving. */
void ctl_api_set_link_base(ctl_api *a, const char *base);

/* The pairing listener recorders reach (pki.pairing_host/_port), given
 * with every pairing code as "pairing": {"host", "port"}; host NULL or ""
 * (the default): not given. host is copied (at most CTL_API_PAIR_HOST_MAX
 * bytes: -EINVAL). Call before the server starts serving. 0 or -EINVAL. */
#define CTL_API_PAIR_HOST_MAX 253
int ctl_api_set_pairing_listener(ctl_api *a, const char *host, int port);

/* NULL is a no-op. Free the HTTP server first (its handlers use a). */
void ctl_api_free(ctl_api *a);

/* Adds every route of the API to h (before ctl_http_start). 0 or what
 * ctl_http_route returns. */
int ctl_api_routes(ctl_api *a, ctl_http *h);

/* Creates the distributor tenant and its first Administrator with email
 * (lowercased), once. With pwhash (ctl_pw_hash) the user can log in; with
 * pwhash NULL a one-time set-password link valid link_ttl_s (0: 24 h) is
 * made and its token written to link_token (CTL_TOKEN_SIZE bytes, from
 * controller/token.h; rng needed). 0; -EEXIST if already initialised or
 * the email is taken; -EINVAL (bad email or arguments); directory errors. */
int ctl_api_init_distributor(ctl_dir *dir, ctl_rng *rng, const char *email, const char *pwhash,
                             int64_t link_ttl_s, char *link_token);

/* Calls fn for every route of the API (docs and tests): need is the
 * permission (a ctl_perm) or a negative value for the session endpoints. */
void ctl_api_each_route(void (*fn)(void *ud, const char *method, const char *pattern, int need),
                        void *ud);

/* 1 if s is an acceptable email address (1..254 bytes, one '@' with text
 * on both sides, no spaces or control bytes), else 0. */
int ctl_api_email_valid(const char *s);

#endif
