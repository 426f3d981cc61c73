// elementwise_program: one kernel evaluates a small program (include/lightning_core/ew_program.h)
// per element of the broadcast of up to six inputs. The op the graph's `elementwise_chain` rule
// fuses chains of elementwise nodes into (src/graph/fusion.cpp), and a way to write a chain by
// hand: lc.elementwise_program("sigmoid x0; mul x0 t0; add t1 x1", x, b) is x * sigmoid(x) + b
// in one pass over memory.
//
// This file: the text form (parse / print / validate), the OpDef, and the front-end (checks,
// placement, operand layout). Kernels: src/backends/cpu/ew_program.cpp, src/backends/cuda/ew_program.cu.
//
// Operands are read in place through their strides on the op's device (a bias [N], a scalar, a
// transposed view cost no copy); operands on the other device arrive contiguous. Every input
// keeps its own storage dtype; the result has x0's.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "lightning_core/errors.h"
#include "lightning_core/ops.h"
#include "ops/checks.h"
#include "ops/registry.h"
#include "ops/work.h"
#include "runtime/op_runner.h"

namespace lc {

namespace {

constexpr const char* kOp = "elementwise_program";

constexpr const char* kEwOpNames[kEwOpCount] = {
    "add", "sub",  "mul",   "div",  "max",     "min",  "neg",  "abs",      "exp",
    "log", "sqrt", "rsqrt", "tanh", "sigmoid", "relu", "gelu", "gelu_erf", "silu"};

std::string op_list() {
  std::string s;
  for (const char* n : kEwOpNames) s += std::string(s.empty() ? "" : ", ") + n;
  return s;
}

// "x3", "t12" -> the number; -1 when `tok` is not the prefix followed by digits only.
int reg_number(std::string_view tok, char prefix) {
  if (tok.size() < 2 || tok.size() > 4 || tok[0] != prefix) return -1;
  int v = 0;
  for (std::size_t i = 1; i < tok.size(); ++i) {
    if (tok[i] < '0' || tok[i] > '9') return -1;
    v = v * 10 + (tok[i] - '0');
  }
  return v;
}

}  // namespace

const char* to_string(EwOp op) {
  const int i = static_cast<int>(op);
  return i >= 0 && i < kEwOpCount ? kEwOpNames[i] : "?";
}

EwProgram parse_ew_program(std::string_view text, const char* who) {
  EwProgram p;
  std::size_t pos = 0;
  int index = 0;  // instruction number, for messages
  while (pos <= text.size()) {
    std::size_t end = text.find_first_of(";\n", pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    // Tokens: separated by spaces, tabs, commas.
    std::vector<std::string_view> tok;
    std::size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == ',' || line[i] == '\r')) ++i;
      std::size_t j = i;
      while (j < line.size() && line[j] != ' ' && line[j] != '\t' && line[j] != ',' && line[j] != '\r') ++j;
      if (j > i) tok.push_back(line.substr(i, j - i));
      i = j;
    }
    if (tok.empty()) continue;  // blank (a trailing ';')
    const std::string where = "instruction " + std::to_string(index) + " ('" + std::string(line) + "')";
    if (p.n_instrs == kEwProgMaxInstrs)
      throw_value(who, "the program has more than " + std::to_string(kEwProgMaxInstrs) +
                           " instructions; split it into two programs");
    int op = -1;
    for (int k = 0; k < kEwOpCount; ++k)
      if (tok[0] == kEwOpNames[k]) op = k;
    if (op < 0)
      throw_value(who, where + ": unknown op '" + std::string(tok[0]) + "'; the ops are " + op_list());
    const EwOp eop = static_cast<EwOp>(op);
    const std::size_t want = ew_op_binary(eop) ? 2 : 1;
    if (tok.size() - 1 != want)
      throw_value(who, where + ": " + kEwOpNames[op] + " takes " + std::to_string(want) +
                           " operand(s), got " + std::to_string(tok.size() - 1));
    std::uint8_t regs[2] = {0, 0};
    for (std::size_t k = 0; k < want; ++k) {
      const std::string_view t = tok[k + 1];
      int r = -1;
      if (const int x = reg_number(t, 'x'); x >= 0) {
        if (x >= kEwProgMaxInputs)
          throw_value(who, where + ": input '" + std::string(t) + "' is out of range; a program reads x0 .. x" +
                               std::to_string(kEwProgMaxInputs - 1));
        r = x;
        p.n_inputs = static_cast<std::int8_t>(std::max<int>(p.n_inputs, x + 1));
      } else if (const int ti = reg_number(t, 't'); ti >= 0) {
        if (ti >= p.n_instrs)
          throw_value(who, where + ": '" + std::string(t) + "' is not the result of an earlier instruction "
                               "(t<i> names instruction i, counted from 0)");
        r = kEwRegTemp + ti;
      } else {
        const std::string s(t);
        char* e = nullptr;
        errno = 0;
        const double v = std::strtod(s.c_str(), &e);
        if (s.empty() || e != s.c_str() + s.size())
          throw_value(who, where + ": operand '" + s + "' is neither x<k> (an input), t<i> (an earlier "
                               "result) nor a number");
        int c = -1;
        for (int q = 0; q < p.n_consts; ++q)
          if (std::memcmp(&p.consts[q], &v, sizeof v) == 0) c = q;
        if (c < 0) {
          if (p.n_consts == kEwProgMaxConsts)
            throw_value(who, where + ": more than " + std::to_string(kEwProgMaxConsts) +
                                 " distinct constants");
          c = p.n_consts++;
          p.consts[c] = v;
        }
        r = kEwRegConst + c;
      }
      regs[k] = static_cast<std::uint8_t>(r);
    }
    p.code[p.n_instrs++] = {eop, regs[0], regs[1]};
    ++index;
  }
  if (p.n_instrs == 0)
    throw_value(who, "the program is empty; write instructions such as \"sigmoid x0; mul x0 t0\"");
  return p;
}

std::string ew_program_text(const EwProgram& p) {
  std::string s;
  char buf[40];
  auto operand = [&](int r) {
    if (r >= kEwRegConst && r < kEwRegTemp)
      std::snprintf(buf, sizeof buf, "%.17g", p.consts[r - kEwRegConst]);
    else
      std::snprintf(buf, sizeof buf, "%c%d", r < kEwRegConst ? 'x' : 't',
                    r < kEwRegConst ? r : r - kEwRegTemp);
    return std::string(buf);
  };
  for (int i = 0; i < p.n_instrs; ++i) {
    const EwInstr& in = p.code[i];
    if (i) s += "; ";
    s += to_string(in.op);
    s += ' ' + operand(in.a);
    if (ew_op_binary(in.op)) s += ' ' + operand(in.b);
  }
  return s;
}

EwSlotPlan plan_ew_slots(const EwProgram& prog, int n_inputs) {
  static_assert(kEwProgMaxInputs + kEwProgMaxInstrs <= kEwMaxSlots, "slots cover any program");
  EwSlotPlan plan;
  const int nin = std::min<int>(prog.n_inputs, n_inputs);
  const int ni = prog.n_instrs;
  // Last instruction reading each register (-1: never read); the result is read "at ni".
  int last[kEwProgMaxRegs];
  std::fill(last, last + kEwProgMaxRegs, -1);
  for (int i = 0; i < ni; ++i) {
    last[prog.code[i].a] = i;
    if (ew_op_binary(prog.code[i].op)) last[prog.code[i].b] = i;
  }
  if (ni > 0) last[prog.result()] = ni;
  int slot_of[kEwProgMaxRegs] = {};
  bool busy[kEwMaxSlots] = {};
  for (int x = 0; x < nin; ++x)
    if (last[x] >= 0) {
      plan.load_mask |= 1u << x;
      busy[x] = true;
      slot_of[x] = x;
      plan.slots = std::max(plan.slots, x + 1);
    }
  auto operand = [&](int r) {
    if (r >= kEwRegConst && r < kEwRegTemp) return kEwSlotConst + (r - kEwRegConst);
    return slot_of[r];
  };
  auto is_value = [](int r) { return r < kEwRegConst || r >= kEwRegTemp; };
  for (int i = 0; i < ni; ++i) {
    const EwInstr& in = prog.code[i];
    const bool bin = ew_op_binary(in.op);
    plan.a[i] = static_cast<std::uint8_t>(operand(in.a));
    plan.b[i] = bin ? static_cast<std::uint8_t>(operand(in.b)) : plan.a[i];
    // Operands read for the last time free their slots before the result takes one.
    if (is_value(in.a) && last[in.a] == i) busy[slot_of[in.a]] = false;
    if (bin && is_value(in.b) && last[in.b] == i) busy[slot_of[in.b]] = false;
    int d = 0;
    while (d < kEwMaxSlots - 1 && busy[d]) ++d;  // never full: <= 6 inputs + 16 results busy
    plan.dst[i] = static_cast<std::uint8_t>(d);
    slot_of[kEwRegTemp + i] = d;
    plan.slots = std::max(plan.slots, d + 1);
    busy[d] = last[kEwRegTemp + i] > i;
  }
  plan.result = ni > 0 ? slot_of[prog.result()] : 0;
  return plan;
}

void validate_ew_program(const EwProgram& p, const char* who) {
  if (p.n_instrs < 1 || p.n_instrs > kEwProgMaxInstrs || p.n_consts < 0 ||
      p.n_consts > kEwProgMaxConsts || p.n_inputs < 0 || p.n_inputs > kEwProgMaxInputs)
    throw_value(who, "invalid program: " + std::to_string(p.n_instrs) + " instructions (1 to " +
                         std::to_string(kEwProgMaxInstrs) + "), " + std::to_string(p.n_consts) +
                         " constants (at most " + std::to_string(kEwProgMaxConsts) + "), " +
                         std::to_string(p.n_inputs) + " inputs (at most " +
                         std::to_string(kEwProgMaxInputs) + ")");
  for (int i = 0; i < p.n_instrs; ++i) {
    const EwInstr& in = p.code[i];
    if (static_cast<int>(in.op) >= kEwOpCount)
      throw_value(who, "invalid program: instruction " + std::to_string(i) + " has an unknown op");
    auto ok = [&](int r) {
      return r < p.n_inputs || (r >= kEwRegConst && r < kEwRegConst + p.n_consts) ||
             (r >= kEwRegTemp && r < kEwRegTemp + i);
    };
    if (!ok(in.a) || (ew_op_binary(in.op) && !ok(in.b)))
      throw_value(who, "invalid program: instruction " + std::to_string(i) + " (" + to_string(in.op) +
                           ") reads a register that is not an input, a constant or an earlier result");
  }
}

namespace {

// ---- registry --------------------------------------------------------------------------------

OpResult infer_program(const OpDef& d, const OpArgs& a) {
  std::vector<std::int64_t> out;
  std::string shapes;
  for (int k = 0; k < a.n; ++k) {
    if (!a.has(k)) continue;
    const ShapeRef& s = a[k];
    shapes += std::string(shapes.empty() ? "" : ", ") +
              shape_str(std::vector<std::int64_t>(s.dims, s.dims + s.ndim));
    const int nd = std::max<int>(static_cast<int>(out.size()), s.ndim);
    std::vector<std::int64_t> r(static_cast<std::size_t>(nd), 1);
    for (int i = 0; i < nd; ++i) {
      const int io = static_cast<int>(out.size()) - nd + i, is = s.ndim - nd + i;
      const std::int64_t da = io >= 0 ? out[static_cast<std::size_t>(io)] : 1;
      const std::int64_t db = is >= 0 ? s[is] : 1;
      if (da != db && da != 1 && db != 1)
        throw_value(d.name, "input shapes " + shapes + " cannot be broadcast together");
      r[static_cast<std::size_t>(i)] = da == 1 ? db : da;
    }
    out = std::move(r);
  }
  return {out, a.dtype};
}

// The registry's estimate (no program at hand): ~4 instructions per element.
WorkEstimate work_program(const OpArgs& a) {
  const OpResult r = infer_program(opdefs::elementwise_program, a);
  double n = 1;
  for (auto v : r.shape) n *= static_cast<double>(v);
  WorkEstimate w = elementwise_work(n, dtype_size(a.dtype));
  w.flops = 4.0 * n;
  return w;
}

}  // namespace

const OpDef opdefs::elementwise_program{
    "elementwise_program", OpFamily::elementwise,
    "One kernel evaluating a small program per element of the broadcast of up to six inputs "
    "x0..x5: instructions 'op operand [operand]' separated by ';', operands x<k>, t<i> (the "
    "result of instruction i) or numbers; the result is the last instruction's (docs/graph.md, "
    "\"Elementwise programs\").",
    {{in("x0"), opt("x1"), opt("x2"), opt("x3"), opt("x4"), opt("x5")}}, {"out"},
    {{{"program", AttrType::string, nullptr,
       "e.g. 'sigmoid x0; mul x0 t0; add t1 x1' (x0 * sigmoid(x0) + x1)"}}},
    kFloatAll, kFloat16x, &infer_program, &work_program, nullptr};

namespace {

// ---- front-end -------------------------------------------------------------------------------

const char* const kNames[kEwProgMaxInputs] = {"x0", "x1", "x2", "x3", "x4", "x5"};

bool is_float_dtype(DType d) {
  return d == DType::f32 || d == DType::f16 || d == DType::bf16 || d == DType::f64;
}

// Checks (TypeError for dtypes, ValueError for counts and shapes) and the broadcast shape.
void check_program(const EwProgram& prog, std::span<const Tensor* const> ins, std::int64_t* dims, int& nd) {
  if (ins.empty() || ins.size() > static_cast<std::size_t>(kEwProgMaxInputs))
    throw_value(kOp, "takes 1 to " + std::to_string(kEwProgMaxInputs) + " inputs, got " +
                         std::to_string(ins.size()));
  for (std::size_t k = 0; k < ins.size(); ++k) {
    if (!ins[k])
      throw_value(kOp, std::string("input ") + kNames[k] + " is missing; give the inputs x0, x1, ... "
                           "without gaps");
    if (!is_float_dtype(ins[k]->dtype())) check_float(kOp, kNames[k], *ins[k], /*allow_f64=*/true);
  }
  validate_ew_program(prog, kOp);
  if (prog.n_inputs > static_cast<int>(ins.size()))
    throw_value(kOp, "the program reads x" + std::to_string(prog.n_inputs - 1) + " but " +
                         std::to_string(ins.size()) + " input(s) were given");
  nd = 0;
  for (const Tensor* t : ins) nd = std::max(nd, t->ndim());
  for (int i = 0; i < nd; ++i) dims[i] = 1;
  for (std::size_t k = 0; k < ins.size(); ++k) {
    const Tensor& t = *ins[k];
    for (int i = 0; i < t.ndim(); ++i) {
      const int io = nd - t.ndim() + i;
      const std::int64_t d = t.size(i);
      if (d == dims[io] || d == 1) continue;
      if (dims[io] != 1) {
        std::string shapes;
        for (std::size_t q = 0; q < ins.size(); ++q)
          shapes += std::string(q ? ", " : "") + kNames[q] + " " + ins[q]->shape_str();
        throw_value(kOp, "input shapes " + shapes + " cannot be broadcast together (dimension " +
                             std::to_string(io) + " of the result, aligned from the right); each "
                             "dimension must match or be 1");
      }
      dims[io] = d;
    }
  }
}

std::int64_t count(const std::int64_t* dims, int nd) {
  std::int64_t n = 1;
  for (int i = 0; i < nd; ++i) n *= dims[i];
  return n;
}

bool gpu_can_run(std::span<const Tensor* const> ins, DType out) {
  const DTypeSet s = opdefs::elementwise_program.cuda_dtypes;
  for (const Tensor* t : ins)
    if (!s.has(t->dtype())) return false;
  return s.has(out);
}

WorkEstimate program_work(const EwProgram& prog, std::span<const Tensor* const> ins, std::int64_t n,
                          DType out) {
  WorkEstimate w = elementwise_work(static_cast<double>(n), dtype_size(out));
  w.flops = static_cast<double>(n) * prog.n_instrs;
  (void)ins;
  return w;
}

void place(OpRunner& r, const EwProgram& prog, std::span<const Tensor* const> ins, std::int64_t n,
           DType out) {
  const Tensor* t[kEwProgMaxInputs] = {};
  for (std::size_t k = 0; k < ins.size(); ++k) t[k] = ins[k];
  r.place(program_work(prog, ins, n, out), {t[0], t[1], t[2], t[3], t[4], t[5]},
          gpu_can_run(ins, out));
}

// Input strides over the result's dims (right-aligned, 0 where the input has size 1); a staged
// input (moved from the other device) is contiguous.
void input_strides(const Tensor& t, bool staged, int nd, std::int64_t* st) {
  std::int64_t contig = 1;
  for (int i = nd - 1; i >= 0; --i) {
    const int it = t.ndim() - nd + i;
    const std::int64_t size = it >= 0 ? t.size(it) : 1;
    const std::int64_t stride = staged ? contig : (it >= 0 ? t.stride(it) : 0);
    st[i] = (size == 1 || it < 0) ? 0 : stride;
    contig *= size;
  }
}

void run(OpRunner& r, const EwProgram& prog, std::span<const Tensor* const> ins, Tensor& out,
         const std::int64_t* dims, int nd) {
  EwProgramArgs e;
  e.prog = prog;
  e.n_inputs = static_cast<int>(ins.size());
  e.out_dtype = out.dtype();
  e.n = count(dims, nd);
  bool flat = true;  // every input has the result's shape and arrives contiguous
  for (std::size_t k = 0; k < ins.size(); ++k) {
    const Tensor& t = *ins[k];
    e.in_dtype[k] = t.dtype();
    const bool here = t.device() == r.device();
    bool same = t.ndim() == nd && std::equal(t.shape_data(), t.shape_data() + nd, dims);
    flat = flat && same && (!here || t.is_contiguous());
  }
  if (flat) {
    for (std::size_t k = 0; k < ins.size(); ++k) {
      const Tensor& t = *ins[k];
      e.in[k] = t.device() == r.device() ? t.data() : r.in_raw(t);
    }
  } else {
    std::int64_t st[kEwProgMaxInputs][kEwMaxDims];
    for (std::size_t k = 0; k < ins.size(); ++k) {
      const Tensor& t = *ins[k];
      const bool here = t.device() == r.device();
      e.in[k] = here ? t.data() : r.in_raw(t);
      input_strides(t, !here, nd, st[k]);
    }
    // Drop size-1 dims; merge a dim into the previous one where every input's strides allow.
    e.ndim = 0;
    const int ni = e.n_inputs;
    for (int i = 0; i < nd; ++i) {
      if (dims[i] == 1) continue;
      if (e.ndim > 0) {
        const int l = e.ndim - 1;
        bool merge = true;
        for (int k = 0; k < ni && merge; ++k) merge = e.strides[k][l] == st[k][i] * dims[i];
        if (merge) {
          e.shape[l] *= dims[i];
          for (int k = 0; k < ni; ++k) e.strides[k][l] = st[k][i];
          continue;
        }
      }
      e.shape[e.ndim] = dims[i];
      for (int k = 0; k < ni; ++k) e.strides[k][e.ndim] = st[k][i];
      ++e.ndim;
    }
    bool unit = e.ndim <= 1;
    for (int k = 0; k < ni && unit && e.ndim == 1; ++k) unit = e.strides[k][0] == 1;
    if (unit) e.ndim = 0;  // one contiguous run after all (or a single element)
  }
  e.out = r.out_raw(out);
  if (e.n > 0) r.launch([&](Backend& be) { be.elementwise_program(e); });
  r.finish();
}

}  // namespace

std::vector<std::int64_t> elementwise_program_out_shape(std::span<const Tensor* const> ins) {
  EwProgram any;  // shapes only: a program reading nothing
  any.n_instrs = 1;
  any.n_consts = 1;
  any.code[0] = {EwOp::neg, static_cast<std::uint8_t>(kEwRegConst), 0};
  std::int64_t dims[kEwMaxDims];
  int nd = 0;
  check_program(any, ins, dims, nd);
  return {dims, dims + nd};
}

Tensor elementwise_program(const EwProgram& prog, std::span<const Tensor* const> ins,
                           const ExecutionPolicy& p) {
  std::int64_t dims[kEwMaxDims];
  int nd = 0;
  check_program(prog, ins, dims, nd);
  const DType dt = ins[0]->dtype();
  OpRunner r(kOp, p);
  place(r, prog, ins, count(dims, nd), dt);
  Tensor out = r.result(std::vector<std::int64_t>(dims, dims + nd), dt);
  run(r, prog, ins, out, dims, nd);
  return out;
}

void elementwise_program_into(const EwProgram& prog, std::span<const Tensor* const> ins, Tensor& out,
                              const ExecutionPolicy& p) {
  std::int64_t dims[kEwMaxDims];
  int nd = 0;
  check_program(prog, ins, dims, nd);
  const DType dt = ins[0]->dtype();
  bool ok = out.dtype() == dt && out.ndim() == nd && out.is_contiguous() && out.writable();
  for (int i = 0; ok && i < nd; ++i) ok = out.size(i) == dims[i];
  if (!ok) check_out(kOp, out, std::vector<std::int64_t>(dims, dims + nd), dt);
  OpRunner r(kOp, p);
  place(r, prog, ins, count(dims, nd), dt);
  run(r, prog, ins, out, dims, nd);
}

}  // namespace lc
