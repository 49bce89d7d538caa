// Attention that reads a paged KV cache where it lies: the CPU counterpart of vLLM's paged attention kernel.
//
// The PyTorch path of engine.py first gathers each request's blocks into one padded tensor (a copy of every cached
// key and value, every layer, every step), then runs scaled_dot_product_attention on the copy. This kernel follows
// the block table instead, so each cached key and value row is read once, straight from the pool, and never copied.
//
// Each query is one token that attends to the first L tokens of its request (a decoding token: all of them; a
// prompt token: its own prefix). The G query heads that share a kv head are done together, so a key row is loaded
// once for all G of them. Within a block, each kv head's S keys are contiguous (S * D values): a head reads whole
// cache lines, never the other heads' values in between (about 25 % faster here than token-major blocks). GROUP (= G) and HEAD_DIM (= D) are compile-time constants (paged_attention.py compiles one
// build per model shape): the compiler then unrolls the loops over them and keeps the accumulators in registers,
// which measured 2-3x faster here than the same code with run-time sizes.
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { G = GROUP, D = HEAD_DIM };

#ifdef CACHE_BF16  // the cache holds bfloat16: the top 16 bits of a float32, widened as they are read
typedef uint16_t cache_t;
static inline float widen(cache_t x) {
  uint32_t bits = (uint32_t)x << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}
#else
typedef float cache_t;
static inline float widen(cache_t x) { return x; }
#endif

void paged_attention(const float *restrict q,         // (B, K, G, D): the queries, rotated
                     const cache_t *restrict keys,    // (blocks, K, S, D): one layer's key pool
                     const cache_t *restrict values,  // (blocks, K, S, D): and its value pool
                     const int64_t *table,            // (B, W): each query's block table (padded: only L are read)
                     const int64_t *lengths,          // (B,): the tokens L each query attends to, itself included
                     float *restrict out,             // (B, K, G, D)
                     int64_t B, int64_t K, int64_t S, int64_t W, float scale, int threads) {
#pragma omp parallel for collapse(2) schedule(dynamic) num_threads(threads)
  for (int64_t b = 0; b < B; b++) {
    for (int64_t h = 0; h < K; h++) {  // one (request, kv head) pair per task
      const int64_t L = lengths[b];
      const float *restrict qh = q + (b * K + h) * G * D;
      float *scores = malloc(sizeof(float) * G * L);
      float top[G], acc[G * D];

      // 1. scores = q . k * scale, block by block along the block table
      for (int64_t g = 0; g < G; g++) top[g] = -FLT_MAX;
      for (int64_t t0 = 0; t0 < L; t0 += S) {
        const cache_t *restrict k = keys + (table[b * W + t0 / S] * K + h) * S * D;
        const int64_t n = L - t0 < S ? L - t0 : S;
        for (int64_t s = 0; s < n; s++, k += D) {
          for (int64_t g = 0; g < G; g++) {
            float dot = 0.f;
#pragma omp simd reduction(+ : dot)
            for (int64_t d = 0; d < D; d++) dot += qh[g * D + d] * widen(k[d]);
            scores[g * L + t0 + s] = dot * scale;
            top[g] = dot * scale > top[g] ? dot * scale : top[g];
          }
        }
      }

      // 2. softmax numerators exp(score - max); the division by their sum is left to the end
      float norm[G];
      for (int64_t g = 0; g < G; g++) {
        float total = 0.f, *row = scores + g * L;
#pragma omp simd reduction(+ : total)
        for (int64_t t = 0; t < L; t++) {
          row[t] = expf(row[t] - top[g]);
          total += row[t];
        }
        norm[g] = 1.f / total;
        for (int64_t d = 0; d < D; d++) acc[g * D + d] = 0.f;
      }

      // 3. out = sum of p * v, again block by block
      for (int64_t t0 = 0; t0 < L; t0 += S) {
        const cache_t *restrict v = values + (table[b * W + t0 / S] * K + h) * S * D;
        const int64_t n = L - t0 < S ? L - t0 : S;
        for (int64_t s = 0; s < n; s++, v += D) {
          for (int64_t g = 0; g < G; g++) {
            const float p = scores[g * L + t0 + s];
#pragma omp simd
            for (int64_t d = 0; d < D; d++) acc[g * D + d] += p * widen(v[d]);
          }
        }
      }
      float *restrict o = out + (b * K + h) * G * D;
      for (int64_t g = 0; g < G; g++)
        for (int64_t d = 0; d < D; d++) o[g * D + d] = acc[g * D + d] * norm[g];
      free(scores);
    }
  }
}
