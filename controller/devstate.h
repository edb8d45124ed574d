/* Live device state: the retained JSON a recorder's agent publishes on
 * c2d/v1/d/{device}/state (proto/README.md, "Device state") and the last
 * will "{"online":false}" the broker publishes for it, kept per device with
 * the time it arrived, the config version the controller published, and
 * the health alarms computed from it.
 *
 * Kept in memory only: the messages are retained, so the broker hands
 * every device's latest one back when the daemon subscribes after a
 * restart. Bounded: at most CTL_DEVSTATE_DEVICES_MAX devices, each holding
 * one message of at most CTL_DEVSTATE_MAX bytes.
 *
 * A device is online while its latest message says so and the latest
 * message is younger than offline_after (half-open links give no will:
 * ctl_devstate_tick marks such a device offline).
 *
 * Alarms, each with the (device, code, channel) identity, raised with the
 * time the cause appeared and cleared when it goes (ctl_devstate_rules):
 *   offline        the device is offline (will, or no message in time)
 *   disk           "disk" is "missing" or "failing"
 *   channel        a channel's "state" is not recording, starting or
 *                  finished (a source error: "retrying", "source_error")
 *   spool_age      the spool's oldest unsent segment ("spool.oldest_age_s")
 *                  is older than the recorder's own retention
 *                  ("recorder_retention_s", else the configured default;
 *                  0: no such alarm): video about to be lost unsaved.
 *   rate_limited   the controller dropped messages of the device over its
 *                  rate limit (controller/devlimit.h) in the last
 *                  CTL_DEVSTATE_LIMITED_ALARM_S seconds.
 * While a device is offline only the offline alarm stands (what it said
 * before is stale), and rate_limited (what the controller saw).
 *
 * Thread safe: the daemon updates, the API threads read. Parsing and the
 * rules are pure; nothing here logs. */
#ifndef CTL_DEVSTATE_H
#define CTL_DEVSTATE_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ctl_devstate ctl_devstate;

/* Longest state payload: a 64-channel recorder's message is about 12 KiB
 * with every field. */
#define CTL_DEVSTATE_MAX (32 * 1024)
/* Channels of one message: the agent's AGENT_CHANNELS_MAX. */
#define CTL_DEVSTATE_CHANNELS_MAX 64
/* Devices tracked: a controller's fleet; beyond, new devices are refused
 * (-ENOSPC) rather than growing without bound. */
#define CTL_DEVSTATE_DEVICES_MAX 20000
/* One alarm per channel plus offline, disk, spool_age and rate_limited. */
#define CTL_DEVSTATE_ALARMS_MAX (CTL_DEVSTATE_CHANNELS_MAX + 4)
/* rate_limited stands this long after the last drop reported: long enough
 * for an operator to see it, short enough to clear once the flood ends. */
#define CTL_DEVSTATE_LIMITED_ALARM_S 60
/* Defaults of the controller's config keys. */
#define CTL_DEVSTATE_OFFLINE_AFTER_S_DEFAULT 90
#define CTL_DEVSTATE_RETENTION_S_DEFAULT 0
/* Room for a refusal reason. */
#define CTL_DEVSTATE_WHY_MAX 96
/* Longest channel state word kept. */
#define CTL_DEVSTATE_WORD_MAX 23

/* What the rules need of a message (the rest is kept as JSON for the API). */
typedef struct {
    int online;
    int has_cfg_version;
    uint64_t cfg_version;
    char disk[CTL_DEVSTATE_WORD_MAX + 1]; /* "" when not reported */
    int64_t spool_oldest_age_s;           /* -1 when not reported */
    int64_t retention_s;                  /* -1 when not reported */
    size_t nch;
    struct {
        uint16_t id;
        char state[CTL_DEVSTATE_WORD_MAX + 1];
    } ch[CTL_DEVSTATE_CHANNELS_MAX];
} ctl_devstate_msg;

typedef struct {
    char code[16]; /* offline, disk, channel, spool_age, rate_limited */
    int channel;   /* the channel id for "channel", else -1 */
    int64_t since_us;
    char detail[96];
} ctl_alarm;

/* Parses one state payload (len bytes, not NUL-terminated). Unknown
 * fields are allowed (agents add fields); the known ones must have their
 * type and range: "online" boolean (required), "cfg_version" integer
 * 0..2^53 or null, "disk" string, "uptime_s" integer >= 0, "spool" object
 * with "oldest_age_s" integer >= 0, "recorder_retention_s" integer >= 0,
 * "channels" array of at most CTL_DEVSTATE_CHANNELS_MAX objects each with
 * "id" 0..65535 and "state" string. Returns 0 with *out set and, if json is
 * not NULL, *json the parsed object (cJSON_Delete); or -EINVAL (why says
 * which field), -EMSGSIZE (over CTL_DEVSTATE_MAX) or -ENOMEM. */
int ctl_devstate_parse(const void *payload, size_t len, ctl_devstate_msg *out, cJSON **json,
                       char *why, size_t whylen);

/* The alarm rules: the conditions m holds (online: whether the device
 * counts as online; default_retention_s when m has none), since_us unset.
 * Returns how many were written to out (room for CTL_DEVSTATE_ALARMS_MAX). */
size_t ctl_devstate_rules(const ctl_devstate_msg *m, int online, int64_t default_retention_s,
                          ctl_alarm *out);

/* offline_after_s >= 1; default_retention_s >= 0 (0: no spool_age alarm
 * unless the device reports its retention). 0, -EINVAL or -ENOMEM. */
int ctl_devstate_new(int64_t offline_after_s, int64_t default_retention_s, ctl_devstate **out);
/* NULL is a no-op. */
void ctl_devstate_free(ctl_devstate *s);

/* A message on device's state topic at now_us. An empty payload (the
 * retained message cleared) forgets the device. 0, or -EINVAL / -EMSGSIZE
 * / -ENOMEM (refused, counted, nothing changed; why filled), -ENOSPC (too
 * many devices). */
int ctl_devstate_update(ctl_devstate *s, const char *device, const void *payload, size_t len,
                        int64_t now_us, char *why, size_t whylen);

/* Marks offline the devices without a message for offline_after and
 * recomputes their alarms. Returns how many went offline now. */
size_t ctl_devstate_tick(ctl_devstate *s, int64_t now_us);

/* Records that the rate limit dropped messages of device: msgs messages of
 * bytes payload bytes in all so far (controller/devlimit.h), the latest at
 * now_us. Raises rate_limited; ctl_devstate_tick clears it
 * CTL_DEVSTATE_LIMITED_ALARM_S later. Known or not, like
 * ctl_devstate_set_published (bounded the same way). */
void ctl_devstate_set_limited(ctl_devstate *s, const char *device, uint64_t msgs, uint64_t bytes,
                              int64_t now_us);

/* Records the config version published for device (cfg topic). */
void ctl_devstate_set_published(ctl_devstate *s, const char *device, uint64_t version);

/* {"device", "online", "last_seen" (RFC 3339 or null), "state" (the last
 * message or null), "cfg_version": {"applied", "published"} (each null
 * when unknown), "alarms": [...], "rate_limited": {"dropped_messages",
 * "dropped_bytes", "last"} or null} for device, known or not. *out is set
 * on success (cJSON_Delete). 0 or -ENOMEM. */
int ctl_devstate_json(ctl_devstate *s, const char *device, cJSON **out);

/* Appends device's active alarms to arr as {"recorder_id", "device",
 * "code", "channel" (or null), "since", "detail"}. 0 or -ENOMEM. */
int ctl_devstate_alarms_json(ctl_devstate *s, const char *device, uint64_t recorder_id, cJSON *arr);

/* Refused payloads since creation. */
uint64_t ctl_devstate_refused(ctl_devstate *s);

#endif
