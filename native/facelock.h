/*
 * facelock native core: chaotic image cipher layer, buffer helpers and
 * biometric feature hashing.
 *
 * Conventions (after libsodium): every length is explicit, functions return
 * 0 on success and -1 on a bad argument, nothing allocates memory (callers
 * pass scratch space), and secrets are compared in constant time.
 *
 * The chaotic layer is a HAZMAT primitive: it adds confusion/diffusion in the
 * spirit of the FaceLock paper, but its security is not established.  The
 * Python image container always seals its output with a standard AEAD.
 *
 * The block between CDEF-BEGIN and CDEF-END is fed verbatim to cffi's cdef(),
 * so it must stay free of preprocessor conditionals.
 */
#ifndef FACELOCK_H
#define FACELOCK_H

#include <stddef.h>
#include <stdint.h>

/* CDEF-BEGIN */
#define FL_CHAOS_LANES 64
#define FL_CHAOS_BLOCKBYTES 256
#define FL_CHAOS_SEEDBYTES 768
#define FL_CHAOS_WARMUP 64
#define FL_CELLBYTES 32
#define FL_CIPHER_SEEDBYTES 2368

typedef struct fl_chaos_state {
    uint32_t x[65];
    uint32_t w[64];
    uint32_t s[64];
    uint8_t buf[256];
    size_t pos;
} fl_chaos_state;

/* Keystream: a lattice of 64 coupled, Weyl-perturbed digitised logistic maps. */
int fl_chaos_init(fl_chaos_state *st, const uint8_t *seed, size_t seed_len);
int fl_chaos_keystream(fl_chaos_state *st, uint8_t *out, size_t len);

/* Row/column cell permutation (cells of FL_CELLBYTES bytes). */
size_t fl_perm_scratch_words(size_t len);
int fl_perm_build(fl_chaos_state *st, size_t len, uint32_t *tables, size_t n_words);
int fl_perm_apply(uint8_t *out, const uint8_t *in, size_t len,
                  const uint32_t *tables, size_t n_words, int inverse);

/* Diffusion with ciphertext feedback; direction 0 = forward, 1 = backward. */
int fl_diffuse(uint8_t *out, const uint8_t *in, size_t len, fl_chaos_state *st,
               const uint8_t *iv, size_t iv_len, int direction);
int fl_undiffuse(uint8_t *out, const uint8_t *in, size_t len, fl_chaos_state *st,
                 const uint8_t *iv, size_t iv_len, int direction);

/* The whole chaotic layer: permute, diffuse forward, diffuse backward.
 * scratch holds fl_perm_scratch_words(len) words; decrypt also needs a work
 * buffer of len bytes.  out may alias in only where noted (diffusion). */
int fl_cipher_encrypt(uint8_t *out, const uint8_t *in, size_t len,
                      const uint8_t *seed, size_t seed_len,
                      uint32_t *scratch, size_t scratch_words);
int fl_cipher_decrypt(uint8_t *out, const uint8_t *in, size_t len,
                      const uint8_t *seed, size_t seed_len,
                      uint32_t *scratch, size_t scratch_words,
                      uint8_t *work, size_t work_len);

/* Buffer helpers. */
int fl_xor(uint8_t *out, const uint8_t *a, const uint8_t *b, size_t len);
int fl_memeq_ct(const uint8_t *a, const uint8_t *b, size_t len);

/* Feature hashing: sign of integer random projections, packed MSB first. */
int fl_simhash_i16(uint8_t *out, size_t out_len, const int16_t *v, size_t dim,
                   const int8_t *proj, size_t n_bits);
int fl_hamming(size_t *dist, const uint8_t *a, const uint8_t *b, size_t len);
/* CDEF-END */

#endif
