// Small C kernels the Swift engine calls where Swift cannot reach the instructions it needs.
#include "lanes.h"
#include "small_gemm.h"
#include "activations.h"
