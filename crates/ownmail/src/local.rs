//! `ownmail serve --local [--dir DIR]`: a whole mail server on loopback for trying ownmail
//! out, with no configuration file and no root (SPEC §3).
//!
//! The first start writes everything under DIR — `smtpd.conf`, a `passwd:` users file with
//! one user and a generated password, a self-signed certificate for `localhost`, the spool
//! and the user's Maildir — and later starts reuse it, so the printed login stays the same.
//! The first start builds DIR under a temporary name next to it and renames it into place
//! when complete: a failure leaves nothing half-made behind.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The ports tried first (SMTP, submission, IMAP); a busy one is replaced by a free one.
const DEFAULT_PORTS: [u16; 3] = [10025, 10587, 10993];
const CONF: &str = "smtpd.conf";
const FACTS: &str = "local.txt";
const PASSWORD: &str = "password";

/// What the first start decided, read back by later ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    pub dir: PathBuf,
    pub user: String,
    pub password: String,
    pub smtp: u16,
    pub submission: u16,
    pub imap: u16,
}

impl Local {
    pub fn conf(&self) -> PathBuf {
        self.dir.join(CONF)
    }
    pub fn spool(&self) -> PathBuf {
        self.dir.join("spool")
    }
    pub fn certs(&self) -> PathBuf {
        self.dir.join("certs")
    }

    /// The facts, one per line, and client settings ready to paste.
    pub fn describe(&self) -> String {
        let cert = self.certs().join("localhost.crt");
        let (u, p) = (&self.user, &self.password);
        format!(
            "ownmail --local in {dir}\n\
             smtp: 127.0.0.1:{smtp}\n\
             submission: 127.0.0.1:{sub} (STARTTLS)\n\
             imap: 127.0.0.1:{imap} (implicit TLS)\n\
             user: {u}\n\
             address: {u}@localhost\n\
             password: {p}\n\
             certificate: {cert} (self-signed: tell your client to trust it)\n\
             \n\
             # Thunderbird: IMAP 127.0.0.1 port {imap} SSL/TLS, SMTP 127.0.0.1 port {sub} STARTTLS,\n\
             #   user name {u}, normal password; accept the certificate when asked.\n\
             # mutt:\n\
             #   set folder=imaps://{u}@127.0.0.1:{imap}/ spoolfile=+INBOX imap_pass='{p}'\n\
             #   set smtp_url=smtp://{u}@127.0.0.1:{sub}/ smtp_pass='{p}' ssl_starttls=yes\n\
             #   set from={u}@localhost certificate_file={cert}\n\
             # swaks:\n\
             #   swaks --server 127.0.0.1:{sub} --tls --auth-user {u} --auth-password '{p}' \\\n\
             #     --from {u}@localhost --to {u}@localhost\n",
            dir = self.dir.display(),
            smtp = self.smtp,
            sub = self.submission,
            imap = self.imap,
            cert = cert.display(),
        )
    }
}

/// Reads DIR's setup, or makes it the first time.
pub fn prepare(dir: &Path) -> Result<Local, String> {
    match fs::symlink_metadata(dir) {
        Ok(md) if md.is_dir() => {
            if dir.join(CONF).exists() {
                return load(dir);
            }
            let empty = fs::read_dir(dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?
                .next()
                .is_none();
            if !empty {
                return Err(format!(
                    "{} is not empty and was not made by `ownmail serve --local`; \
                     give another --dir",
                    dir.display()
                ));
            }
            create(dir, true)
        }
        Ok(_) => Err(format!(
            "{} exists and is not a directory; give another --dir",
            dir.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(dir, false),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

fn load(dir: &Path) -> Result<Local, String> {
    let facts = fs::read_to_string(dir.join(FACTS))
        .map_err(|e| format!("{}: {e}", dir.join(FACTS).display()))?;
    let password = fs::read_to_string(dir.join(PASSWORD))
        .map_err(|e| format!("{}: {e}", dir.join(PASSWORD).display()))?;
    let field = |k: &str| {
        facts
            .lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(": ")))
            .map(str::trim)
            .ok_or_else(|| format!("{}: no `{k}:` line", dir.join(FACTS).display()))
    };
    let port = |k: &str| -> Result<u16, String> {
        field(k)?
            .parse()
            .map_err(|_| format!("{}: bad `{k}:` port", dir.join(FACTS).display()))
    };
    Ok(Local {
        dir: dir.to_path_buf(),
        user: field("user")?.to_string(),
        password: password.trim().to_string(),
        smtp: port("smtp")?,
        submission: port("submission")?,
        imap: port("imap")?,
    })
}

/// Builds the setup in a temporary directory beside `dir`, then renames it into place.
fn create(dir: &Path, replace_empty: bool) -> Result<Local, String> {
    let dir = absolute(dir)?;
    let parent = dir
        .parent()
        .ok_or_else(|| format!("{}: no parent directory", dir.display()))?;
    let name = dir
        .file_name()
        .ok_or_else(|| format!("{}: not a directory name", dir.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let made = (|| {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        let local = write_setup(&tmp, &dir)?;
        if replace_empty {
            fs::remove_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        fs::rename(&tmp, &dir)
            .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), dir.display()))?;
        Ok(local)
    })();
    if made.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    made
}

fn absolute(p: &Path) -> Result<PathBuf, String> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    std::env::current_dir()
        .map(|d| d.join(p))
        .map_err(|e| format!("cannot read the current directory: {e}"))
}

/// Writes every file into `tmp`; paths inside them name `dir`, where `tmp` will end up.
fn write_setup(tmp: &Path, dir: &Path) -> Result<Local, String> {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or_else(|| "me".to_string());
    let password = random_password()?;
    let [smtp, submission, imap] = DEFAULT_PORTS.map(free_port);
    let local = Local {
        dir: dir.to_path_buf(),
        user: user.clone(),
        password: password.clone(),
        smtp: smtp?,
        submission: submission?,
        imap: imap?,
    };

    for sub in ["certs", "spool", "mail"] {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(tmp.join(sub))
            .map_err(|e| format!("cannot create {}: {e}", tmp.join(sub).display()))?;
    }
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(|e| format!("cannot make a certificate: {e}"))?;
    write_file(
        &tmp.join("certs/localhost.crt"),
        cert.cert.pem().as_bytes(),
        0o644,
    )?;
    write_file(
        &tmp.join("certs/localhost.key"),
        cert.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;

    let home = dir.join("mail").join(&user);
    let hash = ownmail_auth::hash_sha512_crypt(password.as_bytes());
    write_file(
        &tmp.join("users"),
        format!(
            "# ownmail --local: one user (`ownmail user passwd -f {users} {user}` changes the \
             password)\n{user}:{{SHA512-CRYPT}}{hash}:{uid}:{gid}::{home}::userdb_mail=maildir:~/Maildir\n",
            users = dir.join("users").display(),
            home = home.display(),
        )
        .as_bytes(),
        0o600,
    )?;
    write_file(
        &tmp.join(PASSWORD),
        format!("{password}\n").as_bytes(),
        0o600,
    )?;
    let d = dir.display();
    let conf = format!(
        "# ownmail serve --local: a mail server on loopback to try things out.\n\
         # Everything lives in {d}; delete the directory to start afresh.\n\
         pki localhost cert \"{d}/certs/localhost.crt\"\n\
         pki localhost key \"{d}/certs/localhost.key\"\n\
         table users passwd:{d}/users\n\
         \n\
         # SMTP in, and submission with STARTTLS + AUTH\n\
         listen on 127.0.0.1 port {smtp}\n\
         listen on 127.0.0.1 port {sub} tls-require pki localhost auth <users>\n\
         \n\
         action \"local\" maildir \"~/Maildir\" userbase <users>\n\
         action \"out\" relay\n\
         match from any for domain \"localhost\" action \"local\"\n\
         match from auth for any action \"out\"\n\
         \n\
         # IMAP on the same Maildir\n\
         imap listen on 127.0.0.1 port {imap} imaps pki localhost\n\
         imap auth <users>\n\
         imap userbase <users>\n",
        smtp = local.smtp,
        sub = local.submission,
        imap = local.imap,
    );
    write_file(&tmp.join(CONF), conf.as_bytes(), 0o600)?;
    write_file(
        &tmp.join(FACTS),
        format!(
            "# what `ownmail serve --local` set up; read back at each start\n\
             smtp: {}\nsubmission: {}\nimap: {}\nuser: {user}\n",
            local.smtp, local.submission, local.imap
        )
        .as_bytes(),
        0o600,
    )?;
    fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(tmp.join("mail").join(&user))
        .map_err(|e| format!("cannot create the mailbox: {e}"))?;
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    Ok(local)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `preferred` when nobody listens on it, else a port the kernel picks.
fn free_port(preferred: u16) -> Result<u16, String> {
    let bind = |p: u16| TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, p));
    if bind(preferred).is_ok() {
        return Ok(preferred);
    }
    bind(0)
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))
}

/// 16 characters from the kernel's random source, letters and digits only (easy to paste).
fn random_password() -> Result<String, String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut raw = [0u8; 64];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    // Rejection sampling keeps every character equally likely.
    let limit = 256 - 256 % ALPHABET.len();
    let out: String = raw
        .iter()
        .filter(|&&b| usize::from(b) < limit)
        .take(16)
        .filter_map(|&b| {
            ALPHABET
                .get(usize::from(b) % ALPHABET.len())
                .map(|&c| c as char)
        })
        .collect();
    if out.len() < 16 {
        return Err("not enough randomness for a password".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_creates_and_second_reuses() {
        let t = tempfile::tempdir().expect("tmp");
        let dir = t.path().join("local");
        let a = prepare(&dir).expect("first");
        assert!(a.conf().exists());
        assert_eq!(a.password.len(), 16);
        let b = prepare(&dir).expect("second");
        assert_eq!(a, b);
        let checked = ownmail_config::check_file(
            &a.conf(),
            &ownmail_config::ParseOptions { pki_dir: a.certs() },
        );
        let diags: Vec<String> = checked.diags.iter().map(|d| d.to_string()).collect();
        assert!(checked.ok(), "{diags:?}");
        // No leftovers beside it.
        let names: Vec<_> = fs::read_dir(t.path())
            .expect("ls")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_file_or_a_foreign_directory_is_refused() {
        let t = tempfile::tempdir().expect("tmp");
        let file = t.path().join("f");
        fs::write(&file, "x").expect("write");
        assert!(prepare(&file)
            .expect_err("file")
            .contains("not a directory"));
        let foreign = t.path().join("d");
        fs::create_dir(&foreign).expect("mkdir");
        fs::write(foreign.join("x"), "x").expect("write");
        assert!(prepare(&foreign)
            .expect_err("foreign")
            .contains("not empty"));
    }
}
