// cuBLASLt and cuDNN are loaded on first use (src/backends/cuda/vendor_libs.h), not linked.
//
// Loading a library never touches the driver, so these tests run on the driverless build
// machine too. Whether a library is mapped before its first use depends on which tests ran
// earlier in this process; the test checks that the loader's own record and the process's
// mappings agree, and the filter --gtest_filter='CudaVendorLibs.*' sees the library unmapped.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "backends/cuda/vendor_libs.h"

namespace {

namespace vendor = lc::cuda::vendor;

bool mapped(const std::string& name) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line))
    if (line.find(name) != std::string::npos) return true;
  return false;
}

TEST(CudaVendorLibs, CublasLtMappedOnlyOnceLoaded) {
  const vendor::LibraryInfo before = vendor::cublaslt_info(/*load=*/false);
  if (!before.loaded) EXPECT_FALSE(mapped("libcublasLt")) << "mapped before its first use";
  const vendor::LibraryInfo after = vendor::cublaslt_info(/*load=*/true);
  ASSERT_TRUE(after.loaded) << after.error;
  EXPECT_TRUE(mapped("libcublasLt"));
  EXPECT_NE(after.path.find("libcublasLt"), std::string::npos) << after.path;
  EXPECT_EQ(after.version / 10000, static_cast<std::size_t>(CUBLAS_VER_MAJOR));
  EXPECT_TRUE(after.error.empty()) << after.error;

  // Every function of the table is resolved, and the table answers like the library.
  const vendor::CublasLtApi* api = vendor::try_cublaslt();
  ASSERT_NE(api, nullptr);
#define LC_EXPECT_RESOLVED(fn) EXPECT_NE(api->fn, nullptr) << #fn;
  LC_CUBLASLT_FUNCTIONS(LC_EXPECT_RESOLVED)
#undef LC_EXPECT_RESOLVED
  EXPECT_EQ(api->cublasLtGetVersion(), after.version);
  EXPECT_EQ(&vendor::cublaslt("test"), api);  // one table, loaded once
}

TEST(CudaVendorLibs, CudnnMappedOnlyOnceLoaded) {
  const vendor::LibraryInfo before = vendor::cudnn_info(/*load=*/false);
  if (!before.compiled) GTEST_SKIP() << before.error;
  if (!before.loaded) EXPECT_FALSE(mapped("libcudnn")) << "mapped before its first use";
  const vendor::LibraryInfo after = vendor::cudnn_info(/*load=*/true);
  // The build found cuDNN, so its directory is a search hint: it must load on this machine.
  ASSERT_TRUE(after.loaded) << after.error;
  EXPECT_TRUE(mapped("libcudnn"));
  EXPECT_NE(after.path.find("libcudnn"), std::string::npos) << after.path;
  EXPECT_GT(after.version, 0u);
}

}  // namespace

// The search dirs (pip wheels' lib folders, LC_VENDOR_LIB_DIRS) come right after the SONAME.
// No device needed: this only builds the candidate list.
TEST(VendorLibs, SearchDirsFollowTheSoname) {
  namespace v = lc::cuda::vendor;
  setenv("LC_VENDOR_LIB_DIRS", "/env/a::/env/b", 1);
  v::set_search_dirs({"/wheel/cublas/lib", "/env/a"});
  const std::vector<std::string> c = v::soname_candidates("libfoo.so.1");
  unsetenv("LC_VENDOR_LIB_DIRS");
  v::set_search_dirs({});
  const std::vector<std::string> want = {"libfoo.so.1", "/env/a/libfoo.so.1", "/env/b/libfoo.so.1",
                                         "/wheel/cublas/lib/libfoo.so.1"};
  EXPECT_EQ(c, want);
  EXPECT_TRUE(v::search_dirs().empty());
}
