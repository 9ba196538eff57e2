"""`ownmail user add|passwd|del|list -f FILE` on a passwd: users file, and `ownmail newaliases`.

The users file is what `table users passwd:FILE` reads (Dovecot's passwd-file format);
`ownmail check` on a configuration naming it proves the daemon would accept what the
commands wrote. SMTP AUTH against such a file is tested elsewhere.
"""

import os
import pty
import re
import select
import subprocess
import time
import warnings
from pathlib import Path

import pytest

from conftest import assert_no_panic, error_lines

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # deprecated since 3.11, still the reference for crypt(3) here

HASH_RE = re.compile(r"^\$6\$[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}$")

EXISTING = (
    b"# mail users of example.org\n"
    b"\n"
    b"bob:{SHA512-CRYPT}" + crypt.crypt("bobpw", "$6$bobsalt").encode() + b":5000:5000::/var/vmail/bob::"
    b"userdb_mail=maildir:~/Maildir\n"
    b"   # an indented comment, trailing blanks  \n"
    b"carol:" + crypt.crypt("carolpw", "$6$carolsalt").encode() + b"\r\n"
    b"vmail:x:5000:5000::/var/vmail:/usr/sbin/nologin\n"
)


def user(om, *args, password=None):
    rc, out, err = om("user", *args, input=None if password is None else password + "\n")
    assert_no_panic(err)
    if password:
        assert password not in out + err, "the password was printed"
    return rc, out, err


def line_of(path, name):
    """The line of `name` in the users file, without its line ending."""
    for raw in Path(path).read_bytes().split(b"\n"):
        if raw.split(b":", 1)[0].strip() == name.encode():
            return raw.decode().rstrip("\r")
    return None


def hash_of(path, name):
    line = line_of(path, name)
    assert line is not None, f"no line for {name} in {path}"
    return line.split(":")[1]


def assert_verifies(hash_, password):
    assert HASH_RE.match(hash_), f"not a $6$ hash: {hash_!r}"
    assert crypt.crypt(password, hash_) == hash_, "the written hash does not verify"


def write_users(tmp_path, data=EXISTING, mode=0o640):
    """The users file, alone in its directory (so that a left-over temporary file shows)."""
    (tmp_path / "etc").mkdir(exist_ok=True)
    path = tmp_path / "etc" / "users"
    path.write_bytes(data)
    path.chmod(mode)
    return path


def write_conf(tmp_path, users):
    conf = tmp_path / "smtpd.conf"
    conf.write_text(
        f"table users passwd:{users}\n"
        "listen on 127.0.0.1 port 2599 auth <users>\n"
        "action local maildir\n"
        "match for local action local\n"
    )
    return conf


def check(om, conf):
    rc, out, err = om("check", "-f", conf)
    assert_no_panic(err)
    return rc, err


def dir_entries(path):
    return sorted(p.name for p in Path(path).parent.iterdir())


# --------------------------------------------------------------------------- add


def test_user_add_writes_a_sha512_crypt_line_that_check_accepts(om, tmp_path):
    users = write_users(tmp_path)
    conf = write_conf(tmp_path, users)
    rc, out, err = user(om, "add", "-f", users, "alice", password="correct horse battery")
    assert rc == 0, err
    assert out == ""
    line = line_of(users, "alice")
    assert re.fullmatch(r"alice:\$6\$[^:]+:5000:5000::/var/vmail/alice::", line), line
    assert_verifies(hash_of(users, "alice"), "correct horse battery")
    assert hash_of(users, "alice") not in out + err, "the hash was printed"
    rc, err = check(om, conf)
    assert rc == 0, err
    assert "configuration OK" in err


def test_user_add_keeps_every_other_byte_and_the_mode(om, tmp_path):
    users = write_users(tmp_path, mode=0o640)
    rc, _, err = user(om, "add", "-f", users, "alice", password="pw-alice")
    assert rc == 0, err
    data = users.read_bytes()
    assert data.startswith(EXISTING), "existing lines were changed"
    assert data[len(EXISTING):].count(b"\n") == 1, "more than one line was added"
    assert users.stat().st_mode & 0o7777 == 0o640
    assert dir_entries(users) == ["users"], "a temporary file was left behind"


def test_user_add_takes_uid_gid_and_home(om, tmp_path):
    users = write_users(tmp_path)
    rc, _, err = user(om, "add", "-f", users, "--uid", "2001", "--gid", "2002",
                      "--home", "/srv/mail/dora", "dora@example.org", password="pw")
    assert rc == 0, err
    line = line_of(users, "dora@example.org")
    assert line.endswith(":2001:2002::/srv/mail/dora::"), line


def test_user_add_creates_a_missing_file_with_mode_600(om, tmp_path):
    users = tmp_path / "new-users"
    conf = write_conf(tmp_path, users)
    rc, _, err = user(om, "add", "-f", users, "alice", password="pw")
    assert rc == 0, err
    assert users.stat().st_mode & 0o7777 == 0o600
    assert users.read_text().count("\n") == 1
    assert_verifies(hash_of(users, "alice"), "pw")
    rc, err = check(om, conf)
    assert rc == 0, err


@pytest.mark.parametrize("name", ["bob", "BOB", "Carol"])
def test_user_add_of_an_existing_name_fails_and_changes_nothing(om, tmp_path, name):
    users = write_users(tmp_path)
    inode = users.stat().st_ino
    rc, out, err = user(om, "add", "-f", users, name, password="other")
    assert rc == 1
    assert "exists" in err, err
    assert users.read_bytes() == EXISTING
    assert users.stat().st_ino == inode, "the file was replaced"
    assert dir_entries(users) == ["users"]


@pytest.mark.parametrize("name", ["a:b", "a b", "tab\there", "#root", ""])
def test_user_add_refuses_a_name_the_file_cannot_hold(om, tmp_path, name):
    users = write_users(tmp_path)
    rc, _, err = user(om, "add", "-f", users, name, password="pw")
    assert rc == 1, err
    assert users.read_bytes() == EXISTING


def test_user_add_refuses_an_empty_password_or_no_input(om, tmp_path):
    users = write_users(tmp_path)
    rc, _, err = om("user", "add", "-f", users, "alice", input="\n")
    assert rc == 1 and "empty password" in err, err
    rc, _, err = om("user", "add", "-f", users, "alice", input="")
    assert rc == 1, err
    assert users.read_bytes() == EXISTING


def test_user_add_reads_only_the_first_line_of_stdin(om, tmp_path):
    users = write_users(tmp_path)
    rc, _, err = om("user", "add", "-f", users, "alice", input="first line\r\nsecond\n")
    assert rc == 0, err
    assert_verifies(hash_of(users, "alice"), "first line")


def _pty_run(argv, answers, timeout=20):
    """Runs argv on a new pseudo-terminal, typing each answer after the next prompt."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execv(argv[0], argv)
    seen = b""
    deadline = time.monotonic() + timeout
    pending = list(answers)
    try:
        while time.monotonic() < deadline:
            if pending and seen.count(b": ") > len(answers) - len(pending):
                os.write(fd, pending.pop(0))
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                seen += data
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


def test_user_add_on_a_terminal_asks_twice_without_echo(ownmail, tmp_path):
    users = write_users(tmp_path)
    rc, seen = _pty_run([ownmail, "user", "add", "-f", str(users), "alice"],
                        [b"tty-secret\n", b"tty-secret\n"])
    assert rc == 0, seen
    assert seen.count("assword") == 2, seen
    assert "tty-secret" not in seen, "the password was echoed"
    assert_verifies(hash_of(users, "alice"), "tty-secret")

    rc, seen = _pty_run([ownmail, "user", "passwd", "-f", str(users), "alice"],
                        [b"one\n", b"two\n"])
    assert rc == 1 and "differ" in seen, seen
    assert_verifies(hash_of(users, "alice"), "tty-secret")


def test_concurrent_adds_lose_no_user(ownmail, tmp_path):
    users = write_users(tmp_path)
    procs = [
        subprocess.Popen([ownmail, "user", "add", "-f", users, f"u{i}"], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for i in range(20)
    ]
    for i, p in enumerate(procs):
        _, err = p.communicate(f"pw{i}\n".encode(), timeout=60)
        assert p.returncode == 0, err
    data = users.read_bytes()
    assert data.startswith(EXISTING)
    for i in range(20):
        assert_verifies(hash_of(users, f"u{i}"), f"pw{i}")
    assert dir_entries(users) == ["users"]


# --------------------------------------------------------------------------- list


def test_user_list_prints_the_names_in_file_order(om, tmp_path):
    users = write_users(tmp_path)
    rc, out, err = user(om, "list", "-f", users)
    assert rc == 0, err
    assert out == "bob\ncarol\nvmail\n"
    assert "$6$" not in out + err


def test_user_list_of_a_missing_file_fails(om, tmp_path):
    rc, out, err = user(om, "list", "-f", tmp_path / "nope")
    assert rc == 1 and out == "" and err


# --------------------------------------------------------------------------- passwd


def test_user_passwd_replaces_only_the_password_field(om, tmp_path):
    users = write_users(tmp_path)
    conf = write_conf(tmp_path, users)
    old_bob = line_of(users, "bob")
    rc, out, err = user(om, "passwd", "-f", users, "Bob", password="new bob pw")
    assert rc == 0, err
    assert out == ""
    new_bob = line_of(users, "bob")
    old_fields, new_fields = old_bob.split(":"), new_bob.split(":")
    assert new_fields[0] == "bob"
    assert new_fields[2:] == old_fields[2:], "fields after the password changed"
    assert_verifies(new_fields[1], "new bob pw")
    assert crypt.crypt("bobpw", new_fields[1]) != new_fields[1]
    # Every other line, byte for byte.
    before = [l for l in EXISTING.split(b"\n") if not l.startswith(b"bob:")]
    after = [l for l in users.read_bytes().split(b"\n") if not l.startswith(b"bob:")]
    assert after == before
    assert users.stat().st_mode & 0o7777 == 0o640
    rc, err = check(om, conf)
    assert rc == 0, err

    # A two-field line keeps its CRLF.
    rc, _, err = user(om, "passwd", "-f", users, "carol", password="new carol pw")
    assert rc == 0, err
    raw = [l for l in users.read_bytes().split(b"\n") if l.startswith(b"carol:")][0]
    assert raw.endswith(b"\r") and raw.count(b":") == 1
    assert_verifies(hash_of(users, "carol"), "new carol pw")


def test_user_passwd_of_an_unknown_user_fails_and_changes_nothing(om, tmp_path):
    users = write_users(tmp_path)
    rc, _, err = user(om, "passwd", "-f", users, "zed", password="pw")
    assert rc == 1 and "zed" in err, err
    assert users.read_bytes() == EXISTING


# --------------------------------------------------------------------------- del


def test_user_del_removes_only_that_line(om, tmp_path):
    users = write_users(tmp_path)
    conf = write_conf(tmp_path, users)
    rc, out, err = user(om, "del", "-f", users, "carol")
    assert rc == 0, err
    assert out == ""
    expected = b"".join(l for l in EXISTING.splitlines(keepends=True) if not l.startswith(b"carol:"))
    assert users.read_bytes() == expected
    assert users.stat().st_mode & 0o7777 == 0o640
    assert dir_entries(users) == ["users"]
    rc, out, _ = user(om, "list", "-f", users)
    assert out == "bob\nvmail\n"
    rc, err = check(om, conf)
    assert rc == 0, err


def test_user_del_of_an_unknown_user_fails_and_changes_nothing(om, tmp_path):
    users = write_users(tmp_path)
    rc, _, err = user(om, "del", "-f", users, "zed")
    assert rc == 1 and "zed" in err, err
    assert users.read_bytes() == EXISTING


def test_add_passwd_del_round_trip(om, tmp_path):
    users = write_users(tmp_path)
    assert user(om, "add", "-f", users, "alice", password="one")[0] == 0
    assert user(om, "passwd", "-f", users, "alice", password="two")[0] == 0
    assert_verifies(hash_of(users, "alice"), "two")
    assert user(om, "del", "-f", users, "ALICE")[0] == 0
    assert users.read_bytes() == EXISTING


# --------------------------------------------------------------------------- newaliases


def write_db_conf(tmp_path):
    (tmp_path / "aliases").write_text("root: alice\npostmaster: root\n")
    (tmp_path / "vusers").write_text("alice@example.org alice\nexample.org: true\n")
    conf = tmp_path / "smtpd.conf"
    conf.write_text(
        f"table aliases db:{tmp_path}/aliases.db\n"
        f"table vusers db:{tmp_path}/vusers.db\n"
        "action local maildir alias <aliases>\n"
        "action virt maildir virtual <vusers>\n"
        "match from any for domain example.org action virt\n"
        "match for local action local\n"
    )
    return conf


def test_newaliases_rebuilds_every_db_table(om, tmp_path):
    conf = write_db_conf(tmp_path)
    rc, out, err = om("newaliases", "-f", conf)
    assert_no_panic(err)
    assert rc == 0, err
    assert "2 tables rebuilt" in err
    assert "kind\taliases\n" in (tmp_path / "aliases.db").read_text()
    assert "kind\tmap\n" in (tmp_path / "vusers.db").read_text()
    rc, err = check(om, conf)
    assert rc == 0, err


def test_binary_called_as_newaliases_behaves_as_ownmail_newaliases(ownmail, run, tmp_path):
    conf = write_db_conf(tmp_path)
    link = tmp_path / "newaliases"
    link.symlink_to(ownmail)
    rc, _, err = run([link, "-f", conf])
    assert_no_panic(err)
    assert rc == 0, err
    assert (tmp_path / "aliases.db").is_file()


def test_newaliases_reports_a_bad_source_and_keeps_its_database(om, tmp_path):
    conf = write_db_conf(tmp_path)
    assert om("newaliases", "-f", conf)[0] == 0
    good = (tmp_path / "vusers.db").read_bytes()
    (tmp_path / "vusers").write_text("alice@example.org alice\nbroken@ alice\n")
    rc, _, err = om("newaliases", "-f", conf)
    assert_no_panic(err)
    assert rc == 1, err
    assert error_lines(err, tmp_path / "vusers", 2), err
    assert (tmp_path / "vusers.db").read_bytes() == good


def test_newaliases_without_db_tables_says_so(om, tmp_path):
    users = write_users(tmp_path)
    conf = write_conf(tmp_path, users)
    rc, _, err = om("newaliases", "-f", conf)
    assert rc == 0, err
    assert "no db: tables to rebuild" in err
