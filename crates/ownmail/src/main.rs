//! The `ownmail` binary: command line and wiring only. Each subcommand hands its work to the
//! crate that owns it (configuration and tables to `ownmail-config`, password hashes to
//! `ownmail-auth`). Called as `makemap`, `mailq`, `newaliases` or `sendmail`, it behaves as
//! that subcommand.

mod bounce;
mod control;
mod dkim_cmd;
mod dns_cmd;
mod imap;
mod local;
mod maildir_cmd;
mod newaliases;
mod queue_cmd;
mod sendmail;
mod serve;
mod user_cmd;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use ownmail_config::table::{makemap, MakemapKind};
use ownmail_config::{check_file, Diagnostics, ParseOptions};

#[derive(Parser)]
#[command(
    name = "ownmail",
    version,
    about = "One mail server for people who host their own mail"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the mail server in the foreground (logs on stderr).
    Serve {
        /// The configuration file.
        #[arg(short = 'f', long = "file", default_value = "/etc/ownmail/smtpd.conf")]
        file: PathBuf,
        /// The spool: the queue and the control socket.
        #[arg(long, default_value = "/var/spool/ownmail")]
        spool: PathBuf,
        /// Where `certificate NAME` finds NAME.crt and NAME.key.
        #[arg(long, default_value = "/etc/certs")]
        pki_dir: PathBuf,
        /// Log protocol details too.
        #[arg(short = 'v', long)]
        verbose: bool,
        /// No configuration, no root: SMTP, submission and IMAP on loopback with one user,
        /// everything under --dir (made at the first start, reused after).
        #[arg(long, conflicts_with_all = ["file", "spool", "pki_dir"])]
        local: bool,
        /// The directory of `--local`.
        #[arg(long, requires = "local", default_value = "ownmail-local")]
        dir: PathBuf,
    },
    /// Parse and validate the configuration and every table it names.
    Check {
        /// The configuration file.
        #[arg(short = 'f', long = "file", default_value = "/etc/ownmail/smtpd.conf")]
        file: PathBuf,
        /// Where `certificate NAME` finds NAME.crt and NAME.key.
        #[arg(long, default_value = "/etc/certs")]
        pki_dir: PathBuf,
        /// Print the configuration in the modern action/match grammar on stdout.
        #[arg(long)]
        print: bool,
    },
    /// Inspect and steer the queue through the running daemon (list and show also work
    /// when it is stopped).
    Queue {
        /// The spool: the queue and the control socket.
        #[arg(long, default_value = "/var/spool/ownmail")]
        spool: PathBuf,
        #[command(subcommand)]
        action: queue_cmd::QueueAction,
    },
    /// Compile a table source file into FILE.db for `db:` tables.
    Makemap {
        /// The kind of table: a mapping (default), an aliases file, or a set of keys.
        #[arg(short = 't', long = "type", value_enum, default_value_t = MapType::Map)]
        kind: MapType,
        /// The table source file.
        file: PathBuf,
    },
    /// Print a SHA-512-crypt hash of PASSWORD (or of one line of standard input).
    Encrypt { password: Option<String> },
    /// Submit the message on standard input through the running daemon, like
    /// /usr/sbin/sendmail (also when called as `sendmail`).
    Sendmail(Box<sendmail::SendmailArgs>),
    /// Manage a passwd: users file (Dovecot passwd-file format).
    User {
        #[command(subcommand)]
        action: user_cmd::UserAction,
    },
    /// DKIM keys: `dkim keygen DOMAIN` writes a new key and prints its DNS record.
    Dkim {
        #[command(subcommand)]
        action: dkim_cmd::DkimAction,
    },
    /// Print the DNS records to publish for DOMAIN (MX, SPF, DKIM, DMARC) and the PTR to
    /// check, from the configuration.
    Dns {
        /// The mail domain.
        domain: String,
        /// The configuration file.
        #[arg(short = 'f', long = "file", default_value = "/etc/ownmail/smtpd.conf")]
        file: PathBuf,
        /// Where `certificate NAME` finds NAME.crt and NAME.key.
        #[arg(long, default_value = "/etc/certs")]
        pki_dir: PathBuf,
    },
    /// Maildir maintenance: `sync` gives every message its UID ahead of the first login.
    Maildir {
        #[command(subcommand)]
        action: maildir_cmd::MaildirAction,
    },
    /// Rebuild every db: table of the configuration from its source file.
    Newaliases {
        /// The configuration file.
        #[arg(short = 'f', long = "file", default_value = "/etc/ownmail/smtpd.conf")]
        file: PathBuf,
        /// Where `certificate NAME` finds NAME.crt and NAME.key.
        #[arg(long, default_value = "/etc/certs")]
        pki_dir: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum MapType {
    Map,
    Aliases,
    Set,
}

fn main() -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Called through a link named `makemap`: behave as `ownmail makemap`.
    let called_as = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if called_as == "makemap" {
        args.insert(1, "makemap".into());
    }
    // Called as `sendmail [FLAGS] [RCPT...]`: behave as `ownmail sendmail [FLAGS] [RCPT...]`.
    if called_as == "sendmail" {
        args.insert(1, "sendmail".into());
    }
    // Called as `newaliases [-f FILE]`: behave as `ownmail newaliases [-f FILE]`.
    if called_as == "newaliases" {
        args.insert(1, "newaliases".into());
    }
    // Called as `mailq [--spool DIR]`: behave as `ownmail queue [--spool DIR] list`.
    if called_as == "mailq" {
        args.insert(1, "queue".into());
        args.push("list".into());
    }
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Serve {
            local: true,
            dir,
            verbose,
            ..
        } => serve_local(&dir, verbose),
        Command::Serve {
            file,
            spool,
            pki_dir,
            verbose,
            ..
        } => serve::serve(serve::ServeArgs {
            file,
            spool,
            pki_dir,
            verbose,
        }),
        Command::Check {
            file,
            pki_dir,
            print,
        } => check(&file, pki_dir, print),
        Command::Queue { spool, action } => queue_cmd::queue_command(&spool, action),
        Command::Makemap { kind, file } => make_map(&file, kind),
        Command::Encrypt { password } => encrypt(password),
        Command::Sendmail(args) => sendmail::sendmail(*args),
        Command::User { action } => user_cmd::user_command(action),
        Command::Maildir { action } => maildir_cmd::maildir_command(action),
        Command::Newaliases { file, pki_dir } => newaliases::newaliases(&file, &pki_dir),
        Command::Dkim { action } => dkim_cmd::dkim_command(action),
        Command::Dns {
            domain,
            file,
            pki_dir,
        } => dns_cmd::dns(dns_cmd::DnsArgs {
            domain,
            file,
            pki_dir,
        }),
    }
}

/// `serve --local`: sets DIR up (or reads it back), prints the login, serves.
fn serve_local(dir: &Path, verbose: bool) -> ExitCode {
    let local = match local::prepare(dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ownmail serve --local: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if out
        .write_all(local.describe().as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(out);
    serve::serve(serve::ServeArgs {
        file: local.conf(),
        spool: local.spool(),
        pki_dir: local.certs(),
        verbose,
    })
}

/// Every diagnostic on stderr, one `FILE:LINE:COL: message` a line.
fn report(diags: &Diagnostics) {
    let mut err = std::io::stderr().lock();
    for d in diags.iter() {
        let _ = writeln!(err, "{d}");
    }
}

fn check(file: &Path, pki_dir: PathBuf, print: bool) -> ExitCode {
    let mut checked = check_file(file, &ParseOptions { pki_dir });
    dkim_cmd::check_keys(&mut checked);
    report(&checked.diags);
    if !checked.ok() {
        return ExitCode::FAILURE;
    }
    if print {
        let text = ownmail_config::print::print_modern(&checked.config);
        let mut out = std::io::stdout().lock();
        if out
            .write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            return ExitCode::FAILURE;
        }
    }
    eprintln!("configuration OK");
    ExitCode::SUCCESS
}

fn make_map(file: &Path, kind: MapType) -> ExitCode {
    let kind = match kind {
        MapType::Map => MakemapKind::Map,
        MapType::Aliases => MakemapKind::Aliases,
        MapType::Set => MakemapKind::Set,
    };
    let mut diags = Diagnostics::new();
    let result = makemap(file, kind, &mut diags);
    report(&diags);
    match result {
        Ok(db) if !diags.has_errors() => {
            eprintln!("{}: written", db.display());
            ExitCode::SUCCESS
        }
        _ => ExitCode::FAILURE,
    }
}

fn encrypt(password: Option<String>) -> ExitCode {
    let password = match password {
        Some(p) => p,
        None => {
            let mut line = String::new();
            if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
                eprintln!("ownmail encrypt: cannot read standard input: {e}");
                return ExitCode::FAILURE;
            }
            let trimmed = line.strip_suffix('\n').unwrap_or(&line);
            trimmed.strip_suffix('\r').unwrap_or(trimmed).to_string()
        }
    };
    println!("{}", ownmail_auth::hash_sha512_crypt(password.as_bytes()));
    ExitCode::SUCCESS
}
