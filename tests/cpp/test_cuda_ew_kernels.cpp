// CUDA elementwise kernels (float32 / float16 / bfloat16, contiguous 16-byte-vectorised path and
// the broadcast / strided paths), copy_strided for every dtype pair and the embedding gather
// with its id check, against the same float64 references as the CPU (ew_cases.h). Every test
// skips itself without a usable GPU.
#include "cuda_test.h"
#include "ew_cases.h"

namespace {

using lc::test::gpu;

TEST(CudaEwDtypes, ContiguousEveryKindAndDtype) {
  LC_REQUIRE_CUDA();
  lc::ewtest::check_contiguous_kinds(gpu(), {lc::DType::f32, lc::DType::f16, lc::DType::bf16});
}

TEST(CudaEwDtypes, BroadcastAndStridedOperands) {
  LC_REQUIRE_CUDA();
  lc::ewtest::check_strided(gpu(), {lc::DType::f32, lc::DType::f16, lc::DType::bf16});
}

TEST(CudaEwDtypes, Float64IsRefusedNotMiscomputed) {
  LC_REQUIRE_CUDA();
  lc::ElementwiseArgs e;
  e.dtype = lc::DType::f64;
  e.n = 4;
  EXPECT_THROW(gpu().elementwise(e), lc::BackendError);
}

TEST(CudaCopyStrided, EveryDtypePairPermutedAndScattered) {
  LC_REQUIRE_CUDA();
  lc::ewtest::check_copy_strided(gpu());
}

TEST(CudaEmbedding, RowsAndBadIds) {
  LC_REQUIRE_CUDA();
  lc::ewtest::check_embedding(gpu());
}

}  // namespace
