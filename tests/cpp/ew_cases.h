// Backend-generic checks of the elementwise (dtypes, broadcasting), strided-copy and embedding
// kernels, written against the Backend interface only (alloc / copy_from_host / copy_to_host),
// so the same code runs on the CPU backend (test_ew_kernels.cpp) and on the CUDA backend
// (test_cuda_ew_kernels.cpp, skipped without a GPU). References are float64 computed from the
// inputs' stored (rounded) values; outputs are poisoned with NaN bytes first.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "lightning_core/dtype.h"
#include "lightning_core/errors.h"
#include "reference.h"

namespace lc::ewtest {

using i64 = std::int64_t;

// Bytes in a backend's memory (any dtype), `pad` elements of slack before the data.
struct Buf {
  Buf(Backend& be, std::size_t bytes, std::size_t pad_bytes = 0)
      : be_(be), pad_(pad_bytes), bytes_(bytes),
        base_(static_cast<unsigned char*>(be.alloc(bytes + pad_bytes + 16))) {}
  ~Buf() { be_.free(base_); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  void* get() const { return base_ + pad_; }
  void upload(const std::vector<unsigned char>& h) const {
    be_.copy_from_host(get(), h.data(), h.size());
    be_.synchronize();
  }
  std::vector<unsigned char> download() const {
    std::vector<unsigned char> h(bytes_);
    be_.synchronize();
    be_.copy_to_host(h.data(), get(), bytes_);
    be_.synchronize();
    return h;
  }
  Backend& be_;
  std::size_t pad_, bytes_;
  unsigned char* base_;
};

// Host values <-> storage bytes of `t` (through float64; integers via convert_elements rules).
inline std::vector<unsigned char> encode(const std::vector<double>& v, DType t) {
  std::vector<unsigned char> out(v.size() * dtype_size(t));
  convert_elements(DType::f64, v.data(), t, out.data(), static_cast<i64>(v.size()));
  return out;
}
inline std::vector<double> decode(const std::vector<unsigned char>& b, DType t) {
  const i64 n = static_cast<i64>(b.size() / dtype_size(t));
  std::vector<double> out(static_cast<std::size_t>(n));
  convert_elements(t, b.data(), DType::f64, out.data(), n);
  return out;
}
inline std::vector<unsigned char> convert(const std::vector<unsigned char>& b, DType from, DType to) {
  const i64 n = static_cast<i64>(b.size() / dtype_size(from));
  std::vector<unsigned char> out(static_cast<std::size_t>(n) * dtype_size(to));
  convert_elements(from, b.data(), to, out.data(), n);
  return out;
}
// The values `v` takes once stored in `t` (what a kernel reads).
inline std::vector<double> rounded(const std::vector<double>& v, DType t) {
  return decode(encode(v, t), t);
}
inline std::vector<unsigned char> nan_bytes(i64 n, DType t) {
  return encode(std::vector<double>(static_cast<std::size_t>(n), std::nan("")), t);
}

inline double tol(DType t) {
  return t == DType::f64 ? 1e-12 : t == DType::f32 ? 1e-5 : 1e-2;
}

inline bool binary(EwKind k) {
  return k == EwKind::add || k == EwKind::sub || k == EwKind::mul || k == EwKind::div;
}

inline double ref_op(EwKind k, double x, double y, double alpha) {
  switch (k) {
    case EwKind::add: return x + y;
    case EwKind::sub: return x - y;
    case EwKind::mul: return x * y;
    case EwKind::div: return x / y;
    case EwKind::scale: return x * alpha;
    case EwKind::relu: return x < 0 ? 0.0 : x;
    case EwKind::gelu: return ref::gelu(x);
    case EwKind::gelu_erf: return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
  }
  return 0;
}

// Equal values, NaN matching any NaN (a GPU's canonical NaN has other payload bits than the
// host conversion's quiet NaN).
inline ::testing::AssertionResult same_values(const std::vector<double>& got,
                                              const std::vector<double>& want) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << "size mismatch";
  for (std::size_t i = 0; i < got.size(); ++i) {
    const bool gn = std::isnan(got[i]), wn = std::isnan(want[i]);
    if (gn != wn || (!gn && got[i] != want[i]))
      return ::testing::AssertionFailure() << "element " << i << ": got " << got[i] << ", want "
                                           << want[i];
  }
  return ::testing::AssertionSuccess();
}

// Every value finite and within tol of ref (relative to max(1, |ref|)).
inline ::testing::AssertionResult close(const std::vector<double>& got,
                                        const std::vector<double>& ref, double t) {
  if (got.size() != ref.size()) return ::testing::AssertionFailure() << "size mismatch";
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double scale = std::fabs(ref[i]) > 1.0 ? std::fabs(ref[i]) : 1.0;
    if (!(std::fabs(got[i] - ref[i]) <= t * scale))
      return ::testing::AssertionFailure() << "element " << i << ": got " << got[i]
                                           << ", want " << ref[i];
  }
  return ::testing::AssertionSuccess();
}

inline std::vector<double> rand_vals(ref::Rng& rng, i64 n, bool away_from_zero) {
  auto f = rng.vec(static_cast<std::size_t>(n), -3.0f, 3.0f);
  std::vector<double> v(f.begin(), f.end());
  if (away_from_zero)
    for (double& x : v) x = x < 0 ? x - 0.5 : x + 0.5;
  return v;
}

// Contiguous operands: every kind, the given dtypes, odd sizes, misaligned (by one element)
// pointers, out aliasing a.
inline void check_contiguous_kinds(Backend& be, const std::vector<DType>& dtypes) {
  ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const EwKind kinds[] = {EwKind::add, EwKind::sub, EwKind::mul, EwKind::div,
                          EwKind::scale, EwKind::relu, EwKind::gelu, EwKind::gelu_erf};
  for (DType t : dtypes) {
    const std::size_t es = dtype_size(t);
    for (i64 n : {i64{1}, i64{7}, i64{13}, i64{4099}, i64{300007}}) {
      for (std::size_t pad : {std::size_t{0}, es}) {
        for (EwKind k : kinds) {
          SCOPED_TRACE(std::string(dtype_info(t).name) + " n=" + std::to_string(n) +
                       " kind=" + std::to_string(int(k)) + " pad=" + std::to_string(pad));
          const auto av = rounded(rand_vals(rng, n, false), t);
          const auto bv = rounded(rand_vals(rng, n, k == EwKind::div), t);
          Buf a(be, n * es, pad), b(be, n * es, pad), o(be, n * es, pad);
          a.upload(encode(av, t));
          b.upload(encode(bv, t));
          o.upload(nan_bytes(n, t));
          ElementwiseArgs e;
          e.kind = k;
          e.dtype = t;
          e.a = a.get();
          e.b = binary(k) ? b.get() : nullptr;
          e.out = o.get();
          e.n = n;
          e.alpha = -1.75f;
          be.elementwise(e);
          std::vector<double> want(static_cast<std::size_t>(n));
          for (std::size_t i = 0; i < want.size(); ++i) want[i] = ref_op(k, av[i], bv[i], -1.75);
          ASSERT_TRUE(close(decode(o.download(), t), want, tol(t)));
          e.out = a.get();  // out aliases a
          be.elementwise(e);
          ASSERT_TRUE(close(decode(a.download(), t), want, tol(t)));
        }
      }
    }
  }
}

// One broadcast / strided layout: out has `shape` (contiguous); a and b are read from buffers
// of na / nb elements (at offset a_off / b_off elements) through the given strides.
struct Layout {
  std::vector<i64> shape, as, bs;
  i64 na, nb, a_off, b_off;
};

inline void check_strided(Backend& be, const std::vector<DType>& dtypes) {
  ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const std::vector<Layout> layouts = {
      // [4, 5, 37]: a [5, 37] broadcast over dim 0, b [4, 1, 37]
      {{4, 5, 37}, {0, 37, 1}, {37, 0, 1}, 5 * 37, 4 * 37, 0, 0},
      // [33, 17]: a contiguous, b transposed ([17, 33] storage)
      {{33, 17}, {17, 1}, {1, 33}, 33 * 17, 33 * 17, 0, 0},
      // [100, 3] (inner < 32: per-element decomposition): b a broadcast row
      {{100, 3}, {3, 1}, {0, 1}, 300, 3, 0, 0},
      // [9, 2500] (rows of more than one tile): b a column, negative strides on a
      {{9, 2500}, {-2500, -1}, {1, 0}, 9 * 2500, 9, 9 * 2500 - 1, 0},
      // Rows of a multiple of 16 bytes (CUDA's packed row kernels): b a row, b a column; and the
      // same with a misaligned by one element (the scalar row kernel).
      {{6, 512}, {512, 1}, {0, 1}, 6 * 512, 512, 0, 0},
      {{7, 64}, {64, 1}, {1, 0}, 7 * 64, 7, 0, 0},
      {{5, 256}, {256, 1}, {0, 1}, 5 * 256 + 1, 256, 1, 0},
      {{3, 4, 128}, {128, 0, 1}, {0, 128, 1}, 3 * 128, 4 * 128, 0, 0},
      // [3, 2, 2, 5, 3, 2, 2, 3]: eight dims, a with gaps (strides doubled), b broadcast scalars
      {{3, 2, 2, 5, 3, 2, 2, 3}, {2880, 1440, 720, 144, 48, 24, 12, 2}, {0, 0, 0, 0, 0, 0, 0, 0},
       3 * 2880, 1, 0, 0},
  };
  const EwKind kinds[] = {EwKind::add, EwKind::div, EwKind::relu, EwKind::gelu_erf};
  for (DType t : dtypes) {
    const std::size_t es = dtype_size(t);
    for (const Layout& L : layouts) {
      for (EwKind k : kinds) {
        SCOPED_TRACE(std::string(dtype_info(t).name) + " ndim=" + std::to_string(L.shape.size()) +
                     " kind=" + std::to_string(int(k)));
        const auto av = rounded(rand_vals(rng, L.na, false), t);
        const auto bv = rounded(rand_vals(rng, L.nb, k == EwKind::div), t);
        i64 n = 1;
        for (i64 d : L.shape) n *= d;
        Buf a(be, L.na * es), b(be, L.nb * es), o(be, n * es);
        a.upload(encode(av, t));
        b.upload(encode(bv, t));
        o.upload(nan_bytes(n, t));
        ElementwiseArgs e;
        e.kind = k;
        e.dtype = t;
        e.a = static_cast<unsigned char*>(a.get()) + L.a_off * static_cast<i64>(es);
        e.b = binary(k) ? static_cast<unsigned char*>(b.get()) + L.b_off * static_cast<i64>(es)
                        : nullptr;
        e.out = o.get();
        e.n = n;
        e.ndim = static_cast<int>(L.shape.size());
        for (int i = 0; i < e.ndim; ++i) {
          e.shape[i] = L.shape[i];
          e.a_strides[i] = L.as[i];
          e.b_strides[i] = L.bs[i];
        }
        be.elementwise(e);
        std::vector<double> want(static_cast<std::size_t>(n));
        for (i64 i = 0; i < n; ++i) {
          i64 rem = i, ao = L.a_off, bo = L.b_off;
          for (int d = e.ndim - 1; d >= 0; --d) {
            const i64 c = rem % L.shape[d];
            rem /= L.shape[d];
            ao += c * L.as[d];
            bo += c * L.bs[d];
          }
          want[static_cast<std::size_t>(i)] = ref_op(k, av[ao], bv[bo], 1.0);
        }
        ASSERT_TRUE(close(decode(o.download(), t), want, tol(t)));
      }
    }
  }
}

// copy_strided between every dtype pair: a permuted source into a contiguous destination, and
// a contiguous source into a destination with gaps (the gaps must stay untouched).
inline void check_copy_strided(Backend& be) {
  ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const DType all[] = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64};
  const i64 d0 = 3, d1 = 4, d2 = 37, n = d0 * d1 * d2;
  for (DType s : all) {
    for (DType d : all) {
      SCOPED_TRACE(std::string(dtype_info(s).name) + " -> " + dtype_info(d).name);
      std::vector<double> v(static_cast<std::size_t>(n));
      for (auto& x : v) x = static_cast<double>(rng.uniform_int(-300000, 300000)) / 64.0;
      v[5] = std::nan("");
      v[6] = 1e30;
      const auto sv = rounded(v, s);
      Buf src(be, n * dtype_size(s)), dst(be, n * dtype_size(d));
      src.upload(encode(sv, s));
      // Source storage [d2, d0, d1] read as the [d0, d1, d2] permutation.
      StridedCopyArgs c;
      c.src = src.get();
      c.dst = dst.get();
      c.src_dtype = s;
      c.dst_dtype = d;
      c.ndim = 3;
      const i64 shape[3] = {d0, d1, d2}, ss[3] = {d1, 1, d0 * d1}, ds[3] = {d1 * d2, d2, 1};
      for (int i = 0; i < 3; ++i) {
        c.shape[i] = shape[i];
        c.src_strides[i] = ss[i];
        c.dst_strides[i] = ds[i];
      }
      dst.upload(nan_bytes(n, d));
      be.copy_strided(c);
      std::vector<double> gathered(static_cast<std::size_t>(n));
      for (i64 i = 0; i < d0; ++i)
        for (i64 j = 0; j < d1; ++j)
          for (i64 k = 0; k < d2; ++k)
            gathered[static_cast<std::size_t>(i * d1 * d2 + j * d2 + k)] =
                sv[static_cast<std::size_t>(i * ss[0] + j * ss[1] + k * ss[2])];
      // The host's convert_elements from the source dtype defines every conversion (int -> int
      // wraps as numpy; float -> int truncates, NaN / out of range give the minimum).
      const auto want = convert(encode(gathered, s), s, d);
      EXPECT_TRUE(same_values(decode(dst.download(), d), decode(want, d)));
      // Scatter into every other element of a 2n buffer; the gaps keep their bytes.
      Buf wide(be, 2 * n * dtype_size(d));
      const auto sentinel = encode(std::vector<double>(static_cast<std::size_t>(2 * n), 7.0), d);
      wide.upload(sentinel);
      StridedCopyArgs w;
      w.src = src.get();
      w.dst = wide.get();
      w.src_dtype = s;
      w.dst_dtype = d;
      w.ndim = 1;
      w.shape[0] = n;
      w.src_strides[0] = 1;
      w.dst_strides[0] = 2;
      be.copy_strided(w);
      const auto wv = decode(wide.download(), d);
      const auto flat = decode(convert(encode(sv, s), s, d), d);
      std::vector<double> expect(static_cast<std::size_t>(2 * n), decode(sentinel, d)[0]);
      for (i64 i = 0; i < n; ++i) expect[static_cast<std::size_t>(2 * i)] = flat[static_cast<std::size_t>(i)];
      EXPECT_TRUE(same_values(wv, expect));
    }
  }
}

// embedding rows and first_bad_index, int32 and int64 ids, row sizes that are and are not
// multiples of 16 bytes.
inline void check_embedding(Backend& be) {
  ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  for (DType t : {DType::f32, DType::f16, DType::bf16}) {
    for (DType it : {DType::i32, DType::i64}) {
      for (i64 dim : {i64{1}, i64{3}, i64{8}, i64{64}, i64{1000}}) {
        const i64 vocab = 53, n = 301;
        SCOPED_TRACE(std::string(dtype_info(t).name) + " ids " + dtype_info(it).name +
                     " dim=" + std::to_string(dim));
        const auto wv = rounded(rand_vals(rng, vocab * dim, false), t);
        std::vector<double> ids(static_cast<std::size_t>(n));
        for (auto& x : ids) x = static_cast<double>(rng.uniform_int(0, vocab - 1));
        Buf w(be, vocab * dim * dtype_size(t)), o(be, n * dim * dtype_size(t)),
            ib(be, n * dtype_size(it));
        w.upload(encode(wv, t));
        ib.upload(encode(ids, it));
        EXPECT_EQ(be.first_bad_index(ib.get(), it, n, vocab), -1);
        o.upload(nan_bytes(n * dim, t));
        EmbeddingArgs e;
        e.ids = ib.get();
        e.ids_dtype = it;
        e.weight = w.get();
        e.out = o.get();
        e.dtype = t;
        e.n = n;
        e.vocab = vocab;
        e.dim = dim;
        be.embedding(e);
        auto got = decode(o.download(), t);
        for (i64 r = 0; r < n; ++r)
          for (i64 c = 0; c < dim; ++c)
            ASSERT_EQ(got[static_cast<std::size_t>(r * dim + c)],
                      wv[static_cast<std::size_t>(static_cast<i64>(ids[r]) * dim + c)]);
        // Bad ids: first_bad_index finds the first; the gather writes zero rows for them and
        // reads nothing out of bounds.
        ids[7] = -1;
        ids[200] = static_cast<double>(vocab);
        ib.upload(encode(ids, it));
        EXPECT_EQ(be.first_bad_index(ib.get(), it, n, vocab), 7);
        EXPECT_EQ(be.first_bad_index(ib.get(), it, 7, vocab), -1);
        be.embedding(e);
        got = decode(o.download(), t);
        for (i64 c = 0; c < dim; ++c) {
          EXPECT_EQ(got[static_cast<std::size_t>(7 * dim + c)], 0.0);
          EXPECT_EQ(got[static_cast<std::size_t>(200 * dim + c)], 0.0);
        }
      }
    }
  }
}

}  // namespace lc::ewtest
