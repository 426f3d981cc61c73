// Lazy loading of cuBLASLt and cuDNN (see vendor_libs.h).
//
// Build-time hints (compile definitions of this file only, set by CMakeLists.txt):
//   LC_CUBLASLT_HINT_DIR / LC_CUBLASLT_HINT_FILE  where CMake found libcublasLt
//   LC_CUDNN_HINT_DIR / LC_CUDNN_HINT_FILE        where CMake found libcudnn (LC_CUDNN_LIB)
#include "backends/cuda/vendor_libs.h"

#include <dlfcn.h>
#include <link.h>

#include <atomic>
#include <mutex>
#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "lightning_core/errors.h"

#ifndef LC_CUBLASLT_HINT_DIR
#define LC_CUBLASLT_HINT_DIR ""
#endif
#ifndef LC_CUBLASLT_HINT_FILE
#define LC_CUBLASLT_HINT_FILE ""
#endif
#ifndef LC_CUDNN_HINT_DIR
#define LC_CUDNN_HINT_DIR ""
#endif
#ifndef LC_CUDNN_HINT_FILE
#define LC_CUDNN_HINT_FILE ""
#endif

namespace lc::cuda::vendor {

namespace {

// One library: its table, and the outcome of the one load attempt.
template <class Api>
struct Library {
  std::once_flag once;
  std::atomic<bool> done{false};  // the attempt finished (for the non-loading diagnostics)
  bool ok = false;
  Api api;
  void* handle = nullptr;  // the dlopen() handle (kept open for the life of the process)
  std::string path, error;
  std::size_t version = 0;
};

std::mutex g_dirs_mu;
std::vector<std::string> g_dirs;  // set_search_dirs

// SONAME first (the loader's own search, or a copy already in the process), then the search
// dirs (pip wheels, LC_VENDOR_LIB_DIRS), then the directory and the file CMake found at build
// time; duplicates and empty hints dropped.
std::vector<std::string> candidates(const std::string& soname, const std::string& dir,
                                    const std::string& file) {
  std::vector<std::string> out = soname_candidates(soname);
  const auto add = [&out](const std::string& c) {
    if (c.empty()) return;
    for (const auto& o : out)
      if (o == c) return;
    out.push_back(c);
  };
  if (!dir.empty()) add(dir + "/" + soname);
  add(file);
  return out;
}

// cuBLASLt / cuDNN through open_first (below): resolve the table, then `check` the version.
template <class Api, class Resolve, class Check>
void load(Library<Api>& lib, const char* display, const std::vector<std::string>& names,
          Resolve resolve, Check check, const std::string& fix) {
  std::string tried;
  lib.handle = open_first(
      names,
      [&](void* h) -> std::string {
        Api api;
        std::string missing = resolve(h, api);
        if (!missing.empty()) return "lacks " + missing;
        std::string why = check(api, &lib.version);
        if (why.empty()) lib.api = api;
        return why;
      },
      &lib.path, &tried);
  lib.ok = lib.handle != nullptr;
  if (!lib.ok) lib.error = std::string(display) + " could not be loaded (" + tried + "). " + fix;
}

#define LC_VENDOR_RESOLVE(fn)                                                   \
  api.fn = reinterpret_cast<decltype(api.fn)>(dlsym(h, #fn));                   \
  if (!api.fn) missing += (missing.empty() ? "" : ", ") + std::string(#fn);

// The objects, without loading (leaked: the tables are used until the process ends).
Library<CublasLtApi>& cublaslt_storage() {
  static auto* lib = new Library<CublasLtApi>();
  return *lib;
}

Library<CublasLtApi>& cublaslt_lib() {
  auto* lib = &cublaslt_storage();
  std::call_once(lib->once, [lib] {
    const std::string soname = "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR);
    load(
        *lib, "cuBLASLt", candidates(soname, LC_CUBLASLT_HINT_DIR, LC_CUBLASLT_HINT_FILE),
        [](void* h, CublasLtApi& api) {
          std::string missing;
          LC_CUBLASLT_FUNCTIONS(LC_VENDOR_RESOLVE)
          return missing;
        },
        [](const CublasLtApi& api, std::size_t* version) -> std::string {
          *version = api.cublasLtGetVersion();  // major * 10000 + minor * 100 + patch
          if (*version / 10000 == CUBLAS_VER_MAJOR) return {};
          return "found cuBLASLt " + std::to_string(*version) + ", this build needs major " +
                 std::to_string(CUBLAS_VER_MAJOR);
        },
        "GEMMs on \"cuda\" need it: install the CUDA toolkit's cuBLAS (" + soname +
            ") or put the directory holding " + soname + " on LD_LIBRARY_PATH; device=\"cpu\" "
            "works without it");
    lib->done.store(true, std::memory_order_release);
  });
  return *lib;
}

#ifdef LC_HAVE_CUDNN
Library<CudnnApi>& cudnn_storage() {
  static auto* lib = new Library<CudnnApi>();
  return *lib;
}

Library<CudnnApi>& cudnn_lib() {
  auto* lib = &cudnn_storage();
  std::call_once(lib->once, [lib] {
    const std::string soname = "libcudnn.so." + std::to_string(CUDNN_MAJOR);
    load(
        *lib, "cuDNN", candidates(soname, LC_CUDNN_HINT_DIR, LC_CUDNN_HINT_FILE),
        [](void* h, CudnnApi& api) {
          std::string missing;
          LC_CUDNN_FUNCTIONS(LC_VENDOR_RESOLVE)
          return missing;
        },
        [](const CudnnApi& api, std::size_t* version) -> std::string {
          // cuDNN 9: major * 10000 + minor * 100 + patch; cuDNN 8: major * 1000 + ...
          constexpr std::size_t kMajorScale = CUDNN_MAJOR >= 9 ? 10000 : 1000;
          *version = api.cudnnGetVersion();
          if (*version / kMajorScale == CUDNN_MAJOR) return {};
          return "found cuDNN " + std::to_string(*version) + ", this build needs major " +
                 std::to_string(CUDNN_MAJOR);
        },
        "large convolutions run the direct kernel instead; install cuDNN " +
            std::to_string(CUDNN_MAJOR) + " or put the directory holding " + soname +
            " on LD_LIBRARY_PATH");
    lib->done.store(true, std::memory_order_release);
  });
  return *lib;
}
#endif

#undef LC_VENDOR_RESOLVE

// What the one load attempt gave; nothing loaded yet when it has not run.
template <class Api>
LibraryInfo info_of(const Library<Api>& lib) {
  LibraryInfo i;
  i.compiled = true;
  if (!lib.done.load(std::memory_order_acquire)) return i;
  i.loaded = lib.ok;
  i.path = lib.path;
  i.error = lib.error;
  i.version = lib.version;
  return i;
}

}  // namespace

const CublasLtApi* try_cublaslt(std::string* reason) {
  auto& lib = cublaslt_lib();
  if (reason) *reason = lib.error;
  return lib.ok ? &lib.api : nullptr;
}

const CublasLtApi& cublaslt(const char* op) {
  std::string reason;
  const CublasLtApi* api = try_cublaslt(&reason);
  if (!api) throw_backend(op, reason);
  return *api;
}

#ifdef LC_HAVE_CUDNN
const CudnnApi* try_cudnn(std::string* reason) {
  auto& lib = cudnn_lib();
  if (reason) *reason = lib.error;
  return lib.ok ? &lib.api : nullptr;
}

void* cudnn_dl_handle() {
  auto& lib = cudnn_lib();
  return lib.ok ? lib.handle : nullptr;
}
#endif

LibraryInfo cublaslt_info(bool load) {
  if (load) (void)try_cublaslt();
  return info_of(cublaslt_storage());
}

LibraryInfo cudnn_info(bool load) {
#ifdef LC_HAVE_CUDNN
  if (load) (void)try_cudnn();
  return info_of(cudnn_storage());
#else
  (void)load;
  LibraryInfo i;
  i.error = "not compiled: the build found no cuDNN (LC_CUDNN_INCLUDE / LC_CUDNN_LIB)";
  return i;
#endif
}

void set_search_dirs(std::vector<std::string> dirs) {
  std::lock_guard<std::mutex> lock(g_dirs_mu);
  g_dirs = std::move(dirs);
}

std::vector<std::string> search_dirs() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("LC_VENDOR_LIB_DIRS")) {
    std::string cur;
    for (const char* c = env;; ++c) {
      if (*c == ':' || *c == '\0') {
        if (!cur.empty()) out.push_back(cur);
        cur.clear();
        if (!*c) break;
      } else {
        cur += *c;
      }
    }
  }
  std::lock_guard<std::mutex> lock(g_dirs_mu);
  out.insert(out.end(), g_dirs.begin(), g_dirs.end());
  return out;
}

void* open_first(const std::vector<std::string>& names,
                 const std::function<std::string(void*)>& accept, std::string* path,
                 std::string* tried) {
  for (const auto& name : names) {
    (void)dlerror();
    void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    std::string why;
    if (!h) {
      const char* e = dlerror();
      why = e ? e : (name + ": cannot be opened");
    } else {
      why = accept(h);
      if (why.empty()) {
        link_map* lm = nullptr;
        *path = dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name && lm->l_name[0]
                    ? std::string(lm->l_name)
                    : name;
        return h;
      }
      why = name + ": " + why;
      dlclose(h);
    }
    *tried += (tried->empty() ? "" : "; ") + why;
  }
  return nullptr;
}

std::vector<std::string> soname_candidates(const std::string& soname) {
  std::vector<std::string> out{soname};
  for (const std::string& d : search_dirs()) {
    std::string c = d + "/" + soname;
    if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(std::move(c));
  }
  return out;
}

}  // namespace lc::cuda::vendor
