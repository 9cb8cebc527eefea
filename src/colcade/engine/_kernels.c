/*
 * colcade._kernels: the two hot loops of the cascade, over ragged candidate sets.
 *
 *   maxsim_f16(q, tokens, offsets, cand, out, nq, d)
 *       q       float32 [nq, d]      query token vectors
 *       tokens  float16 [T, d]       passage token vectors of one segment (viewed as uint16)
 *       offsets int64   [n + 1]      passage i owns tokens[offsets[i]:offsets[i+1]]
 *       cand    int64   [m]          passages to score (indices into offsets)
 *       out     float32 [m]          out[c] = sum_i max_j q_i . tokens_j
 *
 *   maxsim_hamming(qbits, bits, offsets, cand, out, nq, nbytes, d)
 *       qbits   uint8 [nq, nbytes]   np.packbits(q > 0, axis=1)
 *       bits    uint8 [T, nbytes]    np.packbits(tokens > 0, axis=1)
 *       out     int32 [m]            out[c] = sum_i max_j (d - hamming(q_i, bits_j))
 *
 *   maxsim_residual(q, codes, packed, centroids, lut, offsets, cand, out, nq, d, nbytes, per_byte, unit)
 *       the float MaxSim of maxsim_f16 over compressed tokens (codec.py): token j reads back as
 *       centroids[codes[j]] + lut[p][packed[j][p]] (per_byte dims for each byte p)
 *
 *   maxsim_mixed(q, codes, packed, centroids, table, width, offsets, cand, out, nq, d, nbytes, unit)
 *       the same for a rotated codec: dimension k holds width[k] (0, 1, 2 or 4) bits, packed in
 *       order, high bits first; it reads back as centroids[codes[j]][k] + table[bucket][k]
 *       (q and centroids already rotated: the kernel never sees the rotation)
 *
 *   maxsim_codes(ct, codes, offsets, cand, out, nq, k)
 *       ct      float32 [k, nq]      centroid-query scores, transposed (PLAID's centroid interaction)
 *       out     float32 [m]          out[c] = sum_i max_j ct[codes_j][i]
 *
 * All release the GIL, so batches of queries run in parallel from Python threads.
 * The AVX2 and AVX-512 code is compiled with target attributes and chosen at run time,
 * so one build runs on any x86-64 CPU (and the scalar code elsewhere).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define COLCADE_X86 1
#endif

#define LANES 32 /* query tokens handled per pass */

static int use_avx2 = 0, use_avx512 = 0;

static void *alloc64(size_t bytes) {
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63; /* AVX-512 aligned loads need 64 */
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0) return NULL;
    return p;
}

/* ---------------------------------------------------------------- float16 */

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, f;
    if (exp == 0) {
        if (mant == 0) {
            f = sign;
        } else { /* subnormal: renormalize */
            exp = 113;
            while (!(mant & 0x400)) { mant <<= 1; exp--; }
            f = sign | (exp << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        f = sign | 0x7f800000u | (mant << 13);
    } else {
        f = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float out;
    memcpy(&out, &f, sizeof out);
    return out;
}

/* Passage tokens are widened to float32 a block of rows at a time, just before use, so the
 * block stays in L1; a short last block repeats the last row (which cannot change a max). */
static void widen_scalar(const uint16_t *src, int nt, int d, int padded, float *buf) {
    for (int j = 0; j < padded; j++) {
        const uint16_t *row = src + (size_t)(j < nt ? j : nt - 1) * d;
        for (int k = 0; k < d; k++) buf[(size_t)j * d + k] = half_to_float(row[k]);
    }
}

#ifdef COLCADE_X86
__attribute__((target("avx2,fma,f16c")))
static void widen_avx2(const uint16_t *src, int nt, int d, int padded, float *buf) {
    for (int j = 0; j < padded; j++) {
        const uint16_t *row = src + (size_t)(j < nt ? j : nt - 1) * d;
        float *dst = buf + (size_t)j * d;
        int k = 0;
        for (; k + 8 <= d; k += 8)
            _mm256_storeu_ps(dst + k, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + k))));
        for (; k < d; k++) dst[k] = _cvtsh_ss(row[k]);
    }
}

__attribute__((target("avx512f,f16c")))
static void widen_avx512(const uint16_t *src, int nt, int d, int padded, float *buf) {
    for (int j = 0; j < padded; j++) {
        const uint16_t *row = src + (size_t)(j < nt ? j : nt - 1) * d;
        float *dst = buf + (size_t)j * d;
        int k = 0;
        for (; k + 16 <= d; k += 16)
            _mm512_storeu_ps(dst + k, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + k))));
        for (; k < d; k++) dst[k] = _cvtsh_ss(row[k]);
    }
}

/* Where a float kernel reads passage rows from: float16 vectors, or residual codes decoded on
 * the fly. fill(s, row, nt, d, padded, buf) writes rows row..row+padded-1 as float32 into buf
 * (rows past nt repeat the last one, which cannot change a max). */
typedef struct Source Source;
struct Source {
    void (*fill)(const Source *s, int64_t row, int nt, int d, int padded, float *buf);
    const uint16_t *tokens;                                 /* float16 rows */
    const uint16_t *codes; const uint8_t *packed;           /* compressed rows */
    const float *centroids, *lut; int nbytes, per_byte;
    const float *by_bucket;                                 /* 2 bits: [4][d], bucket b's value of each dimension */
    int unit;                                               /* put decoded rows back on the unit sphere */
    /* Mixed widths (a rotated codec): by_bucket is [16][d]; dimension k holds width[k] bits at
     * bit pos[k] % 8 of byte pos[k] / 8 (counted from the low bit); on AVX-512, block i (16
     * dimensions) holds block_width[i] bits each, from byte block_byte[i]. */
    const uint8_t *width; const int32_t *pos; const uint8_t *block_width; const int32_t *block_byte;
};

/* Scale a decoded row to unit length (a unit codec's vectors were unit length before coding). */
static void to_unit(float *restrict v, int d) {
    float ss = 0.0f;
    for (int k = 0; k < d; k++) ss += v[k] * v[k];
    if (ss > 0.0f) {
        const float inv = 1.0f / sqrtf(ss);
        for (int k = 0; k < d; k++) v[k] *= inv;
    }
}

/* A token's centroid is a random row of a table of megabytes (16,384 x 128 floats: 8 MB): fetch
 * the one four tokens ahead while this one decodes, instead of waiting on each in turn (1.25x on
 * the rerank of 400 passages at a million). */
static inline void prefetch_centroid(const Source *s, int64_t row, int j, int d) {
    const char *next = (const char *)(s->centroids + (size_t)s->codes[row + j] * d);
    for (int k = 0; k < d * (int)sizeof(float); k += 64) __builtin_prefetch(next + k);
}

static void fill_f16(const Source *s, int64_t row, int nt, int d, int padded, float *buf) {
    const uint16_t *src = s->tokens + (size_t)row * d;
#ifdef COLCADE_X86
    if (use_avx512) { widen_avx512(src, nt, d, padded, buf); return; }
    if (use_avx2) { widen_avx2(src, nt, d, padded, buf); return; }
#endif
    widen_scalar(src, nt, d, padded, buf);
}

static void fill_residual(const Source *s, int64_t row, int nt, int d, int padded, float *buf) {
    const int nbytes = s->nbytes, per_byte = s->per_byte;
    for (int j = 0; j < padded; j++) {
        const int64_t r = row + (j < nt ? j : nt - 1);
        const float *restrict c = s->centroids + (size_t)s->codes[r] * d;
        prefetch_centroid(s, row, j + 4 < nt ? j + 4 : nt - 1, d);
        const uint8_t *restrict p = s->packed + (size_t)r * nbytes;
        const float *restrict lut = s->lut;
        float *restrict dst = buf + (size_t)j * d;
        if (per_byte == 4) { /* 2 bits a dimension: the default, unrolled */
            for (int b = 0; b < nbytes; b++) {
                const float *restrict l = lut + ((size_t)b * 256 + p[b]) * 4;
                for (int t = 0; t < 4; t++) dst[4 * b + t] = c[4 * b + t] + l[t];
            }
        } else {
            for (int b = 0; b < nbytes; b++) {
                const float *restrict l = lut + ((size_t)b * 256 + p[b]) * per_byte;
                for (int t = 0; t < per_byte; t++) dst[b * per_byte + t] = c[b * per_byte + t] + l[t];
            }
        }
        if (s->unit) to_unit(dst, d);
    }
}

/* Mixed widths, one dimension at a time: the portable decoder. */
static void fill_mixed(const Source *s, int64_t row, int nt, int d, int padded, float *buf) {
    for (int j = 0; j < padded; j++) {
        const int64_t r = row + (j < nt ? j : nt - 1);
        const float *restrict c = s->centroids + (size_t)s->codes[r] * d;
        prefetch_centroid(s, row, j + 4 < nt ? j + 4 : nt - 1, d);
        const uint8_t *restrict p = s->packed + (size_t)r * s->nbytes;
        float *restrict dst = buf + (size_t)j * d;
        for (int k = 0; k < d; k++) { /* a dimension of 0 bits owns no byte: nothing to read */
            const int bucket = s->width[k] ? (p[s->pos[k] >> 3] >> (s->pos[k] & 7)) & ((1 << s->width[k]) - 1) : 0;
            dst[k] = c[k] + s->by_bucket[(size_t)bucket * d + k];
        }
        if (s->unit) to_unit(dst, d);
    }
}

#ifdef COLCADE_X86
/* 2 bits a dimension with AVX2: two bytes (8 dimensions) a step, their two 4-float table rows
 * joined into one register and added to the centroid's 8 floats. */
__attribute__((target("avx2,fma")))
static void fill_residual2_avx2(const Source *s, int64_t row, int nt, int d, int padded, float *buf) {
    const int nbytes = s->nbytes;
    for (int j = 0; j < padded; j++) {
        const int64_t r = row + (j < nt ? j : nt - 1);
        const float *c = s->centroids + (size_t)s->codes[r] * d;
        prefetch_centroid(s, row, j + 4 < nt ? j + 4 : nt - 1, d);
        const uint8_t *p = s->packed + (size_t)r * nbytes;
        float *dst = buf + (size_t)j * d;
        __m256 ss = _mm256_setzero_ps();
        int b = 0;
        for (; b + 2 <= nbytes; b += 2) {
            const __m128 lo = _mm_loadu_ps(s->lut + ((size_t)b * 256 + p[b]) * 4);
            const __m128 hi = _mm_loadu_ps(s->lut + ((size_t)(b + 1) * 256 + p[b + 1]) * 4);
            const __m256 l = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
            const __m256 v = _mm256_add_ps(_mm256_loadu_ps(c + 4 * b), l);
            ss = _mm256_fmadd_ps(v, v, ss);
            _mm256_storeu_ps(dst + 4 * b, v);
        }
        float tail = 0.0f;
        for (; b < nbytes; b++)
            for (int t = 0; t < 4; t++) {
                dst[4 * b + t] = c[4 * b + t] + s->lut[((size_t)b * 256 + p[b]) * 4 + t];
                tail += dst[4 * b + t] * dst[4 * b + t];
            }
        if (s->unit) { /* the sum of squares came with the decode: one more pass to scale */
            float lanes[8];
            _mm256_storeu_ps(lanes, ss);
            const float total = lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7] + tail;
            if (total > 0.0f) {
                const __m256 inv = _mm256_set1_ps(1.0f / sqrtf(total));
                int k = 0;
                for (; k + 8 <= d; k += 8) _mm256_storeu_ps(dst + k, _mm256_mul_ps(_mm256_loadu_ps(dst + k), inv));
                for (; k < d; k++) dst[k] *= 1.0f / sqrtf(total);
            }
        }
    }
}

/* 2 bits a dimension with AVX-512: 16 dimensions (4 bytes) a step, with no table lookup.
 * Each lane tests its two bits in the broadcast word and picks its bucket's value from four
 * registers of per-dimension values (by_bucket: 6 KB at d=384, held in L1), where the byte
 * table (384 KB) was read from L2 one byte at a time: the whole kernel 1.3-1.5x faster at
 * d=384. The same with AVX2's compares and blends was not faster than its table (1.02-1.05x). */
__attribute__((target("avx512f")))
static void fill_residual2_avx512(const Source *s, int64_t row, int nt, int d, int padded, float *buf) {
    const int nbytes = s->nbytes, d16 = d / 16 * 16;
    /* Lane i holds dimension 4*(i/4) + i%4 of its 4 bytes: byte i/4, bits 7-2j (high) and 6-2j (low). */
    const __m512i lo_bit = _mm512_setr_epi32(1 << 6, 1 << 4, 1 << 2, 1 << 0, 1 << 14, 1 << 12, 1 << 10, 1 << 8,
                                             1 << 22, 1 << 20, 1 << 18, 1 << 16, 1 << 30, 1 << 28, 1 << 26, 1 << 24);
    const __m512i hi_bit = _mm512_slli_epi32(lo_bit, 1);
    const float *w0 = s->by_bucket, *w1 = w0 + d, *w2 = w1 + d, *w3 = w2 + d;
    for (int j = 0; j < padded; j++) {
        const int64_t r = row + (j < nt ? j : nt - 1);
        const float *c = s->centroids + (size_t)s->codes[r] * d;
        prefetch_centroid(s, row, j + 4 < nt ? j + 4 : nt - 1, d);
        const uint8_t *p = s->packed + (size_t)r * nbytes;
        float *dst = buf + (size_t)j * d;
        __m512 ss = _mm512_setzero_ps();
        for (int k = 0; k < d16; k += 16) {
            uint32_t word;
            memcpy(&word, p + k / 4, 4);
            const __m512i x = _mm512_set1_epi32((int)word);
            const __mmask16 lo = _mm512_test_epi32_mask(x, lo_bit), hi = _mm512_test_epi32_mask(x, hi_bit);
            const __m512 a = _mm512_mask_blend_ps(lo, _mm512_loadu_ps(w0 + k), _mm512_loadu_ps(w1 + k));
            const __m512 b = _mm512_mask_blend_ps(lo, _mm512_loadu_ps(w2 + k), _mm512_loadu_ps(w3 + k));
            const __m512 v = _mm512_add_ps(_mm512_loadu_ps(c + k), _mm512_mask_blend_ps(hi, a, b));
            ss = _mm512_fmadd_ps(v, v, ss);
            _mm512_storeu_ps(dst + k, v);
        }
        float total = _mm512_reduce_add_ps(ss);
        for (int k = d16; k < d; k++) {
            const int bucket = (p[k / 4] >> (6 - 2 * (k % 4))) & 3;
            dst[k] = c[k] + s->by_bucket[(size_t)bucket * d + k];
            total += dst[k] * dst[k];
        }
        if (s->unit && total > 0.0f) {
            const float inv = 1.0f / sqrtf(total);
            const __m512 vinv = _mm512_set1_ps(inv);
            int k = 0;
            for (; k < d16; k += 16) _mm512_storeu_ps(dst + k, _mm512_mul_ps(_mm512_loadu_ps(dst + k), vinv));
            for (; k < d; k++) dst[k] *= inv;
        }
    }
}

/* Mixed widths with AVX2: each block of 16 dimensions in two halves of 8, as on AVX-512 below
 * (blends for 1 and 2 bits, a gather for 4), so AVX2 machines keep a vector decoder. */
__attribute__((target("avx2,fma")))
static void fill_mixed_avx2(const Source *s, int64_t row, int nt, int d, int padded, float *buf) {
    /* Lane i of half h: 1 bit at word bit 8h + 7 - i; 2 bits (low bit) at 16h + 8(i/4) + 6 - 2(i%4). */
    const __m256i bit1 = _mm256_setr_epi32(1 << 7, 1 << 6, 1 << 5, 1 << 4, 1 << 3, 1 << 2, 1 << 1, 1 << 0);
    const __m256i lo_bit = _mm256_setr_epi32(1 << 6, 1 << 4, 1 << 2, 1 << 0, 1 << 14, 1 << 12, 1 << 10, 1 << 8);
    const __m256i hi_bit = _mm256_slli_epi32(lo_bit, 1);
    const __m256i nibble = _mm256_setr_epi32(4, 0, 12, 8, 20, 16, 28, 24); /* 4 bits: high nibble first */
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i stride = _mm256_set1_epi32(d), low4 = _mm256_set1_epi32(15);
    const float *w0 = s->by_bucket, *w1 = w0 + d, *w2 = w1 + d, *w3 = w2 + d;
#define TEST(x, bit) _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(x, bit), bit))
    for (int j = 0; j < padded; j++) {
        const int64_t r = row + (j < nt ? j : nt - 1);
        const float *c = s->centroids + (size_t)s->codes[r] * d;
        prefetch_centroid(s, row, j + 4 < nt ? j + 4 : nt - 1, d);
        const uint8_t *p = s->packed + (size_t)r * s->nbytes;
        float *dst = buf + (size_t)j * d;
        __m256 ss = _mm256_setzero_ps();
        for (int i = 0, k = 0; k < d; i++) {
            const uint8_t *b = p + s->block_byte[i];
            const int w = s->block_width[i];
            for (int h = 0; h < 2; h++, k += 8) {
                __m256 res;
                if (w == 0) {
                    res = _mm256_loadu_ps(w0 + k);
                } else if (w == 1) {
                    const __m256i x = _mm256_set1_epi32(b[h]);
                    res = _mm256_blendv_ps(_mm256_loadu_ps(w0 + k), _mm256_loadu_ps(w1 + k), TEST(x, bit1));
                } else if (w == 2) {
                    uint16_t word;
                    memcpy(&word, b + 2 * h, 2);
                    const __m256i x = _mm256_set1_epi32(word);
                    const __m256 lo = TEST(x, lo_bit), hi = TEST(x, hi_bit);
                    const __m256 a = _mm256_blendv_ps(_mm256_loadu_ps(w0 + k), _mm256_loadu_ps(w1 + k), lo);
                    const __m256 e = _mm256_blendv_ps(_mm256_loadu_ps(w2 + k), _mm256_loadu_ps(w3 + k), lo);
                    res = _mm256_blendv_ps(a, e, hi);
                } else {
                    uint32_t word;
                    memcpy(&word, b + 4 * h, 4);
                    const __m256i bucket = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)word), nibble), low4);
                    const __m256i at = _mm256_add_epi32(_mm256_mullo_epi32(bucket, stride), _mm256_add_epi32(lane, _mm256_set1_epi32(k)));
                    res = _mm256_i32gather_ps(w0, at, 4);
                }
                const __m256 v = _mm256_add_ps(_mm256_loadu_ps(c + k), res);
                ss = _mm256_fmadd_ps(v, v, ss);
                _mm256_storeu_ps(dst + k, v);
            }
        }
#undef TEST
        if (s->unit) {
            float lanes[8];
            _mm256_storeu_ps(lanes, ss);
            const float total = lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
            if (total > 0.0f) {
                const __m256 inv = _mm256_set1_ps(1.0f / sqrtf(total));
                for (int k = 0; k < d; k += 8) _mm256_storeu_ps(dst + k, _mm256_mul_ps(_mm256_loadu_ps(dst + k), inv));
            }
        }
    }
}

/* Mixed widths with AVX-512, 16 dimensions (one block, one width) a step: 0 bits read bucket
 * 0's values, 1 and 2 bits pick among 2 or 4 registers by mask blends as above, 4 bits gather
 * from the [16][d] table (only the few highest-variance blocks get 4). */
__attribute__((target("avx512f")))
static void fill_mixed_avx512(const Source *s, int64_t row, int nt, int d, int padded, float *buf) {
    const __m512i bit1 = _mm512_setr_epi32(1 << 7, 1 << 6, 1 << 5, 1 << 4, 1 << 3, 1 << 2, 1 << 1, 1 << 0,
                                           1 << 15, 1 << 14, 1 << 13, 1 << 12, 1 << 11, 1 << 10, 1 << 9, 1 << 8);
    const __m512i lo_bit = _mm512_setr_epi32(1 << 6, 1 << 4, 1 << 2, 1 << 0, 1 << 14, 1 << 12, 1 << 10, 1 << 8,
                                             1 << 22, 1 << 20, 1 << 18, 1 << 16, 1 << 30, 1 << 28, 1 << 26, 1 << 24);
    const __m512i hi_bit = _mm512_slli_epi32(lo_bit, 1);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i stride = _mm512_set1_epi32(d);
    const __m128i low4 = _mm_set1_epi8(0x0f);
    const float *w0 = s->by_bucket, *w1 = w0 + d, *w2 = w1 + d, *w3 = w2 + d;
    for (int j = 0; j < padded; j++) {
        const int64_t r = row + (j < nt ? j : nt - 1);
        const float *c = s->centroids + (size_t)s->codes[r] * d;
        prefetch_centroid(s, row, j + 4 < nt ? j + 4 : nt - 1, d);
        const uint8_t *p = s->packed + (size_t)r * s->nbytes;
        float *dst = buf + (size_t)j * d;
        __m512 ss = _mm512_setzero_ps();
        for (int i = 0, k = 0; k < d; i++, k += 16) {
            const uint8_t *b = p + s->block_byte[i];
            __m512 res;
            switch (s->block_width[i]) {
                case 0: res = _mm512_loadu_ps(w0 + k); break;
                case 1: {
                    uint16_t word;
                    memcpy(&word, b, 2);
                    const __mmask16 one = _mm512_test_epi32_mask(_mm512_set1_epi32(word), bit1);
                    res = _mm512_mask_blend_ps(one, _mm512_loadu_ps(w0 + k), _mm512_loadu_ps(w1 + k));
                    break;
                }
                case 2: {
                    uint32_t word;
                    memcpy(&word, b, 4);
                    const __m512i x = _mm512_set1_epi32((int)word);
                    const __mmask16 lo = _mm512_test_epi32_mask(x, lo_bit), hi = _mm512_test_epi32_mask(x, hi_bit);
                    const __m512 a = _mm512_mask_blend_ps(lo, _mm512_loadu_ps(w0 + k), _mm512_loadu_ps(w1 + k));
                    const __m512 e = _mm512_mask_blend_ps(lo, _mm512_loadu_ps(w2 + k), _mm512_loadu_ps(w3 + k));
                    res = _mm512_mask_blend_ps(hi, a, e);
                    break;
                }
                default: { /* 4 bits: byte i/2 of the block, its high nibble for even lanes */
                    const __m128i x = _mm_loadl_epi64((const __m128i *)b);
                    const __m128i hi = _mm_and_si128(_mm_srli_epi16(x, 4), low4), lo = _mm_and_si128(x, low4);
                    const __m512i bucket = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(hi, lo));
                    const __m512i at = _mm512_add_epi32(_mm512_mullo_epi32(bucket, stride), _mm512_add_epi32(lane, _mm512_set1_epi32(k)));
                    res = _mm512_i32gather_ps(at, w0, 4);
                    break;
                }
            }
            const __m512 v = _mm512_add_ps(_mm512_loadu_ps(c + k), res);
            ss = _mm512_fmadd_ps(v, v, ss);
            _mm512_storeu_ps(dst + k, v);
        }
        const float total = _mm512_reduce_add_ps(ss);
        if (s->unit && total > 0.0f) {
            const __m512 inv = _mm512_set1_ps(1.0f / sqrtf(total));
            for (int k = 0; k < d; k += 16) _mm512_storeu_ps(dst + k, _mm512_mul_ps(_mm512_loadu_ps(dst + k), inv));
        }
    }
}
#endif

/* Register-blocked MaxSim of one passage against up to 8*NQR query tokens.
 * qt is the query chunk transposed, [d][8*NQR]; TB passage tokens are processed at once so
 * that TB*NQR (= 8 or 9) independent FMA chains hide the FMA latency. The similarity matrix
 * is never stored: each block folds straight into the running max `mx`. Widening the whole
 * passage up front instead cost 25% at 120 x 128 (61 KB, read back from L2). */
#define DEFINE_DOC_MAX(NQR, TB)                                                              \
    __attribute__((target("avx2,fma,f16c"))) static void doc_max_##NQR(                      \
        const float *qt, int d, const Source *s, int64_t start, int nt, float *rows, float *mx) { \
        __m256 m[NQR];                                                                       \
        for (int r = 0; r < NQR; r++) m[r] = _mm256_set1_ps(-INFINITY);                     \
        for (int j = 0; j < nt; j += TB) {                                                   \
            __m256 acc[TB][NQR];                                                             \
            for (int t = 0; t < TB; t++)                                                     \
                for (int r = 0; r < NQR; r++) acc[t][r] = _mm256_setzero_ps();              \
            s->fill(s, start + j, nt - j, d, TB, rows);                                      \
            for (int k = 0; k < d; k++) {                                                    \
                __m256 q[NQR];                                                               \
                for (int r = 0; r < NQR; r++) {                                              \
                    q[r] = _mm256_load_ps(qt + (size_t)k * 8 * NQR + 8 * r);                 \
                    __asm__("" : "+x"(q[r])); /* keep in a register: reloads starve the FMAs */ \
                }                                                                            \
                for (int t = 0; t < TB; t++) {                                               \
                    __m256 b = _mm256_broadcast_ss(rows + (size_t)t * d + k);               \
                    for (int r = 0; r < NQR; r++) acc[t][r] = _mm256_fmadd_ps(b, q[r], acc[t][r]); \
                }                                                                            \
            }                                                                                \
            for (int t = 0; t < TB; t++)                                                     \
                for (int r = 0; r < NQR; r++) m[r] = _mm256_max_ps(m[r], acc[t][r]);        \
        }                                                                                    \
        for (int r = 0; r < NQR; r++) _mm256_store_ps(mx + 8 * r, m[r]);                    \
    }

DEFINE_DOC_MAX(1, 8)
DEFINE_DOC_MAX(2, 4)
DEFINE_DOC_MAX(3, 3)
DEFINE_DOC_MAX(4, 2)

/* The same with 16-float registers. 24 accumulators for 32 query tokens (12 rows beat 8 by
 * 15%); 16 for 16 query tokens (24 rows lost 25% there). */
#define DEFINE_DOC_MAX512(NQR, TB)                                                           \
    __attribute__((target("avx512f,f16c"))) static void doc_max512_##NQR(                         \
        const float *qt, int d, const Source *s, int64_t start, int nt, float *rows, float *mx) { \
        __m512 m[NQR];                                                                       \
        for (int r = 0; r < NQR; r++) m[r] = _mm512_set1_ps(-INFINITY);                     \
        for (int j = 0; j < nt; j += TB) {                                                   \
            __m512 acc[TB][NQR];                                                             \
            for (int t = 0; t < TB; t++)                                                     \
                for (int r = 0; r < NQR; r++) acc[t][r] = _mm512_setzero_ps();              \
            s->fill(s, start + j, nt - j, d, TB, rows);                                      \
            for (int k = 0; k < d; k++) {                                                    \
                __m512 q[NQR];                                                               \
                for (int r = 0; r < NQR; r++) {                                              \
                    q[r] = _mm512_load_ps(qt + (size_t)k * 16 * NQR + 16 * r);               \
                    __asm__("" : "+v"(q[r]));                                                \
                }                                                                            \
                for (int t = 0; t < TB; t++) {                                               \
                    __m512 b = _mm512_set1_ps(rows[(size_t)t * d + k]);                      \
                    for (int r = 0; r < NQR; r++) acc[t][r] = _mm512_fmadd_ps(b, q[r], acc[t][r]); \
                }                                                                            \
            }                                                                                \
            for (int t = 0; t < TB; t++)                                                     \
                for (int r = 0; r < NQR; r++) m[r] = _mm512_max_ps(m[r], acc[t][r]);        \
        }                                                                                    \
        for (int r = 0; r < NQR; r++) _mm512_store_ps(mx + 16 * r, m[r]);                   \
    }

DEFINE_DOC_MAX512(1, 16)
DEFINE_DOC_MAX512(2, 12)

#endif

static void doc_max_scalar(const float *qt, int lanes, int d, const float *buf, int nt, float *mx) {
    for (int i = 0; i < lanes; i++) mx[i] = -INFINITY;
    for (int j = 0; j < nt; j++) {
        const float *row = buf + (size_t)j * d;
        for (int i = 0; i < lanes; i++) {
            float s = 0.f;
            for (int k = 0; k < d; k++) s += qt[(size_t)k * lanes + i] * row[k];
            if (s > mx[i]) mx[i] = s;
        }
    }
}

/* Query tokens are taken LANES at a time and padded to whole registers. Up to 8 go to the
 * AVX2 code even on AVX-512 CPUs: half-empty 16-float registers were 35% slower there. */
static int chunk_lanes(int n) {
    const int reg = use_avx512 && n > 8 ? 16 : 8;
    return (n + reg - 1) / reg * reg;
}

typedef struct {
    const float *q; Source src; const int64_t *offsets; const int64_t *cand;
    float *out; Py_ssize_t m; int nq, d;
} FloatJob;

static int run_maxsim(const FloatJob *job) {
    const int d = job->d, nq = job->nq, nchunks = (nq + LANES - 1) / LANES;
    int64_t longest = 1;
    for (Py_ssize_t c = 0; c < job->m; c++) {
        int64_t len = job->offsets[job->cand[c] + 1] - job->offsets[job->cand[c]];
        if (len > longest) longest = len;
    }
    /* Scalar code widens the whole passage; SIMD code one block (at most 16 rows). */
    const size_t buf_rows = use_avx2 ? 16 : (size_t)longest;
    float *qt = alloc64(sizeof(float) * (size_t)nchunks * d * LANES);
    float *buf = alloc64(sizeof(float) * buf_rows * d);
    float *mx = alloc64(sizeof(float) * LANES);
    if (!qt || !buf || !mx) { free(qt); free(buf); free(mx); return -1; }

    /* Transpose each query chunk to [d][lanes], zero-padding the unused lanes. */
    for (int ch = 0; ch < nchunks; ch++) {
        const int n = nq - ch * LANES < LANES ? nq - ch * LANES : LANES, lanes = chunk_lanes(n);
        float *dst = qt + (size_t)ch * d * LANES;
        for (int k = 0; k < d; k++)
            for (int i = 0; i < lanes; i++)
                dst[(size_t)k * lanes + i] = i < n ? job->q[(size_t)(ch * LANES + i) * d + k] : 0.f;
    }

    for (Py_ssize_t c = 0; c < job->m; c++) {
        const int64_t start = job->offsets[job->cand[c]];
        const int nt = (int)(job->offsets[job->cand[c] + 1] - start);
        const Source *src = &job->src;
        if (!use_avx2) src->fill(src, start, nt, d, nt, buf);
        float score = 0.f;
        for (int ch = 0; ch < nchunks; ch++) {
            const int n = nq - ch * LANES < LANES ? nq - ch * LANES : LANES, lanes = chunk_lanes(n);
            const float *qc = qt + (size_t)ch * d * LANES;
#ifdef COLCADE_X86
            if (use_avx512 && lanes > 8) {
                if (lanes <= 16) doc_max512_1(qc, d, src, start, nt, buf, mx);
                else doc_max512_2(qc, d, src, start, nt, buf, mx);
            } else if (use_avx2) {
                switch (lanes / 8) {
                    case 1: doc_max_1(qc, d, src, start, nt, buf, mx); break;
                    case 2: doc_max_2(qc, d, src, start, nt, buf, mx); break;
                    case 3: doc_max_3(qc, d, src, start, nt, buf, mx); break;
                    default: doc_max_4(qc, d, src, start, nt, buf, mx); break;
                }
            } else
#endif
                doc_max_scalar(qc, lanes, d, buf, nt, mx);
            for (int i = 0; i < n; i++) score += mx[i];
        }
        job->out[c] = score;
    }
    free(qt); free(buf); free(mx);
    return 0;
}

/* ---------------------------------------------------------------- Hamming */

/* Lookup tables: for byte position p and byte value b, row (p, b) holds the 32 lanes
 * popcount(qbits[i][p] ^ b). A passage token then costs nbytes row loads and byte adds
 * for all 32 query tokens at once, instead of 32 xor-popcounts. */
static void build_tables(const uint8_t *qbits, int n, int nbytes, uint8_t *table) {
    static uint8_t pop[256];
    if (!pop[255]) for (int b = 0; b < 256; b++) pop[b] = (uint8_t)__builtin_popcount(b);
    for (int p = 0; p < nbytes; p++)
        for (int b = 0; b < 256; b++) {
            uint8_t *row = table + ((size_t)p * 256 + b) * LANES;
            for (int i = 0; i < LANES; i++) row[i] = i < n ? pop[qbits[(size_t)i * nbytes + p] ^ b] : 0;
        }
}

/* A byte lane holds at most 31 positions * 8 bits = 248 without overflow. */
#define BYTE_CHUNK 31

static void doc_min_scalar(const uint8_t *table, int nbytes, const uint8_t *bits, int nt, uint16_t *mn) {
    for (int i = 0; i < LANES; i++) mn[i] = 0xffff;
    for (int j = 0; j < nt; j++) {
        const uint8_t *code = bits + (size_t)j * nbytes;
        uint16_t acc[LANES] = {0};
        for (int p = 0; p < nbytes; p++) {
            const uint8_t *row = table + ((size_t)p * 256 + code[p]) * LANES;
            for (int i = 0; i < LANES; i++) acc[i] += row[i];
        }
        for (int i = 0; i < LANES; i++) if (acc[i] < mn[i]) mn[i] = acc[i];
    }
}

#ifdef COLCADE_X86
#define ROW(p, b) _mm256_load_si256((const __m256i *)(table + ((size_t)(p) * 256 + (b)) * LANES))

/* nbytes <= 31: distances fit a byte; the common d = 128 case gets a fully unrolled loop. */
__attribute__((target("avx2"))) static inline void doc_min_u8_body(
    const uint8_t *table, int nbytes, const uint8_t *bits, int nt, uint16_t *mn) {
    __m256i m = _mm256_set1_epi8((char)0xff);
    for (int j = 0; j < nt; j++) {
        const uint8_t *code = bits + (size_t)j * nbytes;
        __m256i a0 = ROW(0, code[0]), a1 = _mm256_setzero_si256();
        int p = 1;
        for (; p + 1 < nbytes; p += 2) {
            a0 = _mm256_add_epi8(a0, ROW(p, code[p]));
            a1 = _mm256_add_epi8(a1, ROW(p + 1, code[p + 1]));
        }
        if (p < nbytes) a0 = _mm256_add_epi8(a0, ROW(p, code[p]));
        m = _mm256_min_epu8(m, _mm256_add_epi8(a0, a1));
    }
    uint8_t tmp[LANES];
    _mm256_storeu_si256((__m256i *)tmp, m);
    for (int i = 0; i < LANES; i++) mn[i] = tmp[i];
}

__attribute__((target("avx2"))) static void doc_min_u8_16(
    const uint8_t *table, const uint8_t *bits, int nt, uint16_t *mn) {
    doc_min_u8_body(table, 16, bits, nt, mn);
}

__attribute__((target("avx2"))) static void doc_min_u8(
    const uint8_t *table, int nbytes, const uint8_t *bits, int nt, uint16_t *mn) {
    doc_min_u8_body(table, nbytes, bits, nt, mn);
}

/* Wider codes: add bytes in chunks of 31 positions, then widen to 16-bit lanes. */
__attribute__((target("avx2"))) static void doc_min_u16(
    const uint8_t *table, int nbytes, const uint8_t *bits, int nt, uint16_t *mn) {
    __m256i lo_min = _mm256_set1_epi16((short)0xffff), hi_min = lo_min;
    for (int j = 0; j < nt; j++) {
        const uint8_t *code = bits + (size_t)j * nbytes;
        __m256i lo = _mm256_setzero_si256(), hi = lo;
        for (int p0 = 0; p0 < nbytes; p0 += BYTE_CHUNK) {
            int end = p0 + BYTE_CHUNK < nbytes ? p0 + BYTE_CHUNK : nbytes;
            __m256i a = _mm256_setzero_si256();
            for (int p = p0; p < end; p++) a = _mm256_add_epi8(a, ROW(p, code[p]));
            lo = _mm256_add_epi16(lo, _mm256_cvtepu8_epi16(_mm256_castsi256_si128(a)));
            hi = _mm256_add_epi16(hi, _mm256_cvtepu8_epi16(_mm256_extracti128_si256(a, 1)));
        }
        lo_min = _mm256_min_epu16(lo_min, lo);
        hi_min = _mm256_min_epu16(hi_min, hi);
    }
    _mm256_storeu_si256((__m256i *)mn, lo_min);
    _mm256_storeu_si256((__m256i *)(mn + 16), hi_min);
}
#endif

typedef struct {
    const uint8_t *qbits; const uint8_t *bits; const int64_t *offsets; const int64_t *cand;
    int32_t *out; Py_ssize_t m; int nq, nbytes, d;
} HammingJob;

static int run_maxsim_hamming(const HammingJob *job) {
    const int nbytes = job->nbytes, nchunks = (job->nq + LANES - 1) / LANES;
    uint8_t *table = alloc64((size_t)nchunks * nbytes * 256 * LANES);
    if (!table) return -1;
    for (int ch = 0; ch < nchunks; ch++) {
        int n = job->nq - ch * LANES < LANES ? job->nq - ch * LANES : LANES;
        build_tables(job->qbits + (size_t)ch * LANES * nbytes, n, nbytes,
                     table + (size_t)ch * nbytes * 256 * LANES);
    }
    uint16_t mn[LANES];
    for (Py_ssize_t c = 0; c < job->m; c++) {
        const int64_t start = job->offsets[job->cand[c]];
        const int nt = (int)(job->offsets[job->cand[c] + 1] - start);
        const uint8_t *bits = job->bits + (size_t)start * nbytes;
        int32_t score = 0;
        for (int ch = 0; ch < nchunks; ch++) {
            const int n = job->nq - ch * LANES < LANES ? job->nq - ch * LANES : LANES;
            const uint8_t *t = table + (size_t)ch * nbytes * 256 * LANES;
#ifdef COLCADE_X86
            if (use_avx2 && nbytes == 16) doc_min_u8_16(t, bits, nt, mn);
            else if (use_avx2 && nbytes <= BYTE_CHUNK) doc_min_u8(t, nbytes, bits, nt, mn);
            else if (use_avx2) doc_min_u16(t, nbytes, bits, nt, mn);
            else
#endif
                doc_min_scalar(t, nbytes, bits, nt, mn);
            for (int i = 0; i < n; i++) score += job->d - (int32_t)mn[i];
        }
        job->out[c] = score;
    }
    free(table);
    return 0;
}

/* ---------------------------------------------------------------- centroid interaction */

typedef struct {
    const float *ct; const uint16_t *codes; const int64_t *offsets; const int64_t *cand;
    float *out; Py_ssize_t m; int nq, stride;
} CodesJob;

/* A passage's best table row per query token: the rows named by its codes, maxed lane by lane. */
static void codes_max_scalar(const float *ct, int stride, const uint16_t *codes, int64_t start, int64_t stop,
                             float *mx) {
    for (int64_t j = start; j < stop; j++) {
        const float *row = ct + (size_t)codes[j] * stride;
        for (int i = 0; i < stride; i++) mx[i] = row[i] > mx[i] ? row[i] : mx[i];
    }
}

#ifdef COLCADE_X86
/* The table's rows padded to 8 lanes (stride % 8 == 0, rows 32-byte aligned): whole vectors, no tail
 * (14 query tokens left a scalar tail of 6 a row in the portable loop). */
__attribute__((target("avx2")))
static void codes_max_avx2(const float *ct, int stride, const uint16_t *codes, int64_t start, int64_t stop,
                           float *mx) {
    const int nv = stride / 8;
    __m256 m0 = _mm256_load_ps(mx), m1 = nv > 1 ? _mm256_load_ps(mx + 8) : m0;
    if (nv <= 2) {
        for (int64_t j = start; j < stop; j++) {
            const float *row = ct + (size_t)codes[j] * stride;
            if (j + 8 < stop) _mm_prefetch((const char *)(ct + (size_t)codes[j + 8] * stride), _MM_HINT_T0);
            m0 = _mm256_max_ps(m0, _mm256_load_ps(row));
            if (nv > 1) m1 = _mm256_max_ps(m1, _mm256_load_ps(row + 8));
        }
        _mm256_store_ps(mx, m0);
        if (nv > 1) _mm256_store_ps(mx + 8, m1);
        return;
    }
    for (int64_t j = start; j < stop; j++) {
        const float *row = ct + (size_t)codes[j] * stride;
        for (int v = 0; v < nv; v++)
            _mm256_store_ps(mx + 8 * v, _mm256_max_ps(_mm256_load_ps(mx + 8 * v), _mm256_load_ps(row + 8 * v)));
    }
}
#endif

/* Candidates lie scattered over megabytes to gigabytes of codes: the kernel asks for the codes of
 * the one CODES_AHEAD on while it scores this one, instead of waiting on memory at each (1.26x on
 * 6,000 candidates of the 1M benchmark's index, old and new kernels side by side in one process). */
#define CODES_AHEAD 8

/* ct: [k, stride] float32, query token i in lane i < nq (stride >= nq; a multiple of 8, 32-byte
 * aligned, for the AVX2 path). */
static int run_maxsim_codes(const CodesJob *job) {
    const int nq = job->nq, stride = job->stride;
    float *mx = alloc64(sizeof(float) * (size_t)stride);
    if (!mx) return -1;
#ifdef COLCADE_X86
    const int wide = use_avx2 && stride % 8 == 0 && ((uintptr_t)job->ct & 31) == 0;
#endif
    for (Py_ssize_t c = 0; c < job->m; c++) {
        const int64_t start = job->offsets[job->cand[c]], stop = job->offsets[job->cand[c] + 1];
        if (c + CODES_AHEAD < job->m) { /* its codes arrive while these are scored */
            const int64_t next = job->cand[c + CODES_AHEAD];
            const uintptr_t from = (uintptr_t)(job->codes + job->offsets[next]), to = (uintptr_t)(job->codes + job->offsets[next + 1]);
            for (uintptr_t at = from & ~(uintptr_t)63; at < to; at += 64) __builtin_prefetch((const void *)at);
        }
        for (int i = 0; i < stride; i++) mx[i] = -INFINITY;
#ifdef COLCADE_X86
        if (wide) codes_max_avx2(job->ct, stride, job->codes, start, stop, mx);
        else
#endif
            codes_max_scalar(job->ct, stride, job->codes, start, stop, mx);
        float score = 0.f;
        for (int i = 0; i < nq; i++) score += mx[i];
        job->out[c] = score;
    }
    free(mx);
    return 0;
}

/* Every code a candidate reads must name a centroid: a damaged file cannot make us read past the table. */
static int check_codes(const uint16_t *codes, const int64_t *offsets, const int64_t *cand, Py_ssize_t m, int k) {
    for (Py_ssize_t c = 0; c < m; c++)
        for (int64_t j = offsets[cand[c]]; j < offsets[cand[c] + 1]; j++)
            if (codes[j] >= k) {
                PyErr_Format(PyExc_ValueError, "code %d at row %lld is past the %d centroids", (int)codes[j],
                             (long long)j, k);
                return -1;
            }
    return 0;
}

/* Posting lists cut into blocks of 65,536 passages (postings.py): list c's passages in block b are
 * ids[starts[c * nb + b]:starts[c * nb + b + 1]], each an offset into the block (uint16). A query
 * reads the lists a block at a time, so a block's scores stay in cache and an id costs a load and
 * a max: Elias-Fano ids with a stamp a passage to count each token once took ~7 ns an entry,
 * this ~1.5 (1M passages, 320 lists of ~8k: 19.5 -> 3.7 ms). */
#define CELL_BLOCK 65536

/* The `keep` best of m (id, score) pairs, ties to the lower id, moved to the front (in no order);
 * returns min(keep, m), or -2 when out of memory. The lists touch ~10^5-10^6 passages at a million
 * and keep ~4,000: a histogram of the scores finds the bin the cut falls in, so only that bin's
 * few are sorted. Bins are monotone in the score, so no better pair is left out. */
#define CUT_BINS 4096
typedef struct { float score; int32_t id; } Scored;

static int by_score_then_id(const void *a, const void *b) {
    const Scored *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int by_id(const void *a, const void *b) {
    const int32_t x = ((const Scored *)a)->id, y = ((const Scored *)b)->id;
    return (x > y) - (x < y);
}

static int64_t cut_best(int32_t *ids, float *scores, int64_t m, int64_t keep) {
    if (keep <= 0) return 0;
    if (keep >= m) return m;
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t t = 0; t < m; t++) {
        lo = scores[t] < lo ? scores[t] : lo;
        hi = scores[t] > hi ? scores[t] : hi;
    }
    /* In double, clamped: a spread of a few ulps must not overflow the scale. */
    const double scale = hi > lo ? (double)(CUT_BINS - 1) / ((double)hi - (double)lo) : 0.0;
    /* A compare, not fmin: fmin is a library call (NaN rules), and it took a tenth of the kernel. */
#define BIN(x) (((double)(x) - (double)lo) * scale < CUT_BINS - 1 ? (int)(((double)(x) - (double)lo) * scale) : CUT_BINS - 1)
    int64_t hist[CUT_BINS] = {0};
    for (int64_t t = 0; t < m; t++) hist[BIN(scores[t])]++;
    int cut = CUT_BINS - 1;
    int64_t above = 0; /* pairs in bins above the cut's */
    while (above + hist[cut] < keep) above += hist[cut--];
    Scored *edge = malloc(sizeof(Scored) * (size_t)hist[cut]); /* keep > 0, so the cut's bin is not empty */
    if (!edge) return -2;
    int64_t out = 0, e = 0;
    for (int64_t t = 0; t < m; t++) {
        const int bin = BIN(scores[t]);
        if (bin > cut) {
            ids[out] = ids[t];
            scores[out++] = scores[t];
        } else if (bin == cut) {
            edge[e].score = scores[t];
            edge[e++].id = ids[t];
        }
    }
#undef BIN
    qsort(edge, (size_t)e, sizeof(Scored), by_score_then_id);
    for (int64_t j = 0; out < keep; j++) {
        ids[out] = edge[j].id;
        scores[out++] = edge[j].score;
    }
    free(edge);
    return keep;
}

/* Ids ascending, scores with them; returns m, or -2 when out of memory. */
static int64_t sort_by_id(int32_t *ids, float *scores, int64_t m) {
    Scored *pairs = malloc(sizeof(Scored) * (size_t)(m ? m : 1));
    if (!pairs) return -2;
    for (int64_t t = 0; t < m; t++) {
        pairs[t].id = ids[t];
        pairs[t].score = scores[t];
    }
    qsort(pairs, (size_t)m, sizeof(Scored), by_id);
    for (int64_t t = 0; t < m; t++) {
        ids[t] = pairs[t].id;
        scores[t] = pairs[t].score;
    }
    free(pairs);
    return m;
}

/* acc += best; best = 0 (a query token's best gain a passage of the block, summed into its score).
 * The scratch comes from numpy, 16-byte aligned: unaligned loads. */
static void fold_scalar(float *restrict acc, float *restrict best) {
    for (int p = 0; p < CELL_BLOCK; p++) {
        acc[p] += best[p];
        best[p] = 0.0f;
    }
}

/* Appends the block's passages from `from` on scoring above `floor` (and allowed) to (ids, scores),
 * zeroing the block's scores; returns the new count. */
static int64_t gather_scalar(float *restrict acc, int from, int len, int64_t base, float floor,
                             const uint8_t *allowed, int32_t *ids, float *scores, int64_t m) {
    for (int p = from; p < len; p++) {
        const float v = acc[p];
        acc[p] = 0.0f;
        if (v > floor && (!allowed || allowed[base + p])) {
            ids[m] = (int32_t)(base + p);
            scores[m++] = v;
        }
    }
    memset(acc + len, 0, sizeof(float) * (size_t)(CELL_BLOCK - len)); /* a damaged id may have landed there */
    return m;
}

#ifdef COLCADE_X86
__attribute__((target("avx2")))
static void fold_avx2(float *restrict acc, float *restrict best) {
    const __m256 zero = _mm256_setzero_ps();
    for (int p = 0; p < CELL_BLOCK; p += 8) {
        _mm256_storeu_ps(acc + p, _mm256_add_ps(_mm256_loadu_ps(acc + p), _mm256_loadu_ps(best + p)));
        _mm256_storeu_ps(best + p, zero);
    }
}

/* Eight scores at a time: past the first blocks the floor is high and few pass. */
__attribute__((target("avx2")))
static int64_t gather_avx2(float *restrict acc, int len, int64_t base, float floor, const uint8_t *allowed,
                           int32_t *ids, float *scores, int64_t m) {
    const __m256 zero = _mm256_setzero_ps(), f = _mm256_set1_ps(floor);
    int p = 0;
    for (; p + 8 <= len; p += 8) {
        const __m256 v = _mm256_loadu_ps(acc + p);
        unsigned mask = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, f, _CMP_GT_OQ));
        _mm256_storeu_ps(acc + p, zero);
        if (!mask) continue;
        float lane[8];
        _mm256_storeu_ps(lane, v);
        for (; mask; mask &= mask - 1) {
            const int j = __builtin_ctz(mask);
            if (allowed && !allowed[base + p + j]) continue;
            ids[m] = (int32_t)(base + p + j);
            scores[m++] = lane[j];
        }
    }
    return gather_scalar(acc, p, len, base, floor, allowed, ids, scores, m);
}
#endif

/* Centroid interaction from posting lists (PLAID's candidate generation): passage p scores
 * sum_i max(0, max_j gains[i, j] over the cells j of query token i whose list holds p). Lists of
 * more than `limit` passages are passed over. Returns the passages scoring above 0 (and allowed),
 * ids ascending in (ids, scores): all of them (keep < 0; room for n), or the `keep` best, ties to
 * the lower id (room for min(n, 2 * keep + CELL_BLOCK)). `best` and `acc` hold CELL_BLOCK floats
 * each, zeroed; they go back zeroed. Every read is in bounds by construction: a uint16 id indexes
 * a block's scores, and the caller checked the starts of every cell given. Returns the count, or
 * -2 when out of memory. */
static int64_t run_cell_scores(const int64_t *cells, const float *gains, int nq, int c, const int64_t *starts,
                               int64_t nb, const uint16_t *lists, int64_t n, int64_t limit, const uint8_t *allowed,
                               int64_t keep, float *best, float *acc, int32_t *ids, float *scores) {
    int64_t m = 0;
    float floor = 0.0f; /* past a cut, the keep-th best: a later (higher) id must beat it, ties lose */
    for (int64_t b = 0; b < nb; b++) {
        const int64_t base = b * CELL_BLOCK;
        const int len = (int)(n - base < CELL_BLOCK ? n - base : CELL_BLOCK);
        for (int i = 0; i < nq; i++) {
            int hit = 0;
            for (int j = 0; j < c; j++) {
                const int64_t *s = starts + cells[(size_t)i * c + j] * nb;
                const float gain = gains[(size_t)i * c + j];
                if (s[nb] - s[0] > limit || !(gain > 0.0f)) continue;
                const uint16_t *id = lists + s[b], *end = lists + s[b + 1];
                hit |= id < end;
                for (; id < end; id++) best[*id] = best[*id] > gain ? best[*id] : gain;
            }
            if (!hit) continue;
#ifdef COLCADE_X86
            if (use_avx2) fold_avx2(acc, best);
            else
#endif
                fold_scalar(acc, best);
        }
#ifdef COLCADE_X86
        if (use_avx2) m = gather_avx2(acc, len, base, floor, allowed, ids, scores, m);
        else
#endif
            m = gather_scalar(acc, 0, len, base, floor, allowed, ids, scores, m);
        if (keep >= 0 && m > 2 * keep) {
            m = cut_best(ids, scores, m, keep);
            if (m < 0) return m;
            floor = INFINITY;
            for (int64_t t = 0; t < m; t++) floor = scores[t] < floor ? scores[t] : floor;
        }
    }
    if (keep < 0) return m; /* blocks come in order: the ids ascend already */
    m = cut_best(ids, scores, m, keep);
    return m < 0 ? m : sort_by_id(ids, scores, m);
}

/* ---------------------------------------------------------------- Python glue */

/* Shared checks: every candidate indexes a passage whose rows lie inside the token buffer
 * (rows of row_bytes each), and the output has room for all. Nothing is read unchecked. */
static int check_candidates(const Py_buffer *offsets, const Py_buffer *cand, const Py_buffer *out,
                            Py_ssize_t out_item, const Py_buffer *rows, Py_ssize_t row_bytes) {
    Py_ssize_t n = offsets->len / (Py_ssize_t)sizeof(int64_t) - 1;
    Py_ssize_t m = cand->len / (Py_ssize_t)sizeof(int64_t);
    int64_t n_rows = row_bytes > 0 ? (int64_t)(rows->len / row_bytes) : 0;
    if (n < 0) { PyErr_SetString(PyExc_ValueError, "offsets must have at least one entry"); return -1; }
    if (out->len < m * out_item) { PyErr_SetString(PyExc_ValueError, "out is smaller than cand"); return -1; }
    const int64_t *c = cand->buf, *off = offsets->buf;
    for (Py_ssize_t i = 0; i < m; i++) {
        if (c[i] < 0 || c[i] >= n) {
            PyErr_Format(PyExc_IndexError, "candidate %lld is out of range for %zd passages", (long long)c[i], n);
            return -1;
        }
        int64_t start = off[c[i]], stop = off[c[i] + 1];
        if (start < 0 || stop <= start || stop > n_rows || stop - start > INT32_MAX) {
            PyErr_Format(PyExc_IndexError, "passage %lld owns rows %lld:%lld, outside the %lld rows given "
                         "(offsets must rise within the token buffer)", (long long)c[i], (long long)start,
                         (long long)stop, (long long)n_rows);
            return -1;
        }
    }
    return 0;
}

static PyObject *py_maxsim_f16(PyObject *self, PyObject *args) {
    Py_buffer q, tokens, offsets, cand, out;
    int nq, d;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*ii", &q, &tokens, &offsets, &cand, &out, &nq, &d)) return NULL;
    PyObject *result = NULL;
    if (nq <= 0 || d <= 0 || q.len < (Py_ssize_t)sizeof(float) * nq * d) {
        PyErr_SetString(PyExc_ValueError, "q must hold nq * d float32 values");
    } else if (check_candidates(&offsets, &cand, &out, sizeof(float), &tokens, (Py_ssize_t)d * 2) == 0) {
        Source src = {fill_f16, tokens.buf, NULL, NULL, NULL, NULL, 0, 0, NULL, 0};
        FloatJob job = {q.buf, src, offsets.buf, cand.buf, out.buf, cand.len / (Py_ssize_t)sizeof(int64_t), nq, d};
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = run_maxsim(&job);
        Py_END_ALLOW_THREADS
        if (rc) PyErr_NoMemory(); else result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&q); PyBuffer_Release(&tokens); PyBuffer_Release(&offsets);
    PyBuffer_Release(&cand); PyBuffer_Release(&out);
    return result;
}

static PyObject *py_maxsim_hamming(PyObject *self, PyObject *args) {
    Py_buffer qbits, bits, offsets, cand, out;
    int nq, nbytes, d;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*iii", &qbits, &bits, &offsets, &cand, &out, &nq, &nbytes, &d))
        return NULL;
    PyObject *result = NULL;
    if (nq <= 0 || nbytes <= 0 || d > 8 * nbytes || qbits.len < (Py_ssize_t)nq * nbytes) {
        PyErr_SetString(PyExc_ValueError, "qbits must hold nq * nbytes bytes, and d <= 8 * nbytes");
    } else if (check_candidates(&offsets, &cand, &out, sizeof(int32_t), &bits, nbytes) == 0) {
        HammingJob job = {qbits.buf, bits.buf, offsets.buf, cand.buf, out.buf,
                          cand.len / (Py_ssize_t)sizeof(int64_t), nq, nbytes, d};
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = run_maxsim_hamming(&job);
        Py_END_ALLOW_THREADS
        if (rc) PyErr_NoMemory(); else result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&qbits); PyBuffer_Release(&bits); PyBuffer_Release(&offsets);
    PyBuffer_Release(&cand); PyBuffer_Release(&out);
    return result;
}

static PyObject *py_maxsim_residual(PyObject *self, PyObject *args) {
    Py_buffer q, codes, packed, centroids, lut, offsets, cand, out;
    int nq, d, nbytes, per_byte, unit;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*w*iiiii", &q, &codes, &packed, &centroids, &lut, &offsets, &cand, &out,
                          &nq, &d, &nbytes, &per_byte, &unit))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t m = cand.len / (Py_ssize_t)sizeof(int64_t);
    const int k = (int)(centroids.len / ((Py_ssize_t)sizeof(float) * (d > 0 ? d : 1)));
    if (nq <= 0 || d <= 0 || q.len < (Py_ssize_t)sizeof(float) * nq * d) {
        PyErr_SetString(PyExc_ValueError, "q must hold nq * d float32 values");
    } else if (per_byte <= 0 || nbytes * per_byte != d || lut.len < (Py_ssize_t)sizeof(float) * nbytes * 256 * per_byte) {
        PyErr_SetString(PyExc_ValueError, "the residual table must be [nbytes, 256, per_byte] with nbytes * per_byte = d");
    } else if (codes.len / 2 > 0 && packed.len < (codes.len / 2) * nbytes) {
        PyErr_SetString(PyExc_ValueError, "packed residuals must hold nbytes bytes for every code");
    } else if (check_candidates(&offsets, &cand, &out, sizeof(float), &codes, 2) == 0 &&
               check_codes(codes.buf, offsets.buf, cand.buf, m, k) == 0) {
        Source src = {fill_residual, NULL, codes.buf, packed.buf, centroids.buf, lut.buf, nbytes, per_byte, NULL, unit};
        float *by_bucket = NULL;
#ifdef COLCADE_X86
        if (use_avx2 && per_byte == 4) src.fill = fill_residual2_avx2;
        if (use_avx512 && per_byte == 4 && (by_bucket = malloc(sizeof(float) * 4 * (size_t)d))) {
            /* Bucket b of every dimension of byte position p: the table's row for byte value b * 0x55. */
            const float *table = lut.buf;
            for (int b = 0; b < 4; b++)
                for (int k = 0; k < d; k++) by_bucket[(size_t)b * d + k] = table[((size_t)(k / 4) * 256 + b * 0x55) * 4 + k % 4];
            src.by_bucket = by_bucket;
            src.fill = fill_residual2_avx512;
        }
#endif
        FloatJob job = {q.buf, src, offsets.buf, cand.buf, out.buf, m, nq, d};
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = run_maxsim(&job);
        Py_END_ALLOW_THREADS
        free(by_bucket);
        if (rc) PyErr_NoMemory(); else result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&q); PyBuffer_Release(&codes); PyBuffer_Release(&packed); PyBuffer_Release(&centroids);
    PyBuffer_Release(&lut); PyBuffer_Release(&offsets); PyBuffer_Release(&cand); PyBuffer_Release(&out);
    return result;
}

/* Where each dimension's bits sit (Source.pos) and, when every block of 16 dimensions has one
 * width, each block's width and first byte; -1 when the widths do not fill nbytes exactly or
 * a dimension would straddle two bytes. Returns whether the blocks hold (the AVX-512 decoder). */
static int mixed_layout(const uint8_t *width, int d, int nbytes, int32_t *pos, uint8_t *block_width,
                        int32_t *block_byte) {
    int64_t bit = 0;
    int blocks = d % 16 == 0;
    for (int k = 0; k < d; k++) {
        const int w = width[k];
        if (!(w == 0 || w == 1 || w == 2 || w == 4) || bit % 8 + w > 8) return -1;
        pos[k] = (int32_t)((bit / 8) * 8 + 8 - w - bit % 8);
        if (k % 16 == 0) { block_width[k / 16] = (uint8_t)w; block_byte[k / 16] = (int32_t)(bit / 8); }
        else if (w != width[k - k % 16]) blocks = 0;
        bit += w;
    }
    return bit == (int64_t)nbytes * 8 ? blocks : -1;
}

static PyObject *py_maxsim_mixed(PyObject *self, PyObject *args) {
    Py_buffer q, codes, packed, centroids, table, width, offsets, cand, out;
    int nq, d, nbytes, unit;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*w*iiii", &q, &codes, &packed, &centroids, &table, &width, &offsets,
                          &cand, &out, &nq, &d, &nbytes, &unit))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t m = cand.len / (Py_ssize_t)sizeof(int64_t);
    const int k = (int)(centroids.len / ((Py_ssize_t)sizeof(float) * (d > 0 ? d : 1)));
    int32_t *pos = NULL, *block_byte = NULL;
    uint8_t *block_width = NULL;
    int blocks = -1;
    if (d > 0 && width.len == d && (pos = malloc(sizeof(int32_t) * d)) && (block_byte = malloc(sizeof(int32_t) * (d / 16 + 1))) &&
        (block_width = malloc(d / 16 + 1)))
        blocks = mixed_layout(width.buf, d, nbytes, pos, block_width, block_byte);
    if (nq <= 0 || d <= 0 || q.len < (Py_ssize_t)sizeof(float) * nq * d) {
        PyErr_SetString(PyExc_ValueError, "q must hold nq * d float32 values");
    } else if (blocks < 0) {
        PyErr_SetString(PyExc_ValueError, "widths must be d values of 0, 1, 2 or 4 bits that fill nbytes whole bytes");
    } else if (table.len < (Py_ssize_t)sizeof(float) * 16 * d) {
        PyErr_SetString(PyExc_ValueError, "the bucket table must be [16, d]");
    } else if (codes.len / 2 > 0 && packed.len < (codes.len / 2) * nbytes) {
        PyErr_SetString(PyExc_ValueError, "packed residuals must hold nbytes bytes for every code");
    } else if (check_candidates(&offsets, &cand, &out, sizeof(float), &codes, 2) == 0 &&
               check_codes(codes.buf, offsets.buf, cand.buf, m, k) == 0) {
        Source src = {fill_mixed, NULL, codes.buf, packed.buf, centroids.buf, NULL, nbytes, 0, table.buf, unit,
                      width.buf, pos, block_width, block_byte};
#ifdef COLCADE_X86
        if (use_avx2 && blocks) src.fill = fill_mixed_avx2;
        if (use_avx512 && blocks) src.fill = fill_mixed_avx512;
#endif
        FloatJob job = {q.buf, src, offsets.buf, cand.buf, out.buf, m, nq, d};
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = run_maxsim(&job);
        Py_END_ALLOW_THREADS
        if (rc) PyErr_NoMemory(); else result = Py_NewRef(Py_None);
    }
    free(pos); free(block_byte); free(block_width);
    PyBuffer_Release(&q); PyBuffer_Release(&codes); PyBuffer_Release(&packed); PyBuffer_Release(&centroids);
    PyBuffer_Release(&table); PyBuffer_Release(&width); PyBuffer_Release(&offsets); PyBuffer_Release(&cand);
    PyBuffer_Release(&out);
    return result;
}

static PyObject *py_maxsim_codes(PyObject *self, PyObject *args) {
    Py_buffer ct, codes, offsets, cand, out;
    int nq, k, stride;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*iii", &ct, &codes, &offsets, &cand, &out, &nq, &k, &stride)) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t m = cand.len / (Py_ssize_t)sizeof(int64_t);
    if (nq <= 0 || k <= 0 || stride < nq || ct.len < (Py_ssize_t)sizeof(float) * stride * k) {
        PyErr_SetString(PyExc_ValueError, "ct must hold k rows of stride >= nq float32 values");
    } else if (check_candidates(&offsets, &cand, &out, sizeof(float), &codes, 2) == 0 &&
               check_codes(codes.buf, offsets.buf, cand.buf, m, k) == 0) {
        CodesJob job = {ct.buf, codes.buf, offsets.buf, cand.buf, out.buf, m, nq, stride};
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = run_maxsim_codes(&job);
        Py_END_ALLOW_THREADS
        if (rc) PyErr_NoMemory(); else result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&ct); PyBuffer_Release(&codes); PyBuffer_Release(&offsets);
    PyBuffer_Release(&cand); PyBuffer_Release(&out);
    return result;
}

/* Each column's m best rows of a row-major [k, nq] table, best first, a tie to the lower row: one
   pass, an insertion only where a value beats its column's m-th best so far (rarely, past the
   first rows). */
static void run_top_rows(const float *table, Py_ssize_t k, int nq, int m, int64_t *rows, float *best) {
    for (Py_ssize_t i = 0; i < (Py_ssize_t)nq * m; i++) { rows[i] = -1; best[i] = -INFINITY; }
    for (Py_ssize_t r = 0; r < k; r++) {
        const float *row = table + r * nq;
        for (int j = 0; j < nq; j++) {
            const float v = row[j];
            float *b = best + (Py_ssize_t)j * m;
            int64_t *at = rows + (Py_ssize_t)j * m;
            if (!(v > b[m - 1]) && at[m - 1] >= 0) continue;
            int slot = m - 1;
            while (slot > 0 && (v > b[slot - 1] || at[slot - 1] < 0)) {
                b[slot] = b[slot - 1]; at[slot] = at[slot - 1]; slot--;
            }
            b[slot] = v; at[slot] = r;
        }
    }
}

static PyObject *py_top_rows(PyObject *self, PyObject *args) {
    Py_buffer table, rows, best;
    Py_ssize_t k;
    int nq, m;
    if (!PyArg_ParseTuple(args, "y*w*w*nii", &table, &rows, &best, &k, &nq, &m)) return NULL;
    PyObject *result = NULL;
    if (k <= 0 || nq <= 0 || m <= 0 || m > k || table.len < (Py_ssize_t)sizeof(float) * nq * k ||
        rows.len < (Py_ssize_t)sizeof(int64_t) * nq * m || best.len < (Py_ssize_t)sizeof(float) * nq * m) {
        PyErr_SetString(PyExc_ValueError, "table must hold k * nq float32 values, the outputs nq * m, 0 < m <= k");
    } else {
        Py_BEGIN_ALLOW_THREADS
        run_top_rows(table.buf, k, nq, m, rows.buf, best.buf);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&table); PyBuffer_Release(&rows); PyBuffer_Release(&best);
    return result;
}

/* Inner products of a query with dense rows of 4 bits a dimension (dense_codes.py): a row is h bytes,
 * two dimensions a byte, then its float32 step. table[j * 256 + b] is what byte value b at byte j is
 * worth against the query (both nibbles, step 1), so a row costs h lookups and one multiply: decoding
 * rows to float32 in numpy first took ~0.7 us a row, 3 ms of a million-passage query's 8k rows. */
static void run_dense4(const float *table, const uint8_t *rows, int64_t h, const int64_t *pos, int64_t m,
                       float *out) {
    for (int64_t i = 0; i < m; i++) {
        const uint8_t *row = rows + pos[i] * (h + 4);
        if (i + 4 < m) __builtin_prefetch(rows + pos[i + 4] * (h + 4));
        float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f; /* four chains: one waits on each add */
        int64_t j = 0;
        for (; j + 4 <= h; j += 4) {
            a0 += table[j * 256 + row[j]];
            a1 += table[(j + 1) * 256 + row[j + 1]];
            a2 += table[(j + 2) * 256 + row[j + 2]];
            a3 += table[(j + 3) * 256 + row[j + 3]];
        }
        for (; j < h; j++) a0 += table[j * 256 + row[j]];
        float step;
        memcpy(&step, row + h, sizeof step);
        out[i] = ((a0 + a1) + (a2 + a3)) * step;
    }
}

static PyObject *py_dense4(PyObject *self, PyObject *args) {
    Py_buffer table, rows, pos, out;
    long long h;
    if (!PyArg_ParseTuple(args, "y*y*y*w*L", &table, &rows, &pos, &out, &h)) return NULL;
    PyObject *result = NULL;
    const int64_t m = pos.len / (Py_ssize_t)sizeof(int64_t), n = h > 0 ? rows.len / (h + 4) : 0;
    if (h <= 0 || table.len != (Py_ssize_t)sizeof(float) * 256 * h || rows.len != n * (h + 4) ||
        out.len < (Py_ssize_t)sizeof(float) * m) {
        PyErr_SetString(PyExc_ValueError, "table must be [h, 256] float32, rows [n, h + 4] bytes, out [m]");
    } else {
        const int64_t *p = pos.buf;
        int64_t bad = -1;
        for (int64_t i = 0; i < m && bad < 0; i++) bad = p[i] < 0 || p[i] >= n ? i : -1;
        if (bad >= 0) {
            PyErr_Format(PyExc_IndexError, "position %lld is out of range for %lld rows", (long long)p[bad],
                         (long long)n);
        } else {
            Py_BEGIN_ALLOW_THREADS
            run_dense4(table.buf, rows.buf, h, p, m, out.buf);
            Py_END_ALLOW_THREADS
            result = Py_NewRef(Py_None);
        }
    }
    PyBuffer_Release(&table); PyBuffer_Release(&rows); PyBuffer_Release(&pos); PyBuffer_Release(&out);
    return result;
}

/* Every cell named must be a list whose block starts ascend inside the ids given. */
static int check_cells(const int64_t *starts, Py_ssize_t k, int64_t nb, Py_ssize_t n_ids, const int64_t *cells,
                       Py_ssize_t m) {
    for (Py_ssize_t t = 0; t < m; t++) {
        if (cells[t] < 0 || cells[t] >= k) {
            PyErr_Format(PyExc_IndexError, "cell %lld names no list of the %zd given", (long long)cells[t], k);
            return -1;
        }
        const int64_t *s = starts + cells[t] * nb;
        int ok = s[0] >= 0 && s[nb] <= n_ids;
        for (int64_t b = 0; ok && b < nb; b++) ok = s[b] <= s[b + 1] && s[b + 1] - s[b] <= CELL_BLOCK;
        if (!ok) {
            PyErr_Format(PyExc_IndexError, "posting list %lld is damaged (its block starts do not fit its ids)",
                         (long long)cells[t]);
            return -1;
        }
    }
    return 0;
}

static PyObject *py_cell_scores(PyObject *self, PyObject *args) {
    Py_buffer cells, gains, starts, lists, allowed, scratch, ids, scores;
    int nq, c;
    long long n, limit, keep;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*w*w*w*iiLLL", &cells, &gains, &starts, &lists, &allowed, &scratch, &ids,
                          &scores, &nq, &c, &n, &limit, &keep))
        return NULL;
    PyObject *result = NULL;
    if (keep > n) keep = n; /* so 2 * keep cannot overflow */
    const int64_t nb = n > CELL_BLOCK ? (n + CELL_BLOCK - 1) / CELL_BLOCK : 1;
    const Py_ssize_t n_starts = starts.len / (Py_ssize_t)sizeof(int64_t), k = (n_starts - 1) / nb;
    const Py_ssize_t room = ids.len / (Py_ssize_t)sizeof(int32_t);
    const int64_t need = keep < 0 || keep >= n ? n : (2 * keep + CELL_BLOCK < n ? 2 * keep + CELL_BLOCK : n);
    int ok = nq >= 0 && c >= 0 && n >= 0 && n <= INT32_MAX && n_starts >= 1 && (n_starts - 1) % nb == 0 &&
             cells.len >= (Py_ssize_t)sizeof(int64_t) * nq * c && gains.len >= (Py_ssize_t)sizeof(float) * nq * c &&
             scratch.len >= (Py_ssize_t)sizeof(float) * 2 * CELL_BLOCK && room >= need &&
             scores.len >= (Py_ssize_t)sizeof(float) * room && (allowed.len == 0 || allowed.len == n);
    if (!ok)
        PyErr_SetString(PyExc_ValueError, "cells, gains, lists, mask, scratch and outputs must fit nq * c and the passages");
    if (ok && check_cells(starts.buf, k, nb, lists.len / (Py_ssize_t)sizeof(uint16_t), cells.buf, (Py_ssize_t)nq * c))
        ok = 0;
    if (ok) {
        int64_t m;
        float *best = scratch.buf;
        Py_BEGIN_ALLOW_THREADS
        m = run_cell_scores(cells.buf, gains.buf, nq, c, starts.buf, nb, lists.buf, n, limit,
                            allowed.len ? allowed.buf : NULL, keep, best, best + CELL_BLOCK, ids.buf, scores.buf);
        Py_END_ALLOW_THREADS
        if (m < 0) {
            memset(scratch.buf, 0, sizeof(float) * 2 * CELL_BLOCK); /* handed back zeroed, as promised */
            PyErr_NoMemory();
        } else
            result = PyLong_FromLongLong(m);
    }
    PyBuffer_Release(&cells); PyBuffer_Release(&gains); PyBuffer_Release(&starts); PyBuffer_Release(&lists);
    PyBuffer_Release(&allowed); PyBuffer_Release(&scratch); PyBuffer_Release(&ids); PyBuffer_Release(&scores);
    return result;
}

static PyObject *py_isa(PyObject *self, PyObject *unused) {
    return PyUnicode_FromString(use_avx512 ? "avx512" : use_avx2 ? "avx2" : "scalar");
}

static PyObject *py_set_isa(PyObject *self, PyObject *arg) {
    /* For tests and benchmarks: force the scalar path, or go back to the best one. */
    long level = PyLong_AsLong(arg); /* 0 scalar, 1 up to AVX2, 2 up to AVX-512 */
    if (level == -1 && PyErr_Occurred()) return NULL;
    use_avx2 = use_avx512 = 0;
#ifdef COLCADE_X86
    __builtin_cpu_init();
    use_avx2 = level >= 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c");
    use_avx512 = level >= 2 && use_avx2 && __builtin_cpu_supports("avx512f");
#endif
    return py_isa(self, NULL);
}

static PyMethodDef methods[] = {
    {"dense4", py_dense4, METH_VARARGS, "Inner products of a query with 4-bit dense rows."},
    {"maxsim_f16", py_maxsim_f16, METH_VARARGS, "Float MaxSim of a query against candidate passages."},
    {"maxsim_hamming", py_maxsim_hamming, METH_VARARGS, "Hamming MaxSim of a query against candidate passages."},
    {"maxsim_residual", py_maxsim_residual, METH_VARARGS, "Float MaxSim over compressed passage tokens."},
    {"maxsim_mixed", py_maxsim_mixed, METH_VARARGS, "Float MaxSim over tokens coded with mixed widths."},
    {"maxsim_codes", py_maxsim_codes, METH_VARARGS, "Centroid-interaction MaxSim over passages' codes."},
    {"top_rows", py_top_rows, METH_VARARGS, "Each column's best rows of a [k, nq] table, best first."},
    {"cell_scores", py_cell_scores, METH_VARARGS, "Centroid interaction of passages from posting lists."},
    {"isa", py_isa, METH_NOARGS, "The instruction set in use: 'avx2' or 'scalar'."},
    {"set_simd", py_set_isa, METH_O, "Cap the SIMD level (0 scalar, 1 AVX2, 2 AVX-512); returns the one in use."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) {
    PyObject *m = PyModule_Create(&module);
    if (m) {
        PyObject *best = PyLong_FromLong(2);
        Py_XDECREF(py_set_isa(m, best));
        Py_XDECREF(best);
    }
    return m;
}
