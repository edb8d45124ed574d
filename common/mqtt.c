#include "common/c2d_mqtt.h"

#include <mqtt_protocol.h>
#include <stdio.h>

struct mosquitto *c2d_mqtt_new(const c2d_broker_cfg *b, const char *id_fallback, int clean_start,
                               void *userdata, char *err, size_t errlen)
{
    const char *id = b->client_id ? b->client_id : id_fallback;
    struct mosquitto *m = mosquitto_new(id, clean_start ? true : false, userdata);
    if (!m) {
        snprintf(err, errlen, "mosquitto_new failed (client id \"%s\")", id ? id : "");
        return NULL;
    }
    int rc = mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    /* Acks are tiny and gate the upload window: Nagle would hold them back. */
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_tls_set(m, b->ca_file, NULL, b->cert_file, b->key_file, NULL);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_tls_opts_set(m, 1, "tlsv1.2", NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        snprintf(err, errlen, "TLS set-up (ca %s, cert %s, key %s): %s", b->ca_file, b->cert_file,
                 b->key_file, mosquitto_strerror(rc));
        mosquitto_destroy(m);
        return NULL;
    }
    return m;
}
