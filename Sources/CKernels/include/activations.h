// Activations' element-wise passes where Swift's loops stay scalar: single-precision GELU (the
// exact, erf-based form), where libm's scalar erff and expf took a sixth of a transformer's
// training step, and ReLU's backward pass, which Swift compiled to a branch per element. AVX2 +
// FMA where the CPU has them (`activations_vectorized`), otherwise plain loops (libm for GELU).
#ifndef CKERNELS_ACTIVATIONS_H
#define CKERNELS_ACTIVATIONS_H

#include <stdbool.h>

/// Whether `gelu_forward_f32` and `gelu_backward_f32` run vectorised (AVX2 and FMA): then Φ
/// comes from the rational approximation described in activations.c (absolute error below
/// 2e-7, against libm's erff), else from libm.
bool activations_vectorized(void);

/// y[i] = x[i]·Φ(x[i]), Φ the standard normal CDF. `y` may be `x`.
void gelu_forward_f32(const float *x, float *y, long n);

/// dx[i] = dy[i]·(Φ(x[i]) + x[i]·φ(x[i])), φ the standard normal density. `dx` may be `dy`.
void gelu_backward_f32(const float *x, const float *dy, float *dx, long n);

/// dx[i] = y[i] > 0 ? dy[i] : 0 (ReLU's backward pass from its output), branch-free. `dx` may be `dy`.
void relu_backward_f32(const float *y, const float *dy, float *dx, long n);
void relu_backward_f64(const double *y, const double *dy, double *dx, long n);

#endif
