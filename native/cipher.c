/*
 * The chaotic image layer: a key-driven row/column permutation of 32-byte
 * cells followed by two passes of diffusion with ciphertext feedback (first
 * to last cell, then last to first), each XORed with its own keystream.
 *
 * Why two passes: feedback carries a change only forward, so one changed
 * pixel would leave everything before it untouched; the backward pass
 * carries it to the start, which gives the ~99.6 % NPCR the paper aims for.
 * Why cells: moving 32-byte cells instead of single bytes keeps the shuffle
 * cache friendly, and the 32 lanes of a cell are one vector register.
 */
#include <string.h>

#include "facelock.h"
#include "fl_internal.h"

static int fl_overlaps(const uint8_t *a, const uint8_t *b, size_t len)
{
    uintptr_t pa = (uintptr_t) a, pb = (uintptr_t) b;
    return pa < pb + len && pb < pa + len;
}

static size_t fl_isqrt(size_t n)
{
    size_t x = n, y;
    if (n < 2) {
        return n;
    }
    y = (x + 1) / 2;
    while (y < x) {
        x = y;
        y = (x + n / x) / 2;
    }
    return x;
}

static void fl_perm_dims(size_t len, size_t *rows, size_t *cols, size_t *rem)
{
    size_t m = len / FL_CELLBYTES;
    size_t c = fl_isqrt(m);
    if (c == 0) {
        *rows = *cols = *rem = 0;
        return;
    }
    *cols = c;
    *rows = m / c;
    *rem = m - (*rows) * c;
}

size_t fl_perm_scratch_words(size_t len)
{
    size_t r, c, rem;
    fl_perm_dims(len, &r, &c, &rem);
    return 2 * r + c + rem;
}

static uint32_t fl_draw(fl_chaos_state *st)
{
    uint8_t b[4];
    (void) fl_chaos_keystream(st, b, sizeof b);
    return fl_load32_le(b);
}

/* Fisher-Yates with Lemire's multiply-shift for an unbiased-enough index. */
static void fl_shuffle(fl_chaos_state *st, uint32_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        p[i] = (uint32_t) i;
    }
    for (i = n; i > 1; i--) {
        size_t j = (size_t) (((uint64_t) fl_draw(st) * (uint64_t) i) >> 32);
        uint32_t t = p[i - 1];
        p[i - 1] = p[j];
        p[j] = t;
    }
}

int fl_perm_build(fl_chaos_state *st, size_t len, uint32_t *tables, size_t n_words)
{
    size_t rows, cols, rem, r;
    fl_perm_dims(len, &rows, &cols, &rem);
    if (st == NULL || n_words < 2 * rows + cols + rem || (tables == NULL && n_words > 0) ||
        len / FL_CELLBYTES > 0xffffffffu) {
        return -1;
    }
    fl_shuffle(st, tables, rows);
    fl_shuffle(st, tables + rows, cols);
    for (r = 0; r < rows; r++) {
        tables[rows + cols + r] = (uint32_t) (((uint64_t) fl_draw(st) * (uint64_t) cols) >> 32);
    }
    fl_shuffle(st, tables + 2 * rows + cols, rem);
    return 0;
}

/* 0 when each of the n entries of p is below bound, else -1.  It may stop at
 * the first bad entry: tables built by fl_perm_build never have one, so the
 * timing says nothing about a well-formed (key-derived) table. */
static int fl_indices_below(const uint32_t *p, size_t n, size_t bound)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if ((size_t) p[i] >= bound) {
            return -1;
        }
    }
    return 0;
}

int fl_perm_apply(uint8_t *out, const uint8_t *in, size_t len, const uint32_t *tables,
                  size_t n_words, int inverse)
{
    size_t rows, cols, rem, r, c, i, base;
    const uint32_t *rowp, *colp, *shift, *remp;

    fl_perm_dims(len, &rows, &cols, &rem);
    if ((len > 0 && (out == NULL || in == NULL || fl_overlaps(out, in, len))) ||
        n_words < 2 * rows + cols + rem || (tables == NULL && n_words > 0) ||
        (inverse != 0 && inverse != 1)) {
        return -1;
    }
    rowp = tables;
    colp = tables + rows;
    shift = tables + rows + cols;
    remp = tables + 2 * rows + cols;
    /* Every index is range-checked before the first byte moves: tables that
     * fl_perm_build did not make (or that were altered) give -1 and leave
     * `out` untouched, never an out-of-bounds read or write. */
    if (fl_indices_below(rowp, rows, rows) != 0 || fl_indices_below(colp, cols, cols) != 0 ||
        fl_indices_below(shift, rows, cols) != 0 || fl_indices_below(remp, rem, rem) != 0) {
        return -1;
    }
    if (inverse && len > 0) {
        /* The inverse scatters cells to table-chosen places: with a table that
         * is in range but not a permutation some cells would not be written,
         * so start from zeros rather than return whatever memory held. */
        memset(out, 0, len);
    }
    for (r = 0; r < rows; r++) {
        const size_t src_row = (size_t) rowp[r] * cols;
        const size_t dst_row = r * cols;
        const size_t sh = shift[r];
        for (c = 0; c < cols; c++) {
            size_t sc = colp[c] + sh;
            if (sc >= cols) {
                sc -= cols;
            }
            if (inverse) {
                memcpy(out + (src_row + sc) * FL_CELLBYTES, in + (dst_row + c) * FL_CELLBYTES,
                       FL_CELLBYTES);
            } else {
                memcpy(out + (dst_row + c) * FL_CELLBYTES, in + (src_row + sc) * FL_CELLBYTES,
                       FL_CELLBYTES);
            }
        }
    }
    base = rows * cols;
    for (i = 0; i < rem; i++) {
        if (inverse) {
            memcpy(out + (base + remp[i]) * FL_CELLBYTES, in + (base + i) * FL_CELLBYTES,
                   FL_CELLBYTES);
        } else {
            memcpy(out + (base + i) * FL_CELLBYTES, in + (base + remp[i]) * FL_CELLBYTES,
                   FL_CELLBYTES);
        }
    }
    base = (rows * cols + rem) * FL_CELLBYTES;
    if (len > base) {
        memcpy(out + base, in + base, len - base);
    }
    return 0;
}

/* The next 32 keystream bytes, straight from the block buffer when aligned. */
static inline const uint8_t *fl_ks32(fl_chaos_state *st, uint8_t tmp[FL_CELLBYTES])
{
    if (st->pos == FL_CHAOS_BLOCKBYTES) {
        fl_chaos_block(st, st->buf);
        st->pos = 0;
    }
    if (st->pos + FL_CELLBYTES <= FL_CHAOS_BLOCKBYTES) {
        const uint8_t *k = st->buf + st->pos;
        st->pos += FL_CELLBYTES;
        return k;
    }
    (void) fl_chaos_keystream(st, tmp, FL_CELLBYTES);
    return tmp;
}

/*
 * One diffusion step over a cell, lanes l = 0..31, indices mod 32:
 *   c[l] = (p[l] + (prev[l+1] + rotl3(prev[l+7] ^ prev[l+16] ^ prev[l]))) ^ k[l]   (mod 256)
 * where prev is the previous ciphertext cell (the IV for the first).  The
 * rotation matters: without it a difference confined to the top bit of a
 * byte passes through + and ^ linearly and can cancel with probability 1/2.
 * Lane offsets {0, 1, 7, 16} carry a one-lane change to all 32 lanes within
 * six cells.
 */
static int fl_diffusion_args(const uint8_t *out, const uint8_t *in, size_t len,
                             const fl_chaos_state *st, const uint8_t *iv, size_t iv_len,
                             int direction)
{
    if (st == NULL || iv == NULL || iv_len != FL_CELLBYTES || (direction != 0 && direction != 1) ||
        st->pos > FL_CHAOS_BLOCKBYTES) {
        return -1;
    }
    if (len > 0 && (out == NULL || in == NULL || (out != in && fl_overlaps(out, in, len)))) {
        return -1;
    }
    return 0;
}

/* GCC and Clang vector extensions; the build requires one of them. */
/*
 * Vector form: the previous cell stays in a register and the lane rotations
 * are shuffles, so the serial chain from cell to cell is a handful of
 * instructions instead of a store/reload through memory.
 */
typedef uint8_t fl_v32 __attribute__((vector_size(32)));
#define FL_R(k) \
    ((k + 0) & 31), ((k + 1) & 31), ((k + 2) & 31), ((k + 3) & 31), ((k + 4) & 31), ((k + 5) & 31), \
        ((k + 6) & 31), ((k + 7) & 31), ((k + 8) & 31), ((k + 9) & 31), ((k + 10) & 31),          \
        ((k + 11) & 31), ((k + 12) & 31), ((k + 13) & 31), ((k + 14) & 31), ((k + 15) & 31),      \
        ((k + 16) & 31), ((k + 17) & 31), ((k + 18) & 31), ((k + 19) & 31), ((k + 20) & 31),      \
        ((k + 21) & 31), ((k + 22) & 31), ((k + 23) & 31), ((k + 24) & 31), ((k + 25) & 31),      \
        ((k + 26) & 31), ((k + 27) & 31), ((k + 28) & 31), ((k + 29) & 31), ((k + 30) & 31),      \
        ((k + 31) & 31)
#if defined(__clang__)
#define FL_ROT(v, k) __builtin_shufflevector((v), (v), FL_R(k))
#else
#define FL_ROT(v, k) __builtin_shuffle((v), (fl_v32){FL_R(k)})
#endif

/* Macros rather than functions: a function returning a 32-byte vector
 * would have a different ABI with and without AVX. */
#define fl_rotl3(v) (((v) << 3) | ((v) >> 5))
#define FL_MIX(prev) (FL_ROT(prev, 1) + fl_rotl3(FL_ROT(prev, 7) ^ FL_ROT(prev, 16) ^ (prev)))
#define FL_LOAD(v, p) memcpy(&(v), (p), sizeof(v))

FL_HOT int fl_diffuse(uint8_t *out, const uint8_t *in, size_t len, fl_chaos_state *st,
                      const uint8_t *iv, size_t iv_len, int direction)
{
    uint8_t tmp[FL_CELLBYTES], c[FL_CELLBYTES];
    fl_v32 prev;
    size_t m, r, j, l;

    if (fl_diffusion_args(out, in, len, st, iv, iv_len, direction) != 0) {
        return -1;
    }
    m = len / FL_CELLBYTES;
    r = len % FL_CELLBYTES;
    FL_LOAD(prev, iv);
    for (j = 0; j < m; j++) {
        const size_t off = direction == 0 ? j * FL_CELLBYTES : len - (j + 1) * FL_CELLBYTES;
        fl_v32 k, p;
        FL_LOAD(k, fl_ks32(st, tmp));
        FL_LOAD(p, in + off);
        prev = (p + FL_MIX(prev)) ^ k;
        memcpy(out + off, &prev, FL_CELLBYTES);
    }
    if (r > 0) {
        const size_t off = direction == 0 ? m * FL_CELLBYTES : 0;
        const uint8_t *k = fl_ks32(st, tmp);
        const fl_v32 mx = FL_MIX(prev);
        memcpy(c, &mx, FL_CELLBYTES);
        for (l = 0; l < r; l++) {
            out[off + l] = (uint8_t) ((uint8_t) (in[off + l] + c[l]) ^ k[l]);
        }
    }
    return 0;
}

FL_HOT int fl_undiffuse(uint8_t *out, const uint8_t *in, size_t len, fl_chaos_state *st,
                        const uint8_t *iv, size_t iv_len, int direction)
{
    uint8_t tmp[FL_CELLBYTES], c[FL_CELLBYTES];
    fl_v32 prev;
    size_t m, r, j, l;

    if (fl_diffusion_args(out, in, len, st, iv, iv_len, direction) != 0) {
        return -1;
    }
    m = len / FL_CELLBYTES;
    r = len % FL_CELLBYTES;
    FL_LOAD(prev, iv);
    for (j = 0; j < m; j++) {
        const size_t off = direction == 0 ? j * FL_CELLBYTES : len - (j + 1) * FL_CELLBYTES;
        fl_v32 k, cur, p;
        FL_LOAD(k, fl_ks32(st, tmp));
        FL_LOAD(cur, in + off);
        p = (cur ^ k) - FL_MIX(prev);
        memcpy(out + off, &p, FL_CELLBYTES);
        prev = cur;
    }
    if (r > 0) {
        const size_t off = direction == 0 ? m * FL_CELLBYTES : 0;
        const uint8_t *k = fl_ks32(st, tmp);
        const fl_v32 mx = FL_MIX(prev);
        memcpy(c, &mx, FL_CELLBYTES);
        for (l = 0; l < r; l++) {
            out[off + l] = (uint8_t) ((uint8_t) (in[off + l] ^ k[l]) - c[l]);
        }
    }
    return 0;
}

static void fl_wipe(void *p, size_t n)
{
    volatile uint8_t *v = (volatile uint8_t *) p;
    while (n--) {
        *v++ = 0;
    }
}

#define FL_SEED_PERM 0
#define FL_SEED_FWD FL_CHAOS_SEEDBYTES
#define FL_SEED_BWD (2 * FL_CHAOS_SEEDBYTES)
#define FL_SEED_IVF (3 * FL_CHAOS_SEEDBYTES)
#define FL_SEED_IVB (3 * FL_CHAOS_SEEDBYTES + FL_CELLBYTES)

int fl_cipher_encrypt(uint8_t *out, const uint8_t *in, size_t len, const uint8_t *seed,
                      size_t seed_len, uint32_t *scratch, size_t scratch_words)
{
    fl_chaos_state st;
    int rc = -1;

    if (seed == NULL || seed_len != FL_CIPHER_SEEDBYTES ||
        (len > 0 && (out == NULL || in == NULL || fl_overlaps(out, in, len)))) {
        return -1;
    }
    if (fl_chaos_init(&st, seed + FL_SEED_PERM, FL_CHAOS_SEEDBYTES) == 0 &&
        fl_perm_build(&st, len, scratch, scratch_words) == 0 &&
        fl_perm_apply(out, in, len, scratch, scratch_words, 0) == 0 &&
        fl_chaos_init(&st, seed + FL_SEED_FWD, FL_CHAOS_SEEDBYTES) == 0 &&
        fl_diffuse(out, out, len, &st, seed + FL_SEED_IVF, FL_CELLBYTES, 0) == 0 &&
        fl_chaos_init(&st, seed + FL_SEED_BWD, FL_CHAOS_SEEDBYTES) == 0 &&
        fl_diffuse(out, out, len, &st, seed + FL_SEED_IVB, FL_CELLBYTES, 1) == 0) {
        rc = 0;
    }
    fl_wipe(&st, sizeof st);
    return rc;
}

int fl_cipher_decrypt(uint8_t *out, const uint8_t *in, size_t len, const uint8_t *seed,
                      size_t seed_len, uint32_t *scratch, size_t scratch_words, uint8_t *work,
                      size_t work_len)
{
    fl_chaos_state st;
    int rc = -1;

    if (seed == NULL || seed_len != FL_CIPHER_SEEDBYTES || work_len < len ||
        (len > 0 && (out == NULL || in == NULL || work == NULL || fl_overlaps(out, in, len) ||
                     fl_overlaps(work, in, len) || fl_overlaps(work, out, len)))) {
        return -1;
    }
    if (fl_chaos_init(&st, seed + FL_SEED_BWD, FL_CHAOS_SEEDBYTES) == 0 &&
        fl_undiffuse(work, in, len, &st, seed + FL_SEED_IVB, FL_CELLBYTES, 1) == 0 &&
        fl_chaos_init(&st, seed + FL_SEED_FWD, FL_CHAOS_SEEDBYTES) == 0 &&
        fl_undiffuse(work, work, len, &st, seed + FL_SEED_IVF, FL_CELLBYTES, 0) == 0 &&
        fl_chaos_init(&st, seed + FL_SEED_PERM, FL_CHAOS_SEEDBYTES) == 0 &&
        fl_perm_build(&st, len, scratch, scratch_words) == 0 &&
        fl_perm_apply(out, work, len, scratch, scratch_words, 1) == 0) {
        rc = 0;
    }
    fl_wipe(&st, sizeof st);
    return rc;
}
