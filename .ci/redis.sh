# Starts a private redis-server for the otac-redis tests. Meant to be sourced (by .ci/run):
#
#   source .ci/redis.sh      # installs redis-server if missing, starts it, exports OTAC_TEST_REDIS_URL
#   ...run the tests...
#   otac_stop_redis
#
# Returns non-zero (without exiting the sourcing shell) when redis cannot be started.

OTAC_REDIS_PORT="${OTAC_REDIS_PORT:-6391}"
OTAC_REDIS_PIDFILE="${OTAC_REDIS_PIDFILE:-/tmp/otac-ci-redis.pid}"

otac_stop_redis() {
    if redis-cli -h 127.0.0.1 -p "$OTAC_REDIS_PORT" ping >/dev/null 2>&1; then
        redis-cli -h 127.0.0.1 -p "$OTAC_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    fi
    if [ -f "$OTAC_REDIS_PIDFILE" ]; then
        local pid
        pid="$(cat "$OTAC_REDIS_PIDFILE" 2>/dev/null)"
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
        fi
        rm -f "$OTAC_REDIS_PIDFILE"
    fi
}

otac_start_redis() {
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        echo "redis.sh: installing redis-server" >&2
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; } >/dev/null; then
            echo "redis.sh: could not install redis-server" >&2
            return 1
        fi
    fi

    # A server left over from an earlier run on this port is ours: start afresh.
    otac_stop_redis

    if ! redis-server --port "$OTAC_REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize yes --pidfile "$OTAC_REDIS_PIDFILE" --logfile /tmp/otac-ci-redis.log; then
        echo "redis.sh: redis-server did not start" >&2
        return 1
    fi

    local i
    for i in $(seq 1 100); do
        if [ "$(redis-cli -h 127.0.0.1 -p "$OTAC_REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; then
            export OTAC_TEST_REDIS_URL="redis://127.0.0.1:${OTAC_REDIS_PORT}/"
            echo "redis.sh: redis-server ready at $OTAC_TEST_REDIS_URL" >&2
            return 0
        fi
        sleep 0.1
    done
    echo "redis.sh: redis-server did not answer PING within 10 s" >&2
    tail -n 20 /tmp/otac-ci-redis.log >&2 2>/dev/null || true
    otac_stop_redis
    return 1
}

otac_start_redis
