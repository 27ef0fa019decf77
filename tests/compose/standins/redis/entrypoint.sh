#!/bin/sh
# The official redis image's start, as far as docker-compose.yml relies on it: with no
# configuration file, protected mode off (Redis would otherwise refuse the other
# containers, which connect without a password), as user redis, in /data.
set -eu
if [ "${1:-}" = redis-server ]; then
    case "${2:-}" in
        *.conf) ;;
        *) set -- "$@" --protected-mode no ;;
    esac
    chown -R redis:redis /data
    exec setpriv --reuid=redis --regid=redis --init-groups "$@"
fi
exec "$@"
