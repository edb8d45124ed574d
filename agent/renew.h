/* Renewing the agent's certificate before it expires (docs/pairing.md,
 * "Renewal").
 *
 * When the certificate of state_dir's identity enters its renewal window
 * (the last third of its lifetime, or the last renew_before_s seconds),
 * agent_renew_step hands out a request for c2d/v1/d/{device}/csr: a CSR
 * (CN = device id) for a NEW key, kept in memory. The controller answers on
 * c2d/v1/d/{device}/cert; agent_renew_deliver passes that answer over from
 * the network thread. A good answer (the certificate is for the device id
 * and for the pending key) is stored with agent_identity_store (a new
 * directory, then a symlink swap): a power cut leaves the old identity or
 * the new one, and the old certificate stays valid until it expires. The
 * agent then reconnects, which makes libmosquitto load the new files.
 *
 * No answer or a refusal: the request is sent again after 1 min, doubling
 * to 1 h, with the same key (a late answer still fits it). After a renewal
 * the next one waits at least AGENT_RENEW_GAP_S (the controller's own
 * limit), so a window longer than the lifetime cannot loop.
 *
 * Only for paired configurations (identity in state_dir). Not thread-safe
 * except agent_renew_deliver. */
#ifndef AGENT_RENEW_H
#define AGENT_RENEW_H

#include <stddef.h>
#include <stdint.h>

/* Retry after no answer or a refusal: 1 min doubling to 1 h. */
#define AGENT_RENEW_RETRY_MIN_S 60
#define AGENT_RENEW_RETRY_MAX_S 3600
/* After a renewal, no new request for this long (the controller answers
 * too_soon within its CTL_RENEW_MIN_GAP_US anyway). */
#define AGENT_RENEW_GAP_S 3600
/* Largest answer: a certificate and a chain, with JSON escaping. */
#define AGENT_RENEW_ANSWER_MAX (3 * 65536)

/* When a certificate valid [not_before, not_after] (Unix seconds) is to be
 * renewed: not_after - renew_before_s, or with renew_before_s 0 the start
 * of the last third of its lifetime. */
int64_t agent_renew_due_at(int64_t not_before, int64_t not_after, int64_t renew_before_s);
/* Seconds to wait after the attempt-th request (1, 2, ...) went
 * unanswered or was refused. */
int64_t agent_renew_backoff_s(unsigned attempt);

typedef struct agent_renew agent_renew;

typedef struct {
    const char *state_dir; /* holds the identity (agent/pair.h) */
    const char *device_id;
    int64_t renew_before_s; /* 0: the last third of the lifetime */
} agent_renew_cfg;

/* Reads the identity's certificate. 0, -ENOENT (no identity), -EBADMSG,
 * -ENOMEM, -EIO. The strings of cfg are borrowed. */
int agent_renew_new(const agent_renew_cfg *cfg, agent_renew **out);
/* No-op on NULL. */
void agent_renew_free(agent_renew *r);

/* The current certificate's notAfter, and when it is due for renewal
 * (Unix seconds). */
int64_t agent_renew_not_after(const agent_renew *r);
int64_t agent_renew_due(const agent_renew *r);

/* Any thread: keeps a copy of an answer for the next agent_renew_step
 * (a later one replaces it; larger than AGENT_RENEW_ANSWER_MAX: dropped). */
void agent_renew_deliver(agent_renew *r, const void *payload, size_t len);

typedef enum {
    AGENT_RENEW_IDLE,    /* nothing to do */
    AGENT_RENEW_SEND,    /* publish *request (QoS 1) on the csr topic, then free it */
    AGENT_RENEW_RENEWED, /* the new identity is stored: reconnect */
    AGENT_RENEW_REFUSED, /* the controller refused (msg); retried later */
    AGENT_RENEW_FAILED,  /* a bad answer or a local failure (msg); retried later */
} agent_renew_action;

/* One step at now_s (Unix seconds): takes a delivered answer, else, if
 * connected and due and the retry time has come, makes a request. msg gets
 * a line for the log for every action but IDLE. */
agent_renew_action agent_renew_step(agent_renew *r, int64_t now_s, int connected, char **request,
                                    char *msg, size_t msglen);

#endif
