"""`python -m lightning_core`: an environment report (like torch's collect_env) to paste into a
bug report: versions, the backends this build has and why one is unavailable, the CPU GEMM
engine, the auto-tune cache, optional packages, and every LC_* / CJ_* knob that is set.
"""

from __future__ import annotations

import os
import platform
import sys


def _version(mod: str) -> str:
    try:
        m = __import__(mod)
    except Exception:  # noqa: BLE001 - any failure to import means "not usable here"
        return "not installed"
    return str(getattr(m, "__version__", "installed"))


def report() -> str:
    import lightning_core as lc

    info = lc.build_info()
    lines = [
        f"lightning_core {info.get('version', '?')}  ({os.path.dirname(lc.__file__)})",
        f"python {platform.python_version()} on {platform.platform()}",
        f"numpy {_version('numpy')}, ml_dtypes {_version('ml_dtypes')} (bfloat16 arrays)",
        "",
        "devices:",
        f"  cpu   {info.get('cpu_device', '?')}",
    ]
    if lc.cuda_available():
        lines.append(f"  cuda  {info.get('cuda_device', '?')}")
    else:
        if info.get("cuda_compiled") != "yes":
            lines.append("  cuda  not available: this build has no CUDA backend (built without nvcc)")
        else:
            # The runtime's own reason is long: keep the driver's error and its explanation.
            reason = str(info.get("cuda_device", "")).split(". ")[0]
            reason = reason.split("failed with ")[-1].replace("no usable CUDA driver/device: ", "")
            lines.append("  cuda  not available: " + (reason or "no CUDA device"))
    lines += [
        f"  build: CUDA backend {'compiled (toolkit ' + str(info.get('cuda_toolkit')) + ', for ' + str(info.get('cuda_targets', 'sm_90a')) + ')' if info.get('cuda_compiled') == 'yes' else 'not compiled'}, "
        f"CPU GEMM {info.get('cpu_blas', '?')}",
        f"  available devices: {', '.join(lc.available_devices())}",
        "",
        f"auto-tune cache: {lc.autotune_cache_path()}",
        f"default policy: {lc.get_default_policy()!r}",
    ]
    knobs = sorted((k, v) for k, v in os.environ.items() if k.startswith(("LC_", "CJ_", "LIGHTNING_CORE_")))
    lines.append("knobs set: " + (", ".join(f"{k}={v}" for k, v in knobs) if knobs else "none"))
    return "\n".join(lines)


def main() -> int:
    print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
