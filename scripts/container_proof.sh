#!/usr/bin/env bash
# Container proof: build every image from the one Dockerfile (on a Debian base made by
# mmdebstrap), start PostgreSQL, Redis, migrate, web, worker and beat with podman-compose,
# upload a study of synthetic films through the API, wait until the worker has scored it,
# check the sign-in page, print a report and tear everything down (volumes included).
#
#   scripts/container_proof.sh 2>&1 | tee docs/container-proof.txt
#
# Needs: podman, podman-compose, mmdebstrap, curl, python3 (host: stdlib only). Run as root
# or as a user podman is set up for. Images stay in podman's storage (reused next time).
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT=${PROOF_PROJECT:-mammoproof}
export MAMMO_HTTP_PORT=${MAMMO_HTTP_PORT:-18000}
BASE_URL="http://127.0.0.1:$MAMMO_HTTP_PORT"
SCORE_TIMEOUT=${PROOF_SCORE_TIMEOUT:-900}
START=$(date +%s)
WORK=$(mktemp -d)
COMPOSE=(podman-compose -p "$PROJECT")
WEB="${PROJECT}_web_1"
step() { printf '\n== [%4ds] %s\n' "$(( $(date +%s) - START ))" "$*"; }
quiet() { local log="$WORK/$1.log"; shift; if ! "$@" >"$log" 2>&1; then tail -40 "$log"; return 1; fi; }

# --- podman settings for restricted hosts (sandboxes, nested containers); harmless elsewhere.
# Containers get limits no higher than this host's hard limits (podman asks for 1048576 open
# files and processes, which a non-privileged parent refuses: "setrlimit RLIMIT_NOFILE:
# Operation not permitted"); on a cgroup v1/v2 hybrid host crun refuses ("cgroups in hybrid
# mode not supported"), so runc is used there.
if [ -z "${CONTAINERS_CONF:-}" ]; then
  nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] && nofile=1048576
  nproc=$(ulimit -Hu); [ "$nproc" = unlimited ] && nproc=1048576
  pid_max=$(cat /proc/sys/kernel/pid_max); [ "$nproc" -gt "$pid_max" ] && nproc=$pid_max
  {
    echo '[containers]'
    echo "default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]"
    echo '[engine]'
    echo 'events_logger = "file"'
    if [ -d /sys/fs/cgroup/unified ] && command -v runc >/dev/null; then echo 'runtime = "runc"'; fi
  } > "$WORK/containers.conf"
  export CONTAINERS_CONF="$WORK/containers.conf"
fi

cleanup() {
  status=$?
  step "tear down"
  if [ "$status" -ne 0 ]; then
    echo "-- FAILED (exit $status); last log lines of each container:"
    for c in postgres redis migrate web worker beat; do
      echo "--- $c"; podman logs --tail 25 "${PROJECT}_${c}_1" 2>&1 || true
    done
  fi
  "${COMPOSE[@]}" down -t 10 >"$WORK/down.log" 2>&1 || true
  # Anything of this project's still there, with its anonymous volumes (-v), and its network.
  ids=$(podman ps -aq --filter "label=io.podman.compose.project=$PROJECT")
  [ -n "$ids" ] && podman rm -f -v $ids >/dev/null 2>&1
  podman network rm "${PROJECT}_default" >/dev/null 2>&1 || true
  for v in pgdata redisdata media beat; do podman volume rm -f "${PROJECT}_$v" >/dev/null 2>&1 || true; done
  podman pod rm -f "pod_$PROJECT" >/dev/null 2>&1 || true
  left=$(podman ps -a --filter "name=^${PROJECT}_" --format '{{.Names}}' | wc -l)
  echo "containers left: $left; volumes left: $(podman volume ls -q --filter "name=^${PROJECT}_" | wc -l); network left: $(podman network ls -q --filter "name=^${PROJECT}_" | wc -l)"
  rm -rf "$WORK"
  printf '\n== total %ds, exit %d\n' "$(( $(date +%s) - START ))" "$status"
}
trap cleanup EXIT

step "host"
echo "podman $(podman version --format '{{.Client.Version}}'), $(podman-compose version 2>/dev/null | grep -m1 -o 'version  *[0-9.]*' | tr -s ' ' | sed 's/^/podman-compose /'), $(mmdebstrap --version)"
echo "runtime: $(podman info --format '{{.Host.OCIRuntime.Name}}'), storage: $(podman info --format '{{.Store.GraphDriverName}}'), network: $(podman info --format '{{.Host.NetworkBackend}}')"

step "base image (mmdebstrap bookworm from Debian packages)"
# PROOF_FRESH=1: everything from nothing (new base from Debian, no build cache).
FRESH=(); [ "${PROOF_FRESH:-0}" = 1 ] && FRESH=(--no-cache)
scripts/container_base.sh ${FRESH:+--rebuild} | tail -2
echo "Python in the base: $(podman run --rm localhost/mammo-base python3 -V)"

step "build the images from ./Dockerfile"
# A TLS-intercepting proxy's CA (if this host's bundle holds one) reaches pip, and only pip.
BUILD_ARGS=()
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  BUILD_ARGS=(-v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro --build-arg PIP_CERT=/run/host-ca.crt)
fi
for target in postgres redis web worker beat; do
  t0=$(date +%s)
  quiet "build-$target" podman build "${FRESH[@]}" "${BUILD_ARGS[@]}" --target "$target" -t "localhost/mammo-$target" .
  printf '  %-9s %-26s %6s  %4ds\n' "$target" "localhost/mammo-$target" \
    "$(podman image inspect --format '{{.Size}}' "localhost/mammo-$target" | awk '{printf "%d MB", $1/1e6}')" \
    "$(( $(date +%s) - t0 ))"
done
echo "web/worker/beat differ only in CMD:"
for target in web worker beat; do
  printf '  %-7s user=%s cmd=%s\n' "$target" "$(podman image inspect --format '{{.Config.User}}' "localhost/mammo-$target")" \
    "$(podman image inspect --format '{{json .Config.Cmd}}' "localhost/mammo-$target")"
done

step "secrets"
# The file is bind-mounted as it is: the app (uid 10001) must read it, so the file is 0444 and
# the 0700 folder keeps other users of this host out.
mkdir -p var/container-secrets && chmod 0700 var/container-secrets
if [ ! -s var/container-secrets/secret_key ]; then
  python3 -c "import secrets; print(secrets.token_urlsafe(50))" > var/container-secrets/secret_key
fi
chmod 0444 var/container-secrets/secret_key
export MAMMO_DB_PASSWORD
MAMMO_DB_PASSWORD=$(python3 -c "import secrets; print(secrets.token_urlsafe(24))")
export SECURE_HTTPS=0   # plain HTTP on 127.0.0.1 for this proof; production keeps the default (on)
echo "SECRET_KEY: compose secret file var/container-secrets/secret_key (git-ignored); DB password: random for this run"

step "start postgres and redis"
"${COMPOSE[@]}" down -t 5 >/dev/null 2>&1 || true
quiet up-db "${COMPOSE[@]}" up -d --no-build postgres redis
for i in $(seq 60); do
  podman exec "${PROJECT}_postgres_1" pg_isready -q -h 127.0.0.1 -U mammo -d mammo 2>/dev/null \
    && podman exec "${PROJECT}_redis_1" redis-cli ping 2>/dev/null | grep -q PONG && break
  [ "$i" = 60 ] && { echo "postgres/redis not ready"; exit 1; }
  sleep 1
done
echo "postgres: $(podman exec "${PROJECT}_postgres_1" postgres --version), accepting connections"
echo "redis: $(podman exec "${PROJECT}_redis_1" redis-server --version | cut -d' ' -f1-3)"

step "migrate (one-shot service)"
quiet migrate "${COMPOSE[@]}" run --rm --no-deps -T migrate
grep -qE "Applying|No migrations to apply" "$WORK/migrate.log" || { cat "$WORK/migrate.log"; exit 1; }
echo "  $(grep -c 'Applying' "$WORK/migrate.log") migrations applied, last: $(grep 'Applying' "$WORK/migrate.log" | tail -1 | sed 's/^ *//')"

step "start web, worker, beat"
quiet up-app "${COMPOSE[@]}" up -d --no-build web worker beat
for i in $(seq 120); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL/accounts/login/" || true)
  [ "$code" = 200 ] && break
  [ "$i" = 120 ] && { echo "web does not answer (last: $code)"; exit 1; }
  sleep 1
done
podman ps --filter "name=^${PROJECT}_" --format '  {{.Names}}  {{.Image}}  {{.Status}}'

step "bootstrap_demo (demo users, the shipped model registered and active, 2 demo cases)"
podman exec "$WEB" python manage.py bootstrap_demo --cases 2 > "$WORK/bootstrap.txt" 2>&1
grep -E "^Model:|Demo cases" "$WORK/bootstrap.txt"
ADMIN_TOKEN=$(podman exec "$WEB" python manage.py drf_create_token admin | awk '{print $3}')
RAD_TOKEN=$(podman exec "$WEB" python manage.py drf_create_token radiologist | awk '{print $3}')
[ -n "$ADMIN_TOKEN" ] && [ -n "$RAD_TOKEN" ] && echo "API tokens for admin and radiologist made (drf_create_token)"

step "synthetic study: four films made in the web container (ml.synthetic), 1024 x 832, 16-bit PNG"
podman exec "$WEB" python -c '
import os
import numpy as np
from PIL import Image
from ml.synthetic import screening_study
os.makedirs("/tmp/proof", exist_ok=True)
for film in screening_study(seed=4242, malignant=True, height=1024, width=832):
    Image.fromarray(film.pixels.astype(np.uint16)).save(f"/tmp/proof/{film.laterality}_{film.view}.png")
'
podman cp "$WEB:/tmp/proof/." "$WORK/films/" 2>/dev/null || { mkdir -p "$WORK/films"; podman cp "$WEB:/tmp/proof/." "$WORK/films/"; }
python3 - "$WORK/films" <<'EOF'
import struct, sys, pathlib
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.png")):
    w, h = struct.unpack(">II", p.read_bytes()[16:24])
    print(f"  {p.name}: {w} x {h} px, {p.stat().st_size // 1024} KiB")
EOF

step "upload through the API (POST /api/studies/, admin token)"
ACCESSION="PROOF-$(date +%Y%m%d%H%M%S)"
curl -sS -o "$WORK/upload.json" -w '%{http_code}\n' -H "Authorization: Token $ADMIN_TOKEN" \
  -F accession_number="$ACCESSION" -F patient_pseudonym=SYN-PROOF -F modality=MG \
  $(for f in "$WORK"/films/*.png; do printf -- '-F files=@%s;type=image/png ' "$f"; done) \
  "$BASE_URL/api/studies/" > "$WORK/upload.code"
echo "HTTP $(cat "$WORK/upload.code")"
CASE_ID=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["case_id"]); print(d["detail"], "files accepted:", sum(f["accepted"] for f in d["files"]), file=sys.stderr)' "$WORK/upload.json")
[ "$(cat "$WORK/upload.code")" = 201 ] || { cat "$WORK/upload.json"; exit 1; }
echo "accession $ACCESSION -> case $CASE_ID"

step "wait until the worker has scored it (GET /api/cases/$CASE_ID/, radiologist token)"
t0=$(date +%s); last=""
while :; do
  curl -sS -H "Authorization: Token $RAD_TOKEN" "$BASE_URL/api/cases/$CASE_ID/" > "$WORK/case.json"
  state=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])).get("case_ai_result") or {}; print(r.get("status", "none"))' "$WORK/case.json")
  [ "$state" != "$last" ] && echo "  +$(( $(date +%s) - t0 ))s case_ai_result.status = $state" && last=$state
  [ "$state" = done ] && break
  [ "$state" = failed ] && { cat "$WORK/case.json"; exit 1; }
  [ $(( $(date +%s) - t0 )) -gt "$SCORE_TIMEOUT" ] && { echo "not scored within ${SCORE_TIMEOUT}s"; exit 1; }
  sleep 3
done
python3 - "$WORK/case.json" <<'EOF'
import json, sys
case = json.load(open(sys.argv[1]))
r = case["case_ai_result"]
print(f"  case {case['id']}: status {case.get('status')}, AI {r['status']}, probability {r['probability']:.3f}, model {r['model_version']}")
for study in case["studies"]:
    for image in study["images"]:
        ai = image.get("ai_result") or {}
        print(f"  image {image.get('laterality', '')}{image.get('view', '')}: {ai.get('status')} p={ai.get('probability')} heatmap={'yes' if ai.get('heatmap_url') else 'no'}")
EOF
HEATMAP=$(python3 -c '
import json, sys
case = json.load(open(sys.argv[1]))
urls = [i["ai_result"]["heatmap_url"] for s in case["studies"] for i in s["images"] if (i.get("ai_result") or {}).get("heatmap_url")]
print(urls[0] if urls else "")' "$WORK/case.json")
if [ -n "$HEATMAP" ]; then
  case $HEATMAP in http*) ;; *) HEATMAP="$BASE_URL$HEATMAP";; esac
  echo "  heatmap: $(curl -s -o /dev/null -w '%{http_code} %{content_type} %{size_download} bytes' -H "Authorization: Token $RAD_TOKEN" "$HEATMAP")"
fi
echo "  media volume seen by web (files under /var/lib/mammo/media): $(podman exec "$WEB" find /var/lib/mammo/media -type f | wc -l)"

step "pages and processes"
echo "  GET /accounts/login/ -> $(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL/accounts/login/")"
echo "  GET /static/ (whitenoise, collected in the image) -> $(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL$(curl -s "$BASE_URL/accounts/login/" | grep -o '/static/[^"]*\.css' | head -1)")"
echo "  GET /api/cases/ without a token -> $(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL/api/cases/")"
for c in web worker beat; do
  echo "  $c runs as uid $(podman exec "${PROJECT}_${c}_1" id -u): $(podman exec "${PROJECT}_${c}_1" sh -c 'tr "\0" " " < /proc/1/cmdline' | cut -c1-110)"
done
echo "  worker log: $(podman logs "${PROJECT}_worker_1" 2>&1 | grep -c 'succeeded in') tasks succeeded; beat log: $(podman logs "${PROJECT}_beat_1" 2>&1 | grep -c 'Sending due task') sweeps sent"

step "PASS: built, started, uploaded, scored, page answered"
