#!/usr/bin/env bash
# Start the real servers the remote-storage and database-dump tests use:
# on loopback only, an S3-compatible store (moto, from PyPI) and an OpenSSH
# server with a generated key; on Unix sockets under $STATE only, private
# MariaDB and PostgreSQL servers with fresh data directories. Source this
# file: it exports STRATA_TEST_S3 and STRATA_TEST_SFTP (repository
# locations), STRATA_TEST_SFTP_ADDR and STRATA_TEST_STATE (for tests that cut
# connections or restart sshd), the S3 credentials, STRATA_TEST_MYSQL_SOCKET
# (root by unix_socket auth), STRATA_TEST_PGHOST and STRATA_TEST_PGUSER (the
# socket directory and a trusted superuser); on both databases the user
# strata_pw needs the password right-password. Defines stop_test_servers.
# Installs what is missing (python3-venv, openssh-server, mariadb-server,
# mariadb-client, postgresql) on a fresh Debian machine.

STATE="${STRATA_TEST_STATE:-${TMPDIR:-/tmp}/strata-test-servers}"
export STRATA_TEST_STATE="$STATE"
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/strata-test/moto"
mkdir -p "$STATE"

apt_install() {
    if command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "servers.sh: please install $*" >&2
        return 1
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() {
    for _ in $(seq 1 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "servers.sh: nothing listens on port $1" >&2
    return 1
}

start_moto() {
    if [ ! -x "$VENV/bin/moto_server" ]; then
        python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$VENV"; }
        "$VENV/bin/pip" install -q 'moto[server]'
    fi
    local port
    port=$(free_port)
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$STATE/moto.log" 2>&1 &
    echo $! >"$STATE/moto.pid"
    wait_for_port "$port"
    python3 -c "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:$port/strata-test', method='PUT'))"
    export AWS_ACCESS_KEY_ID=strata-test AWS_SECRET_ACCESS_KEY=strata-test
    export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
    export STRATA_TEST_S3="s3:http://127.0.0.1:$port/strata-test"
}

start_sshd() {
    [ -x /usr/sbin/sshd ] || apt_install openssh-server
    mkdir -p /run/sshd "$STATE/sftp"
    rm -f "$STATE/host_key" "$STATE/client_key" "$STATE/host_key.pub" "$STATE/client_key.pub"
    ssh-keygen -q -t ed25519 -N '' -f "$STATE/host_key"
    ssh-keygen -q -t ed25519 -N '' -f "$STATE/client_key"
    cp "$STATE/client_key.pub" "$STATE/authorized_keys"
    local port
    port=$(free_port)
    cat >"$STATE/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $port
HostKey $STATE/host_key
PidFile $STATE/sshd.pid
AuthorizedKeysFile $STATE/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
MaxStartups 100:30:200
MaxSessions 100
CONF
    /usr/sbin/sshd -D -e -f "$STATE/sshd_config" >/dev/null 2>"$STATE/sshd.log" &
    echo $! >"$STATE/sshd.pid.shell"
    wait_for_port "$port"
    # By address for other clients; by alias for any port (tests reach the
    # server through a proxy on another port).
    echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$STATE/host_key.pub")" >"$STATE/known_hosts"
    echo "strata-test-sftp $(cut -d' ' -f1,2 "$STATE/host_key.pub")" >>"$STATE/known_hosts"
    # ssh reads the user's config from the account's home, not $HOME: a
    # drop-in names the test host, its key and its known_hosts file.
    mkdir -p /etc/ssh/ssh_config.d
    cat >/etc/ssh/ssh_config.d/strata-test.conf <<CONF
Host strata-test-sftp
  HostName 127.0.0.1
  Port $port
  User $(id -un)
  IdentityFile $STATE/client_key
  IdentitiesOnly yes
  UserKnownHostsFile $STATE/known_hosts
  HostKeyAlias strata-test-sftp
  StrictHostKeyChecking yes
CONF
    export STRATA_TEST_SFTP="sftp:strata-test-sftp:$STATE/sftp"
    export STRATA_TEST_SFTP_ADDR="127.0.0.1:$port"
}

# Why a server did not start, with the end of its log: the log is in a
# temporary directory nobody looks at otherwise.
server_failed() {
    echo "servers.sh: $1; end of $2:" >&2
    tail -n 20 "$2" >&2 2>/dev/null
    return 1
}

# Kill the server whose pid file we wrote and wait until it has gone, so its
# data directory can be removed. The name check keeps a stale pid file (from
# before a reboot) from killing an unrelated process that got the same pid.
stop_pid_file() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 0
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 200); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
    fi
    rm -f "$1"
}

# Poll until the command succeeds, but give up at once when the server has
# exited: its log then says why.
wait_for_server() {
    local name=$1 pid=$2 log=$3
    shift 3
    for _ in $(seq 1 300); do
        "$@" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || { server_failed "$name exited" "$log"; return 1; }
        sleep 0.1
    done
    server_failed "$name does not answer after 30 s" "$log"
}

mariadb_sql() {
    mariadb --no-defaults --socket="$STATE/mariadb.sock" "$@"
}

start_mariadb() {
    if [ ! -x /usr/sbin/mariadbd ] || ! command -v mariadb-install-db mariadb mariadb-dump >/dev/null; then
        apt_install mariadb-server mariadb-client
    fi
    local dir="$STATE/mariadb" log="$STATE/mariadb.log"
    # A server left by an earlier run would hold the data directory
    stop_mariadb
    rm -rf "$dir" "$STATE/mariadb.sock" "$log"
    # Root logs in by unix_socket auth, as the OS user it is, without a
    # password; grant tables stay on, so the password of strata_pw is checked.
    mariadb-install-db --no-defaults --user=root --datadir="$dir" \
        --auth-root-authentication-method=socket --skip-test-db \
        --skip-name-resolve >"$log" 2>&1 ||
        { server_failed "mariadb-install-db failed" "$log"; return 1; }
    # A child of this shell, not a daemon: the shell reaps it when it stops.
    /usr/sbin/mariadbd --no-defaults --user=root --datadir="$dir" \
        --socket="$STATE/mariadb.sock" --skip-networking \
        --pid-file="$STATE/mariadb.pid" --log-error="$log" \
        --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
        --skip-name-resolve </dev/null >>"$log" 2>&1 &
    local pid=$!
    # mariadbd writes the same pid there, but only once it is up
    echo "$pid" >"$STATE/mariadb.pid"
    wait_for_server mariadbd "$pid" "$log" mariadb_sql -e 'select 1' || return 1
    mariadb_sql -e "CREATE USER 'strata_pw'@'localhost' IDENTIFIED BY 'right-password';
        GRANT ALL PRIVILEGES ON *.* TO 'strata_pw'@'localhost'" ||
        { server_failed "MariaDB refused to create strata_pw" "$log"; return 1; }
    export STRATA_TEST_MYSQL_SOCKET="$STATE/mariadb.sock"
}

stop_mariadb() {
    stop_pid_file "$STATE/mariadb.pid" mariadbd
}

# Where the server's programs are: where pg_config says, else the newest
# installed version (pg_config may come from a libpq-dev without a server).
pg_bindir() {
    local d
    for d in "$(pg_config --bindir 2>/dev/null)" \
        $(printf "%s\n" /usr/lib/postgresql/*/bin | sort -rV); do
        [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    return 1
}

# PostgreSQL refuses to run as root. From / because runuser keeps the working
# directory, which the postgres user may not be allowed to enter.
as_postgres() {
    (cd / && runuser -u postgres -- "$@")
}

start_postgres() {
    pg_bindir >/dev/null || apt_install postgresql
    id -u postgres >/dev/null 2>&1 ||
        useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
    local bin dir="$STATE/postgres" log="$STATE/postgres.log"
    bin=$(pg_bindir) || { echo "servers.sh: no PostgreSQL server found" >&2; return 1; }
    # A server left by an earlier run would hold the data directory
    stop_postgres
    rm -rf "$dir" "$log"
    # The data directory and the socket are the postgres user's, and root
    # connects to the socket, so the path to them must be open to both.
    mkdir -p "$dir/run"
    chmod 755 "$STATE" "$dir"
    chown postgres: "$dir" "$dir/run"
    if ! runuser -u postgres -- test -w "$dir/run"; then
        echo "servers.sh: the postgres user cannot reach $dir; set STRATA_TEST_STATE to a directory others can enter" >&2
        return 1
    fi
    as_postgres "$bin/initdb" -D "$dir/data" -U root --auth-local=trust \
        --auth-host=reject --no-locale -E UTF8 --no-sync >"$log" 2>&1 ||
        { server_failed "initdb failed" "$log"; return 1; }
    # The first matching line wins: strata_pw needs its password, every other
    # user (root) is trusted on the socket. There is no TCP listener at all.
    cat >"$dir/data/pg_hba.conf" <<CONF
local all strata_pw scram-sha-256
local all all trust
local replication all trust
CONF
    # A child of this shell, not a daemon (pg_ctl start): the shell reaps it
    # when it stops. Durability and memory are not worth waiting for here.
    as_postgres "$bin/postgres" -D "$dir/data" -c listen_addresses= \
        -k "$dir/run" -c unix_socket_permissions=0777 -c fsync=off \
        -c shared_buffers=32MB </dev/null >>"$log" 2>&1 &
    wait_for_server postgres $! "$log" \
        "$bin/psql" -X -h "$dir/run" -U root -d postgres -c 'select 1' || return 1
    "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/run" -U root -d postgres \
        -c "CREATE ROLE strata_pw LOGIN SUPERUSER PASSWORD 'right-password'" ||
        { server_failed "PostgreSQL refused to create strata_pw" "$log"; return 1; }
    export STRATA_TEST_PGHOST="$dir/run" STRATA_TEST_PGUSER=root
}

stop_postgres() {
    local bin
    [ -f "$STATE/postgres/data/postmaster.pid" ] || return 0
    bin=$(pg_bindir) || return 0
    as_postgres "$bin/pg_ctl" -D "$STATE/postgres/data" -m fast -w stop >/dev/null 2>&1 || true
}

stop_test_servers() {
    # sshd.pid is written by sshd itself, also when a test restarted it
    for f in "$STATE/moto.pid" "$STATE/sshd.pid.shell" "$STATE/sshd.pid"; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
        rm -f "$f"
    done
    rm -f /etc/ssh/ssh_config.d/strata-test.conf
    # ssh control masters left by the SFTP client
    pkill -f 'ssh.*strata-test-sftp' 2>/dev/null || true
    stop_mariadb
    stop_postgres
}

start_moto
start_sshd
start_mariadb
start_postgres
echo "test servers: S3 at ${STRATA_TEST_S3}, SFTP at ${STRATA_TEST_SFTP}," \
    "MariaDB at ${STRATA_TEST_MYSQL_SOCKET}, PostgreSQL in ${STRATA_TEST_PGHOST}" >&2
