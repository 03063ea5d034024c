// One core's arithmetic peak: 12 independent multiply-add chains, so latency never stalls them.
// gcc -O2 -march=native fma_peak.c -o fma_peak && ./fma_peak
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
#define CHAINS(OP) OP(0) OP(1) OP(2) OP(3) OP(4) OP(5) OP(6) OP(7) OP(8) OP(9) OP(10) OP(11)
#define PEAK(NAME, TYPE, SET, STEP, FLOPS_PER_OP) {                                              \
    TYPE x = SET(1e-8f); CHAINS(DECLARE_##TYPE) double best = 1e9;                              \
    for (int run = 0; run < 5; run++) {                                                         \
      double start = seconds();                                                                 \
      for (long i = 0; i < N; i++) { CHAINS(STEP) __asm__ volatile("" ::: "memory"); }          \
      if (seconds() - start < best) best = seconds() - start; }                                 \
    CHAINS(KEEP_##TYPE)                                                                         \
    printf("%-34s %6.1f GFLOP/s\n", NAME, 12.0 * N * FLOPS_PER_OP / best / 1e9); }
#define DECLARE___m256(i) __m256 a##i = _mm256_set1_ps(i);
#define KEEP___m256(i) __asm__ volatile("" :: "x"(a##i));
#define FMA256(i) a##i = _mm256_fmadd_ps(a##i, x, x);
#define DECLARE___m512(i) __m512 a##i = _mm512_set1_ps(i);
#define KEEP___m512(i) __asm__ volatile("" :: "v"(a##i));
#define FMA512(i) a##i = _mm512_fmadd_ps(a##i, x, x);
#define DOT512(i) a##i = _mm512_dpbf16_ps(a##i, (__m512bh)_mm512_castps_si512(x), (__m512bh)_mm512_castps_si512(x));
static const long N = 100000000;
static double seconds(void) {  // this process's CPU time
  struct timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
int main(void) {
  PEAK("fp32 FMA, 256-bit (AVX2)", __m256, _mm256_set1_ps, FMA256, 16)
#ifdef __AVX512F__
  PEAK("fp32 FMA, 512-bit (AVX-512)", __m512, _mm512_set1_ps, FMA512, 32)
#endif
#ifdef __AVX512BF16__
  PEAK("bf16 dot product (AVX512-BF16)", __m512, _mm512_set1_ps, DOT512, 64)
#endif
  return 0;
}
