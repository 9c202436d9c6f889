// Causal depthwise conv1d (+ optional SiLU) over packed prompts, window reset at each prompt start.
//
//   out[t, c] = silu( sum_{s < K, s <= pos[t]} w[c, K - 1 - s] * x[t - s, c] )
//
// pos[t] is row t's position inside its own prompt, so a tap never reaches into the previous prompt.
// One thread per (row, channel), channels fastest: neighbouring threads read neighbouring addresses.
// Plain CUDA C++ (no tensor cores, no Hopper-only features): runs on every GPU from sm_80 to sm_100.
// This file holds the kernel and a raw-pointer launcher only, so `nvcc -c` checks it without torch
// headers; causal_conv1d_varlen_binding.cpp reads the tensors and checks their shapes.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

template <typename T, int K>
__global__ void causal_conv1d_varlen_kernel(const T* __restrict__ x, const T* __restrict__ weight,
                                            const int32_t* __restrict__ positions, T* __restrict__ out,
                                            int64_t tokens, int64_t channels, int64_t stride_x,
                                            int64_t stride_out, bool silu) {
  const int64_t total = tokens * channels;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = i / channels;
    const int64_t col = i - row * channels;
    const int32_t pos = positions[row];
    float acc = 0.f;
#pragma unroll
    for (int shift = 0; shift < K; ++shift) {
      if (shift <= pos) {
        acc += to_float(x[(row - shift) * stride_x + col]) * to_float(weight[col * K + (K - 1 - shift)]);
      }
    }
    if (silu) acc = acc / (1.f + __expf(-acc));
    out[row * stride_out + col] = from_float<T>(acc);
  }
}

template <typename T>
cudaError_t launch_typed(const void* x, const void* weight, const int32_t* positions, void* out,
                         int64_t tokens, int64_t channels, int kernel_size, int64_t stride_x,
                         int64_t stride_out, bool silu, cudaStream_t stream) {
  const int threads = 256;
  const int64_t total = tokens * channels;
  int64_t blocks = (total + threads - 1) / threads;
  if (blocks > 65535LL * 32) blocks = 65535LL * 32;  // grid-stride loop covers the rest
  if (blocks == 0) return cudaSuccess;
  const T* xt = static_cast<const T*>(x);
  const T* wt = static_cast<const T*>(weight);
  T* ot = static_cast<T*>(out);
  switch (kernel_size) {
#define JC_CASE(KS)                                                                                  \
  case KS:                                                                                         \
    causal_conv1d_varlen_kernel<T, KS><<<(unsigned)blocks, threads, 0, stream>>>(                 \
        xt, wt, positions, ot, tokens, channels, stride_x, stride_out, silu);                     \
    break;
    JC_CASE(2)
    JC_CASE(3)
    JC_CASE(4)
    JC_CASE(5)
#undef JC_CASE
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace

// dtype_code: 0 float32, 1 float16, 2 bfloat16. Returns cudaErrorInvalidValue for an unsupported
// kernel size (2..5 are instantiated) or dtype; the binding checks both first and names the value.
cudaError_t causal_conv1d_varlen_launch(const void* x, const void* weight, const int32_t* positions,
                                        void* out, int64_t tokens, int64_t channels, int kernel_size,
                                        int64_t stride_x, int64_t stride_out, int dtype_code, bool silu,
                                        cudaStream_t stream) {
  switch (dtype_code) {
    case 0:
      return launch_typed<float>(x, weight, positions, out, tokens, channels, kernel_size, stride_x,
                                 stride_out, silu, stream);
    case 1:
      return launch_typed<__half>(x, weight, positions, out, tokens, channels, kernel_size, stride_x,
                                  stride_out, silu, stream);
    case 2:
      return launch_typed<__nv_bfloat16>(x, weight, positions, out, tokens, channels, kernel_size,
                                         stride_x, stride_out, silu, stream);
    default:
      return cudaErrorInvalidValue;
  }
}
