// Thin torch binding for gptq_dequant.cu: read shapes from the tensors, check them, raise errors that
// name the bad values, launch on the current stream.

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/extension.h>

cudaError_t gptq_dequant_launch(const int32_t* qweight, const int32_t* qzeros, const void* scales,
                                const int32_t* g_idx, void* out, int64_t n_in, int64_t n_out, int zero_offset,
                                int dtype_code, cudaStream_t stream);

// qweight int32 [in/8, out], qzeros int32 [groups, out/8], scales fp16 [groups, out], g_idx int32 [in]
// -> W^T [in, out] in `dtype` (float32, float16 or bfloat16).
torch::Tensor gptq_dequant(torch::Tensor qweight, torch::Tensor qzeros, torch::Tensor scales, torch::Tensor g_idx,
                           int64_t zero_offset, torch::ScalarType dtype) {
  TORCH_CHECK(qweight.is_cuda() && qzeros.is_cuda() && scales.is_cuda() && g_idx.is_cuda(),
              "gptq_dequant: all tensors must be on CUDA, got qweight on ", qweight.device(), ", qzeros on ",
              qzeros.device(), ", scales on ", scales.device(), ", g_idx on ", g_idx.device());
  TORCH_CHECK(qweight.dim() == 2 && qzeros.dim() == 2 && scales.dim() == 2 && g_idx.dim() == 1,
              "gptq_dequant: expected qweight [in/8, out], qzeros [groups, out/8], scales [groups, out], g_idx [in];"
              " got ", qweight.sizes(), ", ", qzeros.sizes(), ", ", scales.sizes(), ", ", g_idx.sizes());
  const int64_t n_in = qweight.size(0) * 8, n_out = qweight.size(1), groups = scales.size(0);
  TORCH_CHECK(n_out % 8 == 0, "gptq_dequant: out_features ", n_out, " is not a multiple of 8");
  TORCH_CHECK(n_in / 8 <= 65535, "gptq_dequant: in_features ", n_in, " exceeds the kernel's grid (524280)");
  TORCH_CHECK(scales.size(1) == n_out && qzeros.size(0) == groups && qzeros.size(1) == n_out / 8 &&
                  g_idx.size(0) == n_in,
              "gptq_dequant: inconsistent shapes qweight ", qweight.sizes(), ", qzeros ", qzeros.sizes(), ", scales ",
              scales.sizes(), ", g_idx ", g_idx.sizes());
  TORCH_CHECK(qweight.scalar_type() == torch::kInt32 && qzeros.scalar_type() == torch::kInt32 &&
                  g_idx.scalar_type() == torch::kInt32 && scales.scalar_type() == torch::kFloat16,
              "gptq_dequant: expected int32 qweight/qzeros/g_idx and float16 scales, got ", qweight.scalar_type(),
              "/", qzeros.scalar_type(), "/", g_idx.scalar_type(), " and ", scales.scalar_type());
  TORCH_CHECK(zero_offset == 0 || zero_offset == 1, "gptq_dequant: zero_offset ", zero_offset, " is not 0 or 1");
  int dtype_code;
  switch (dtype) {
    case torch::kFloat32: dtype_code = 0; break;
    case torch::kFloat16: dtype_code = 1; break;
    case torch::kBFloat16: dtype_code = 2; break;
    default: TORCH_CHECK(false, "gptq_dequant: unsupported output dtype ", dtype);
  }
  auto qw = qweight.contiguous(), qz = qzeros.contiguous(), sc = scales.contiguous(), gi = g_idx.contiguous();
  const c10::cuda::CUDAGuard guard(qweight.device());
  auto out = torch::empty({n_in, n_out}, qweight.options().dtype(dtype));
  cudaError_t err = gptq_dequant_launch(qw.data_ptr<int32_t>(), qz.data_ptr<int32_t>(), sc.data_ptr(),
                                        gi.data_ptr<int32_t>(), out.data_ptr(), n_in, n_out, (int)zero_offset,
                                        dtype_code, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "gptq_dequant: launch failed: ", cudaGetErrorString(err));
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gptq_dequant", &gptq_dequant,
        "GPTQ 4-bit -> dense W^T [in, out]; qweight int32 [in/8, out], qzeros int32 [groups, out/8], "
        "scales fp16 [groups, out], g_idx int32 [in], zero_offset (1 for format gptq, 0 for gptq_v2), dtype");
}
