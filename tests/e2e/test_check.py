"""`ownmail check`, `makemap` and `encrypt` on the article's files and on broken input.

The article's configurations say `listen on eth0`, which resolves to that interface's
addresses, so they are checked inside a network namespace that has an eth0.
"""

import re
import warnings
from pathlib import Path

import pytest

from conftest import ARTICLE_SETUPS, assert_no_panic, error_lines, install_article

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # deprecated since 3.11, still the reference for crypt(3) here

SETUPS = list(ARTICLE_SETUPS)
HASH_RE = re.compile(r"^\$6\$[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}$")


def check(om, conf, pki, *extra, ns=None):
    return om("check", "-f", conf, "--pki-dir", pki, *extra, ns=ns)


def assert_ok(rc, out, err, what):
    assert_no_panic(err)
    assert rc == 0, f"check of {what} failed (status {rc}):\n{err}"
    assert "configuration OK" in err, f"no 'configuration OK' on stderr for {what}:\n{err}"


def assert_error_at(rc, err, path, line, *, contains=None):
    """Exit 1 and a `PATH:LINE:COL: message` line (containing `contains`, any case)."""
    assert_no_panic(err)
    assert rc == 1, f"expected exit 1, got {rc}; stderr:\n{err}"
    lines = error_lines(err, path, line)
    assert lines, f"no error line starting with {path}:{line}:COL: in stderr:\n{err}"
    if contains is not None:
        assert any(contains.lower() in l.lower() for l in lines), (
            f"no {path}:{line}: error mentioning {contains!r}:\n{err}"
        )
    return lines


def write(path, text):
    path = Path(path)
    path.write_text(text, encoding="utf-8")
    return path.resolve()


# --------------------------------------------------------------------------- 1. article


@pytest.mark.parametrize("setup", SETUPS)
def test_article_config_passes_check_in_netns_with_eth0(setup, article, om, pki, netns):
    conf = article(setup)
    rc, out, err = check(om, conf, pki, ns=netns)
    assert_ok(rc, out, err, setup)
    assert out == "", f"check without --print wrote to stdout:\n{out}"
    if ARTICLE_SETUPS[setup][2]:
        # Every db: table was made by makemap: nothing left to warn about.
        assert "ownmail makemap" not in err, err


def test_article_v2_listen_on_eth0_fails_where_there_is_no_eth0(article, om, pki, netns_lo_only):
    conf = article("v2")
    rc, _, err = check(om, conf, pki, ns=netns_lo_only)
    # `listen on eth0` is line 11 of the article's "current state" smtpd.conf.
    assert_error_at(rc, err, conf, 11, contains="eth0")


def test_listen_on_unknown_interface_is_an_error_naming_it(tmp_path, om, pki):
    conf = write(tmp_path / "smtpd.conf", "listen on lo\nlisten on nosuchif0\n")
    rc, _, err = check(om, conf, pki)
    assert_error_at(rc, err, conf, 2, contains="nosuchif0")


# --------------------------------------------------------------------------- 2. smtpdauth


def test_article_smtpdauth_hash_with_spaces_is_an_error_at_its_line_without_makemap(tmp_path, om, pki, netns):
    files = ("aliases.v3", "vusers.v3", "smtpdauth.v3")
    conf = install_article(tmp_path, "smtpd.conf.v3", files)
    auth = tmp_path.resolve() / "etc" / "smtpdauth"
    # No makemap: no .db exists, so each source is read (with a warning), and
    # smtpdauth's line 2 is wrong.
    rc, _, err = check(om, conf, pki, ns=netns)
    assert_error_at(rc, err, auth, 2)


def test_article_smtpdauth_hash_with_spaces_is_an_error_even_after_makemap(
    tmp_path, om, pki, netns
):
    files = ("aliases.v3", "vusers.v3", "smtpdauth.v3")
    conf = install_article(tmp_path, "smtpd.conf.v3", files)
    auth = tmp_path.resolve() / "etc" / "smtpdauth"
    for name in ("aliases", "vusers"):
        rc, _, err = om("makemap", tmp_path / "etc" / name)
        assert rc == 0, err
    # makemap may take the line as a plain key/value pair (a map does not know it
    # holds credentials) or refuse it; if it refuses, it must say where.
    rc, _, err = om("makemap", auth)
    assert_no_panic(err)
    if rc != 0:
        assert rc == 1 and error_lines(err, auth, 2), err
    rc, _, err = check(om, conf, pki, ns=netns)
    # The error names the source file and line, not the .db.
    assert_error_at(rc, err, auth, 2)


# --------------------------------------------------------------------------- 3. --print


def assert_modern(text, what):
    assert text.strip(), f"--print of {what} printed nothing"
    lines = [l.strip() for l in text.splitlines()]
    assert any(l.startswith("match ") for l in lines), f"no match line in:\n{text}"
    assert any(l.startswith("action ") for l in lines), f"no action line in:\n{text}"
    legacy = [l for l in lines if l.startswith("accept ")]
    assert not legacy, f"legacy accept lines in --print of {what}:\n{text}"


@pytest.mark.parametrize("setup", SETUPS)
def test_check_print_gives_modern_config_that_checks_and_is_a_fixed_point(
    setup, article, om, pki, netns
):
    conf = article(setup)
    rc, printed, err = check(om, conf, pki, "--print", ns=netns)
    assert_ok(rc, printed, err, f"{setup} --print")
    assert_modern(printed, setup)

    modern = write(conf.parent / "smtpd.conf.printed", printed)
    rc, out, err = check(om, modern, pki, ns=netns)
    assert_ok(rc, out, err, f"printed {setup}:\n{printed}")

    rc, again, err = check(om, modern, pki, "--print", ns=netns)
    assert_ok(rc, again, err, f"printed {setup} --print")
    assert again == printed, "--print of the printed config differs from the first print"


# --------------------------------------------------------------------------- 4. encrypt


def encrypt_hash(om, *args, **kw):
    rc, out, err = om("encrypt", *args, **kw)
    assert_no_panic(err)
    assert rc == 0, f"encrypt failed (status {rc}):\n{err}"
    assert out.endswith("\n") and out.count("\n") == 1, f"stdout is not one line: {out!r}"
    h = out.rstrip("\n")
    assert HASH_RE.match(h), f"not a $6$ hash: {h!r}"
    return h


def test_encrypt_prints_a_sha512_crypt_hash_of_the_argument(om):
    h = encrypt_hash(om, "mysupersecretpassword")
    assert crypt.crypt("mysupersecretpassword", h) == h
    assert crypt.crypt("mysupersecretpasswordX", h) != h


def test_encrypt_uses_a_random_salt(om):
    assert encrypt_hash(om, "same password") != encrypt_hash(om, "same password")


def test_encrypt_hashes_one_line_of_stdin_without_its_newline(om):
    h = encrypt_hash(om, input="s3cret pass\n")
    assert crypt.crypt("s3cret pass", h) == h


def test_config_with_encrypted_credentials_passes_check(tmp_path, om, pki):
    h = encrypt_hash(om, "hunter2")
    creds = write(tmp_path / "creds", f"# users\nuser {h}\n")
    conf = write(
        tmp_path / "smtpd.conf",
        f"table creds file:{creds}\n"
        "listen on lo\n"
        "listen on lo port 587 tls-require certificate mail.example.com auth <creds>\n"
        "accept for any relay\n",
    )
    rc, out, err = check(om, conf, pki)
    assert_ok(rc, out, err, "config with an encrypted credential")


# --------------------------------------------------------------------------- 5. bad input


def test_mixing_legacy_and_modern_rules_is_an_error_at_the_first_modern_rule(tmp_path, om, pki):
    conf = write(
        tmp_path / "smtpd.conf",
        "listen on lo\n"
        "accept for local deliver to mbox\n"
        "match from any for local reject\n",
    )
    rc, _, err = check(om, conf, pki)
    assert_error_at(rc, err, conf, 3, contains="mix")


def test_unknown_keyword_is_an_error(tmp_path, om, pki):
    conf = write(tmp_path / "smtpd.conf", "listen on lo\nfrobnicate yes\n")
    rc, _, err = check(om, conf, pki)
    assert_error_at(rc, err, conf, 2, contains="unknown")


def test_port_out_of_range_is_an_error(tmp_path, om, pki):
    conf = write(tmp_path / "smtpd.conf", "# ports are 16 bits\nlisten on lo port 99999\n")
    rc, _, err = check(om, conf, pki)
    assert_error_at(rc, err, conf, 2, contains="port")


def test_missing_table_file_is_an_error_at_the_table_line(tmp_path, om, pki):
    conf = write(
        tmp_path / "smtpd.conf",
        "listen on lo\n"
        "table aliases file:/nonexistent/x\n"
        "accept for local alias <aliases> deliver to mbox\n",
    )
    rc, _, err = check(om, conf, pki)
    assert_error_at(rc, err, conf, 2)


def test_missing_certificate_is_an_error(tmp_path, om):
    empty = tmp_path / "emptypki"
    empty.mkdir()
    conf = write(tmp_path / "smtpd.conf", "listen on lo tls certificate nosuchcert\n")
    rc, _, err = check(om, conf, empty)
    assert_error_at(rc, err, conf, 1, contains="certificate")


def test_unterminated_string_is_an_error(tmp_path, om, pki):
    conf = write(tmp_path / "smtpd.conf", 'listen on lo\ntable a "x\n')
    rc, _, err = check(om, conf, pki)
    assert_error_at(rc, err, conf, 2, contains="unterminated")


def test_include_loop_is_an_error_where_it_closes(tmp_path, om, pki):
    a = (tmp_path / "a.conf").resolve()
    b = (tmp_path / "b.conf").resolve()
    write(a, f'listen on lo\ninclude "{b}"\n')
    write(b, f'include "{a}"\n')
    rc, _, err = check(om, a, pki)
    assert_error_at(rc, err, b, 1, contains="include loop")


def test_undefined_macro_is_an_error(tmp_path, om, pki):
    conf = write(tmp_path / "smtpd.conf", "listen on $nope\n")
    rc, _, err = check(om, conf, pki)
    assert_error_at(rc, err, conf, 1, contains="macro")


def test_alias_loop_is_an_error_naming_the_aliases_file(tmp_path, om, pki):
    aliases = write(tmp_path / "aliases", "a: b\nb: a\n")
    conf = write(
        tmp_path / "smtpd.conf",
        f"table aliases file:{aliases}\n"
        "listen on lo\n"
        "accept for local alias <aliases> deliver to mbox\n",
    )
    rc, _, err = check(om, conf, pki)
    # The loop is a: b: a, so either line may carry the error.
    assert_error_at(rc, err, aliases, "[12]", contains="loop")


# --------------------------------------------------------------------------- 6. makemap


def test_db_table_without_db_reads_source_with_warning_until_makemap(tmp_path, om, pki):
    aliases = write(tmp_path / "aliases", "# Aliases\npostmaster: root\nroot: pi\n")
    conf = write(
        tmp_path / "smtpd.conf",
        f"table aliases db:{aliases}.db\n"
        "listen on lo\n"
        "accept for local alias <aliases> deliver to mbox\n",
    )
    rc, out, err = check(om, conf, pki)
    assert_ok(rc, out, err, "db: table without its .db")
    warn = re.compile(r"^.+:\d+:\d+: warning: .*ownmail makemap")
    assert any(warn.match(l) for l in err.splitlines()), (
        f"no `FILE:LINE:COL: warning: ... ownmail makemap` line:\n{err}"
    )

    rc, _, err = om("makemap", "-t", "aliases", aliases)
    assert_no_panic(err)
    assert rc == 0, f"makemap failed:\n{err}"
    assert Path(f"{aliases}.db").is_file()

    rc, out, err = check(om, conf, pki)
    assert_ok(rc, out, err, "db: table after makemap")
    assert "ownmail makemap" not in err, f"warning still there after makemap:\n{err}"
