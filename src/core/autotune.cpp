// The auto-tune cache (autotune.h): a tiny JSON reader/writer for its flat schema, the atomic
// file store, the CPU fingerprint and the tuners (CPU conv path, cuBLASLt algorithm / GEMM modes).
#include "lightning_core/autotune.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include "backends/backend.h"
#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/thread_pool.h"
#include "core/tuners.h"
#include "lightning_core/errors.h"
#include "lightning_core/tensor.h"

#ifdef LC_HAVE_CUDA
#include "backends/cuda/matmul.h"
#endif

namespace lc {

// ---- fingerprints ------------------------------------------------------------------------------

std::string cpu_fingerprint() {
  // C stdio rather than iostreams: this runs inside processes that also load other C++
  // runtimes (torch), where as little shared C++ library state as possible is touched.
  static const std::string fp = [] {
    std::string model = "unknown-cpu";
    if (std::FILE* f = std::fopen("/proc/cpuinfo", "r")) {
      char buf[512];
      while (std::fgets(buf, sizeof buf, f)) {
        if (std::strncmp(buf, "model name", 10) != 0) continue;
        const char* c = std::strchr(buf, ':');
        if (c) {
          ++c;
          while (*c == ' ' || *c == '\t') ++c;
          std::size_t n = std::strlen(c);
          while (n > 0 && (c[n - 1] == '\n' || c[n - 1] == '\r' || c[n - 1] == ' ')) --n;
          if (n > 0) model.assign(c, n);
        }
        break;
      }
      std::fclose(f);
    }
    return "cpu:" + model + ";threads=" + std::to_string(cpu::num_threads()) +
           ";gemm=" + cpu::gemm_engine() + ";isa=" + std::to_string(cpu::gemm_isa_count());
  }();
  return fp;
}

std::string device_fingerprint(DeviceKind d) {
  switch (d) {
    case DeviceKind::cpu: return cpu_fingerprint();
    case DeviceKind::cuda: return cuda_fingerprint();
    case DeviceKind::metal: return "metal:unavailable";
  }
  return "?";
}

namespace autotune {

// ---- a minimal JSON value, reader and writer ---------------------------------------------------
namespace {

struct JValue {
  enum Kind { null, boolean, number, string, array, object } kind = null;
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<JValue> arr;
  std::vector<std::pair<std::string, JValue>> obj;
  const JValue* get(const std::string& k) const {
    for (const auto& kv : obj)
      if (kv.first == k) return &kv.second;
    return nullptr;
  }
};

class JReader {
 public:
  explicit JReader(const std::string& s) : s_(s) {}
  bool parse(JValue& out) {
    if (!value(out, 0)) return false;
    ws();
    return i_ == s_.size();
  }

 private:
  void ws() {
    while (i_ < s_.size() && std::strchr(" \t\r\n", s_[i_])) ++i_;
  }
  bool lit(const char* w) {
    const std::size_t n = std::strlen(w);
    if (s_.compare(i_, n, w) != 0) return false;
    i_ += n;
    return true;
  }
  bool str(std::string& out) {
    if (i_ >= s_.size() || s_[i_] != '"') return false;
    ++i_;
    while (i_ < s_.size()) {
      const char c = s_[i_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) return false;
      const char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          if (i_ + 4 > s_.size()) return false;
          unsigned cp = 0;
          for (int k = 0; k < 4; ++k) {
            const char h = s_[i_++];
            cp <<= 4;
            if (h >= '0' && h <= '9') cp |= static_cast<unsigned>(h - '0');
            else if (h >= 'a' && h <= 'f') cp |= static_cast<unsigned>(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') cp |= static_cast<unsigned>(h - 'A' + 10);
            else return false;
          }
          // Our writer only escapes control characters; encode the BMP code point as UTF-8.
          if (cp < 0x80) {
            out += static_cast<char>(cp);
          } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
          } else {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
          }
          break;
        }
        default: return false;
      }
    }
    return false;
  }
  bool value(JValue& v, int depth) {
    if (depth > 32) return false;
    ws();
    if (i_ >= s_.size()) return false;
    const char c = s_[i_];
    if (c == '{') {
      ++i_;
      v.kind = JValue::object;
      ws();
      if (i_ < s_.size() && s_[i_] == '}') {
        ++i_;
        return true;
      }
      for (;;) {
        ws();
        std::string k;
        if (!str(k)) return false;
        ws();
        if (i_ >= s_.size() || s_[i_++] != ':') return false;
        JValue child;
        if (!value(child, depth + 1)) return false;
        v.obj.emplace_back(std::move(k), std::move(child));
        ws();
        if (i_ >= s_.size()) return false;
        if (s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (s_[i_] == '}') {
          ++i_;
          return true;
        }
        return false;
      }
    }
    if (c == '[') {
      ++i_;
      v.kind = JValue::array;
      ws();
      if (i_ < s_.size() && s_[i_] == ']') {
        ++i_;
        return true;
      }
      for (;;) {
        JValue child;
        if (!value(child, depth + 1)) return false;
        v.arr.push_back(std::move(child));
        ws();
        if (i_ >= s_.size()) return false;
        if (s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (s_[i_] == ']') {
          ++i_;
          return true;
        }
        return false;
      }
    }
    if (c == '"') {
      v.kind = JValue::string;
      return str(v.str);
    }
    if (lit("true")) {
      v.kind = JValue::boolean;
      v.b = true;
      return true;
    }
    if (lit("false")) {
      v.kind = JValue::boolean;
      return true;
    }
    if (lit("null")) return true;
    const char* begin = s_.c_str() + i_;
    char* end = nullptr;
    v.num = std::strtod(begin, &end);
    if (end == begin) return false;
    v.kind = JValue::number;
    i_ += static_cast<std::size_t>(end - begin);
    return true;
  }

  const std::string& s_;
  std::size_t i_ = 0;
};

void json_string(std::ostream& os, const std::string& s) {
  os << '"';
  for (const char c : s) {
    switch (c) {
      case '"': os << "\\\""; break;
      case '\\': os << "\\\\"; break;
      case '\n': os << "\\n"; break;
      case '\r': os << "\\r"; break;
      case '\t': os << "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          os << buf;
        } else {
          os << c;
        }
    }
  }
  os << '"';
}

// ---- the cache ---------------------------------------------------------------------------------

struct Cache {
  std::mutex mu;
  std::string loaded_path;  // the file the in-memory entries came from ("" = not loaded)
  std::map<std::string, Fields> entries;
  std::function<void(const std::string&)> warn;
  std::atomic<std::uint64_t> measurements{0};
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: usable during static destruction
  return *c;
}

void emit(const std::vector<std::string>& warnings) {
  if (warnings.empty()) return;
  std::function<void(const std::string&)> h;
  {
    std::lock_guard<std::mutex> lk(cache().mu);
    h = cache().warn;
  }
  for (const auto& w : warnings) {
    if (h) h(w);
    else std::cerr << "lightning_core: warning: " << w << std::endl;
  }
}

std::string env_or_empty(const char* n) {
  const char* v = std::getenv(n);
  return v ? std::string(v) : std::string();
}

const char* kLibraryVersion = LC_VERSION;

// Loads `path` into c.entries when it is not the loaded file. Caller holds c.mu.
void ensure_loaded(Cache& c, const std::string& path, std::vector<std::string>& warnings) {
  if (c.loaded_path == path) return;
  c.loaded_path = path;
  c.entries.clear();
  std::ifstream f(path, std::ios::binary);
  if (!f) return;  // no file yet: an empty cache
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  JValue root;
  JReader rd(text);
  if (!rd.parse(root) || root.kind != JValue::object) {
    warnings.push_back("auto-tune cache " + path + " is corrupt (not valid JSON); ignoring it, "
                       "it will be rebuilt");
    return;
  }
  const JValue* fmt = root.get("format");
  const JValue* ver = root.get("schema_version");
  if (!fmt || fmt->kind != JValue::string || fmt->str != "lightning-core-autotune" || !ver ||
      ver->kind != JValue::number || static_cast<int>(ver->num) != kSchemaVersion) {
    warnings.push_back("auto-tune cache " + path + " has an unknown format or schema version "
                       "(expected lightning-core-autotune v" + std::to_string(kSchemaVersion) +
                       "); ignoring it, it will be rebuilt");
    return;
  }
  const JValue* ents = root.get("entries");
  if (!ents || ents->kind != JValue::object) {
    warnings.push_back("auto-tune cache " + path + " has no \"entries\" object; ignoring it, it "
                       "will be rebuilt");
    return;
  }
  for (const auto& [key, val] : ents->obj) {
    if (val.kind != JValue::object) continue;
    Fields fl;
    bool ok = true;
    for (const auto& [fk, fv] : val.obj) {
      if (fv.kind != JValue::string) {
        ok = false;
        break;
      }
      fl[fk] = fv.str;
    }
    // Entries of another library version are dropped (they are keyed by it anyway).
    if (!ok || fl["library_version"] != kLibraryVersion) continue;
    c.entries[key] = std::move(fl);
  }
}

bool mkdirs(const std::string& dir, std::string& err) {
  std::string cur;
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    cur = dir.substr(0, pos);
    if (cur.empty()) continue;
    if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
      err = "cannot create " + cur + ": " + std::strerror(errno);
      return false;
    }
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    err = dir + " is not a directory";
    return false;
  }
  return true;
}

// Writes c.entries to `path` atomically. Caller holds c.mu.
void write_file(Cache& c, const std::string& path, std::vector<std::string>& warnings) {
  std::string err;
  const std::string dir = path.substr(0, path.find_last_of('/'));
  if (!mkdirs(dir, err)) {
    warnings.push_back("cannot write the auto-tune cache (" + err + "); choices are kept in "
                       "memory for this process only");
    return;
  }
  std::ostringstream os;
  os << "{\n  \"format\": \"lightning-core-autotune\",\n  \"schema_version\": "
     << std::to_string(kSchemaVersion) << ",\n  \"library_version\": ";
  json_string(os, kLibraryVersion);
  os << ",\n  \"entries\": {";
  bool first = true;
  for (const auto& [key, fl] : c.entries) {
    os << (first ? "\n    " : ",\n    ");
    first = false;
    json_string(os, key);
    os << ": {";
    bool f2 = true;
    for (const auto& [k, v] : fl) {
      os << (f2 ? "" : ", ");
      f2 = false;
      json_string(os, k);
      os << ": ";
      json_string(os, v);
    }
    os << "}";
  }
  os << (first ? "}\n}\n" : "\n  }\n}\n");
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." +
                          std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id()));
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (f) f << os.str();
    f.flush();
    if (!f) {
      warnings.push_back("cannot write the auto-tune cache " + tmp + " (" + std::strerror(errno) +
                         "); choices are kept in memory for this process only");
      std::remove(tmp.c_str());
      return;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    warnings.push_back("cannot replace the auto-tune cache " + path + " (" + std::strerror(errno) +
                       "); choices are kept in memory for this process only");
    std::remove(tmp.c_str());
  }
}

}  // namespace

bool enabled() {
  const char* v = std::getenv("LC_AUTOTUNE");
  if (!v) return true;
  const std::string s(v);
  return !(s == "0" || s == "off" || s == "false" || s == "no");
}

std::string cache_dir() {
  std::string d = env_or_empty("LIGHTNING_CORE_CACHE_DIR");
  if (!d.empty()) return d;
  d = env_or_empty("XDG_CACHE_HOME");
  if (!d.empty()) return d + "/lightning-core";
  std::string home = env_or_empty("HOME");
  if (home.empty()) home = "/tmp";
  return home + "/.cache/lightning-core";
}

std::string cache_path() {
  std::string d = cache_dir();
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  return d + "/autotune.json";
}

std::string make_key(const std::string& op, const std::string& shapes, const std::string& dtype,
                     const std::string& fingerprint) {
  return op + "|" + shapes + "|" + dtype + "|" + fingerprint + "|" + kLibraryVersion;
}

std::optional<Fields> lookup(const std::string& key) {
  if (!enabled()) return std::nullopt;
  std::vector<std::string> warnings;
  std::optional<Fields> r;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lk(c.mu);
    ensure_loaded(c, cache_path(), warnings);
    auto it = c.entries.find(key);
    if (it != c.entries.end()) r = it->second;
  }
  emit(warnings);
  return r;
}

void store(const std::string& key, const std::string& op, const std::string& shapes,
           const std::string& dtype, const std::string& fingerprint, const Fields& extra) {
  if (!enabled()) return;
  std::vector<std::string> warnings;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lk(c.mu);
    const std::string path = cache_path();
    ensure_loaded(c, path, warnings);
    Fields fl = extra;
    fl["op"] = op;
    fl["shapes"] = shapes;
    fl["dtype"] = dtype;
    fl["device"] = fingerprint;
    fl["library_version"] = kLibraryVersion;
    if (!fl.count("choice")) fl["choice"] = "";
    fl["created_unix"] = std::to_string(
        std::chrono::duration_cast<std::chrono::seconds>(
            std::chrono::system_clock::now().time_since_epoch()).count());
    c.entries[key] = std::move(fl);
    write_file(c, path, warnings);
  }
  emit(warnings);
}

std::optional<Fields> lookup(const std::string& op, const std::string& shapes,
                             const std::string& dtype, DeviceKind device) {
  if (!enabled()) return std::nullopt;
  return lookup(make_key(op, shapes, dtype, device_fingerprint(device)));
}

void store(const std::string& op, const std::string& shapes, const std::string& dtype,
           DeviceKind device, const Fields& extra) {
  if (!enabled()) return;
  const std::string fp = device_fingerprint(device);
  store(make_key(op, shapes, dtype, fp), op, shapes, dtype, fp, extra);
}

std::vector<Entry> entries() {
  std::vector<std::string> warnings;
  std::vector<Entry> out;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lk(c.mu);
    ensure_loaded(c, cache_path(), warnings);
    for (const auto& [k, f] : c.entries) out.push_back({k, f});
  }
  emit(warnings);
  return out;
}

void clear() {
  std::vector<std::string> warnings;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lk(c.mu);
    const std::string path = cache_path();
    c.entries.clear();
    c.loaded_path = path;
    if (std::remove(path.c_str()) != 0 && errno != ENOENT)
      warnings.push_back("cannot delete the auto-tune cache " + path + " (" +
                         std::strerror(errno) + ")");
  }
  emit(warnings);
}

void reload() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.mu);
  c.loaded_path.clear();
  c.entries.clear();
}

void set_warning_handler(std::function<void(const std::string&)> h) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.mu);
  c.warn = std::move(h);
}

std::uint64_t measurement_count() { return cache().measurements.load(); }
void note_measurement() { cache().measurements.fetch_add(1); }

// ---- CPU conv2d tuner -------------------------------------------------------------------------

namespace {
double time_us(const std::function<void()>& f, int reps) {
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  return best;
}
}  // namespace

std::string cpu_conv2d_choice(const Conv2dArgs& a, bool tune) {
  if (!tune || !enabled()) return "auto";
  using std::to_string;
  const std::string shapes = "x=[" + to_string(a.n) + "," + to_string(a.c) + "," + to_string(a.h) +
                             "," + to_string(a.w_in) + "] w=[" + to_string(a.oc) + "," +
                             to_string(a.c) + "," + to_string(a.kh) + "," + to_string(a.kw) +
                             "] s=" + to_string(a.stride_h) + "," + to_string(a.stride_w) +
                             " p=" + to_string(a.pad_h) + "," + to_string(a.pad_w);
  if (auto f = lookup("conv2d_nchw.cpu_path", shapes, "float32", DeviceKind::cpu)) {
    const std::string& ch = (*f)["choice"];
    if (ch == "direct" || ch == "im2col") return ch;
  }
  note_measurement();
  // One warm-up each (page faults, thread-pool start), then the best of two.
  const double macs = static_cast<double>(a.n) * a.oc * a.oh * a.ow * a.c * a.kh * a.kw;
  const int reps = macs > 5e8 ? 1 : 2;
  cpu::conv2d_with(cpu::ConvPath::direct, a);
  const double t_direct = time_us([&] { cpu::conv2d_with(cpu::ConvPath::direct, a); }, reps);
  cpu::conv2d_with(cpu::ConvPath::im2col, a);
  const double t_gemm = time_us([&] { cpu::conv2d_with(cpu::ConvPath::im2col, a); }, reps);
  const std::string choice = t_direct <= t_gemm ? "direct" : "im2col";
  store("conv2d_nchw.cpu_path", shapes, "float32", DeviceKind::cpu,
        {{"choice", choice},
         {"direct_us", std::to_string(t_direct)},
         {"im2col_us", std::to_string(t_gemm)}});
  return choice;
}

void run_cpu_conv2d(const Conv2dArgs& a, const std::string& choice) {
  if (choice == "direct") cpu::conv2d_with(cpu::ConvPath::direct, a);
  else if (choice == "im2col") cpu::conv2d_with(cpu::ConvPath::im2col, a);
  else cpu::conv2d(a);
}

// ---- GEMM modes --------------------------------------------------------------------------------

const char* to_string(GemmMode m) {
  switch (m) {
    case GemmMode::heuristic: return "heuristic";
    case GemmMode::autotuned: return "autotuned";
    case GemmMode::tf32_fast: return "tf32_fast";
  }
  return "?";
}

GemmMode parse_gemm_mode(const std::string& s, const char* op) {
  if (s == "heuristic") return GemmMode::heuristic;
  if (s == "autotuned") return GemmMode::autotuned;
  if (s == "tf32_fast") return GemmMode::tf32_fast;
  throw_value(op, "unknown GEMM mode '" + s + "'; use \"heuristic\", \"autotuned\" or \"tf32_fast\"");
}

Precision gemm_mode_precision(GemmMode m) {
  return m == GemmMode::tf32_fast ? Precision::tf32 : Precision::fp32;
}

std::optional<std::string> recorded_gemm_mode(std::int64_t m, std::int64_t k, std::int64_t n,
                                              Precision p) {
  const std::string shapes = std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n);
  auto f = lookup(std::string("large_gemm_mode.") + lc::to_string(p), shapes, "float32",
                  DeviceKind::cuda);
  if (!f) return std::nullopt;
  return (*f)["choice"];
}

GemmTuneResult prepare_gemm(std::int64_t m, std::int64_t k, std::int64_t n, GemmMode mode,
                            bool trans_b) {
  static constexpr const char* op = "gemm_prepare";
  if (m <= 0 || k <= 0 || n <= 0)
    throw_value(op, "m, k and n must be positive, got " + std::to_string(m) + ", " +
                        std::to_string(k) + ", " + std::to_string(n));
  Backend& be = get_backend(DeviceKind::cuda);
  if (!be.available())
    throw Unavailable(std::string("[") + op + "] GEMM modes are cuBLASLt modes and need the CUDA "
                      "backend: " + be.unavailable_reason());
#ifndef LC_HAVE_CUDA
  (void)mode;
  (void)trans_b;
  throw Unavailable(std::string("[") + op + "] this build has no CUDA backend");
#else
  GemmTuneResult res;
  res.mode = to_string(mode);
  MatmulArgs args;
  args.m = m;
  args.k = k;
  args.n = n;
  args.trans_b = trans_b;
  args.precision = gemm_mode_precision(mode);
  const auto algos = cuda::matmul_list_algos(args, 8);
  res.candidates = static_cast<int>(algos.size());
  if (algos.empty()) throw_backend(op, "cuBLASLt returned no algorithm for this shape");
  auto describe = [&](int idx) {
    const auto& a = algos[static_cast<std::size_t>(idx)];
    return "algo=" + std::to_string(a.algo_id) + " tile=" + std::to_string(a.tile) +
           " stages=" + std::to_string(a.stages) + " splitk=" + std::to_string(a.splitk) +
           " workspace=" + std::to_string(a.workspace_bytes);
  };
  if (mode == GemmMode::heuristic) {
    cuda::matmul_set_algo(args, 0);
    res.algo_index = 0;
    res.detail = describe(0);
    return res;
  }
  const std::string shapes = std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n) +
                             (trans_b ? " trans_b" : "") + " " + lc::to_string(args.precision);
  if (auto f = lookup("matmul2d.cublaslt_algo", shapes, "float32", DeviceKind::cuda)) {
    const int idx = std::atoi((*f)["choice"].c_str());
    if (idx >= 0 && idx < res.candidates) {
      cuda::matmul_set_algo(args, idx);
      res.algo_index = idx;
      res.from_cache = true;
      res.detail = describe(idx);
      return res;
    }
  }
  // Measure: device buffers of the real sizes, each candidate warmed once then timed.
  note_measurement();
  Tensor A = Tensor::empty({m, k}, DType::f32, DeviceKind::cuda);
  Tensor B = Tensor::empty(trans_b ? std::vector<std::int64_t>{n, k} : std::vector<std::int64_t>{k, n},
                           DType::f32, DeviceKind::cuda);
  Tensor C = Tensor::empty({m, n}, DType::f32, DeviceKind::cuda);
  {
    // Defined contents (timings of NaN-free data): zero via a host buffer of the largest size.
    std::vector<float> host(static_cast<std::size_t>(std::max({m * k, k * n, m * n})), 0.01f);
    be.copy_from_host(A.data(), host.data(), A.nbytes());
    be.copy_from_host(B.data(), host.data(), B.nbytes());
  }
  args.a = A.data_as<const float>();
  args.b = B.data_as<const float>();
  args.out = C.data_as<float>();
  const double flops = 2.0 * m * k * n;
  const int reps = flops > 1e11 ? 3 : 10;
  double best = 1e300;
  int best_idx = 0;
  for (int i = 0; i < res.candidates; ++i) {
    try {
      cuda::matmul_with_algo(args, i);
      be.synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r) cuda::matmul_with_algo(args, i);
      be.synchronize();
      const double us =
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
          reps;
      if (us < best) {
        best = us;
        best_idx = i;
      }
    } catch (const BackendError&) {
      // A candidate that fails to run (workspace, unsupported config) is skipped.
    }
  }
  cuda::matmul_set_algo(args, best_idx);
  res.algo_index = best_idx;
  res.best_us = best;
  res.detail = describe(best_idx);
  store("matmul2d.cublaslt_algo", shapes, "float32", DeviceKind::cuda,
        {{"choice", std::to_string(best_idx)},
         {"us", std::to_string(best)},
         {"detail", res.detail},
         {"candidates", std::to_string(res.candidates)}});
  return res;
#endif
}

}  // namespace autotune
}  // namespace lc
