// Element helpers shared by the CPU multi-head attention forward (attention_mha.cpp) and
// backward (attention_mha_bwd.cpp): loads that widen 16-bit storage to the accumulation type,
// the narrowing store, the accumulation type's exp, and a per-task scratch buffer.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "backends/cpu/vec_math.h"
#include "lightning_core/dtype.h"

namespace lc::cpu::mha {

template <class T>
inline float widen(T x) {
  if constexpr (std::is_same_v<T, float16> || std::is_same_v<T, bfloat16>) return to_float(x);
  else return static_cast<float>(x);
}

// *p in the accumulation type A (float64 storage is read exactly).
template <class T, class A>
inline A load_as(const T* p) {
  if constexpr (std::is_same_v<T, double>) return static_cast<A>(*p);
  else return static_cast<A>(widen(*p));
}

template <class T>
inline T narrow(double x) {
  if constexpr (std::is_same_v<T, float16>) return to_f16(x);
  else if constexpr (std::is_same_v<T, bfloat16>) return to_bf16(x);
  else return static_cast<T>(x);
}

template <class A>
inline A exp_a(A x) {
  if constexpr (std::is_same_v<A, float>) return fast_exp(x);
  else return std::exp(x);
}

template <class A>
struct Scratch {
  std::vector<A> buf;
  A* get(std::int64_t n) {
    if (static_cast<std::int64_t>(buf.size()) < n) buf.resize(static_cast<std::size_t>(n));
    return buf.data();
  }
};

}  // namespace lc::cpu::mha
