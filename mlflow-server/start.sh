#!/bin/sh
# Start the MLflow tracking server: Postgres backend store, proxied artifacts, basic auth.
#
# Environment (render.yaml sets these):
#   DATABASE_URL                    Postgres connection string: backend store, model registry AND the
#                                   basic-auth users (one database; MLflow's tables do not collide)
#   MLFLOW_FLASK_SERVER_SECRET_KEY  signs the auth app's sessions/CSRF tokens (required)
#   MLFLOW_AUTH_ADMIN_PASSWORD      password of the `admin` user created on the very first start (required
#                                   then; ignored afterwards: change it through MLflow's update-password API)
#   MLFLOW_ARTIFACTS_DESTINATION    where artifacts live: a disk path (default /var/data/mlflow-artifacts)
#                                   or an object store such as s3://bucket/prefix
#   PORT                            listen port (default 8080); MLFLOW_WORKERS (default 1)
#   MLFLOW_ALLOWED_HOSTS            extra Host header patterns, comma separated, on top of Render's
#                                   public hostname and private-network name (host:port, * wildcards)
#   MLFLOW_START_DRY_RUN=1          print the command and the auth config instead of starting
set -eu

user=mlflow
artifacts=${MLFLOW_ARTIFACTS_DESTINATION:-/var/data/mlflow-artifacts}

die() {
    echo "mlflow-server: $*" >&2
    exit 1
}

# Started as root (the image has no USER, so a disk that Render mounts root-owned stays usable):
# make the artifacts directory ours, then run this script again as the unprivileged user.
if [ "$(id -u)" = 0 ] && [ "${MLFLOW_START_DRY_RUN:-0}" != 1 ]; then
    case "$artifacts" in
    /*)
        mkdir -p "$artifacts"
        chown "$user:$user" "$artifacts"
        ;;
    esac
    exec setpriv --reuid="$user" --regid="$user" --init-groups --no-new-privs \
        env HOME="/home/$user" /bin/sh "$0" "$@"
fi

[ -n "${DATABASE_URL:-}" ] || die "set DATABASE_URL to the Postgres connection string (render.yaml: fromDatabase)"
[ -n "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ] || die "set MLFLOW_FLASK_SERVER_SECRET_KEY (any long random string)"

# SQLAlchemy knows postgresql://, not the postgres:// some providers hand out.
case "$DATABASE_URL" in
postgres://*) db="postgresql://${DATABASE_URL#postgres://}" ;;
*) db=$DATABASE_URL ;;
esac

case "$artifacts" in
/*)
    if [ "${MLFLOW_START_DRY_RUN:-0}" != 1 ]; then
        mkdir -p "$artifacts" 2>/dev/null || true
        [ -w "$artifacts" ] || die "$artifacts is not writable by $(id -un); check the disk's mountPath"
    fi
    ;;
esac

port=${PORT:-8080}
hosts="localhost:$port,127.0.0.1:$port"
if [ -n "${RENDER_EXTERNAL_HOSTNAME:-}" ]; then
    hosts="$hosts,$RENDER_EXTERNAL_HOSTNAME,$RENDER_EXTERNAL_HOSTNAME:*"
fi
if [ -n "${RENDER_SERVICE_NAME:-}" ]; then
    # Private network: <service-name>-<suffix>:<port> (the Connect menu's "Internal" address).
    hosts="$hosts,$RENDER_SERVICE_NAME:$port,$RENDER_SERVICE_NAME-*:$port"
fi
if [ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]; then
    hosts="$hosts,$MLFLOW_ALLOWED_HOSTS"
fi

# The auth app reads its user database from an ini file only. It holds the database password:
# private to this user, in a directory that is not on the disk.
umask 077
config_dir=$(mktemp -d)
ini="$config_dir/basic_auth.ini"
# configparser treats % as interpolation: escape it.
auth_db=$(printf '%s' "$db" | sed 's/%/%%/g')
cat >"$ini" <<EOF
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = $auth_db
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
export MLFLOW_AUTH_CONFIG_PATH="$ini"
# The database URL holds its password: given to `mlflow server` through the variable its --backend-store-uri
# option reads, not on the command line, which every user of the machine reads in `ps` (and /proc/PID/cmdline).
export MLFLOW_BACKEND_STORE_URI="$db"

set -- mlflow server \
    --artifacts-destination "$artifacts" \
    --host 0.0.0.0 \
    --port "$port" \
    --workers "${MLFLOW_WORKERS:-1}" \
    --allowed-hosts "$hosts" \
    --app-name basic-auth

if [ "${MLFLOW_START_DRY_RUN:-0}" = 1 ]; then
    printf '%s\n' "$@" | sed 's#://[^@/]*@#://***@#'
    echo "MLFLOW_BACKEND_STORE_URI=$MLFLOW_BACKEND_STORE_URI" | sed 's#://[^@/]*@#://***@#'
    echo "--- $ini"
    sed 's#://[^@/]*@#://***@#' "$ini"
    rm -rf "$config_dir"
    exit 0
fi
exec "$@"
