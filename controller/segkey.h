/* The identity of a segment, shared by the controller's modules. */
#ifndef CTL_SEGKEY_H
#define CTL_SEGKEY_H

#include "proto/c2d_proto.h"

#include <stdint.h>

typedef struct {
    char device[C2D_DEVICE_ID_MAX + 1]; /* c2d_device_id_valid(), from the topic */
    uint16_t channel;
    int64_t start_us; /* >= 0 */
} ctl_seg_key;

/* 1 if key can safely name files: valid device id and start >= 0. */
int ctl_seg_key_valid(const ctl_seg_key *key);

/* Fills key; returns 0, or -EINVAL if the result would not be valid. */
int ctl_seg_key_set(ctl_seg_key *key, const char *device, uint16_t channel, int64_t start_us);

#endif
