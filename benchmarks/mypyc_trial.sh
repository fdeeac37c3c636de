#!/bin/bash
# What compiling keycask's hot modules with mypyc would give (issue 15): an
# experiment, not a build step. Compiles MODULES in a scratch copy of the tree
# (never in src/, where a stale .so would shadow the .py being edited), then
# measures the compiled and the pure copy side by side, same minute:
#   instructions per Encrypt 4 KiB (callgrind around pipeline_bench.py at two sizes, load-independent)
#   benchmarks/steps.py per-step us, ROUNDS alternations (noisy; compare the minima)
#
#   benchmarks/mypyc_trial.sh [ROUNDS]      (from the tree root, after make venv)
#
# Two source tweaks mypyc needs, applied to the scratch copy only:
#  - sigv4._SigningKey annotates hashlib._Hash, a typeshed-only name: mypyc
#    evaluates NamedTuple annotations at import, so it is quoted.
#  - awsjson._ResultTypeError subclasses TypeError: mypyc native classes cannot,
#    so it is marked @mypyc_attr(native_class=False) (mypy_extensions).
# Left out: keys/cache.py (frozen Generic dataclass: "attribute '__dict__' of
# 'type' objects is not writable" at import), crypto/material.py (internal
# mypyc error on bytes(generator)), service/core/authz.py (slots dataclass
# subclassing a class of a module not compiled: "mypyc classes can't have
# __slots__" at import).
set -euo pipefail
ROUNDS=${1:-5}
ROOT=$(pwd)
PY=$ROOT/.venv/bin/python
MODULES="keycask/auth/sigv4.py keycask/auth/canonical.py keycask/audit/record.py
keycask/policy/decision_cache.py keycask/keys/wire.py keycask/service/core/contexts.py
keycask/service/core/resolve.py keycask/service/pipeline.py
keycask/service/core/handlers/crypto.py keycask/crypto/message.py keycask/service/core/call.py
keycask/http/kms.py keycask/service/doors/kms.py keycask/service/doors/signed.py
keycask/audit/chain.py keycask/service/core/usage.py keycask/service/freshness.py
keycask/http/awsjson.py"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in pure compiled; do
  mkdir -p "$work/$t"
  cp -r "$ROOT/benchmarks" "$ROOT/pyproject.toml" "$work/$t/"  # mypy's settings too
  (cd "$ROOT" && git ls-files -z src | xargs -0 cp --parents -t "$work/$t")
done
c=$work/compiled/src
sed -i 's/^\(    [a-z]*\): hashlib\._Hash$/\1: "hashlib._Hash"/' "$c/keycask/auth/sigv4.py"
sed -i 's/^class _ResultTypeError(TypeError):/@mypyc_attr(native_class=False)\n&/' \
  "$c/keycask/http/awsjson.py"
sed -i '0,/^from keycask\.errors/s//from mypy_extensions import mypyc_attr\n&/' \
  "$c/keycask/http/awsjson.py"

start=$(date +%s)
# shellcheck disable=SC2086
(cd "$c" && "$ROOT/.venv/bin/mypyc" $MODULES >"$work/build.log" 2>&1) ||
  { tail -20 "$work/build.log"; exit 1; }
echo "mypyc build: $(( $(date +%s) - start )) s, $(find "$c" -name '*.so' -not -path '*/build/*' | wc -l) extension files"

callgrind() {  # instructions per request, the difference of two sizes, so set-up cancels
  local t=$1 n a b
  for n in 640 1920; do
    (cd "$t" && PYTHONPATH="$t/src" valgrind --tool=callgrind \
      --callgrind-out-file="$t/cg.$n" "$PY" benchmarks/pipeline_bench.py --requests $n \
      >/dev/null 2>"$t/cg.err.$n")
  done
  a=$(grep -h "^summary:" "$t/cg.640" | awk '{print $2}')
  b=$(grep -h "^summary:" "$t/cg.1920" | awk '{print $2}')
  echo $(( (b - a) / 1280 ))
}
callgrind "$work/pure" >"$work/cg.pure" &
callgrind "$work/compiled" >"$work/cg.compiled" &
wait
echo "instructions per request: pure $(cat "$work/cg.pure"), compiled $(cat "$work/cg.compiled")"

for i in $(seq "$ROUNDS"); do
  for t in compiled pure; do
    (cd "$work/$t" && PYTHONPATH="$work/$t/src" "$PY" benchmarks/steps.py >"$work/steps.$t.$i")
  done
done
for t in compiled pure; do
  echo "== steps.py, $t: lowest of $ROUNDS rounds (us)"
  cat "$work/steps.$t".* | awk '{v=$(NF-1); $(NF-1)=$NF=""; k=$0;
    if (!(k in m) || v < m[k]) m[k]=v; if (!(k in o)) {o[k]=++n; ks[n]=k}}
    END {for (i=1; i<=n; i++) printf "%-28s %6.1f\n", ks[i], m[ks[i]]}'
done
