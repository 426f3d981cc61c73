# Sourced by scripts/demo.sh, test_all.sh, sanitize.sh and bootstrap.sh: picks the Python the
# scripts install into and exports it as PYTHON (and PY).
#   $PYTHON if set; else an active virtual environment's python3; else python3 itself when pip
#   may install into it; else (a Debian/Ubuntu system Python, PEP 668 "externally managed") a
#   virtual environment in .venv/ of the checkout, created once (python3 -m venv, which needs
#   the python3-venv package there).
if [ -z "${PYTHON:-}" ]; then
  if [ -n "${VIRTUAL_ENV:-}" ]; then
    PYTHON="$VIRTUAL_ENV/bin/python3"
  elif python3 - <<'PY' 2>/dev/null
import sys, sysconfig, os
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(1 if managed and sys.prefix == sys.base_prefix else 0)
PY
  then
    PYTHON=python3
  else
    _lc_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    if [ ! -x "$_lc_root/.venv/bin/python3" ]; then
      echo "python_env: system Python is externally managed (PEP 668): creating $_lc_root/.venv"
      python3 -m venv "$_lc_root/.venv" || {
        echo "python_env: python3 -m venv failed; install python3-venv (apt-get install python3-venv)" >&2
        exit 1
      }
    fi
    PYTHON="$_lc_root/.venv/bin/python3"
  fi
fi
export PYTHON
PY=$PYTHON
