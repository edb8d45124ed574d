/* libmosquitto set-up shared by agent and controller: MQTT v5, TLS with a
 * client certificate, verified server. */
#ifndef C2D_MQTT_H
#define C2D_MQTT_H

#include "common/c2d_config.h"
#include <mosquitto.h>

/* Creates a client for b (client id = b->client_id or id_fallback) with
 * MQTT v5 and TLS configured; does not connect. clean_start=0 keeps the
 * session (and its queued QoS 1 messages) across reconnects. Returns NULL
 * with err filled on failure. Call mosquitto_lib_init() first. */
struct mosquitto *c2d_mqtt_new(const c2d_broker_cfg *b, const char *id_fallback, int clean_start,
                               void *userdata, char *err, size_t errlen);

#endif
