// The CostModel's field tables (runtime/placement.h: kCostScalarFields, kCostFamilyFields), which
// apply_env_knobs, the calibration cache and lc.cost_model() walk instead of listing the fields:
// every knob a table names reaches its field, names are unique, and every double of the model is
// in a table (or is one of the named exceptions).
#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <set>
#include <string>

#include "runtime/placement.h"

namespace {

using lc::CostModel;

struct EnvGuard {
  std::string name;
  explicit EnvGuard(std::string n, const char* v) : name(std::move(n)) { setenv(name.c_str(), v, 1); }
  ~EnvGuard() { unsetenv(name.c_str()); }
};

TEST(CostFields, NamesAreUnique) {
  std::set<std::string> names;
  for (const auto& f : lc::kCostScalarFields) EXPECT_TRUE(names.insert(f.name).second) << f.name;
  for (const auto& f : lc::kCostFamilyFields) EXPECT_TRUE(names.insert(f.name).second) << f.name;
  EXPECT_FALSE(names.count("conv_cpu_crossover_macs"));  // its knobs make it explicit: not here
}

TEST(CostFields, EveryScalarKnobReachesItsField) {
  for (const auto& f : lc::kCostScalarFields) {
    if (!f.env) continue;
    EnvGuard g(f.env, "123.5");
    const CostModel m = lc::apply_env_knobs(CostModel{});
    EXPECT_EQ(m.*f.field, 123.5) << f.env;
  }
}

TEST(CostFields, EveryFamilyKnobReachesItsField) {
  for (const auto& f : lc::kCostFamilyFields) {
    for (int i = 0; i < CostModel::kFamilies; ++i) {
      std::string fam = lc::to_string(static_cast<lc::OpFamily>(i));
      for (char& c : fam) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      EnvGuard g(std::string(f.env_prefix) + fam, "77.25");
      const CostModel m = lc::apply_env_knobs(CostModel{});
      EXPECT_EQ((m.*f.field)[i], 77.25) << f.env_prefix << fam;
      for (int j = 0; j < CostModel::kFamilies; ++j)
        if (j != i) EXPECT_EQ((m.*f.field)[j], (CostModel{}.*f.field)[j]);
    }
  }
}

TEST(CostFields, TablesCoverTheModel) {
  // The doubles of CostModel: the scalar table, 5 per family field, and conv_cpu_crossover_macs.
  // A new double field must join a table (or this list of exceptions).
  const std::size_t doubles = std::size(lc::kCostScalarFields) +
                              std::size(lc::kCostFamilyFields) * CostModel::kFamilies + 1;
  const std::size_t flags = 3;  // conv_crossover_explicit, calibrated, gpu_calibrated
  EXPECT_LE(sizeof(CostModel), doubles * sizeof(double) + sizeof(double));
  EXPECT_GE(sizeof(CostModel), doubles * sizeof(double) + flags);
}

}  // namespace
