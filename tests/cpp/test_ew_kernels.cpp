// CPU elementwise kernels in every dtype with broadcasting / strided operands, the strided copy
// with dtype conversion and the embedding gather (the checks are in ew_cases.h, shared with the
// CUDA tests in test_cuda_ew_kernels.cpp).
#include "ew_cases.h"

namespace lc {
Backend& cpu_backend_instance();
}

namespace {

lc::Backend& cpu() { return lc::cpu_backend_instance(); }

TEST(CpuEwDtypes, ContiguousEveryKindAndDtype) {
  lc::ewtest::check_contiguous_kinds(cpu(), {lc::DType::f32, lc::DType::f16, lc::DType::bf16,
                                             lc::DType::f64});
}

TEST(CpuEwDtypes, BroadcastAndStridedOperands) {
  lc::ewtest::check_strided(cpu(), {lc::DType::f32, lc::DType::f16, lc::DType::bf16,
                                    lc::DType::f64});
}

TEST(CpuCopyStrided, EveryDtypePairPermutedAndScattered) { lc::ewtest::check_copy_strided(cpu()); }

TEST(CpuEmbedding, RowsAndBadIds) { lc::ewtest::check_embedding(cpu()); }

}  // namespace
