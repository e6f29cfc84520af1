# Sourced by the bench scripts that need an SFTP archive: start_sshd DIR PORT
# starts an OpenSSH sshd on 127.0.0.1:PORT (internal-sftp, ed25519 keys made
# in DIR, any local user allowed with DIR/id_ed25519) and waits until it
# answers; it sets SSHD_PID, SSH_KEY and SSH_KNOWN_HOSTS (the caller kills
# SSHD_PID when done). The client key is the caller's (mode 600): a caller
# running the client as another user gives that user a copy.
start_sshd() {
	local k=$1 port=$2
	[[ -x /usr/sbin/sshd ]] || { echo "no /usr/sbin/sshd: apt-get install openssh-server" >&2; return 1; }
	rm -rf "$k" && mkdir -m 755 "$k"
	ssh-keygen -q -t ed25519 -N '' -C walship-bench-host -f "$k/host_key"
	ssh-keygen -q -t ed25519 -N '' -C walship-bench-client -f "$k/id_ed25519"
	cp "$k/id_ed25519.pub" "$k/authorized_keys"
	echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$k/host_key.pub")" >"$k/known_hosts"
	cat >"$k/sshd_config" <<-EOF2
		Port $port
		ListenAddress 127.0.0.1
		HostKey $k/host_key
		PidFile none
		UsePAM no
		StrictModes no
		AuthorizedKeysFile $k/authorized_keys
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		PermitRootLogin prohibit-password
		UseDNS no
		MaxStartups 100
		Subsystem sftp internal-sftp
	EOF2
	mkdir -p /run/sshd
	/usr/sbin/sshd -D -e -f "$k/sshd_config" 2>"$k/sshd.log" &
	SSHD_PID=$!
	SSH_KEY=$k/id_ed25519
	SSH_KNOWN_HOSTS=$k/known_hosts
	local i
	for i in $(seq 100); do
		ssh-keyscan -p "$port" 127.0.0.1 >/dev/null 2>&1 && return 0
		kill -0 "$SSHD_PID" 2>/dev/null || { echo "sshd exited: $(cat "$k/sshd.log")" >&2; return 1; }
		sleep 0.1
	done
	echo "sshd on 127.0.0.1:$port does not answer" >&2
	return 1
}
