// sync_latency: where the ~10 us of "launch a tiny kernel, wait for it" goes on this machine, and
// which ways of waiting are cheaper than cudaStreamSynchronize. Raw CUDA runtime only (no
// Lightning Core code), so the numbers are the floor our own launch path sits on.
//
//   sync_latency [spin|yield|blocking|auto] [out.txt]
// The first argument picks cudaSetDeviceFlags' scheduling mode (before the context exists).
// Every row: median (and p10/p90) of 2000 timed iterations of a vector add of n=65536 floats
// (the issue's "resident tiny op"), host clock, after 200 warm-ups.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
static inline void cpu_relax() { _mm_pause(); }
#else
static inline void cpu_relax() {}
#endif

#define CK(x)                                                                         \
  do {                                                                                \
    cudaError_t e_ = (x);                                                             \
    if (e_ != cudaSuccess) {                                                          \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                   \
    }                                                                                 \
  } while (0)

namespace {

constexpr int kN = 65536;
constexpr int kThreads = 256;
constexpr int kBlocks = kN / 4 / kThreads;  // 64 blocks of float4 work

__device__ void add_block(const float4* a, const float4* b, float4* c, int n4) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n4) {
    float4 x = a[i], y = b[i];
    c[i] = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
  }
}

// After every block's writes: the last block to finish resets the counter and publishes `seq`
// to a host-mapped word after a system fence.
__device__ void last_block_signals(unsigned* counter, volatile unsigned* flag, unsigned seq) {
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned prev = atomicAdd(counter, 1u);
    if (prev == gridDim.x - 1) {
      *counter = 0;
      __threadfence_system();
      *flag = seq;
    }
  }
}

__global__ void add4(const float4* a, const float4* b, float4* c, int n4) { add_block(a, b, c, n4); }

// Same work; the last block to finish publishes `seq` to a host-mapped word after a system fence,
// so the host can wait by reading its own memory instead of calling into the driver.
__global__ void add4_signal(const float4* a, const float4* b, float4* c, int n4, unsigned* counter,
                            volatile unsigned* host_flag, unsigned seq) {
  add_block(a, b, c, n4);
  last_block_signals(counter, host_flag, seq);
}

__global__ void empty_kernel() {}

// A persistent kernel serving a mailbox in host-mapped memory: no launch per op at all.
struct Mailbox {
  volatile unsigned cmd;   // host writes a new sequence number to start; ~0u stops the kernel
  volatile unsigned done;  // the kernel writes the sequence number back when finished
};

__global__ void persistent_add(Mailbox* mb, const float4* a, const float4* b, float4* c, int n4,
                               unsigned* counter) {
  __shared__ unsigned s_cmd;
  unsigned seen = 0;
  for (;;) {
    if (threadIdx.x == 0) {
      unsigned v;
      do { v = mb->cmd; } while (v == seen);
      s_cmd = v;
    }
    __syncthreads();
    const unsigned v = s_cmd;
    if (v == ~0u) return;
    seen = v;
    add_block(a, b, c, n4);
    last_block_signals(counter, &mb->done, v);
    __syncthreads();
  }
}

struct Stats { double p10, p50, p90; };

Stats time_it(const std::function<void()>& body, int warm = 200, int iters = 2000) {
  for (int i = 0; i < warm; ++i) body();
  std::vector<double> t(iters);
  for (int i = 0; i < iters; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    body();
    t[i] = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  }
  std::sort(t.begin(), t.end());
  return {t[iters / 10], t[iters / 2], t[iters * 9 / 10]};
}

std::vector<std::string> g_lines;
void row(const char* name, Stats s, const char* note = "") {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-46s p50 %7.2f us  p10 %7.2f  p90 %7.2f  %s", name, s.p50, s.p10,
                s.p90, note);
  std::puts(buf);
  g_lines.emplace_back(buf);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "auto";
  unsigned flags = cudaDeviceScheduleAuto;
  if (mode == "spin") flags = cudaDeviceScheduleSpin;
  else if (mode == "yield") flags = cudaDeviceScheduleYield;
  else if (mode == "blocking") flags = cudaDeviceScheduleBlockingSync;
  CK(cudaSetDeviceFlags(flags | cudaDeviceMapHost));
  CK(cudaFree(nullptr));
  cudaDeviceProp p{};
  CK(cudaGetDeviceProperties(&p, 0));
  char head[256];
  std::snprintf(head, sizeof head, "device: %s, schedule mode: %s", p.name, mode.c_str());
  std::puts(head);
  g_lines.emplace_back(head);

  float *a, *b, *c;
  CK(cudaMalloc(&a, kN * 4));
  CK(cudaMalloc(&b, kN * 4));
  CK(cudaMalloc(&c, kN * 4));
  CK(cudaMemset(a, 0, kN * 4));
  CK(cudaMemset(b, 0, kN * 4));
  unsigned* counter;
  CK(cudaMalloc(&counter, 4));
  CK(cudaMemset(counter, 0, 4));
  unsigned* flag_h;
  CK(cudaHostAlloc(&flag_h, 64, cudaHostAllocMapped));
  std::memset(flag_h, 0, 64);
  unsigned* flag_d;
  CK(cudaHostGetDevicePointer(&flag_d, flag_h, 0));
  volatile unsigned* vflag = flag_h;

  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaEvent_t ev;
  CK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  const float4 *a4 = reinterpret_cast<const float4*>(a), *b4 = reinterpret_cast<const float4*>(b);
  float4* c4 = reinterpret_cast<float4*>(c);
  const int n4 = kN / 4;

  row("empty<<<1,1>>> + cudaStreamSynchronize", time_it([&] {
        empty_kernel<<<1, 1, 0, s>>>();
        cudaStreamSynchronize(s);
      }));
  row("add + cudaStreamSynchronize", time_it([&] {
        add4<<<kBlocks, kThreads, 0, s>>>(a4, b4, c4, n4);
        cudaStreamSynchronize(s);
      }));
  row("add + cudaStreamSynchronize (legacy stream)", time_it([&] {
        add4<<<kBlocks, kThreads>>>(a4, b4, c4, n4);
        cudaStreamSynchronize(0);
      }));
  row("add + event record + cudaEventSynchronize", time_it([&] {
        add4<<<kBlocks, kThreads, 0, s>>>(a4, b4, c4, n4);
        cudaEventRecord(ev, s);
        cudaEventSynchronize(ev);
      }));
  row("add + spin on cudaStreamQuery", time_it([&] {
        add4<<<kBlocks, kThreads, 0, s>>>(a4, b4, c4, n4);
        while (cudaStreamQuery(s) == cudaErrorNotReady) cpu_relax();
      }));
  unsigned seq = 0;
  row("add_signal + spin on mapped flag", time_it([&] {
        ++seq;
        add4_signal<<<kBlocks, kThreads, 0, s>>>(a4, b4, c4, n4, counter, flag_d, seq);
        while (*vflag != seq) cpu_relax();
      }), "stream still holds the kernel's tail");
  row("add_signal + flag + cudaStreamSynchronize", time_it([&] {
        ++seq;
        add4_signal<<<kBlocks, kThreads, 0, s>>>(a4, b4, c4, n4, counter, flag_d, seq);
        while (*vflag != seq) cpu_relax();
        cudaStreamSynchronize(s);
      }));
  // Host-side cost of one launch: 1000 back-to-back launches, then one sync, per launch.
  {
    std::vector<double> per;
    for (int rep = 0; rep < 20; ++rep) {
      cudaStreamSynchronize(s);
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < 1000; ++i) add4<<<kBlocks, kThreads, 0, s>>>(a4, b4, c4, n4);
      per.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / 1000);
      cudaStreamSynchronize(s);
    }
    std::sort(per.begin(), per.end());
    row("host cost of one add launch (async)", {per[2], per[10], per[17]}, "1000 launches / 1000");
  }
  // Device time of the add alone (events around 1000 launches).
  {
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    cudaEventRecord(e0, s);
    for (int i = 0; i < 1000; ++i) add4<<<kBlocks, kThreads, 0, s>>>(a4, b4, c4, n4);
    cudaEventRecord(e1, s);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    row("device time of one add (back to back)", {ms, ms, ms}, "x1000 us / 1000");
  }
  // CUDA graph of one add node.
  {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    add4<<<kBlocks, kThreads, 0, s>>>(a4, b4, c4, n4);
    CK(cudaStreamEndCapture(s, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    row("graph(add) launch + cudaStreamSynchronize", time_it([&] {
          cudaGraphLaunch(ge, s);
          cudaStreamSynchronize(s);
        }));
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
  }
  // Persistent kernel + mailbox: no launch per op.
  {
    Mailbox* mb_h;
    CK(cudaHostAlloc(&mb_h, sizeof(Mailbox), cudaHostAllocMapped));
    mb_h->cmd = 0;
    mb_h->done = 0;
    Mailbox* mb_d;
    CK(cudaHostGetDevicePointer(&mb_d, mb_h, 0));
    cudaStream_t ps;
    CK(cudaStreamCreateWithFlags(&ps, cudaStreamNonBlocking));
    persistent_add<<<kBlocks, kThreads, 0, ps>>>(mb_d, a4, b4, c4, n4, counter);
    unsigned cmd = 0;
    row("persistent kernel mailbox round trip", time_it([&] {
          ++cmd;
          mb_h->cmd = cmd;
          while (mb_h->done != cmd) cpu_relax();
        }), "64 resident blocks poll host memory");
    mb_h->cmd = ~0u;
    CK(cudaStreamSynchronize(ps));
    CK(cudaStreamDestroy(ps));
    CK(cudaFreeHost(mb_h));
  }
  CK(cudaGetLastError());
  if (argc > 2) {
    if (FILE* f = std::fopen(argv[2], "a")) {
      for (auto& l : g_lines) std::fprintf(f, "%s\n", l.c_str());
      std::fclose(f);
    }
  }
  return 0;
}
