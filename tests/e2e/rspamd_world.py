"""A private rspamd on loopback for tests: its own config dir, database, run and log dirs
under a temp dir, free ports, and no traffic off the machine (DNS goes to 127.0.0.1:1, which
answers nothing; network-only and redis-backed modules are disabled).

    rs = Rspamd(tmpdir)
    url = rs.start()          # "http://127.0.0.1:PORT" of the normal worker (/checkv2)
    ...
    rs.stop()

Used by the e2e suite and by crates/filter's Rust tests (which run this file as a script:
`python3 rspamd_world.py DIR [ADD_HEADER_SCORE]` prints the URL, then runs until stdin closes).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

RSPAMD = shutil.which("rspamd") or "/usr/bin/rspamd"
START_TIMEOUT = 60.0

# Modules that query the network, need redis, or are slow to load for nothing in tests.
DISABLED = [
    "rbl", "surbl", "dkim_signing", "arc", "asn", "emails", "fuzzy_check", "greylist",
    "history_redis", "neural", "ratelimit", "replies", "reputation", "url_redirector",
    "dmarc", "spamassassin", "clickhouse", "metadata_exporter", "mx_check", "phishing",
    "bayes_expiry", "elastic", "external_services", "antivirus", "maillist", "multimap",
    "p0f", "dcc", "metric_exporter", "rspamd_update", "url_reputation",
    "spf", "dkim", "whitelist", "once_received", "hfilter", "fuzzy_collect",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rspamd:
    def __init__(self, tmpdir, add_header_score=None):
        """`add_header_score`: if set, the "add header" action's threshold (e.g. -100 to have
        every message get rspamd's X-Spam headers through filter-rspamd)."""
        self.add_header_score = add_header_score
        self.dir = os.path.join(str(tmpdir), "rspamd")
        self.proc = None
        self.normal_port = None
        self.controller_port = None
        self.proxy_port = None

    def _write(self, name, text):
        path = os.path.join(self.dir, "etc", "local.d", name)
        with open(path, "w") as f:
            f.write(text)

    def _configure(self):
        for sub in ("etc/local.d", "etc/override.d", "db", "run", "log"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self.normal_port = free_port()
        self.controller_port = free_port()
        self.proxy_port = free_port()
        self._write("worker-normal.inc", 'bind_socket = "127.0.0.1:%d";\ncount = 1;\n' % self.normal_port)
        self._write("worker-controller.inc", 'bind_socket = "127.0.0.1:%d";\ncount = 1;\n' % self.controller_port)
        self._write("worker-proxy.inc", 'bind_socket = "127.0.0.1:%d";\ncount = 1;\n' % self.proxy_port)
        self._write("worker-fuzzy.inc", "count = 0;\n")
        self._write(
            "options.inc",
            'dns {\n  nameserver = ["127.0.0.1:1"];\n  timeout = 1s;\n  retransmits = 1;\n}\n'
            "hs_cache_dir = \"%s\";\n" % os.path.join(self.dir, "db"),
        )
        self._write("logging.inc", 'type = "file";\nfilename = "%s";\nlevel = "info";\n'
                    % os.path.join(self.dir, "log", "rspamd.log"))
        self._write("redis.conf", "")
        if self.add_header_score is not None:
            self._write("actions.conf", "add_header = %s;\n" % self.add_header_score)
        # An X-Spam-Status header on every message, so a caller sees rspamd's verdict.
        self._write("milter_headers.conf",
                    'use = ["x-spam-status"];\nskip_local = false;\nskip_authenticated = false;\n')
        for module in DISABLED:
            self._write(module + ".conf", "enabled = false;\n")
        # No bayes classifier (it needs redis).
        self._write("classifier-bayes.conf", "")
        path = os.path.join(self.dir, "etc", "override.d", "classifier-bayes.conf")
        with open(path, "w") as f:
            f.write("")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "_rspamd", "_rspamd")
            for root, dirs, files in os.walk(self.dir):
                for n in dirs + files:
                    shutil.chown(os.path.join(root, n), "_rspamd", "_rspamd")

    def start(self):
        """Starts rspamd and returns the normal worker's URL once it answers /ping."""
        self._configure()
        cmd = [
            RSPAMD, "-f", "-c", "/etc/rspamd/rspamd.conf",
            "--var", "LOCAL_CONFDIR=" + os.path.join(self.dir, "etc"),
            "--var", "DBDIR=" + os.path.join(self.dir, "db"),
            "--var", "RUNDIR=" + os.path.join(self.dir, "run"),
            "--var", "LOGDIR=" + os.path.join(self.dir, "log"),
        ]
        if os.geteuid() == 0:
            cmd += ["-u", "_rspamd", "-g", "_rspamd"]
        self.out = open(os.path.join(self.dir, "stdout.log"), "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        url = "http://127.0.0.1:%d" % self.normal_port
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("rspamd exited with %s: %s" % (self.proc.returncode, self.log_tail()))
            try:
                with urllib.request.urlopen(url + "/ping", timeout=2) as r:
                    if r.status == 200:
                        return url
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("rspamd did not answer /ping within %ss: %s" % (START_TIMEOUT, self.log_tail()))

    def log_tail(self, n=30):
        text = ""
        for name in ("stdout.log", os.path.join("log", "rspamd.log")):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    text += "".join(f.readlines()[-n:])
            except OSError:
                pass
        return text

    def stop(self):
        """Stops rspamd (its process group, by the PID we started), waiting at most 10 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        self.proc = None
        self.out.close()


if __name__ == "__main__":
    rs = Rspamd(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
    try:
        print(rs.start(), flush=True)
        sys.stdin.read()
    finally:
        rs.stop()
