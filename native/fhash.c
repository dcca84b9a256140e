/*
 * Feature hashing for biometric keys.  Integer inputs (int16 features, int8
 * projections, exact int64 sums) make the bits identical on every CPU and in
 * any summation order, so a key enrolled on one device regenerates on
 * another; float dot products would flip signs near zero between builds.
 */
#include "facelock.h"
#include "fl_internal.h"

FL_HOT int fl_simhash_i16(uint8_t *out, size_t out_len, const int16_t *v, size_t dim,
                          const int8_t *proj, size_t n_bits)
{
    size_t i, d;
    if (out == NULL || v == NULL || proj == NULL || dim == 0 || dim > (1u << 20) ||
        out_len != (n_bits + 7) / 8) {
        return -1;
    }
    for (i = 0; i < out_len; i++) {
        out[i] = 0;
    }
    for (i = 0; i < n_bits; i++) {
        const int8_t *row = proj + i * dim;
        int64_t acc = 0;
        for (d = 0; d < dim; d++) {
            acc += (int32_t) v[d] * (int32_t) row[d];
        }
        if (acc > 0) {
            out[i >> 3] |= (uint8_t) (0x80u >> (i & 7));
        }
    }
    return 0;
}

int fl_hamming(size_t *dist, const uint8_t *a, const uint8_t *b, size_t len)
{
    size_t i, n = 0;
    if (dist == NULL || (len > 0 && (a == NULL || b == NULL))) {
        return -1;
    }
    for (i = 0; i < len; i++) {
        n += (size_t) __builtin_popcount((unsigned) (a[i] ^ b[i]));
    }
    *dist = n;
    return 0;
}
