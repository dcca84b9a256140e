/* Helpers shared by the native sources; not part of the public API. */
#ifndef FL_INTERNAL_H
#define FL_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "facelock.h"

/* Hot loops get AVX-512 and AVX2 clones on x86-64, chosen at load time (ifunc), so a
 * generic build still runs fast on modern CPUs and correctly on old ones. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(FL_NO_CLONES) \
    && !defined(__SANITIZE_ADDRESS__)
#define FL_HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FL_HOT
#endif

static inline uint32_t fl_load32_le(const uint8_t *p)
{
    return (uint32_t) p[0] | ((uint32_t) p[1] << 8) | ((uint32_t) p[2] << 16) |
           ((uint32_t) p[3] << 24);
}

static inline void fl_store32_le(uint8_t *p, uint32_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(p, &v, 4);
#else
    p[0] = (uint8_t) v;
    p[1] = (uint8_t) (v >> 8);
    p[2] = (uint8_t) (v >> 16);
    p[3] = (uint8_t) (v >> 24);
#endif
}

void fl_chaos_block(fl_chaos_state *st, uint8_t out[FL_CHAOS_BLOCKBYTES]);

#endif
