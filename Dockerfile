# Mammo Portal images, all from one file and one Debian base built from Debian packages
# (scripts/container_base.sh: mmdebstrap bookworm | podman import -> localhost/mammo-base):
#
#   target    image                   runs
#   web       localhost/mammo-web     gunicorn (also: migrate, bootstrap_demo, dicom_node, any manage.py)
#   worker    localhost/mammo-worker  celery worker, queues inference + default
#   beat      localhost/mammo-beat    celery beat (the sweep); exactly one
#   postgres  localhost/mammo-postgres  Debian's PostgreSQL 15
#   redis     localhost/mammo-redis     Debian's redis-server (the Celery broker)
#   orthanc   localhost/mammo-orthanc   Debian's Orthanc + DICOMweb plugin: the site's PACS in
#                                       compose (deploy/orthanc: routes new studies to the node)
#
# web, worker and beat share every layer but the last (CMD): one venv, one copy of the code
# and of the model artifact (models/, which the worker loads from /app/models).
#
# Build (compose.yaml does this): podman build --target web -t localhost/mammo-web .
# Behind a TLS-intercepting proxy pass its CA to pip:
#   podman build -v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro \
#                --build-arg PIP_CERT=/run/host-ca.crt ...
ARG BASE=localhost/mammo-base

# ---------------------------------------------------------------- Python dependencies
FROM ${BASE} AS python-deps
ARG PIP_CERT=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install ${PIP_CERT:+--cert "$PIP_CERT"} --quiet --upgrade pip \
 && /opt/venv/bin/pip install ${PIP_CERT:+--cert "$PIP_CERT"} --quiet -r /tmp/requirements.txt \
 && if ! grep -qi '^gunicorn' /tmp/requirements.txt; then \
      /opt/venv/bin/pip install ${PIP_CERT:+--cert "$PIP_CERT"} --quiet 'gunicorn>=23,<28'; fi

# ---------------------------------------------------------------- the application
FROM ${BASE} AS app
# A system user with a fixed id (volumes keep their owner across rebuilds); nothing runs as root.
RUN echo 'mammo:x:10001:10001:Mammo Portal:/app:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'mammo:x:10001:' >> /etc/group \
 && echo 'mammo:!:20000::::::' >> /etc/shadow \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/mammo /var/lib/mammo/media \
      /var/lib/mammo/prometheus
COPY --from=python-deps /opt/venv /opt/venv
WORKDIR /app
COPY --chown=0:0 . /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=mammo_portal.settings \
    MAMMO_VAR_DIR=/var/lib/mammo \
    MEDIA_ROOT=/var/lib/mammo/media \
    STATIC_ROOT=/app/staticfiles \
    MAMMO_MODEL_ARTIFACT=/app/models/custom_cnn-mias-abnormal-v1 \
    TF_CPP_MIN_LOG_LEVEL=2
# Static files are built into the image (whitenoise serves them); the key here is a throw-away
# that exists only for this one command: the real one comes at run time (SECRET_KEY_FILE).
RUN SECRET_KEY=collectstatic-only MAMMO_VAR_DIR=/tmp/collectstatic \
      python manage.py collectstatic --noinput --verbosity 0 \
 && rm -rf /tmp/collectstatic \
 && python -m compileall -q /app/mammo_portal /app/screening /app/ml >/dev/null \
 && test -f "$MAMMO_MODEL_ARTIFACT/manifest.json" \
 && gunicorn --version && celery --version
USER 10001:10001
# No VOLUME here: compose mounts the shared media volume (web, worker) and beat's state.

FROM app AS worker
CMD ["celery", "-A", "mammo_portal", "worker", "-Q", "inference,default", "-c", "1", \
     "--loglevel", "INFO"]

FROM app AS beat
CMD ["celery", "-A", "mammo_portal", "beat", "--schedule", "/var/lib/mammo/celerybeat-schedule", \
     "--loglevel", "INFO"]

# ---------------------------------------------------------------- PostgreSQL (Debian's)
FROM ${BASE} AS postgres
# No service starts during the install, and no cluster is made in the image: the data volume
# gets its own on first start (postgres-start below).
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d \
 && mkdir -p /etc/postgresql-common/createcluster.d \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/no-main.conf \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data \
 && install -d -o postgres -g postgres /run/postgresql \
 && printf '%s\n' \
   '#!/bin/sh' \
   '# First start: a cluster owned by POSTGRES_USER, password from POSTGRES_PASSWORD(_FILE),' \
   '# database POSTGRES_DB, password sign-in from the container network. Then postgres.' \
   'set -eu' \
   'PGDATA=${PGDATA:-/var/lib/postgresql/data}' \
   'if [ ! -s "$PGDATA/PG_VERSION" ]; then' \
   '  pw=${POSTGRES_PASSWORD:-}; [ -n "${POSTGRES_PASSWORD_FILE:-}" ] && pw=$(cat "$POSTGRES_PASSWORD_FILE")' \
   '  [ -n "$pw" ] || { echo "POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE is required" >&2; exit 1; }' \
   '  printf "%s\n" "$pw" > /tmp/pw' \
   '  initdb -D "$PGDATA" -U "${POSTGRES_USER:-mammo}" --pwfile=/tmp/pw -E UTF8 --locale=C.UTF-8 \' \
   '    --auth-local=trust --auth-host=scram-sha-256 >/dev/null' \
   '  rm -f /tmp/pw' \
   '  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"' \
   '  echo "CREATE DATABASE \"${POSTGRES_DB:-mammo}\" OWNER \"${POSTGRES_USER:-mammo}\";" \' \
   '    | postgres --single -D "$PGDATA" postgres >/dev/null' \
   '  echo "initialised $PGDATA"' \
   'fi' \
   'exec postgres -D "$PGDATA" -c listen_addresses="*" "$@"' \
   > /usr/local/bin/postgres-start \
 && chmod 0755 /usr/local/bin/postgres-start
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
USER postgres
VOLUME ["/var/lib/postgresql/data"]
EXPOSE 5432
STOPSIGNAL SIGINT
CMD ["postgres-start"]

# ---------------------------------------------------------------- Redis (Debian's)
FROM ${BASE} AS redis
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d \
 && apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o redis -g redis -m 0750 /data
USER redis
WORKDIR /data
VOLUME ["/data"]
EXPOSE 6379
# Only reachable on the compose network (no published port); append-only file so queued
# jobs survive a restart.
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data", \
     "--appendonly", "yes", "--save", ""]

# ---------------------------------------------------------------- Orthanc (Debian's)
FROM ${BASE} AS orthanc
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d \
 && apt-get update \
 && apt-get install -y --no-install-recommends orthanc orthanc-dicomweb \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o orthanc -g orthanc -m 0750 /var/lib/orthanc/db
COPY deploy/orthanc/ /etc/mammo-orthanc/
USER orthanc
VOLUME ["/var/lib/orthanc/db"]
EXPOSE 4242 8042
# The project's configuration: DICOM on 4242 (AE ORTHANC), REST and DICOMweb on 8042 (user
# mammo, password ORTHANC_PASSWORD), new mammography studies routed to the DICOM node.
CMD ["Orthanc", "/etc/mammo-orthanc/orthanc.json"]

# ---------------------------------------------------------------- default: the web image
FROM app AS web
EXPOSE 8000
CMD ["gunicorn", "mammo_portal.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "2", \
     "--access-logfile", "-"]
