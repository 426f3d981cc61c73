// The NVIDIA vendor libraries of the CUDA backend (cuBLASLt, cuDNN), loaded on first use.
//
// The module does not link them: libcublasLt (~500 MB) and libcudnn are mapped and relocated
// by the dynamic loader only when the first GEMM (cuBLASLt) or the first cuDNN convolution
// needs them, so `import lightning_core` stays fast and works without a driver. Each library
// is dlopen()ed once (RTLD_NOW | RTLD_LOCAL, std::call_once) and every function the backend
// calls is resolved into a table whose member types are the headers' own prototypes
// (decltype(&::fn)), so a call through the table is checked by the compiler like a direct one.
//
// Search order per library: its SONAME (libcublasLt.so.<CUBLAS_VER_MAJOR>,
// libcudnn.so.<CUDNN_MAJOR>: LD_LIBRARY_PATH, the module's RUNPATH, ld.so.cache, a copy another
// extension such as torch already loaded), then the directory CMake found the library in at
// build time, then the exact file CMake found. A library whose major version differs from the
// headers' is rejected. Loading never touches the driver.
//
// Every cublasLt* / cudnn* call of the backend goes through these tables (grep: "api."), never
// through a linked symbol: a direct call would bring back the link dependency.
#pragma once

#include <cublasLt.h>
#ifdef LC_HAVE_CUDNN
#include <cudnn.h>
#endif

#include <functional>
#include <string>
#include <vector>

namespace lc::cuda::vendor {

// X-macro lists of the functions the backend calls.
#define LC_CUBLASLT_FUNCTIONS(X)          \
  X(cublasLtGetVersion)                   \
  X(cublasLtCreate)                       \
  X(cublasLtDestroy)                      \
  X(cublasLtMatmul)                       \
  X(cublasLtMatmulAlgoGetHeuristic)       \
  X(cublasLtMatmulAlgoConfigGetAttribute) \
  X(cublasLtMatmulDescCreate)             \
  X(cublasLtMatmulDescDestroy)            \
  X(cublasLtMatmulDescSetAttribute)       \
  X(cublasLtMatmulPreferenceCreate)       \
  X(cublasLtMatmulPreferenceDestroy)      \
  X(cublasLtMatmulPreferenceSetAttribute) \
  X(cublasLtMatrixLayoutCreate)           \
  X(cublasLtMatrixLayoutDestroy)          \
  X(cublasLtMatrixLayoutSetAttribute)

#define LC_CUDNN_FUNCTIONS(X)                \
  X(cudnnGetVersion)                         \
  X(cudnnGetErrorString)                     \
  X(cudnnCreate)                             \
  X(cudnnSetStream)                          \
  X(cudnnCreateTensorDescriptor)             \
  X(cudnnSetTensor4dDescriptor)              \
  X(cudnnCreateFilterDescriptor)             \
  X(cudnnSetFilter4dDescriptor)              \
  X(cudnnCreateConvolutionDescriptor)        \
  X(cudnnSetConvolution2dDescriptor)         \
  X(cudnnSetConvolutionMathType)             \
  X(cudnnFindConvolutionForwardAlgorithmEx)  \
  X(cudnnConvolutionForward)

#define LC_VENDOR_FN_MEMBER(fn) decltype(&::fn) fn = nullptr;

struct CublasLtApi {
  LC_CUBLASLT_FUNCTIONS(LC_VENDOR_FN_MEMBER)
};

// The cuBLASLt table, loading the library on the first call (thread-safe). Throws
// lc::BackendError "[op] cuBLASLt could not be loaded: <what was tried, dlerror>. <how to fix>"
// when it is missing; the failure is remembered (no retry per call).
const CublasLtApi& cublaslt(const char* op);
// Same without throwing: nullptr when cuBLASLt cannot be loaded (*reason says why).
const CublasLtApi* try_cublaslt(std::string* reason = nullptr);

#ifdef LC_HAVE_CUDNN
struct CudnnApi {
  LC_CUDNN_FUNCTIONS(LC_VENDOR_FN_MEMBER)
};
// The cuDNN table (loaded on the first call), or nullptr when libcudnn cannot be loaded:
// cuDNN is optional, the conv path then runs its direct kernel (*reason says why).
const CudnnApi* try_cudnn(std::string* reason = nullptr);
// The dlopen() handle of that libcudnn (loading it on the first call), or nullptr. For the cuDNN
// frontend's dynamic-loading mode (attention_cudnn.cpp), which resolves its cudnn* calls with
// dlsym on this handle: the same library, never a second copy.
void* cudnn_dl_handle();
#endif

#undef LC_VENDOR_FN_MEMBER

// Extra directories searched right after the SONAME (before the build-time hints): the `lib`
// folders of NVIDIA's pip wheels (nvidia-cublas, nvidia-cudnn, ... found by the Python layer at
// import, python/lightning_core/_vendor_dirs.py) and the colon-separated LC_VENDOR_LIB_DIRS.
// Affects libraries not loaded yet. `file` candidates for a SONAME: every dir + "/" + soname.
void set_search_dirs(std::vector<std::string> dirs);
std::vector<std::string> search_dirs();
// soname, then each search dir's copy of it (the candidates list of every vendor library).
std::vector<std::string> soname_candidates(const std::string& soname);

// The one loading loop of every run-time library (cuBLASLt, cuDNN, NCCL): tries each name in
// order with dlopen(RTLD_NOW | RTLD_LOCAL) and hands the handle to `accept`, which resolves the
// library's table and checks its version, returning "" to keep it or why not (the handle is then
// closed again). Returns the kept handle (open for the life of the process) with *path = the
// file the loader mapped, or nullptr with *tried = every rejection, "; "-joined.
void* open_first(const std::vector<std::string>& names,
                 const std::function<std::string(void*)>& accept, std::string* path,
                 std::string* tried);

// Diagnostics (tests, benchmarks): what is loaded, from where, or why not. With load = false
// nothing is loaded (loaded = false until an op needed the library).
struct LibraryInfo {
  bool compiled = false;  // cuDNN: false when the build had no cuDNN headers
  bool loaded = false;
  std::string path;       // the file the loader mapped (dladdr), when loaded
  std::string error;      // why it could not be loaded, when it could not
  std::size_t version = 0;
};
LibraryInfo cublaslt_info(bool load);
LibraryInfo cudnn_info(bool load);

}  // namespace lc::cuda::vendor
