#!/usr/bin/env bash
# Start the real servers the remote-storage tests use, on loopback only:
# an S3-compatible store (moto, from PyPI) and an OpenSSH server with a
# generated key. Source this file: it exports STRATA_TEST_S3 and
# STRATA_TEST_SFTP (repository locations), STRATA_TEST_SFTP_ADDR and
# STRATA_TEST_STATE (for tests that cut connections or restart sshd) and the
# credentials, and defines stop_test_servers. Installs what is missing (python3-venv, openssh-server)
# on a fresh Debian machine.

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

stop_test_servers() {
    # sshd.pid is written by sshd itself, also when a test restarted it
    for f in "$STATE/moto.pid" "$STATE/sshd.pid.shell" "$STATE/sshd.pid"; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
        rm -f "$f"
    done
    rm -f /etc/ssh/ssh_config.d/strata-test.conf
    # ssh control masters left by the SFTP client
    pkill -f 'ssh.*strata-test-sftp' 2>/dev/null || true
}

start_moto
start_sshd
echo "test servers: S3 at ${STRATA_TEST_S3}, SFTP at ${STRATA_TEST_SFTP}" >&2
