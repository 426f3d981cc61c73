// An elementwise program: a small fixed-size list of instructions that one kernel evaluates per
// output element (the op `elementwise_program`, and what the graph's `elementwise_chain` rule
// turns a chain of elementwise nodes into). docs/graph.md, "Elementwise programs".
//
// Registers (a fixed layout, so a backend needs no table):
//   [0, kEwProgMaxInputs)                          input k (x<k>, broadcast to the output shape)
//   [kEwRegConst, kEwRegConst + kEwProgMaxConsts)  scalar constants (loaded once per thread)
//   [kEwRegTemp, kEwRegTemp + kEwProgMaxInstrs)    instruction i writes kEwRegTemp + i (t<i>)
// Every instruction reads registers written before it (SSA: a DAG, a value may be read many
// times); the result is the last instruction's register.
//
// Text form (lc.elementwise_program's `program`, the graph attribute, explain()): instructions
// separated by ';' or newlines, each `op operand [operand]`, an operand being `x<k>` (input k),
// `t<i>` (the result of instruction i < the current one) or a number (a constant):
//   "sigmoid x0; mul x0 t0; add t1 x1"          x0 * sigmoid(x0) + x1
//   "sub x0 x1; mul t0 x2; relu t1; exp t2"     exp(relu((x0 - x1) * x2))
// Unary: neg abs exp log sqrt rsqrt tanh sigmoid relu gelu (tanh form, as lc.gelu) gelu_erf
// (exact, as lc.gelu(approximate="none")) silu; binary: add sub mul div max min (max / min
// propagate NaN, as numpy's maximum / minimum).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace lc {

enum class EwOp : std::uint8_t {
  add, sub, mul, div, max, min,                                   // binary
  neg, abs, exp, log, sqrt, rsqrt, tanh, sigmoid, relu, gelu, gelu_erf, silu  // unary
};
constexpr int kEwOpCount = static_cast<int>(EwOp::silu) + 1;
constexpr bool ew_op_binary(EwOp op) { return static_cast<int>(op) <= static_cast<int>(EwOp::min); }
const char* to_string(EwOp op);

constexpr int kEwProgMaxInputs = 6;
constexpr int kEwProgMaxConsts = 8;
constexpr int kEwProgMaxInstrs = 16;
constexpr int kEwRegConst = kEwProgMaxInputs;
constexpr int kEwRegTemp = kEwRegConst + kEwProgMaxConsts;
constexpr int kEwProgMaxRegs = kEwRegTemp + kEwProgMaxInstrs;

struct EwInstr {
  EwOp op = EwOp::add;
  std::uint8_t a = 0, b = 0;  // registers (b unused by unary ops)
};

// Trivially copyable (it travels by value into the CUDA kernel's parameters).
struct EwProgram {
  std::int8_t n_inputs = 0;  // 1 + the highest input register read
  std::int8_t n_consts = 0;
  std::int8_t n_instrs = 0;
  EwInstr code[kEwProgMaxInstrs] = {};
  double consts[kEwProgMaxConsts] = {};
  int result() const { return kEwRegTemp + n_instrs - 1; }
};

// Parses the text form; ValueError naming `who` (the op or the graph node) and the offending
// instruction for an unknown op, a wrong operand count, an operand that is not x<k> (k < 6),
// t<i> of an earlier instruction or a finite number, more than 16 instructions or 8 distinct
// constants, an empty program.
EwProgram parse_ew_program(std::string_view text, const char* who = "elementwise_program");
// The canonical text form (parse_ew_program(ew_program_text(p)) == p; constants to 17 digits).
std::string ew_program_text(const EwProgram& p);
// Register allocation for the interpreters (the CUDA kernel keeps its register file in real
// registers, so it wants few): every value (input k, an instruction's result) lives in a slot;
// input k starts in slot k (when the program reads it), an instruction's result takes the
// lowest slot free once its operands' last reads are done, a result nobody reads frees its slot
// at once. Operands are slots (< kEwSlotConst) or kEwSlotConst + c for constant c; `b` repeats
// `a` for unary ops. At most kEwProgMaxInputs + kEwProgMaxInstrs (22) slots are ever needed.
constexpr int kEwSlotConst = 32;
constexpr int kEwMaxSlots = 24;
// The graph's elementwise_chain rule fuses a chain only when its program needs at most this
// many slots (beyond it the CUDA kernel halves its elements per thread; docs/graph.md).
constexpr int kEwFuseSlotBudget = 16;
struct EwSlotPlan {
  std::uint8_t a[kEwProgMaxInstrs] = {}, b[kEwProgMaxInstrs] = {}, dst[kEwProgMaxInstrs] = {};
  int result = 0;          // the result's slot
  int slots = 1;           // slots used (1 + the highest)
  unsigned load_mask = 0;  // bit k: the program reads input k
};
// n_inputs: inputs given (the program reads x0 .. x<n_inputs - 1> at most).
EwSlotPlan plan_ew_slots(const EwProgram& p, int n_inputs);

// Checks a program built in code (registers in range and written before they are read);
// ValueError naming `who`.
void validate_ew_program(const EwProgram& p, const char* who = "elementwise_program");

}  // namespace lc
