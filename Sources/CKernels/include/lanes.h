// Eight-lane square roots for Swift's SIMD8, which Swift imports as these vector types. The
// standard library's `SIMD8.squareRoot()` takes each lane's root separately (a scalar `sqrtss`
// and a call per lane); these compile to vector square roots.
#ifndef CKERNELS_LANES_H
#define CKERNELS_LANES_H

typedef float ck_float8 __attribute__((ext_vector_type(8)));
typedef double ck_double8 __attribute__((ext_vector_type(8)));

static inline ck_float8 ck_sqrt_float8(ck_float8 x) { return __builtin_elementwise_sqrt(x); }
static inline ck_double8 ck_sqrt_double8(ck_double8 x) { return __builtin_elementwise_sqrt(x); }

#endif
