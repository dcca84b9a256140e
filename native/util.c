/* Buffer helpers: XOR and a constant-time equality test. */
#include "facelock.h"
#include "fl_internal.h"

FL_HOT int fl_xor(uint8_t *out, const uint8_t *a, const uint8_t *b, size_t len)
{
    size_t i;
    if (len > 0 && (out == NULL || a == NULL || b == NULL)) {
        return -1;
    }
    for (i = 0; i < len; i++) {
        out[i] = (uint8_t) (a[i] ^ b[i]);
    }
    return 0;
}

/*
 * 0 when equal, -1 otherwise; the time depends on len only.  The volatile
 * accumulator stops the compiler from turning the loop into an early exit.
 */
int fl_memeq_ct(const uint8_t *a, const uint8_t *b, size_t len)
{
    volatile uint8_t d = 0;
    size_t i;
    if (len > 0 && (a == NULL || b == NULL)) {
        return -1;
    }
    for (i = 0; i < len; i++) {
        d |= (uint8_t) (a[i] ^ b[i]);
    }
    unsigned int x = d;
    return (int) (1u & ((x - 1u) >> 8)) - 1;
}
