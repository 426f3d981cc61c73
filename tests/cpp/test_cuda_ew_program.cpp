// Backend::elementwise_program on CUDA: every instruction in float32 / float16 / bfloat16 through
// the vector-load path (aligned, with a tail) and the scalar path (misaligned pointers), broadcast
// and strided inputs of mixed dtypes, and a multi-block size; the same float64 references as the
// CPU (ew_program_cases.h). Every test skips itself without a usable GPU.
#include "cuda_test.h"
#include "ew_program_cases.h"

namespace {

using lc::test::gpu;

TEST(CudaEwProgram, EveryInstructionEveryDtype) {
  LC_REQUIRE_CUDA();
  lc::ewprogtest::check_every_op(gpu(), {lc::DType::f32, lc::DType::f16, lc::DType::bf16});
}

TEST(CudaEwProgram, BroadcastStridedMixedDtypes) {
  LC_REQUIRE_CUDA();
  lc::ewprogtest::check_broadcast_strided(gpu(), {lc::DType::f32, lc::DType::f16, lc::DType::bf16});
}

TEST(CudaEwProgram, LargeMultiBlock) {
  LC_REQUIRE_CUDA();
  lc::ewprogtest::check_large(gpu(), lc::DType::f32);
  lc::ewprogtest::check_large(gpu(), lc::DType::bf16);
}

TEST(CudaEwProgram, Float64IsRefusedNotMiscomputed) {
  LC_REQUIRE_CUDA();
  lc::EwProgramArgs p;
  p.prog = lc::parse_ew_program("neg x0");
  p.n_inputs = 1;
  p.in_dtype[0] = lc::DType::f64;
  p.out_dtype = lc::DType::f64;
  p.n = 4;
  EXPECT_THROW(gpu().elementwise_program(p), lc::BackendError);
}

}  // namespace

namespace {

TEST(CudaEwProgram, VectorPathSizesAlignmentDtypes) {
  LC_REQUIRE_CUDA();
  lc::ewprogtest::check_vector_paths(gpu(), {lc::DType::f32, lc::DType::f16, lc::DType::bf16});
}

TEST(CudaEwProgram, ProgramShapesEverySlotBucket) {
  LC_REQUIRE_CUDA();
  lc::ewprogtest::check_program_shapes(gpu(), {lc::DType::f32, lc::DType::f16, lc::DType::bf16});
}

TEST(CudaEwProgram, GeneralPathFlatAndGatheredOperands) {
  LC_REQUIRE_CUDA();
  lc::ewprogtest::check_general_paths(gpu(), {lc::DType::f32, lc::DType::f16, lc::DType::bf16});
}

}  // namespace
