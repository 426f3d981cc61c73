// The auto-tune cache (autotune.h): device fingerprints (each backend's Backend::fingerprint) and
// the atomic, versioned JSON file store.
// The JSON reader/writer is src/core/json_lite.h; the tuners that use the cache are tuners.cpp
// (GEMM modes) and the backends' own (src/backends/cpu/tune.cpp).
#include "lightning_core/autotune.h"

#include <fcntl.h>
#include <sys/file.h>
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
#include <optional>
#include <sstream>
#include <thread>

#include "backends/backend.h"
#include "core/json_lite.h"
#include "lightning_core/errors.h"
#include "lightning_core/log.h"
#include "lightning_core/tensor.h"

namespace lc {

// ---- fingerprints ------------------------------------------------------------------------------

// Each backend knows its own device (Backend::fingerprint: src/backends/<name>/fingerprint.cpp).
std::string cpu_fingerprint() { return get_backend(DeviceKind::cpu).fingerprint(); }
std::string cuda_fingerprint() { return get_backend(DeviceKind::cuda).fingerprint(); }
std::string device_fingerprint(DeviceKind d) { return get_backend(d).fingerprint(); }

namespace autotune {

using json::JReader;
using json::JValue;
using json::json_string;

// ---- the cache ---------------------------------------------------------------------------------
namespace {

struct Cache {
  // Guards everything below and serialises this process's file writes: a thread takes `mu`
  // before the cross-process file lock (FileLock), so two threads of one process never wait on
  // each other's flock (flock is per open file description, so they would).
  std::mutex mu;
  std::string loaded_path;  // the file the in-memory entries came from ("" = not loaded)
  std::map<std::string, Fields> entries;
  // Entries this process stored that are not yet in the file (a write failed or is under way):
  // merged over the file's entries at every write, so they win for their own keys.
  std::map<std::string, Fields> pending;
  std::function<void(const std::string&)> warn;
  std::atomic<std::uint64_t> measurements{0};
  std::atomic<std::uint64_t> generation{0};  // bumped on every change of `entries`
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
    else log::warn(w);  // the Python module's handler: a RuntimeWarning
  }
}

std::string env_or_empty(const char* n) {
  const char* v = std::getenv(n);
  return v ? std::string(v) : std::string();
}

const char* kLibraryVersion = LC_VERSION;

// Reads the cache file at `path` into `out` (valid entries of this library version only).
// A missing file is an empty cache. When the file is unusable (corrupt JSON, unknown format or
// schema) `out` stays empty and, if `warnings` is given, a warning says it will be rebuilt.
void read_entries(const std::string& path, std::map<std::string, Fields>& out,
                  std::vector<std::string>* warnings) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return;  // no file yet: an empty cache
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  JValue root;
  JReader rd(text);
  if (!rd.parse(root) || root.kind != JValue::object) {
    if (warnings)
      warnings->push_back("auto-tune cache " + path + " is corrupt (not valid JSON); ignoring "
                          "it, it will be rebuilt");
    return;
  }
  const JValue* fmt = root.get("format");
  const JValue* ver = root.get("schema_version");
  if (!fmt || fmt->kind != JValue::string || fmt->str != "lightning-core-autotune" || !ver ||
      ver->kind != JValue::number || static_cast<int>(ver->num) != kSchemaVersion) {
    if (warnings)
      warnings->push_back("auto-tune cache " + path + " has an unknown format or schema "
                          "version (expected lightning-core-autotune v" +
                          std::to_string(kSchemaVersion) + "); ignoring it, it will be rebuilt");
    return;
  }
  const JValue* ents = root.get("entries");
  if (!ents || ents->kind != JValue::object) {
    if (warnings)
      warnings->push_back("auto-tune cache " + path + " has no \"entries\" object; ignoring "
                          "it, it will be rebuilt");
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
    out[key] = std::move(fl);
  }
}

// Loads `path` into c.entries when it is not the loaded file. Caller holds c.mu.
void ensure_loaded(Cache& c, const std::string& path, std::vector<std::string>& warnings) {
  if (c.loaded_path == path) return;
  c.loaded_path = path;
  c.entries.clear();
  c.pending.clear();  // they belonged to the previous file
  c.generation.fetch_add(1);
  read_entries(path, c.entries, &warnings);
}

// An exclusive advisory lock (flock) on `<cache file>.lock`, held for one read-merge-write (or a
// delete) of the cache file, so that processes sharing a cache directory never overwrite each
// other's entries. The lock file is created once and never removed (removing it would let two
// processes lock two different files). Waits at most kLockWaitS; past that (a process stopped
// while holding it) the write goes ahead unlocked: the rename keeps the file whole, at worst an
// entry of the stuck process is lost, and the cache never hangs its users. The wait is long
// (30 s) because a busy machine can keep a waiter out for seconds without anyone being stuck:
// under ASan on a loaded 2-core machine six processes storing 40 entries each kept one waiting
// more than 10 s. The naps stay short (at most 1 ms) so a waiter gets its turn among writers
// that take the lock back-to-back.
class FileLock {
 public:
  static constexpr double kLockWaitS = 30.0;

  explicit FileLock(const std::string& cache_file) {
    const std::string p = cache_file + ".lock";
    // Read-write where possible (flock over NFS needs it for an exclusive lock); read-only is
    // enough for a local flock, e.g. a lock file created by another user.
    fd_ = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd_ < 0) fd_ = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      problem_ = "cannot open " + p + ": " + std::strerror(errno);
      return;
    }
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(kLockWaitS);
    auto nap = std::chrono::microseconds(50);
    for (;;) {
      if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) {
        locked_ = true;
        return;
      }
      if (errno != EWOULDBLOCK && errno != EINTR) {
        problem_ = "cannot lock " + p + ": " + std::strerror(errno);
        return;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        problem_ = "timed out after " + std::to_string(static_cast<int>(kLockWaitS)) +
                   " s waiting for " + p;
        return;
      }
      std::this_thread::sleep_for(nap);
      nap = std::min(nap * 2, std::chrono::microseconds(1000));
    }
  }
  ~FileLock() {
    if (fd_ < 0) return;
    if (locked_) ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

  bool locked() const { return locked_; }
  const std::string& problem() const { return problem_; }

 private:
  int fd_ = -1;
  bool locked_ = false;
  std::string problem_;
};

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

// Writes `entries` to `path` atomically: a temp file in the same directory, then rename(), so a
// reader sees the old file or the new one, never a partial one. Returns false (with a warning)
// when the file could not be replaced.
bool write_entries(const std::map<std::string, Fields>& entries, const std::string& path,
                   std::vector<std::string>& warnings) {
  std::ostringstream os;
  os << "{\n  \"format\": \"lightning-core-autotune\",\n  \"schema_version\": "
     << std::to_string(kSchemaVersion) << ",\n  \"library_version\": ";
  json_string(os, kLibraryVersion);
  os << ",\n  \"entries\": {";
  bool first = true;
  for (const auto& [key, fl] : entries) {
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
      return false;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    warnings.push_back("cannot replace the auto-tune cache " + path + " (" + std::strerror(errno) +
                       "); choices are kept in memory for this process only");
    std::remove(tmp.c_str());
    return false;
  }
  return true;
}

// Persists c.pending: under the file lock, re-reads the file (entries other processes wrote
// since this one loaded it), lays this process's pending entries over it (they win for their
// own keys), writes the result atomically and makes it the in-memory copy. Caller holds c.mu.
void persist(Cache& c, const std::string& path, std::vector<std::string>& warnings) {
  std::string err;
  const std::string dir = path.substr(0, path.find_last_of('/'));
  if (!mkdirs(dir, err)) {
    warnings.push_back("cannot write the auto-tune cache (" + err + "); choices are kept in "
                       "memory for this process only");
    return;
  }
  FileLock lock(path);
  if (!lock.locked())
    warnings.push_back("auto-tune cache: " + lock.problem() + "; writing without the lock "
                       "(entries stored at this moment by other processes may be lost)");
  std::map<std::string, Fields> merged;
  // A file that became unusable since it was loaded is rebuilt without a second warning.
  read_entries(path, merged, nullptr);
  for (const auto& [k, f] : c.pending) merged[k] = f;
  const bool written = write_entries(merged, path, warnings);
  if (merged != c.entries) {
    c.entries = std::move(merged);
    c.generation.fetch_add(1);
  }
  if (written) c.pending.clear();
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
    c.entries[key] = fl;
    c.pending[key] = std::move(fl);
    c.generation.fetch_add(1);
    persist(c, path, warnings);
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
    c.pending.clear();
    c.loaded_path = path;
    c.generation.fetch_add(1);
    struct stat st {};
    const std::string dir = path.substr(0, path.find_last_of('/'));
    std::optional<FileLock> lock;  // not a write: no warning when the lock cannot be had
    if (::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) lock.emplace(path);
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
  c.pending.clear();
  c.generation.fetch_add(1);
}

void set_warning_handler(std::function<void(const std::string&)> h) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.mu);
  c.warn = std::move(h);
}

std::uint64_t generation() { return cache().generation.load(std::memory_order_acquire); }

std::uint64_t measurement_count() { return cache().measurements.load(); }
void note_measurement() { cache().measurements.fetch_add(1); }

}  // namespace autotune
}  // namespace lc
