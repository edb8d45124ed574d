#include "controller/segkey.h"

#include <errno.h>
#include <string.h>

int ctl_seg_key_valid(const ctl_seg_key *key)
{
    return key && key->start_us >= 0 && memchr(key->device, '\0', sizeof(key->device)) != NULL &&
           c2d_device_id_valid(key->device);
}

int ctl_seg_key_set(ctl_seg_key *key, const char *device, uint16_t channel, int64_t start_us)
{
    if (!device || start_us < 0 || !c2d_device_id_valid(device))
        return -EINVAL;
    ctl_seg_key k;
    memset(&k, 0, sizeof(k));
    strcpy(k.device, device); /* fits: c2d_device_id_valid bounds the length */
    k.channel = channel;
    k.start_us = start_us;
    *key = k;
    return 0;
}
