/* c2d_devcfg_decode on arbitrary bytes, then the round trip: an accepted
 * config encodes to at most C2D_DEVCFG_MAX bytes of JSON that decodes to
 * the same config and encodes to the same text. */
#include "fuzz.h"
#include "proto/devcfg.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    c2d_devcfg *cfg = malloc(sizeof(*cfg));
    c2d_devcfg *back = malloc(sizeof(*back));
    FUZZ_ASSERT(cfg && back);
    char why[C2D_DEVCFG_WHY_MAX];
    c2d_status st = c2d_devcfg_decode(data, size, cfg, why, sizeof(why));
    FUZZ_ASSERT(memchr(why, '\0', sizeof(why)) != NULL);
    for (const char *p = why; *p; p++)
        FUZZ_ASSERT(*p >= 0x20 && *p < 0x7f); /* reasons are logged */
    if (st != C2D_OK) {
        FUZZ_ASSERT(st == C2D_ERR_LENGTH || st == C2D_ERR_JSON || st == C2D_ERR_VERSION ||
                    st == C2D_ERR_FIELD || st == C2D_ERR_RANGE || st == C2D_ERR_NOMEM);
        free(cfg);
        free(back);
        return 0;
    }
    FUZZ_ASSERT(size <= C2D_DEVCFG_MAX);
    FUZZ_ASSERT(cfg->version <= (UINT64_C(1) << 53));
    FUZZ_ASSERT(cfg->n_channels <= C2D_DEVCFG_CHANNELS_MAX);
    for (size_t i = 0; i < cfg->n_channels; i++) {
        FUZZ_ASSERT(cfg->channels[i].backup == 0 || cfg->channels[i].backup == 1);
        FUZZ_ASSERT(c2d_devcfg_find(cfg, cfg->channels[i].ch) == &cfg->channels[i]);
    }

    char *text = c2d_devcfg_encode(cfg);
    FUZZ_ASSERT(text != NULL);
    size_t len = strlen(text);
    FUZZ_ASSERT(len <= C2D_DEVCFG_MAX);
    FUZZ_ASSERT(c2d_devcfg_decode(text, len, back, NULL, 0) == C2D_OK);
    FUZZ_ASSERT(back->version == cfg->version && back->n_channels == cfg->n_channels);
    for (size_t i = 0; i < cfg->n_channels; i++) {
        FUZZ_ASSERT(back->channels[i].ch == cfg->channels[i].ch);
        FUZZ_ASSERT(back->channels[i].backup == cfg->channels[i].backup);
    }
    char *again = c2d_devcfg_encode(back);
    FUZZ_ASSERT(again != NULL && strcmp(text, again) == 0);
    free(again);
    free(text);
    free(cfg);
    free(back);
    return 0;
}
