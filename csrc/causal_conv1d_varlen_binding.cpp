// Thin torch binding for causal_conv1d_varlen.cu: read shapes from the tensors, check them, raise
// errors that name the bad values, launch on the current stream.

#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime.h>
#include <torch/extension.h>

cudaError_t causal_conv1d_varlen_launch(const void* x, const void* weight, const int32_t* positions,
                                        void* out, int64_t tokens, int64_t channels, int kernel_size,
                                        int64_t stride_x, int64_t stride_out, int dtype_code, bool silu,
                                        cudaStream_t stream);

torch::Tensor causal_conv1d_varlen(torch::Tensor x, torch::Tensor weight, torch::Tensor positions, bool silu) {
  TORCH_CHECK(x.is_cuda() && weight.is_cuda() && positions.is_cuda(),
              "causal_conv1d_varlen: all tensors must be on CUDA, got x on ", x.device(), ", weight on ",
              weight.device(), ", positions on ", positions.device());
  TORCH_CHECK(x.dim() == 2 && weight.dim() == 2, "causal_conv1d_varlen: expected x [T, C] and weight [C, K], got x ",
              x.sizes(), " and weight ", weight.sizes());
  const int64_t tokens = x.size(0), channels = x.size(1);
  const int64_t kernel_size = weight.size(1);
  TORCH_CHECK(weight.size(0) == channels, "causal_conv1d_varlen: weight has ", weight.size(0),
              " channels, x has ", channels);
  TORCH_CHECK(kernel_size >= 2 && kernel_size <= 5, "causal_conv1d_varlen: kernel size ", kernel_size,
              " not built (2..5 are)");
  TORCH_CHECK(x.stride(1) == 1, "causal_conv1d_varlen: x must be contiguous along channels, strides ", x.strides());
  TORCH_CHECK(weight.is_contiguous() && weight.scalar_type() == x.scalar_type(),
              "causal_conv1d_varlen: weight must be contiguous and of x's dtype ", x.scalar_type(), ", got ",
              weight.scalar_type());
  TORCH_CHECK(positions.scalar_type() == torch::kInt32 && positions.is_contiguous() && positions.dim() == 1 &&
                  positions.size(0) == tokens,
              "causal_conv1d_varlen: positions must be contiguous int32 [", tokens, "], got ", positions.scalar_type(),
              " ", positions.sizes());
  int dtype_code;
  switch (x.scalar_type()) {
    case torch::kFloat32: dtype_code = 0; break;
    case torch::kFloat16: dtype_code = 1; break;
    case torch::kBFloat16: dtype_code = 2; break;
    default: TORCH_CHECK(false, "causal_conv1d_varlen: unsupported dtype ", x.scalar_type());
  }
  const c10::cuda::CUDAGuard guard(x.device());
  auto out = torch::empty({tokens, channels}, x.options());
  cudaError_t err = causal_conv1d_varlen_launch(x.data_ptr(), weight.data_ptr(), positions.data_ptr<int32_t>(),
                                                out.data_ptr(), tokens, channels, (int)kernel_size, x.stride(0),
                                                out.stride(0), dtype_code, silu,
                                                c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "causal_conv1d_varlen: launch failed: ", cudaGetErrorString(err));
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("causal_conv1d_varlen", &causal_conv1d_varlen,
        "causal depthwise conv1d (+SiLU) over packed prompts; x [T, C], weight [C, K], positions int32 [T]");
}
