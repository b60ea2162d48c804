"""The TUI over a real SSH connection: a private OpenSSH server on 127.0.0.1 whose
``ForceCommand`` runs the TUI (as docs/ssh.md sets it up), driven through tmux panes.

Checks: two sessions browse the same vault at once (read-only opens); a search over SSH finds
the original of a -3 dB copy; while a writer holds the vault, a new session shows "Vault is
busy" and its retry (r) opens the library once the writer is gone; without a terminal
(`ssh host ls /`, scp) the forced TUI refuses in one line and no server process outlives the
connection.

Skips, with the reason, when sshd/ssh/ssh-keygen/tmux are missing or sshd cannot start here.
The vault is coded by the tests' FakeEncoder (so this runs without the model): the forced
command is a small launcher that passes it to ``SpeechVaultApp``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
TOOLS = {"sshd": SSHD, "ssh": shutil.which("ssh"), "ssh-keygen": shutil.which("ssh-keygen"),
         "tmux": shutil.which("tmux")}
missing = [name for name, path in TOOLS.items() if not path]
pytestmark = pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)} (OpenSSH "
                                                      "server/client and tmux)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tmux:
    def __init__(self, tmp: Path) -> None:
        self.sock = f"svtest-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        self.env = {**os.environ, "TMUX": ""}

    def run(self, *args: str, check: bool = True) -> str:
        r = subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True,
                           env=self.env, timeout=30)
        if check and r.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def new(self, name: str, command: str, size=(100, 30)) -> None:
        if name == "a":
            self.run("new-session", "-d", "-s", "main", "-n", name, "-x", str(size[0]),
                     "-y", str(size[1]), command)
        else:
            self.run("new-window", "-t", "main", "-n", name, command)
        self.run("set-option", "-t", "main", "remain-on-exit", "on", check=False)

    def screen(self, name: str) -> str:
        return self.run("capture-pane", "-p", "-t", f"main:{name}", check=False)

    def keys(self, name: str, *keys: str, literal: bool = False) -> None:
        self.run("send-keys", "-t", f"main:{name}", *(("-l",) if literal else ()), *keys)

    def wait_for(self, name: str, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen(name)
            if text in screen:
                return screen
            time.sleep(0.25)
        raise AssertionError(f"{text!r} did not appear in pane {name} within {timeout}s:\n{screen}")

    def kill(self) -> None:
        self.run("kill-server", check=False)


#: the forced command: ``speechvault tui VAULT`` itself (the CLI, as docs/ssh.md sets it up),
#: with the tests' FakeEncoder standing in for the model the vault was coded with
LAUNCHER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from tests.test_tui import _fake_encoder
    import store.vault
    _encoder = _fake_encoder()
    class _Encoder:
        @classmethod
        def from_bytes(cls, *args, **kwargs):
            return _encoder
    store.vault._load_encoder_class = lambda: _Encoder
    sys.argv = ["speechvault", "ssh-serve", {vault!r}]  # docs/ssh.md's ForceCommand
    import cli
    cli.main()
""")

HOLDER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from tests.test_tui import vault_cls_for, _fake_encoder
    v = vault_cls_for(_fake_encoder()).open({vault!r}, read_only=False)
    print("locked", flush=True)
    sys.stdin.readline()
    v.close()
""")


@pytest.fixture
def ssh_env(tmp_path):
    from tests.test_tui import EXAMPLES, TARGET, _build_vault, _fake_encoder, cpo_copy

    vault = _build_vault(tmp_path / "demo.duckdb", _fake_encoder())
    query = cpo_copy(EXAMPLES / TARGET, tmp_path / "query-3dB.wav")
    launcher = tmp_path / "launch_tui.py"
    launcher.write_text(LAUNCHER.format(root=str(ROOT), vault=str(vault)))

    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / key)],
                       check=True, timeout=30)
    (tmp_path / "authorized_keys").write_text((tmp_path / "client_key.pub").read_text())
    os.chmod(tmp_path / "authorized_keys", 0o600)
    user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True,
                                                     text=True).stdout.strip()
    port = _free_port()
    forced = f"{sys.executable} {launcher}"
    config = tmp_path / "sshd_config"
    config.write_text(textwrap.dedent(f"""
        Port {port}
        ListenAddress 127.0.0.1
        HostKey {tmp_path / 'host_key'}
        PidFile {tmp_path / 'sshd.pid'}
        AuthorizedKeysFile {tmp_path / 'authorized_keys'}
        StrictModes no
        UsePAM no
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        PubkeyAuthentication yes
        PermitRootLogin prohibit-password
        LogLevel ERROR
        Match User {user}
            ForceCommand {forced}
            PermitTTY yes
            DisableForwarding yes
            AllowTcpForwarding no
            X11Forwarding no
            PermitTunnel no
            SetEnv LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1
    """))
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
    if check.returncode != 0:
        pytest.skip(f"sshd cannot run here: {check.stderr.strip()[:200]}")
    sshd = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if sshd.poll() is not None:
            pytest.skip(f"sshd exited: {sshd.stderr.read()[:300]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    ssh_cmd = (f"ssh -tt -p {port} -i {tmp_path / 'client_key'} -o StrictHostKeyChecking=no "
               f"-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes "
               f"{user}@127.0.0.1")
    tmux = Tmux(tmp_path)
    try:
        yield {"ssh": ssh_cmd, "tmux": tmux, "vault": vault, "query": query, "port": port,
               "user": user, "key": tmp_path / "client_key", "launcher": launcher}
    finally:
        tmux.kill()
        sshd.terminate()
        try:
            sshd.wait(10)
        except subprocess.TimeoutExpired:
            sshd.kill()


def test_search_sessions_over_ssh_and_busy_retry(ssh_env):
    tmux, ssh = ssh_env["tmux"], ssh_env["ssh"]
    # two concurrent read-only sessions
    tmux.new("a", ssh)
    tmux.new("b", ssh)
    for name in ("a", "b"):
        screen = tmux.wait_for(name, "12 of 12 recordings", timeout=90)
        assert "read-only" in screen
    # session a names a query file of the server: refused (issue 15, item 4); a query comes
    # on stdin instead (test_search_with_the_query_brought_on_stdin)
    tmux.keys("a", "F3")
    tmux.wait_for("a", "query")
    tmux.keys("a", str(ssh_env["query"]), literal=True)
    tmux.keys("a", "Enter")
    screen = tmux.wait_for("a", "names no files on the server", timeout=90)
    assert "MATCH" not in screen and "2_en-f3_1.wav" not in screen
    # quit both: ctrl+q ends the forced command, and so the SSH session
    for name in ("a", "b"):
        tmux.keys(name, "C-q")
    time.sleep(2)

    # a writer holds the vault: a new session is told it is busy, and can retry
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(root=str(ROOT), vault=str(ssh_env["vault"]))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        tmux.new("c", ssh)
        tmux.wait_for("c", "Vault is busy", timeout=90)
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(30)
        tmux.keys("c", "r")
        tmux.wait_for("c", "12 of 12 recordings", timeout=60)
        tmux.keys("c", "C-q")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_forwarding_is_refused(ssh_env):
    """The Match block's DisableForwarding: a remote forward is refused by the server (and
    ExitOnForwardFailure makes the client say so by its exit status)."""
    port = _free_port()
    cmd = ssh_env["ssh"].replace("ssh -tt", "ssh -N -o ExitOnForwardFailure=yes "
                                            f"-R {port}:127.0.0.1:{ssh_env['port']}")
    r = subprocess.run(cmd.split(), capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    # with forwarding disabled the server refuses the forward: ssh exits non-zero at once
    assert r.returncode != 0


def _processes_running(script: Path) -> list[int]:
    """Pids whose command line names ``script`` (the forced command's launcher)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(script).encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def assert_no_session_left(script: Path, timeout: float = 60.0) -> None:
    """No forced-command process outlives its connection (they used to spin for ever, holding
    the vault). ``timeout`` bounds the wait for an exiting process; it is no speed target."""
    deadline = time.monotonic() + timeout
    while _processes_running(script) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _processes_running(script)
    for pid in left:
        os.kill(pid, 9)
    assert not left, f"forced-command processes left running: {left}"


def _client_options(env) -> list[str]:
    return ["-i", str(env["key"]), "-o", "StrictHostKeyChecking=no", "-o",
            "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes"]


def test_without_a_terminal_the_tui_refuses_and_the_session_ends(ssh_env):
    """`ssh host ls /` (the check docs/ssh.md suggests) is refused in one line, exit 1, and with
    no command and no terminal the forced TUI says so; either way the session ends (it used to
    hang, the TUI spinning on the server). The timeout only bounds the failure."""
    base = ["ssh", "-T", "-p", str(ssh_env["port"]), *_client_options(ssh_env),
            f"{ssh_env['user']}@127.0.0.1"]
    for extra, said in ((["ls", "/"], "only searches"), ([], "needs a terminal")):
        r = subprocess.run(base + extra, capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0]
        assert "Traceback" not in r.stderr and "bin" not in r.stdout.split()  # no `ls /` ran
    assert_no_session_left(ssh_env["launcher"])


def test_search_with_the_query_brought_on_stdin(ssh_env):
    """`ssh host search --json < query.wav`: the audio comes from the client's machine, the
    answer is the same JSON `speechvault search` prints (issue 15 item 4)."""
    cmd = ["ssh", "-T", "-p", str(ssh_env["port"]), *_client_options(ssh_env),
           f"{ssh_env['user']}@127.0.0.1", "search", "--json"]
    with open(ssh_env["query"], "rb") as q:
        r = subprocess.run(cmd, capture_output=True, timeout=300, stdin=q)
    assert r.returncode == 0, r.stderr.decode()
    res = json.loads(r.stdout)
    assert res["matched"] and res["hits"][0]["name"] == "2_en-f3_1.wav"
    assert_no_session_left(ssh_env["launcher"])


def test_scp_gets_no_file_and_returns(ssh_env, tmp_path):
    """scp (sftp protocol or legacy) is forced into the TUI too: it fails promptly, nothing is
    copied."""
    dest = tmp_path / "copied"
    cmd = ["scp", "-P", str(ssh_env["port"]), *_client_options(ssh_env),
           f"{ssh_env['user']}@127.0.0.1:{ssh_env['vault']}", str(dest)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    assert not dest.exists()
    assert_no_session_left(ssh_env["launcher"])
