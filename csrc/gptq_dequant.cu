// Fused unpack + dequantize of 4-bit GPTQ weights: W^T [in, out] = scales[g] * (q - z[g]), g = g_idx[row].
//
// One thread per qweight word: it reads the word once (8 consecutive input rows of one output column),
// and writes those 8 rows. Threads of a warp take consecutive output columns, so qweight reads, scale
// reads and the dense writes are all coalesced; the zero word is shared by 8 neighbouring threads.
// Plain loads and stores only, so it builds for every GPU from sm_80 (A100, L4, RTX 30/40) to sm_90
// and sm_100. Rounding to the output type is round-to-nearest-even, as torch's .to() does, so the
// result is bit-identical to the torch twin (judge_core/gptq/dequant.py: dequantize_reference).
//
// This file holds the kernel and a raw-pointer launcher only, so `nvcc -c` checks it without torch;
// csrc/gptq_dequant_binding.cpp is the thin torch binding.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace {

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

template <typename T>
__global__ void gptq_dequant_kernel(const int32_t* __restrict__ qweight, const int32_t* __restrict__ qzeros,
                                    const __half* __restrict__ scales, const int32_t* __restrict__ g_idx,
                                    T* __restrict__ out, int64_t n_out, int zero_offset) {
  const int64_t col = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t word_row = blockIdx.y;  // input rows 8 * word_row .. 8 * word_row + 7
  if (col >= n_out) return;
  const uint32_t word = (uint32_t)qweight[word_row * n_out + col];
  const int zero_shift = 4 * (int)(col & 7);
  const int64_t zero_cols = n_out / 8;
#pragma unroll
  for (int s = 0; s < 8; ++s) {
    const int64_t row = word_row * 8 + s;
    const int64_t g = g_idx[row];
    const int q = (int)((word >> (4 * s)) & 0xF);
    const int z = (int)((((uint32_t)qzeros[g * zero_cols + (col >> 3)] >> zero_shift) + zero_offset) & 0xF);
    const float scale = __half2float(scales[g * n_out + col]);
    out[row * n_out + col] = from_float<T>((float)(q - z) * scale);
  }
}

template <typename T>
cudaError_t launch_typed(const int32_t* qweight, const int32_t* qzeros, const void* scales, const int32_t* g_idx,
                         void* out, int64_t n_in, int64_t n_out, int zero_offset, cudaStream_t stream) {
  constexpr int kThreads = 128;
  const dim3 grid((unsigned)((n_out + kThreads - 1) / kThreads), (unsigned)(n_in / 8));
  gptq_dequant_kernel<T><<<grid, kThreads, 0, stream>>>(qweight, qzeros, static_cast<const __half*>(scales), g_idx,
                                                       static_cast<T*>(out), n_out, zero_offset);
  return cudaGetLastError();
}

}  // namespace

// dtype_code: 0 float32, 1 float16, 2 bfloat16. n_in must be a multiple of 8 and n_in / 8 at most 65535
// (the grid's y limit); n_out a multiple of 8. Returns cudaErrorInvalidValue for anything else.
cudaError_t gptq_dequant_launch(const int32_t* qweight, const int32_t* qzeros, const void* scales,
                                const int32_t* g_idx, void* out, int64_t n_in, int64_t n_out, int zero_offset,
                                int dtype_code, cudaStream_t stream) {
  if (n_in <= 0 || n_out <= 0 || n_in % 8 || n_out % 8 || n_in / 8 > 65535) return cudaErrorInvalidValue;
  switch (dtype_code) {
    case 0: return launch_typed<float>(qweight, qzeros, scales, g_idx, out, n_in, n_out, zero_offset, stream);
    case 1: return launch_typed<__half>(qweight, qzeros, scales, g_idx, out, n_in, n_out, zero_offset, stream);
    case 2:
      return launch_typed<__nv_bfloat16>(qweight, qzeros, scales, g_idx, out, n_in, n_out, zero_offset, stream);
    default: return cudaErrorInvalidValue;
  }
}
