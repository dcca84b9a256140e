/*
 * Chaotic keystream: 64 lanes of the logistic map x' = 4x(1-x), digitised to
 * 32-bit fixed point, each perturbed by its own Weyl sequence and coupled to
 * its right-hand neighbour (a coupled map lattice).
 *
 * Why this shape: a digitised chaotic map alone falls into short cycles, the
 * Weyl perturbation guarantees a long orbit, the coupling spreads state across
 * lanes, and 64 independent lanes give the compiler a long vector loop instead
 * of one serial dependency chain.  Integer arithmetic keeps the stream
 * bit-identical on every CPU (no floating-point contraction or rounding).
 */
#include <string.h>

#include "facelock.h"
#include "fl_internal.h"

int fl_chaos_init(fl_chaos_state *st, const uint8_t *seed, size_t seed_len)
{
    size_t l;

    if (st == NULL || seed == NULL || seed_len != FL_CHAOS_SEEDBYTES) {
        return -1;
    }
    for (l = 0; l < FL_CHAOS_LANES; l++) {
        st->x[l] = fl_load32_le(seed + 4 * l);
        st->w[l] = fl_load32_le(seed + 256 + 4 * l);
        st->s[l] = fl_load32_le(seed + 512 + 4 * l) | 1u;
    }
    st->x[FL_CHAOS_LANES] = st->x[0];
    /* Discard a warm-up: a one-bit seed difference needs ~32 logistic steps
     * to reach the top bits and 64 steps of coupling to reach every lane. */
    for (l = 0; l < FL_CHAOS_WARMUP; l++) {
        fl_chaos_block(st, st->buf);
    }
    st->pos = FL_CHAOS_BLOCKBYTES; /* buffer empty */
    return 0;
}

FL_HOT void fl_chaos_block(fl_chaos_state *st, uint8_t out[FL_CHAOS_BLOCKBYTES])
{
    uint32_t xn[FL_CHAOS_LANES];
    size_t l;

    for (l = 0; l < FL_CHAOS_LANES; l++) {
        uint32_t x = st->x[l];
        uint32_t nb = st->x[l + 1];
        uint64_t t = (uint64_t) x * (uint64_t) (x ^ 0xffffffffu);
        uint32_t y = (uint32_t) (t >> 30);
        st->w[l] += st->s[l];
        xn[l] = (y + st->w[l]) ^ ((nb << 7) | (nb >> 25));
    }
    memcpy(st->x, xn, sizeof xn);
    st->x[FL_CHAOS_LANES] = xn[0];
    for (l = 0; l < FL_CHAOS_LANES; l++) {
        fl_store32_le(out + 4 * l, xn[l]);
    }
}

int fl_chaos_keystream(fl_chaos_state *st, uint8_t *out, size_t len)
{
    if (st == NULL || (out == NULL && len > 0) || st->pos > FL_CHAOS_BLOCKBYTES) {
        return -1;
    }
    while (len > 0) {
        size_t take;
        if (st->pos == FL_CHAOS_BLOCKBYTES) {
            fl_chaos_block(st, st->buf);
            st->pos = 0;
        }
        take = FL_CHAOS_BLOCKBYTES - st->pos;
        if (take > len) {
            take = len;
        }
        memcpy(out, st->buf + st->pos, take);
        st->pos += take;
        out += take;
        len -= take;
    }
    return 0;
}
