// NCCL for the CUDA backend: loaded on first use, the Communicator of collective.h.
//
// Like cuBLASLt (vendor_libs.h), the module does not link NCCL: libnccl.so.2 is dlopen()ed the
// first time lc.distributed needs it (RTLD_NOW | RTLD_LOCAL, once per process), from, in order,
// its SONAME (LD_LIBRARY_PATH, ld.so.cache, a copy torch already loaded), the vendor search dirs
// (NVIDIA's pip wheels: site-packages/nvidia/nccl/lib of `nvidia-nccl-cu13`, and
// LC_VENDOR_LIB_DIRS), then the directory CMake found libnccl in at build time; LC_NCCL_LIBRARY
// (a file path) replaces that search with one exact file. NCCL's types
// are declared in nccl.cpp (an int-sized enum each, the 128-byte unique id), checked against
// <nccl.h> when the build has that header; every function is resolved with dlsym. Importing
// lightning_core never needs NCCL; a missing NCCL is an lc::BackendError naming what was tried.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backends/collective.h"

namespace lc::cuda::nccl {

constexpr std::size_t kUniqueIdBytes = 128;

// A fresh ncclUniqueId as 128 bytes (ncclGetUniqueId; loads NCCL).
std::string unique_id();
// ncclCommInitRank on device `device` (made current for the call). Blocks until all ranks joined.
std::unique_ptr<Communicator> init_rank(const std::string& id, int nranks, int rank, int device);
// ncclCommInitAll: communicator i is rank i on devices[i].
std::vector<std::unique_ptr<Communicator>> init_all(const std::vector<int>& devices);
void group_start();
void group_end();
// What was loaded, from where, or why not (load = false: nothing is loaded).
CollectiveLibraryInfo library_info(bool load);

}  // namespace lc::cuda::nccl
