/* Internals shared by the API's modules (controller/api*.c); not for use
 * outside them.
 *
 * A module declares its endpoints as a table of api_route: method, path
 * pattern, the permission the endpoint checks, the body's field table and a
 * handler. api.c's dispatcher does what every endpoint needs, in this order:
 * authenticate (bearer token -> session -> user -> role) in the request's
 * write transaction, check the permission (403), check the body against
 * its table (422), call the handler, then commit if the handler succeeded
 * or abort. So a handler never sees an unauthorised caller or an unchecked
 * body, and a refused request changes nothing.
 *
 * Plain objects (clients, sites, recorders, groups, ...) need no handler at
 * all: an api_kind describes them and the generic handlers of api.c list,
 * read, create, modify and delete them with tenancy, parents, fixed fields,
 * children that block deletion, unique keys and audit. */
#ifndef CTL_API_INT_H
#define CTL_API_INT_H

#include "controller/api.h"
#include "controller/password.h"
#include "controller/perm.h"
#include "controller/reqcheck.h"
#include "controller/throttle.h"

#include <stdbool.h>
#include <stdint.h>

/* An email is at most 254 bytes (RFC 5321 path limit). */
#define API_EMAIL_MAX 254
/* Names, labels and preference values. */
#define API_NAME_MAX 64
/* Notes and descriptions. */
#define API_TEXT_MAX 2000
/* List pages: default and largest page a client may ask for. */
#define API_PAGE_DEFAULT 50
#define API_PAGE_MAX 200
/* Audit actor text: "user:" and a 64-bit id. */
#define API_ACTOR_MAX 32

/* Devices one request may change the config of (a disk's recorder). */
#define API_DEVICES_MAX 8

/* What an endpoint needs besides its permission (api_route.need). */
#define API_NEED_NONE (-3)    /* no authentication at all (log in, set password) */
#define API_NEED_SESSION (-2) /* any session, even map-only (log out) */
#define API_NEED_ACCOUNT (-1) /* the caller's own account: refused to map-only roles */

struct ctl_api {
    ctl_dir *dir;
    ctl_rng *rng;
    ctl_throttle *thr;
    int64_t idle_us, max_us, link_us;
    unsigned pw_iter;
    ctl_api_mail_fn mail;
    void *mail_ud;
    char link_base[256];
    /* Verified against when the email is unknown, so that the answer takes
     * as long as for a wrong password. */
    char dummy_hash[CTL_PW_ENCODED_MAX];
    struct api_binding *bindings;
    size_t nbindings;
    /* Recordings (api_recordings.c); ledger NULL: not served. */
    ctl_ledger *ledger;
    char *data_dir;
    void (*device_changed)(void *ud, const char *device);
    void *device_changed_ud;
    ctl_rec_cutoff_fn cutoff;
    void *cutoff_ud;
    /* Live device state and alarms (api_state.c); NULL: 503. */
    struct ctl_devstate *devstate;
    /* The pairing listener told with codes (api_pairing.c); "": none. */
    char pair_host[CTL_API_PAIR_HOST_MAX + 1];
    int pair_port;
};

/* A role as resolved for a user. */
typedef struct {
    ctl_role role;
    bool builtin;
    uint64_t id; /* custom roles */
} api_role;

/* The authenticated caller. */
typedef struct {
    uint64_t user, tenant, session;
    char actor[API_ACTOR_MAX];
    api_role role;
    cJSON *user_json; /* the stored user, owned */
} api_caller;

struct api_route;
struct api_kind;

/* One request being served. */
typedef struct {
    ctl_api *api;
    ctl_http_req *req;
    ctl_http_resp *resp;
    const cJSON *body; /* checked against the route's table; may be NULL */
    ctl_dir_txn *t;    /* open write transaction (NULL for API_NEED_NONE) */
    api_caller c;      /* zero for API_NEED_NONE */
    const struct api_route *route;
    /* A message to send once the request's changes are committed (a
     * set-password link); api.c sends and frees it. */
    char *mail_to, *mail_subject, *mail_body;
    /* Devices whose config (cfg topic) the request changed: told after the
     * commit (api_device_changed). */
    char *devices[API_DEVICES_MAX];
    size_t ndevices;
} api_ctx;

/* A handler answers through x->resp and returns: 0 (commit), 1 (an error
 * was answered: abort), or a negative errno (abort; -ENOENT answers 404,
 * -EEXIST 409, -EFBIG 413, anything else 500). */
typedef int (*api_fn)(api_ctx *x);

typedef struct api_route {
    const char *method, *pattern;
    int need; /* a ctl_perm or API_NEED_* */
    const ctl_field *body;
    size_t nbody;
    api_fn fn;
    const struct api_kind *kind; /* for the generic handlers */
} api_route;

/* Unique keys an api_kind hook sets for an object. */
typedef struct {
    bool set; /* false: keep the object's keys as they are */
    size_t n;
    ctl_dir_ukey k[CTL_DIR_UKEYS_MAX];
    char ns[CTL_DIR_UKEYS_MAX][CTL_DIR_UKEY_NS_MAX + 1];
    char value[CTL_DIR_UKEYS_MAX][CTL_DIR_UKEY_VALUE_MAX + 1];
} api_keys;

/* Adds a key (printf-style value); -EINVAL if it does not fit. */
int api_keys_add(api_keys *k, const char *ns, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A plain object kind served by the generic handlers. The stored JSON is
 * the checked body (plus what hooks add); the parent's id is kept both in
 * the JSON (parent_field) and as the directory parent. */
typedef struct api_kind {
    int kind;
    const char *noun;   /* "client": messages and audit */
    const char *plural; /* "clients": messages */
    int perm_get, perm_add, perm_modify, perm_delete;
    const ctl_field *create; /* every field of the object */
    size_t ncreate;
    const ctl_field *modify; /* what PUT may give; NULL: any field of create */
    size_t nmodify;
    int parent_kind;                    /* 0: no parent */
    const char *parent_field;           /* "client_id"; required on create */
    const struct api_kind *parent_desc; /* for visible() of the parent; may be NULL */
    const char *const *fixed;           /* fields a PUT may not change (NULL-terminated) */
    int child_kind;                     /* delete refused while children of this kind exist */
    const char *child_plural;           /* "recorders" */
    const char *const *filters;         /* string fields a list may filter on (?name=value) */
    /* Which stored objects of the kind this description serves (recorders
     * vs dashcams); NULL: all. Others answer 404. */
    bool (*visible)(const cJSON *j);
    /* Called on create (before NULL) and modify after the generic checks,
     * inside the transaction: may check more (answer 409/422 and return 1),
     * complete after (the JSON to store) and set unique keys. */
    int (*prepare)(api_ctx *x, const cJSON *before, cJSON *after, ctl_dir_obj *o, api_keys *keys);
    /* After the object was stored (o->id set): create dependants. */
    int (*created)(api_ctx *x, const ctl_dir_obj *o, const cJSON *j);
    /* Before deletion (after the child check): remove dependants, or refuse
     * (answer and return 1). */
    int (*deleting)(api_ctx *x, const ctl_dir_obj *o, const cJSON *j);
    /* Lists: checks the query's own filters once (answer 422 and return 1),
     * then match says whether a stored object is listed; NULL: none. */
    int (*check_query)(api_ctx *x);
    bool (*match)(api_ctx *x, const cJSON *j);
    /* Adds computed fields to an object's public form. */
    int (*decorate)(api_ctx *x, const ctl_dir_obj *o, cJSON *out);
    /* After a create or modify was stored (mirror it elsewhere). */
    int (*changed)(api_ctx *x, const ctl_dir_obj *o, const cJSON *j);
} api_kind;

/* Generic handlers for api_kind routes. */
int api_obj_list(api_ctx *x);
int api_obj_get(api_ctx *x);
int api_obj_create(api_ctx *x);
int api_obj_modify(api_ctx *x);
int api_obj_delete(api_ctx *x);

/* The five routes of a kind at base ("/api/v1/clients"): GET base, POST
 * base, GET base/{id}, PUT base/{id}, DELETE base/{id}, with the kind's
 * four permissions (repeated: C wants constants in a static table). */
#define API_KIND_ROUTES(base, k, get, add, mod, del)                                               \
    {"GET", base, get, NULL, 0, api_obj_list, k}, {"POST", base, add, NULL, 0, api_obj_create, k}, \
        {"GET", base "/{id}", get, NULL, 0, api_obj_get, k},                                       \
        {"PUT", base "/{id}", mod, NULL, 0, api_obj_modify, k},                                    \
    {                                                                                              \
        "DELETE", base "/{id}", del, NULL, 0, api_obj_delete, k                                    \
    }

/* Recorders and dashcams (api_objects.c), for other modules' parents. */
extern const api_kind api_recorder_kind;
extern const api_kind api_dashcam_kind;

/* The modules' route tables. */
extern const api_route api_account_routes[];
extern const size_t api_account_nroutes;
extern const api_route api_space_routes[];
extern const size_t api_space_nroutes;
extern const api_route api_objects_routes[];
extern const size_t api_objects_nroutes;
extern const api_route api_dashcam_routes[];
extern const size_t api_dashcam_nroutes;
extern const api_route api_subscriptions_routes[];
extern const size_t api_subscriptions_nroutes;
extern const api_route api_recordings_routes[];
extern const size_t api_recordings_nroutes;
extern const api_route api_state_routes[];
extern const size_t api_state_nroutes;
extern const api_route api_pairing_routes[];
extern const size_t api_pairing_nroutes;

/* --- Helpers --- */

/* Lowercases s in place. */
void api_lower(char *s);
/* Parses a decimal object id (1..2^53). 0 or -EINVAL. */
int api_parse_id(const char *s, uint64_t *out);
/* RFC 3339 UTC time of us since the epoch. */
void api_iso_time(int64_t us, char *buf, size_t len);
/* A string member or NULL; a number member or 0. */
const char *api_jstr(const cJSON *o, const char *k);
int64_t api_jint(const cJSON *o, const char *k);
/* Answers an error: returns 1 (answered) or a negative errno. */
int api_fail(api_ctx *x, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Answers body (taking it; NULL: -ENOMEM) with status: 0 or -errno. */
int api_answer(api_ctx *x, unsigned status, cJSON *body);
/* Longest RFC 3339 time the API takes ("2026-11-30T08:00:00.123456Z"). */
#define API_TIME_MAX 27
/* Parses an RFC 3339 UTC time "YYYY-MM-DDTHH:MM:SS[.ffffff]Z" (from 1970)
 * into µs since the epoch: 0 or -EINVAL. */
int api_parse_time(const char *s, int64_t *us);
/* ?from= and ?to= as times: 0 with the range set (0 where absent; to must
 * be after from), or 1 with a 422 answered. */
int api_query_range(api_ctx *x, int64_t *from, int64_t *to);
/* Reads ?after= and ?limit=: 0, or 1 with a 422 answered. */
int api_page_args(api_ctx *x, uint64_t *after, size_t *limit);
/* {"items": items, "next_after": next or null}: answered 200. Takes items. */
int api_answer_page(api_ctx *x, cJSON *items, uint64_t next);
/* The {id} path parameter: 0, or -ENOENT (not an id: 404 as a missing one). */
int api_path_id(api_ctx *x, const char *name, uint64_t *id);
/* Replaces o's JSON with j (printed) and stores it with actor. */
int api_put_json(ctl_dir_txn *t, const char *actor, ctl_dir_obj *o, const cJSON *j,
                 const ctl_dir_ukey *keys, size_t n);
/* The public form of a stored object: its JSON without '_' fields, with
 * "id", "created_at" and "updated_at". NULL if out of memory. */
cJSON *api_obj_out(const ctl_dir_obj *o);
/* Reads an object of the caller's tenant as JSON: 0 with *o and *j set
 * (free both), or -ENOENT / -errno. */
int api_get_json(api_ctx *x, int kind, uint64_t id, ctl_dir_obj *o, cJSON **j);
/* Resolves a role name in tenant: 0 or -ENOENT. */
int api_role_resolve(ctl_dir_txn *t, uint64_t tenant, const char *name, api_role *out);
/* A change's field into obj: replaces it, or removes it for null. 0 or
 * -ENOMEM. */
int api_merge_field(cJSON *obj, const cJSON *field);
/* Queues device for a config update once the request commits. */
int api_device_changed(api_ctx *x, const char *device);
/* Mirrors the virtual disk covering recorder rid (if any) into the ledger
 * (api_subscriptions.c). */
int api_recorder_sync(api_ctx *x, uint64_t rid);
/* api_objects.c: whether name is an AI algorithm channels may run; checks
 * a channel's new state (after) against the algorithms and the client's AI
 * subscriptions: 0, 1 answered (422), or -errno. */
bool api_ai_algorithm_known(const char *name);
int api_channel_check(api_ctx *x, const ctl_dir_obj *ch, const cJSON *after);
/* Sets a recorder's device id (validated, unique across spaces) and
 * stores it: 0, 1 answered (409/422), or -errno. */
int api_recorder_set_device(api_ctx *x, ctl_dir_obj *r, cJSON *rj, const char *device);
/* Deletes every child of one kind of parent (actor NULL: not audited). */
int api_drop_children(ctl_dir_txn *t, const char *actor, uint64_t parent, int kind);
/* Deletes every object of one kind of a tenant (actor as above). */
int api_drop_tenant_kind(ctl_dir_txn *t, const char *actor, uint64_t tenant, int kind);
/* Lowercases and checks the email in j's field (if present): 0, 1 with a
 * 422 answered, or -ENOMEM. */
int api_email_field(api_ctx *x, cJSON *j, const char *field);
/* Answers an error object that also carries a count ({"code", "message",
 * name: n}): 1 (answered) or -errno. */
int api_fail_count(api_ctx *x, unsigned status, const char *code, const char *name, uint64_t n,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Answers the stored object (kind, id) in its public form (decorated by
 * the route's kind when it is of that kind) with status. */
int api_answer_stored(api_ctx *x, int kind, uint64_t id, unsigned status);
/* Deletes every session of user except keep (0: all). */
int api_end_sessions(ctl_dir_txn *t, uint64_t user, uint64_t keep);
/* True if the caller's tenant is the distributor's. */
bool api_is_distributor(api_ctx *x);
/* Authentication for handlers of API_NEED_NONE routes that need a session
 * part way (the password change): as the dispatcher does. 0 with x->t and
 * x->c set, 1 answered, or -errno. api_end ends it. */
int api_begin_auth(api_ctx *x, int need);
int api_end(api_ctx *x, int rc);
/* Hashes a new password outside any transaction: 0 with hash set, 1 with
 * a 422 answered naming field, or -EIO. */
int api_hash_password(api_ctx *x, const char *field, const char *pw, char *hash, size_t len);
/* Makes a one-time set-password link for user (of x->c.tenant or the
 * tenant given by the user record) in x->t, replacing the user's earlier
 * links, and queues the message that carries it (sent after the commit).
 * subject names the occasion. 0 or -errno. */
int api_link_issue(api_ctx *x, uint64_t user, const char *email, const char *subject);
/* Deletes every link of user (the user is deleted or set a password). */
int api_links_drop(api_ctx *x, uint64_t user);

#endif
