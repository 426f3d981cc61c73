// One binding definition per op: def_op registers the returning form `name` and the `_into`
// form `name_into` from one implementation and one argument list.
//
//   def_op<&lc::opdefs::softmax, /*out_pos=*/1, &softmax_impl>(m,
//       nb::arg("x").none(), nb::arg("device") = none, nb::kw_only(), nb::arg("policy") = none);
//
// registers softmax(x, device=None, *, policy=None) and softmax_into(x, out, device=None, *,
// policy=None): the `_into` form takes `out` at position out_pos, and the parameters before it
// lose their defaults (a positional `out` cannot follow a defaulted parameter). Both call
// `impl(def, handles, out)` with the N parameters in the returning form's order; `out` is an
// invalid handle for the returning form (run_op below picks the path). The name and docstring
// are the OpDef's (src/ops/registry.h), so the registry, lc.ops() and the module agree.
#pragma once

#include <array>
#include <initializer_list>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "bindings.h"
#include "convert.h"
#include "ops/registry.h"

namespace lcpy {

template <std::size_t N>
using Handles = std::array<nb::handle, N>;

// Every name def_op registered (both forms), for register_argument_errors.
std::vector<std::string>& op_function_names();

// ---- the end of every op implementation (X_impl) ----------------------------------------------
// Shared by every def_op implementation (bind_ops.cpp, bind_sessions.cpp, bind_attention.cpp).
template <class F>
void call_maybe_nogil(double flops, F&& f) {
  if (worth_releasing_gil(flops)) {
    nb::gil_scoped_release nogil;
    f();
  } else {
    f();
  }
}

// The returning form: a fresh numpy array when every input is numpy and the result lands on the
// host (computed by the `_into` path, no extra copy); an lc.Tensor otherwise. The numpy result
// has the dtype of the first argument in `args` (list the argument whose dtype the result takes
// first: the weight of an embedding, not its int ids).
template <class ShapeFn, class IntoFn, class RetFn>
nb::object run_returning(const char* op, std::initializer_list<const Arg*> args, const lc::ExecutionPolicy& p,
                         double flops, ShapeFn&& shape_fn, IntoFn&& into_fn, RetFn&& ret_fn) {
  bool any_lc = false;
  for (const Arg* a : args)
    if (a && a->from_lc) any_lc = true;
  if (!any_lc && p.download) {
    lc::Tensor view;
    const Arg* first = *args.begin();
    nb::object arr = new_numpy(shape_fn(), view, op, first ? first->t.dtype() : lc::DType::f32);
    call_maybe_nogil(flops, [&] { into_fn(view); });
    return arr;
  }
  lc::Tensor result;
  call_maybe_nogil(flops, [&] { result = ret_fn(); });
  return wrap_tensor(std::move(result));
}

template <class IntoFn>
nb::object run_into(nb::handle out_obj, const char* op, double flops, IntoFn&& into_fn) {
  Arg out;
  to_out_arg(out_obj, op, out);
  call_maybe_nogil(flops, [&] { into_fn(out.t); });
  return nb::borrow(out_obj);
}

// The end of every op implementation: the `_into` form (a valid `out`) writes the caller's
// buffer and returns it; the returning form allocates (run_returning).
template <class ShapeFn, class IntoFn, class RetFn>
nb::object run_op(nb::handle out, const char* op, std::initializer_list<const Arg*> args,
                  const lc::ExecutionPolicy& p, double flops, ShapeFn&& shape_fn, IntoFn&& into_fn,
                  RetFn&& ret_fn) {
  if (out.is_valid()) return run_into(out, op, flops, into_fn);
  return run_returning(op, args, p, flops, shape_fn, into_fn, ret_fn);
}

namespace detail {

template <class T>
auto without_default(const T& a) {
  using Tr = nb::detail::arg_traits<T>;
  if constexpr (Tr::has_default) {
    using Base = nb::arg_t<Tr::flags, Tr::locked>;
    return Base(static_cast<const Base&>(a));
  } else {
    return a;
  }
}

template <const lc::OpDef* D, std::size_t N, std::size_t OutPos, auto Impl>
struct OpForms {
  template <std::size_t... I>
  static auto returning(std::index_sequence<I...>) {
    return [](decltype((void)I, nb::handle())... h) -> nb::object {
      return Impl(*D, Handles<N>{h...}, nb::handle());
    };
  }
  template <std::size_t... I>
  static auto into(std::index_sequence<I...>) {  // N + 1 parameters, `out` at OutPos
    return [](decltype((void)I, nb::handle())... h) -> nb::object {
      const nb::handle all[] = {h...};
      Handles<N> args;
      for (std::size_t i = 0; i < N; ++i) args[i] = all[i < OutPos ? i : i + 1];
      return Impl(*D, args, all[OutPos]);
    };
  }
};

template <std::size_t OutPos, class Tuple, std::size_t... I, std::size_t... J>
auto into_annotations(const Tuple& t, std::index_sequence<I...>, std::index_sequence<J...>) {
  return std::make_tuple(without_default(std::get<I>(t))..., nb::arg("out").none(),
                         std::get<OutPos + J>(t)...);
}

}  // namespace detail

// `annotations`: the returning form's nb::arg / nb::arg_v list with one nb::kw_only().
template <const lc::OpDef* D, std::size_t OutPos, auto Impl, class... A>
void def_op(nb::module_& m, A... annotations) {
  constexpr std::size_t N = (std::size_t{nb::detail::arg_traits<A>::is_arg} + ...);
  static_assert(OutPos <= N, "out must come before the keyword-only parameters");
  using Forms = detail::OpForms<D, N, OutPos, Impl>;
  const std::tuple<A...> ann{annotations...};
  static std::string into_name = std::string(D->name) + "_into";  // one per (D, Impl)
  static std::string into_doc = std::string("Like ") + D->name +
                                ", writing the result into `out` (C-contiguous, writable, "
                                "exactly the result's shape and dtype).";
  std::apply([&](const auto&... a) { m.def(D->name, Forms::returning(std::make_index_sequence<N>()), a..., D->summary); },
             ann);
  std::apply([&](const auto&... a) { m.def(into_name.c_str(), Forms::into(std::make_index_sequence<N + 1>()), a..., into_doc.c_str()); },
             detail::into_annotations<OutPos>(ann, std::make_index_sequence<OutPos>(),
                                              std::make_index_sequence<sizeof...(A) - OutPos>()));
  op_function_names().push_back(D->name);
  op_function_names().push_back(into_name);
}

}  // namespace lcpy
