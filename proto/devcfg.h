/* The device configuration: the retained JSON the controller publishes on
 * c2d/v1/d/{device}/cfg (proto/README.md, "Device config (cfg topic)").
 *
 *   {"v":1,"version":7,"channels":[{"ch":1,"backup":true},{"ch":2,"backup":false}]}
 *
 * Pure code like the rest of proto/: the controller encodes, the agent
 * decodes (strictly: anything it does not know is refused with a reason,
 * so a newer controller's setting is never silently ignored). New settings
 * are new members of c2d_devcfg / c2d_devcfg_channel and new rows in the
 * decoder's field tables. */
#ifndef C2D_DEVCFG_H
#define C2D_DEVCFG_H

#include "proto/c2d_proto.h"

#include <stddef.h>
#include <stdint.h>

/* Longest cfg payload. 64 channels of today's fields take ~2 KiB; room for
 * the names and settings issue 5 adds, and a bound on what the agent
 * parses. */
#define C2D_DEVCFG_MAX 16384

/* Channels one config describes: a recorder's channel limit
 * (AGENT_CHANNELS_MAX). */
#define C2D_DEVCFG_CHANNELS_MAX 64

/* Room for a refusal reason from c2d_devcfg_decode ("unknown_field: xyz"). */
#define C2D_DEVCFG_WHY_MAX 96

typedef struct {
    uint16_t ch; /* channel id, 0..65535 */
    int backup;  /* 1: its segments go to the cloud; 0: cloud backup off */
} c2d_devcfg_channel;

typedef struct {
    uint64_t version;  /* 0..C2D_INT_MAX; the controller increases it on every change */
    size_t n_channels; /* 0..C2D_DEVCFG_CHANNELS_MAX */
    c2d_devcfg_channel channels[C2D_DEVCFG_CHANNELS_MAX]; /* distinct ch, as received */
} c2d_devcfg;

/* Decodes a cfg payload of len bytes (need not be NUL terminated). Refused:
 * over C2D_DEVCFG_MAX (C2D_ERR_LENGTH); not UTF-8, a NUL or any '\' escape,
 * not one JSON object, bytes after it (C2D_ERR_JSON); "v" other than 1
 * (C2D_ERR_VERSION); an unknown, duplicate or missing field, a field of the
 * wrong type, a channel listed twice (C2D_ERR_FIELD); a number out of range
 * or more than C2D_DEVCFG_CHANNELS_MAX channels (C2D_ERR_RANGE). why (if
 * whylen > 0) receives a short printable reason naming the field, e.g.
 * "unknown_field: channels[1].name", or "ok". *out is written only on
 * success. */
c2d_status c2d_devcfg_decode(const void *json, size_t len, c2d_devcfg *out, char *why,
                             size_t whylen);

/* Encodes cfg as JSON the decoder accepts (at most C2D_DEVCFG_MAX bytes).
 * Returns a malloc'd NUL-terminated string the caller frees, or NULL if
 * cfg breaks a rule of the decoder (version, count, duplicate channel,
 * backup not 0/1) or on allocation failure. */
char *c2d_devcfg_encode(const c2d_devcfg *cfg);

/* The entry for channel ch, or NULL if cfg does not list it. */
const c2d_devcfg_channel *c2d_devcfg_find(const c2d_devcfg *cfg, uint16_t ch);

#endif
