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
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "bindings.h"
#include "ops/registry.h"

namespace lcpy {

template <std::size_t N>
using Handles = std::array<nb::handle, N>;

// Every name def_op registered (both forms), for register_argument_errors.
std::vector<std::string>& op_function_names();

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
