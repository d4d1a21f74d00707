#!/usr/bin/env bash
# Anchor benchmark: how fast do existing model-serving systems serve the same
# scikit-learn models over HTTP on this machine, next to the physical floors?
# (`make bench-peers` runs it with ANCHORS_PROFILE=mlapi; see README.md here.)
#
# Idempotent: installs wrk (apt) and the venvs the chosen systems need under $ANCHORS_VENVS
# (default /tmp/anchors-venvs), trains the models once, then runs bench.py and
# prints the results table.  Results JSON: $ANCHORS_OUT (default
# /tmp/anchors-results.json).
#
#   ANCHORS_PROFILE=default  reference Flask+uWSGI, gunicorn, MLflow, MLServer,
#                            BentoML + HTTP floors  (~25 min with 3 rounds of M1, M2; M3 adds half)
#   ANCHORS_PROFILE=extras   uWSGI variants (without the one-native-thread cap, 4 threads, --http router,
#                            --http11-socket) and MLflow variants (client
#                            'Connection: close', dataframe_split), interleaved
#                            with the reference; -> /tmp/anchors-results-extras.json
#                            (~8 min per round of M1, M2, ~12 with M3; the report used ANCHORS_ROUNDS=2)
#   ANCHORS_PROFILE=mlapi    the product (`mlapi serve` from $MLAPI_CHECKOUT, default: the
#                            repository holding this script, using its .venv) against the
#                            minimal Flask+uWSGI handler, MLServer, BentoML, MLflow and the
#                            floor; with $MLAPI_BEFORE_CHECKOUT set (a second checkout with
#                            its own .venv), also mlapi_before: the same `mlapi serve`
#                            from that checkout (see README.md for mlapi_batch_before)
#   ANCHORS_PROFILE=smoke    every system once, 1 s cells (checks the set-up)
#   ANCHORS_SYSTEMS=a,b,...  explicit list (see SYSTEMS in bench.py)
#   ANCHORS_ROUNDS / ANCHORS_DURATION / ANCHORS_WARMUP  (3 / 10 / 2 s); a quick check of
#                            chosen systems: ANCHORS_ROUNDS=1 ANCHORS_DURATION=1 ANCHORS_WARMUP=1
#   ANCHORS_MODELS=m3        only these models (default m1,m2,m3; see prepare.py)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export MLAPI_CHECKOUT="${MLAPI_CHECKOUT:-$(cd "$HERE/../.." && pwd)}"
export ANCHORS_VENVS="${ANCHORS_VENVS:-/tmp/anchors-venvs}"
export ANCHORS_WORK="${ANCHORS_WORK:-/tmp/anchors-work}"
PY="${ANCHORS_PYTHON:-python3}"
PROFILE="${ANCHORS_PROFILE:-default}"
CONS="$HERE/constraints.txt"

log() { echo "[run.sh $(date +%H:%M:%S)] $*"; }

# ---------------------------------------------------------------- tools
if ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk from apt"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
"$PY" -c 'import sys; assert (3, 10) <= sys.version_info[:2] < (3, 13), "need Python 3.10-3.12 (mlserver 1.7 requires <3.13)"'

# ---------------------------------------------------------------- systems
ROUNDS="${ANCHORS_ROUNDS:-3}"; DURATION="${ANCHORS_DURATION:-10}"; WARMUP="${ANCHORS_WARMUP:-2}"
OUT="${ANCHORS_OUT:-/tmp/anchors-results.json}"
case "$PROFILE" in
  default) SYSTEMS="flask_uwsgi_p2t1,flask_gunicorn_w2,mlflow_w2,mlserver_pw2,bentoml_w2,floor_uwsgi_flask_noop,floor_uwsgi_raw" ;;
  extras)  SYSTEMS="flask_uwsgi_p2t1,flask_uwsgi_p2t1_uncapped,flask_uwsgi_p2t4,flask_uwsgi_http_p2t1,flask_uwsgi_http11_p2t1,mlflow_w2_connclose,mlflow_w2_df"
           OUT="${ANCHORS_OUT:-/tmp/anchors-results-extras.json}" ;;
  mlapi)   SYSTEMS="mlapi,flask_uwsgi_p2t1,mlserver_pw2,bentoml_w2,mlflow_w2_connclose,floor_uwsgi_flask_noop"
           if [[ -n "${MLAPI_BEFORE_CHECKOUT:-}" ]]; then SYSTEMS="mlapi,mlapi_before,${SYSTEMS#mlapi,}"; fi
           OUT="${ANCHORS_OUT:-/tmp/anchors-results-mlapi.json}" ;;
  smoke)   SYSTEMS="flask_uwsgi_p2t1,flask_uwsgi_p2t4,flask_uwsgi_http_p2t1,flask_gunicorn_w2,mlflow_w2,mlserver_pw2,bentoml_w2,floor_uwsgi_flask_noop,floor_uwsgi_raw"
           ROUNDS=1; DURATION=1; WARMUP=1; OUT="${ANCHORS_OUT:-/tmp/anchors-results-smoke.json}" ;;
  *) echo "unknown ANCHORS_PROFILE=$PROFILE" >&2; exit 2 ;;
esac
SYSTEMS="${ANCHORS_SYSTEMS:-$SYSTEMS}"

# ---------------------------------------------------------------- venvs
# name | pip requirements (scikit-learn/numpy/scipy/joblib pinned by constraints.txt
# so that every system runs the very same model code)
declare -A REQS=(
  # pandas (M3's DataFrame records) pinned where a peer would not bring it, as in mlapi's
  # constraints.txt; MLflow and MLServer bring their own (3.1.1 too, checked)
  [base]="scikit-learn pandas==3.1.1 flask==3.1.3 gunicorn==27.0.1 uwsgi==2.0.31"
  [mlflow]="scikit-learn mlflow==3.17.2"
  # uvloop 0.22+ breaks MLServer 1.7.1 parallel workers ("There is no current event
  # loop in thread 'MainThread'" in mlserver/parallel/worker.py _ignore_signals)
  [mlserver]="scikit-learn mlserver==1.7.1 mlserver-sklearn==1.7.1 uvloop<0.22"
  # bentoml 1.4.40 needs certifi>=2026.10.19, which the index here does not have
  [bentoml]="scikit-learn pandas==3.1.1 bentoml==1.4.39"
)
# Only the venvs the chosen systems need: base always (bench.py, the models, uWSGI/gunicorn
# and the floors; the mlapi systems use their checkout's own .venv).
NEED=(base)
for v in mlflow mlserver bentoml; do
  if [[ ",$SYSTEMS" == *",$v"* ]]; then NEED+=("$v"); fi
done
mkdir -p "$ANCHORS_VENVS" "$ANCHORS_WORK"
pids=()
for v in "${NEED[@]}"; do
  d="$ANCHORS_VENVS/$v"
  want="$(cat "$CONS"; echo "${REQS[$v]}")"
  if [[ -f "$d/.anchors-ok" && "$(cat "$d/.anchors-ok")" == "$want" ]]; then
    continue
  fi
  log "building venv $v (log: $ANCHORS_WORK/pip-$v.log)"
  (
    rm -rf "$d" && "$PY" -m venv "$d" &&
    # shellcheck disable=SC2086
    "$d/bin/pip" install -q -c "$CONS" ${REQS[$v]} >"$ANCHORS_WORK/pip-$v.log" 2>&1 &&
    printf '%s' "$want" >"$d/.anchors-ok"
  ) &
  pids+=($!)
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
if (( fail )); then
  log "a venv failed to build; see $ANCHORS_WORK/pip-*.log (systems from it will be reported as FAILED)"
fi

# ---------------------------------------------------------------- models & bodies
"$ANCHORS_VENVS/base/bin/python" "$HERE/prepare.py" "$ANCHORS_WORK"
if [[ -x "$ANCHORS_VENVS/mlflow/bin/python" ]]; then
  DO_NOT_TRACK=1 MLFLOW_DISABLE_TELEMETRY=true \
    "$ANCHORS_VENVS/mlflow/bin/python" "$HERE/prepare_mlflow.py" "$ANCHORS_WORK" ||
    log "mlflow model export failed"
fi

# ---------------------------------------------------------------- bytecode
# mlapi's own modules compiled as a pip install and the image compile them (the Dockerfile runs
# every module once at build): a checkout installed editable gets no bytecode when
# PYTHONDONTWRITEBYTECODE is set (as in this machine's sessions), and each start then compiled
# its ~100 modules from source, ~0.13 s of cold start measured (2026-12-03) that no install pays.
# The peers' packages got theirs from pip.
for checkout in "$MLAPI_CHECKOUT" ${MLAPI_BEFORE_CHECKOUT:+"$MLAPI_BEFORE_CHECKOUT"}; do
  if [[ ",$SYSTEMS" == *",mlapi"* && -x "$checkout/.venv/bin/python" ]]; then
    "$checkout/.venv/bin/python" -m compileall -q "$checkout/app" >/dev/null ||
      log "compileall failed in $checkout/app: its server starts compile from source (cold starts overstated)"
  fi
done

# ---------------------------------------------------------------- benchmark
log "profile=$PROFILE rounds=$ROUNDS duration=${DURATION}s warmup=${WARMUP}s -> $OUT"
"$ANCHORS_VENVS/base/bin/python" "$HERE/bench.py" --rounds "$ROUNDS" --duration "$DURATION" \
  --warmup "$WARMUP" --systems "$SYSTEMS" --models "${ANCHORS_MODELS:-m1,m2,m3}" --out "$OUT"

# ---------------------------------------------------------------- tidy up
# keep venvs, models and logs; drop per-run scratch
rm -rf "$ANCHORS_WORK/mlserver_run" "$ANCHORS_WORK"/wrk_*.json
