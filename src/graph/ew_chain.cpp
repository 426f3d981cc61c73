// The fusion rule `elementwise_chain`: a tree (or DAG) of elementwise nodes whose intermediate
// results nobody else reads becomes one `elementwise_program` step, one kernel that reads the
// leaves once and writes the root's result once (docs/graph.md, "Fusion").
//
//   add / sub / mul / div (broadcasting), vector_add / vector_sub / vector_mul, matrix_sub,
//   vector_scale (mul by a constant; -1: neg), relu, gelu (tanh: gelu, approximate="none":
//   gelu_erf), and elementwise_program nodes themselves (their instructions are inlined).
//
// It runs after every other rule (fusion.cpp's fuse()): a bias add or activation after a linear
// or conv, an add before a layernorm, a scale before a softmax, have already gone into those
// ops' epilogues / prologues, which is worth more (no extra pass at all), and are dead by now.
//
// Growing a chain: anchored at the last elementwise step not yet taken (walking the steps
// backwards), a producer of a member's input joins when it is elementwise too, its result is
// not a graph output, every reader of that result is already a member (a value read twice
// inside the tree is fine: the program keeps it in a register), it has the chain's dtype, and
// the program still fits (6 inputs, 16 instructions, 8 constants). Repeated until nothing
// joins; the producers that could not join are reported with the reason. Members run at the
// anchor's place: their leaves exist before the anchor runs, and no step between them reads
// their results (only members do).
#include <algorithm>
#include <cstring>

#include "graph/graph_internal.h"
#include "lightning_core/errors.h"

namespace lc::graph {

namespace {

bool chainable(const Step& s) {
  namespace od = opdefs;
  const OpDef* d = s.def;
  if (s.out.size() != 1) return false;
  // Absent optional inputs are -1 (an elementwise_program node's unused x1..x5): only trailing
  // ones, and the program reads only given inputs.
  std::size_t given = 0;
  while (given < s.in.size() && s.in[given] >= 0) ++given;
  for (std::size_t k = given; k < s.in.size(); ++k)
    if (s.in[k] >= 0) return false;
  if (d == &opdefs::elementwise_program && s.attrs.prog.n_inputs > static_cast<int>(given)) return false;
  return d == &od::add || d == &od::sub || d == &od::mul || d == &od::div || d == &od::vector_add ||
         d == &od::vector_sub || d == &od::vector_mul || d == &od::matrix_sub ||
         d == &od::vector_scale || d == &od::relu || d == &od::gelu || d == &od::elementwise_program;
}

// Builds one program from member steps in step order; `why` says what overflowed.
struct Builder {
  const Resolved& g;
  EwProgram p;
  std::vector<int> leaves;                  // tensor ids, in x<k> order
  std::vector<std::pair<int, int>> values;  // tensor id -> register
  std::string why;

  int find(int id) const {
    for (const auto& [t, r] : values)
      if (t == id) return r;
    return -1;
  }
  int operand(int id) {
    if (const int r = find(id); r >= 0) return r;
    if (static_cast<int>(leaves.size()) == kEwProgMaxInputs) {
      why = "more than " + std::to_string(kEwProgMaxInputs) + " inputs";
      return -1;
    }
    leaves.push_back(id);
    const int r = static_cast<int>(leaves.size()) - 1;
    values.push_back({id, r});
    p.n_inputs = static_cast<std::int8_t>(leaves.size());
    return r;
  }
  int konst(double v) {
    for (int c = 0; c < p.n_consts; ++c)
      if (std::memcmp(&p.consts[c], &v, sizeof v) == 0) return kEwRegConst + c;
    if (p.n_consts == kEwProgMaxConsts) {
      why = "more than " + std::to_string(kEwProgMaxConsts) + " constants";
      return -1;
    }
    p.consts[p.n_consts] = v;
    return kEwRegConst + p.n_consts++;
  }
  int emit(EwOp op, int a, int b = 0) {
    if (a < 0 || b < 0) return -1;
    if (p.n_instrs == kEwProgMaxInstrs) {
      why = "more than " + std::to_string(kEwProgMaxInstrs) + " instructions";
      return -1;
    }
    p.code[p.n_instrs] = {op, static_cast<std::uint8_t>(a), static_cast<std::uint8_t>(b)};
    return kEwRegTemp + p.n_instrs++;
  }
  int binary(EwOp op, const Step& s) {
    const int a = operand(s.in[0]);
    if (a < 0) return -1;
    const int b = operand(s.in[1]);
    return emit(op, a, b);
  }
  bool add_step(const Step& s) {
    namespace od = opdefs;
    const OpDef* d = s.def;
    int y = -1;
    if (d == &od::add || d == &od::vector_add) y = binary(EwOp::add, s);
    else if (d == &od::sub || d == &od::vector_sub || d == &od::matrix_sub) y = binary(EwOp::sub, s);
    else if (d == &od::mul || d == &od::vector_mul) y = binary(EwOp::mul, s);
    else if (d == &od::div) y = binary(EwOp::div, s);
    else if (d == &od::relu) y = emit(EwOp::relu, operand(s.in[0]));
    else if (d == &od::gelu)
      y = emit(s.attrs.approximate == "tanh" ? EwOp::gelu : EwOp::gelu_erf, operand(s.in[0]));
    else if (d == &od::vector_scale) {
      if (s.attrs.alpha == -1.0f) {
        y = emit(EwOp::neg, operand(s.in[0]));
      } else {
        const int a = operand(s.in[0]);
        y = a < 0 ? -1 : emit(EwOp::mul, a, konst(static_cast<double>(s.attrs.alpha)));
      }
    } else if (d == &od::elementwise_program) {
      // Inline: its x<k> are this step's inputs, its constants ours, its temps new registers.
      const EwProgram& q = s.attrs.prog;
      int regs[kEwProgMaxRegs];
      for (int k = 0; k < q.n_inputs; ++k)
        if ((regs[k] = operand(s.in[static_cast<std::size_t>(k)])) < 0) return false;
      for (int c = 0; c < q.n_consts; ++c)
        if ((regs[kEwRegConst + c] = konst(q.consts[c])) < 0) return false;
      for (int i = 0; i < q.n_instrs; ++i) {
        const EwInstr& in = q.code[i];
        const int r = emit(in.op, regs[in.a], ew_op_binary(in.op) ? regs[in.b] : 0);
        if (r < 0) return false;
        regs[kEwRegTemp + i] = r;
      }
      y = regs[kEwRegTemp + q.n_instrs - 1];
    }
    if (y < 0) return false;
    values.push_back({s.out[0], y});
    return true;
  }
};

struct Blocked {
  int producer, reader;
  std::string reason;
};

}  // namespace

void fuse_elementwise_chains(Resolved& g, const GraphFusionOptions& o, std::vector<bool>& dead,
                             std::vector<GraphFusion>& report) {
  const std::size_t n = g.steps.size();
  auto is_output = [&](int id) {
    return std::find(g.outputs.begin(), g.outputs.end(), id) != g.outputs.end();
  };
  // Producers and readers among the live steps (computed once: this rule only kills steps).
  std::vector<int> producer(g.tensors.size(), -1);
  std::vector<std::vector<int>> readers(g.tensors.size());
  for (std::size_t i = 0; i < n; ++i) {
    if (dead[i]) continue;
    for (int id : g.steps[i].out) producer[static_cast<std::size_t>(id)] = static_cast<int>(i);
    for (int id : g.steps[i].in)
      if (id >= 0) {
        auto& r = readers[static_cast<std::size_t>(id)];
        if (r.empty() || r.back() != static_cast<int>(i)) r.push_back(static_cast<int>(i));
      }
  }
  std::vector<bool> taken(n, false);
  auto tname = [&](int id) { return g.tensors[static_cast<std::size_t>(id)].name; };
  for (std::size_t ri = n; ri-- > 0;) {
    if (dead[ri] || taken[ri] || !chainable(g.steps[ri])) continue;
    const int root = static_cast<int>(ri);
    const DType dt = g.tensors[static_cast<std::size_t>(g.steps[ri].out[0])].dtype;
    std::vector<int> members{root};
    auto member = [&](int s) { return std::find(members.begin(), members.end(), s) != members.end(); };
    std::vector<Blocked> blocked;
    for (bool grew = true; grew;) {
      grew = false;
      blocked.clear();
      for (std::size_t mi = 0; mi < members.size(); ++mi) {
        const int m = members[mi];
        for (int id : g.steps[static_cast<std::size_t>(m)].in) {
          if (id < 0) continue;
          const int p = producer[static_cast<std::size_t>(id)];
          if (p < 0 || dead[static_cast<std::size_t>(p)] || taken[static_cast<std::size_t>(p)] ||
              member(p) || !chainable(g.steps[static_cast<std::size_t>(p)]))
            continue;
          if (std::any_of(blocked.begin(), blocked.end(), [&](const Blocked& b) { return b.producer == p; }))
            continue;
          std::string why;
          const auto& rd = readers[static_cast<std::size_t>(id)];
          const TensorEntry& t = g.tensors[static_cast<std::size_t>(id)];
          if (is_output(id)) {
            why = "'" + t.name + "' is a graph output";
          } else if (!std::all_of(rd.begin(), rd.end(), member)) {
            int other = -1;
            for (int r : rd)
              if (!member(r)) other = r;
            why = "intermediate '" + t.name + "' is used twice (also read by node '" +
                  g.steps[static_cast<std::size_t>(other)].name + "')";
          } else if (t.dtype != dt) {
            why = "dtype change ('" + t.name + "' is " + to_string(t.dtype) + ", the chain " +
                  to_string(dt) + ")";
          } else {
            // Does the program still fit?
            std::vector<int> trial = members;
            trial.push_back(p);
            std::sort(trial.begin(), trial.end());
            Builder b{g, {}, {}, {}, {}};
            bool ok = true;
            for (int s : trial) ok = ok && b.add_step(g.steps[static_cast<std::size_t>(s)]);
            if (!ok) why = b.why;
          }
          if (why.empty()) {
            members.push_back(p);
            grew = true;
          } else {
            blocked.push_back({p, m, why});
          }
        }
      }
    }
    for (int m : members) taken[static_cast<std::size_t>(m)] = true;
    for (const Blocked& b : blocked) {
      GraphFusion f;
      f.rule = "elementwise_chain";
      f.nodes = {g.steps[static_cast<std::size_t>(b.reader)].name,
                 g.steps[static_cast<std::size_t>(b.producer)].name};
      f.reason = "not folded: " + b.reason;
      report.push_back(std::move(f));
    }
    if (members.size() < 2) continue;
    std::vector<int> order = members;
    std::sort(order.begin(), order.end());
    GraphFusion f;
    f.rule = "elementwise_chain";
    f.nodes.push_back(g.steps[ri].name);
    for (int s : order)
      if (s != root) f.nodes.push_back(g.steps[static_cast<std::size_t>(s)].name);
    if (!o.elementwise_chain) {
      f.reason = "switched off";
      report.push_back(std::move(f));
      continue;
    }
    Builder b{g, {}, {}, {}, {}};
    for (int s : order)
      if (!b.add_step(g.steps[static_cast<std::size_t>(s)]))  // cannot happen: every join was tried
        throw_value("graph", node_label(g.steps[ri].name, "elementwise_chain") + ": " + b.why);
    // Cost check: one kernel pays whenever it replaces >= 2 passes over memory (each unfused
    // node reads and writes the whole tensor) and the interpreter runs at full speed, i.e. the
    // program's values fit the register budget (plan_ew_slots; beyond it the CUDA kernel
    // halves its elements per thread and the compute, not the memory, bounds the chain).
    const EwSlotPlan plan = plan_ew_slots(b.p, static_cast<int>(b.leaves.size()));
    if (plan.slots > kEwFuseSlotBudget) {
      f.reason = "not fused: the program keeps " + std::to_string(plan.slots) + " values live (the "
                 "budget is " + std::to_string(kEwFuseSlotBudget) + "); program '" + ew_program_text(b.p) + "'";
      report.push_back(std::move(f));
      continue;
    }
    Step& s = g.steps[ri];
    std::vector<std::string> folded;
    for (int m : order) {
      if (m == root) continue;
      Step& x = g.steps[static_cast<std::size_t>(m)];
      folded.push_back(x.name);
      for (const std::string& q : x.fused) folded.push_back(q);
      dead[static_cast<std::size_t>(m)] = true;
    }
    for (const std::string& q : s.fused) folded.push_back(q);
    s.fused = std::move(folded);
    s.def = &opdefs::elementwise_program;
    s.in = b.leaves;
    s.attrs = StepAttrs{};
    s.attrs.prog = b.p;
    std::string leaves;
    for (int id : b.leaves) leaves += std::string(leaves.empty() ? "" : ", ") + "'" + tname(id) + "'";
    f.applied = true;
    f.reason = std::to_string(members.size()) + " elementwise nodes run as one kernel (" +
               std::to_string(members.size() - 1) + " intermediate(s) never written): reads " +
               leaves + ", program '" + ew_program_text(b.p) + "'";
    report.push_back(std::move(f));
  }
}

}  // namespace lc::graph
