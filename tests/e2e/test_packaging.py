"""The Debian package (scripts/build-deb) and the man pages (man/).

The package is built once per module from the debug binary the other tests use
(OWNMAIL_BIN), then inspected with dpkg-deb as an installer would see it: control fields,
the files and their modes, conffiles, maintainer scripts, the systemd unit. It is extracted
into a temporary directory, and the packaged binary checks the packaged example
configuration. Nothing is installed on this machine.

The man pages are checked against the program itself: every keyword of the configuration
parser (taken from crates/config/src/parser/*.rs, not from a list kept here) must appear
in ownmail.conf(5), every subcommand of `ownmail --help` in ownmail(8), and both pages
must render without a single groff warning.
"""

import gzip
import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from conftest import ROOT, assert_no_panic, run

BUILD_DEB = ROOT / "scripts" / "build-deb"
MAN8 = ROOT / "man" / "ownmail.8"
MAN5 = ROOT / "man" / "ownmail.conf.5"
PARSER_DIR = ROOT / "crates" / "config" / "src" / "parser"
CONF = "/etc/ownmail/smtpd.conf"
UNIT = "/lib/systemd/system/ownmail.service"
# The names the binary answers to (crates/ownmail/src/main.rs), shipped as symlinks.
LINKS = {
    "/usr/sbin/sendmail": "sendmail",
    "/usr/lib/sendmail": "sendmail",
    "/usr/bin/mailq": "queue",
    "/usr/sbin/newaliases": "newaliases",
    "/usr/sbin/makemap": "makemap",
}


def cargo_version():
    text = (ROOT / "Cargo.toml").read_text()
    m = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
    assert m, "no version in Cargo.toml"
    return m.group(1)


# --------------------------------------------------------------------------- the package


@pytest.fixture(scope="module")
def deb(ownmail, tmp_path_factory):
    """Path of the .deb built from the test binary (gzip: xz takes longer than the tests)."""
    out = tmp_path_factory.mktemp("deb")
    env = dict(os.environ, OWNMAIL_BIN=ownmail, DPKG_DEB_COMPRESSOR_TYPE="gzip")
    rc, stdout, err = run([BUILD_DEB, "--out", out], env=env, timeout=300)
    assert rc == 0, f"scripts/build-deb failed (status {rc}):\n{err}"
    path = Path(stdout.strip().splitlines()[-1])
    assert path.parent == out and path.is_file(), f"build-deb printed {stdout!r}"
    return path


@pytest.fixture(scope="module")
def tree(deb, tmp_path_factory):
    """The package extracted with dpkg-deb -x (files) and -e (DEBIAN/)."""
    root = tmp_path_factory.mktemp("root")
    rc, _, err = run(["dpkg-deb", "-x", deb, root])
    assert rc == 0, err
    rc, _, err = run(["dpkg-deb", "-e", deb, root / "DEBIAN"])
    assert rc == 0, err
    return root


def field(deb, name):
    rc, out, err = run(["dpkg-deb", "-f", deb, name])
    assert rc == 0, err
    return out.strip()


def listing(deb):
    """{path: (mode string, link target or None)} from dpkg-deb -c."""
    rc, out, err = run(["dpkg-deb", "-c", deb])
    assert rc == 0, err
    entries = {}
    for line in out.splitlines():
        parts = line.split(None, 5)
        mode, name = parts[0], parts[5]
        target = None
        if " -> " in name:
            name, target = name.split(" -> ", 1)
        entries[name.removeprefix(".").rstrip("/") or "/"] = (mode, target)
    return entries


def test_control_names_the_package_its_version_and_this_architecture(deb):
    assert field(deb, "Package") == "ownmail"
    assert field(deb, "Version") == f"{cargo_version()}-1"
    rc, arch, _ = run(["dpkg", "--print-architecture"])
    assert rc == 0
    assert field(deb, "Architecture") == arch.strip()
    assert field(deb, "Section") == "mail"
    assert int(field(deb, "Installed-Size")) > 1000  # KiB: the binary is in it


def test_control_depends_on_libc_and_adduser(deb):
    depends = [d.strip() for d in field(deb, "Depends").split(",")]
    assert "adduser" in depends, depends
    assert any(re.fullmatch(r"libc6 \(>= [0-9.]+\)", d) for d in depends), depends


def test_package_is_the_mail_transport_agent(deb):
    """Debian Policy §11.6: an MTA provides, conflicts with and replaces the virtual package."""
    for name in ("Provides", "Conflicts", "Replaces"):
        assert "mail-transport-agent" in field(deb, name), name


def test_package_contains_binary_unit_man_pages_config_and_copyright(deb):
    files = listing(deb)
    expected = {
        "/usr/sbin/ownmail": "-rwxr-xr-x",
        UNIT: "-rw-r--r--",
        CONF: "-rw-r--r--",
        "/usr/share/man/man8/ownmail.8.gz": "-rw-r--r--",
        "/usr/share/man/man5/ownmail.conf.5.gz": "-rw-r--r--",
        "/usr/share/doc/ownmail/copyright": "-rw-r--r--",
        "/usr/share/doc/ownmail/changelog.Debian.gz": "-rw-r--r--",
    }
    for path, mode in expected.items():
        assert path in files, f"{path} missing from the package"
        assert files[path][0] == mode, f"{path}: mode {files[path][0]}, expected {mode}"
    rc, out, _ = run(["dpkg-deb", "-c", deb])
    owners = {line.split()[1] for line in out.splitlines()}
    assert owners == {"root/root"}, owners


def test_sendmail_mailq_newaliases_makemap_are_links_to_ownmail(deb, tree):
    files = listing(deb)
    for path in LINKS:
        assert path in files, f"{path} missing from the package"
        mode, target = files[path]
        assert mode.startswith("l"), f"{path} is not a symlink"
        assert (tree / path.lstrip("/")).resolve() == (tree / "usr/sbin/ownmail").resolve(), (
            f"{path} -> {target} does not lead to /usr/sbin/ownmail"
        )


@pytest.mark.parametrize("path", sorted(LINKS))
def test_each_link_name_runs_its_subcommand(tree, path):
    """The binary behaves by argv[0]: `mailq --help` is the help of `ownmail queue`."""
    rc, out, err = run([tree / path.lstrip("/"), "--help"])
    assert_no_panic(err)
    assert rc == 0, err
    assert re.search(rf"^Usage: \S+ {LINKS[path]}\b", out, re.M), out


def test_conffiles_list_the_example_configuration(tree):
    conffiles = (tree / "DEBIAN" / "conffiles").read_text().split()
    assert conffiles == [CONF]


def test_md5sums_match_the_shipped_files(tree):
    for line in (tree / "DEBIAN" / "md5sums").read_text().splitlines():
        digest, name = line.split(None, 1)
        assert (tree / name).is_file(), name
    rc, out, err = run(["md5sum", "-c", "--quiet", tree / "DEBIAN" / "md5sums"], cwd=tree)
    assert rc == 0, out + err


@pytest.mark.parametrize("script", ["postinst", "prerm", "postrm"])
def test_maintainer_scripts_are_executable_posix_shell(tree, script):
    path = tree / "DEBIAN" / script
    assert path.is_file(), f"DEBIAN/{script} missing"
    assert path.stat().st_mode & stat.S_IXUSR, f"DEBIAN/{script} is not executable"
    assert path.read_text().startswith("#!/bin/sh\n")
    rc, _, err = run(["sh", "-n", path])
    assert rc == 0, err
    text = path.read_text()
    assert "set -e" in text
    # Unknown actions are refused (Policy §6.5 lists them all).
    if script != "prerm":
        assert re.search(r"unknown argument", text), script


def test_postinst_creates_vmail_and_the_spool(tree):
    text = (tree / "DEBIAN" / "postinst").read_text()
    assert re.search(r"adduser .*--system .*vmail", text)
    assert "--home /var/vmail" in text
    assert "/var/spool/ownmail" in text
    # The MTA links are files of the package, not alternatives made at install time.
    assert "update-alternatives" not in text


def test_postrm_never_removes_mail(tree):
    text = (tree / "DEBIAN" / "postrm").read_text()
    for keep in ("/var/vmail", "/var/mail"):
        assert not re.search(rf"rm\s+-\w*\s+{re.escape(keep)}", text), keep


# --------------------------------------------------------------------------- the unit


def unit_settings(path):
    """[(section, key, value)] of a systemd unit file."""
    out, section = [], None
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def test_unit_runs_serve_on_the_packaged_configuration(tree):
    s = unit_settings(tree / UNIT.lstrip("/"))
    d = {}
    for section, key, value in s:
        d.setdefault((section, key), []).append(value)
    assert d[("Service", "Type")] == ["simple"]
    assert d[("Service", "ExecStart")] == [f"/usr/sbin/ownmail serve -f {CONF}"]
    assert "/bin/kill -HUP $MAINPID" in d[("Service", "ExecReload")]
    assert d[("Service", "Restart")] == ["on-failure"]
    assert d[("Install", "WantedBy")] == ["multi-user.target"]
    # Hardening that leaves delivery working: no NoNewPrivileges (setgid mda helpers),
    # no ProtectHome (~/Maildir of system users), ProtectSystem no stricter than full.
    assert d[("Service", "ProtectSystem")] == ["full"]
    assert d[("Service", "PrivateTmp")] == ["yes"]
    assert ("Service", "NoNewPrivileges") not in d
    assert ("Service", "ProtectHome") not in d
    assert ("Service", "User") not in d


def test_unit_passes_systemd_analyze_verify(tree, tmp_path):
    tool = shutil.which("systemd-analyze")
    assert tool is not None, "systemd-analyze is missing: scripts/test installs the systemd package"
    # verify insists that ExecStart's binary exists: point it at the extracted one.
    binary = tree / "usr/sbin/ownmail"
    unit = tmp_path / "ownmail.service"
    unit.write_text((tree / UNIT.lstrip("/")).read_text().replace("/usr/sbin/ownmail", str(binary)))
    rc, out, err = run([tool, "verify", "--man=no", unit])
    assert rc == 0 and not (out + err).strip(), f"systemd-analyze verify:\n{out}{err}"


# --------------------------------------------------------------------------- the example


def test_packaged_example_configuration_checks_clean(tree, tmp_path):
    """As shipped: loopback only, /etc/aliases (here a copy of Debian's default)."""
    aliases = tmp_path / "aliases"
    aliases.write_text("# See man 5 aliases for format\npostmaster:    root\n")
    conf = tmp_path / "smtpd.conf"
    conf.write_text((tree / CONF.lstrip("/")).read_text().replace("/etc/aliases", str(aliases)))
    rc, out, err = run([tree / "usr/sbin/ownmail", "check", "-f", conf])
    assert_no_panic(err)
    assert rc == 0, err
    assert err.strip() == "configuration OK", f"warnings or errors:\n{err}"


def test_every_commented_line_of_the_example_checks_clean_when_enabled(tree, tmp_path, pki):
    """The commented lines grow the example into the article's full setup; enabled all at
    once (eth0 as lo, /etc files as temporary ones), they must still check clean."""
    binary = tree / "usr/sbin/ownmail"
    rc, hashed, err = run([binary, "encrypt", "secret"])
    assert rc == 0, err
    (tmp_path / "aliases").write_text(
        "postmaster: root\nroot: m+root@example.org\n"
        "example.org: true\nm@example.org m\nmayeu@example.org m\n"
    )
    (tmp_path / "vusers").write_text("m 5000:5000:/var/vmail/m\n")
    (tmp_path / "users").write_text(f"m:{hashed.strip()}:5000:5000::/var/vmail/m::\n")
    dkim = tmp_path / "dkim"
    dkim.mkdir()
    rc, _, err = run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", dkim / "example.org.key"])
    assert rc == 0, err

    text = (tree / CONF.lstrip("/")).read_text()
    enabled = re.sub(r"^#(?=(table|listen|imap|dkim|accept|match|action) )", "", text, flags=re.M)
    assert enabled.count("\n#") < text.count("\n#"), "no commented directive in the example"
    for old, new in {
        "/etc/aliases": tmp_path / "aliases",
        "/etc/vusers": tmp_path / "vusers",
        "/etc/ownmail/users": tmp_path / "users",
        "/etc/ownmail/dkim": dkim,
        "eth0": "lo",
        "certificate mail.example.org": "certificate example.org",
    }.items():
        enabled = enabled.replace(old, str(new))
    conf = tmp_path / "smtpd.conf"
    conf.write_text(enabled)
    rc, out, err = run([binary, "check", "-f", conf, "--pki-dir", pki])
    assert_no_panic(err)
    assert rc == 0, f"{err}\n--- configuration:\n{enabled}"
    assert err.strip() == "configuration OK", f"warnings or errors:\n{err}"


# --------------------------------------------------------------------------- build-deb itself


def test_build_deb_refuses_a_missing_binary_and_writes_nothing(tmp_path):
    env = dict(os.environ, OWNMAIL_BIN=str(tmp_path / "no-such-binary"))
    rc, out, err = run([BUILD_DEB, "--out", tmp_path / "out"], env=env)
    assert rc != 0
    assert "no-such-binary" in err
    assert not list(tmp_path.glob("out/*.deb"))


def test_build_deb_refuses_an_unknown_argument(tmp_path):
    rc, out, err = run([BUILD_DEB, "--frobnicate"])
    assert rc == 2
    assert "--frobnicate" in err


# --------------------------------------------------------------------------- man pages


def roff_text(path):
    """The words of a roff source: escapes resolved enough to search for keywords."""
    text = Path(path).read_text()
    text = re.sub(r"^\.\\\".*$", "", text, flags=re.M)  # comments
    text = re.sub(r"\\f[BIRP]", "", text)
    text = text.replace("\\-", "-").replace("\\&", "").replace("\\e", "\\")
    return text


def parser_keywords():
    """Every keyword the configuration parser matches, from its source.

    Taken from: `c.eat("kw")` / `c.expect("kw")` calls, string patterns of `match` arms
    (`"queue" | "expire" => ...`, `("alias" | "virtual", _) => ...`), and the keyword
    lists (`const ..._KEYWORDS: &[&str] = &[...]`). A new directive or option therefore
    fails this test until ownmail.conf(5) documents it.
    """
    words = set()
    sources = [p for p in sorted(PARSER_DIR.glob("*.rs")) if p.name != "tests.rs"]
    assert sources, f"no parser sources in {PARSER_DIR}"
    for src in sources:
        text = src.read_text()
        words.update(re.findall(r'\.(?:eat|expect)\("([^"]+)"\)', text))
        for arm in re.finditer(
            r'^\s*\(?\s*("[^"\n]*"(?:\s*\|\s*"[^"\n]*")*)\s*(?:,[^)\n]*\))?\s*(?:if [^=\n]*)?=>',
            text,
            re.M,
        ):
            words.update(re.findall(r'"([^"]*)"', arm.group(1)))
        for block in re.finditer(r"const \w+: &\[&str\] = &\[(.*?)\];", text, re.S):
            words.update(re.findall(r'"([^"]+)"', block.group(1)))
    words = {w for w in words if re.fullmatch(r"[a-z0-9][a-z0-9+.\-]*", w)}
    # The dispatch of statements must have been found, or the patterns are stale.
    assert {"listen", "table", "accept", "match", "imap", "dkim"} <= words, sorted(words)
    return words


def test_every_parser_keyword_is_in_ownmail_conf_5():
    text = roff_text(MAN5)
    missing = sorted(
        w for w in parser_keywords()
        if not re.search(rf"(?<![\w\-+]){re.escape(w)}(?![\w\-+])", text)
    )
    assert not missing, f"keywords of the parser not documented in {MAN5}: {missing}"


def help_commands(ownmail, *sub):
    rc, out, err = run([ownmail, *sub, "--help"])
    assert rc == 0, err
    m = re.search(r"^Commands:\n((?:  .*\n?)+)", out, re.M)
    if not m:
        return []
    return [l.split()[0] for l in m.group(1).splitlines() if l.split() and l.split()[0] != "help"]


def test_every_subcommand_of_help_is_in_ownmail_8(ownmail):
    text = roff_text(MAN8)
    commands = help_commands(ownmail)
    assert {"serve", "check", "queue", "sendmail"} <= set(commands), commands
    missing = [c for c in commands if not re.search(rf"^\.SS \"?ownmail {c}\b", text, re.M)]
    assert not missing, f"subcommands without a section in {MAN8}: {missing}"
    for parent in commands:
        for sub in help_commands(ownmail, parent):
            assert re.search(rf"(?<![\w-]){re.escape(sub)}(?![\w-])", text), (
                f"`ownmail {parent} {sub}` is not in {MAN8}"
            )


def test_every_option_of_help_is_in_ownmail_8(ownmail):
    text = roff_text(MAN8)
    missing = []
    for command in help_commands(ownmail):
        rc, out, _ = run([ownmail, command, "--help"])
        for opt in re.findall(r"^\s+(?:-\w, )?(--?[\w-]+)", out, re.M):
            if opt in ("-h", "--help"):
                continue
            if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text):
                missing.append(f"{command} {opt}")
    assert not missing, f"options not in {MAN8}: {missing}"


@pytest.mark.parametrize("page", [MAN8, MAN5], ids=["ownmail.8", "ownmail.conf.5"])
def test_man_page_renders_without_warnings(page):
    groff = shutil.which("groff")
    assert groff, "groff is missing: scripts/test installs groff-base"
    rc, out, err = run([groff, "-man", "-Tutf8", "-ww", "-z", page])
    assert rc == 0 and not err.strip(), f"groff warnings for {page}:\n{err}"
    if shutil.which("man"):
        env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0")
        rc, out, err = run(["man", "--warnings", "-l", page], env=env)
        assert rc == 0 and not err.strip(), f"man -l {page}:\n{err}"
        out = re.sub(r".\x08", "", out)  # overstrike bold, when man does not see a pager
        assert "NAME" in out and "SEE ALSO" in out


@pytest.mark.parametrize("page", [MAN8, MAN5], ids=["ownmail.8", "ownmail.conf.5"])
def test_packaged_man_page_is_the_source(tree, page):
    section = page.suffix.lstrip(".")
    packaged = tree / f"usr/share/man/man{section}/{page.name}.gz"
    assert gzip.decompress(packaged.read_bytes()) == page.read_bytes()


# --------------------------------------------------------------------------- dpkg -i


INSTALL_SCRIPT = r"""
set -eu
mount -t overlay overlay -o "lowerdir=/,upperdir=$OVL/upper,workdir=$OVL/work" "$OVL/root"
mount --bind /proc "$OVL/root/proc"
mount --bind /dev "$OVL/root/dev"
exec chroot "$OVL/root" /bin/sh -eu -c '
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# A scratch copy of this machine: make it one without an MTA, a vmail account or /etc/aliases.
mtas=$(dpkg-query -W -f "\${Package} \${Status} \${Provides}\n" 2>/dev/null |
       awk "/install ok installed/ && /mail-transport-agent/ {print \$1}")
[ -z "$mtas" ] || dpkg -r --force-depends $mtas >/dev/null
userdel vmail 2>/dev/null || true
groupdel vmail 2>/dev/null || true
rm -f /etc/aliases
echo "== install"; dpkg -i "$DEB"
echo "== vmail $(getent passwd vmail | cut -d: -f6)"
echo "== spool $(stat -c %a /var/spool/ownmail)"
echo "== aliases $(grep -c "^postmaster:" /etc/aliases)"
echo "== sendmail $(readlink -f /usr/sbin/sendmail)"
echo "== check"; ownmail check
echo "== enabled $(readlink /etc/systemd/system/multi-user.target.wants/ownmail.service || true)"
echo "== mailq"; mailq
echo "== remove"; dpkg -r ownmail
echo "== after-remove $(ls /usr/sbin/sendmail 2>&1 | grep -c "No such") $(ls /etc/ownmail)"
echo "== purge"; dpkg -P ownmail
echo "== after-purge $(ls -d /etc/ownmail /var/spool/ownmail 2>/dev/null | wc -l) $(ls -d /var/vmail)"
'
"""


def test_dpkg_installs_removes_and_purges_in_a_scratch_root(deb, tmp_path):
    """dpkg -i, -r, -P in an overlay of this machine's root (the real one is not touched):
    the maintainer scripts create vmail, the spool and /etc/aliases; the links work; the
    packaged configuration checks; remove takes the links away, purge the configuration,
    and the Maildirs' home stays."""
    ovl = tmp_path / "ovl"
    for d in ("upper", "work", "root"):
        (ovl / d).mkdir(parents=True)
    rc, out, err = run(["unshare", "-m", "sh", "-c",
                        f'mount -t overlay overlay -o "lowerdir=/,upperdir={ovl}/upper,'
                        f'workdir={ovl}/work" {ovl}/root'])
    assert rc == 0, f"this kernel or container refuses an overlay mount: {err.strip()}"
    for d in ("upper", "work"):
        shutil.rmtree(ovl / d)
        (ovl / d).mkdir()
    env = dict(os.environ, OVL=str(ovl), DEB=str(deb))
    try:
        rc, out, err = run(["unshare", "-m", "sh", "-c", INSTALL_SCRIPT], env=env, timeout=300)
    finally:
        shutil.rmtree(ovl, ignore_errors=True)
    log = f"--- stdout\n{out}\n--- stderr\n{err}"
    assert rc == 0, log
    assert "== vmail /var/vmail" in out, log
    assert "== spool 755" in out, log
    assert "== aliases 1" in out, log
    assert "== sendmail /usr/sbin/ownmail" in out, log
    assert "configuration OK" in err, log
    if shutil.which("deb-systemd-helper"):  # init-system-helpers: with systemd
        assert "== enabled /lib/systemd/system/ownmail.service" in out, log
    assert "queue is empty" in out, log
    assert "== after-remove 1 smtpd.conf" in out, log
    assert "== after-purge 0 /var/vmail" in out, log
