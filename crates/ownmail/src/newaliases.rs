//! `ownmail newaliases [-f FILE]`, and the binary called as `newaliases` (SPEC §3): rebuilds
//! every `db:` table of the configuration from its source file (the path without `.db`), as
//! `ownmail makemap` would, so that an administrator who edits `/etc/mail/aliases` runs the
//! command their fingers know.
//!
//! Each source is first read as a `file:` table and validated for every use the
//! configuration makes of the table (alias, virtual, credentials, ...), exactly as `check`
//! will validate the database; a source with an error is reported at its `FILE:LINE:COL`
//! and its database left as it was. Only then does `makemap` replace the database, with
//! kind `aliases` for a table used as an alias table and `map` otherwise.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ownmail_config::table::{makemap, MakemapKind, Table, TableDecl, TableSource, Usage};
use ownmail_config::{parse_file, Config, Diagnostic, Diagnostics, ParseOptions};

/// Rebuilds the `db:` tables of the configuration `config`; diagnostics and a summary go to
/// stderr. Exit status 1 if the configuration or any source has an error (the other tables
/// are still rebuilt).
pub fn newaliases(config: &Path, pki_dir: &Path) -> ExitCode {
    let parsed = parse_file(
        config,
        &ParseOptions {
            pki_dir: pki_dir.to_path_buf(),
        },
    );
    print_all(parsed.diags.iter());
    if parsed.diags.has_errors() {
        eprintln!("newaliases: the configuration has errors; no table rebuilt");
        return ExitCode::FAILURE;
    }
    let tables = db_tables(&parsed.config);
    if tables.is_empty() {
        eprintln!("no db: tables to rebuild");
        return ExitCode::SUCCESS;
    }
    let mut rebuilt = 0usize;
    let mut failed = false;
    for table in &tables {
        match rebuild(table) {
            Outcome::Rebuilt => rebuilt += 1,
            Outcome::Skipped => {}
            Outcome::Failed => failed = true,
        }
    }
    eprintln!(
        "{rebuilt} {} rebuilt",
        if rebuilt == 1 { "table" } else { "tables" }
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One database to rebuild: the first `table` statement naming it (two names may share a
/// file) and every use any of them is put to.
#[derive(Debug)]
struct DbTable<'a> {
    decl: &'a TableDecl,
    db: &'a Path,
    usages: BTreeSet<Usage>,
}

impl DbTable<'_> {
    fn kind(&self) -> MakemapKind {
        if self.usages.contains(&Usage::Aliases) {
            MakemapKind::Aliases
        } else {
            MakemapKind::Map
        }
    }
}

/// The `db:` tables of `config`, in declaration order, one per database file.
fn db_tables(config: &Config) -> Vec<DbTable<'_>> {
    let uses = config.table_uses();
    let mut out: Vec<DbTable<'_>> = Vec::new();
    for decl in &config.tables {
        let TableSource::Db(db) = &decl.source else {
            continue;
        };
        let usages = uses
            .iter()
            .filter(|(t, _)| t.name == decl.name)
            .map(|&(_, u)| u);
        match out.iter_mut().find(|t| t.db == db.as_path()) {
            Some(t) => t.usages.extend(usages),
            None => out.push(DbTable {
                decl,
                db,
                usages: usages.collect(),
            }),
        }
    }
    out
}

/// The source a `db:` path is made from, as the table reader finds it: the path without
/// its `.db` suffix.
fn source_of(db: &Path) -> Option<PathBuf> {
    (db.extension()? == "db").then(|| db.with_extension(""))
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Rebuilt,
    Skipped,
    Failed,
}

fn rebuild(table: &DbTable<'_>) -> Outcome {
    let (name, db) = (&table.decl.name, table.db);
    let Some(source) = source_of(db) else {
        print_one(&Diagnostic::warning(
            table.decl.source_pos.clone(),
            format!(
                "table \"{name}\": {} does not end in .db, so there is no source file to rebuild it from",
                db.display()
            ),
        ));
        return Outcome::Skipped;
    };
    if !source.is_file() {
        print_one(&Diagnostic::warning(
            table.decl.source_pos.clone(),
            format!(
                "table \"{name}\": no source file {}; {} left as it is",
                source.display(),
                db.display()
            ),
        ));
        return Outcome::Skipped;
    }

    // Validate the source for every use first: `check` will validate the database so, and
    // a database it would reject must not replace a good one.
    let as_file = TableDecl {
        name: name.clone(),
        source: TableSource::File(source.clone()),
        pos: table.decl.pos.clone(),
        source_pos: table.decl.source_pos.clone(),
    };
    let mut checks = Diagnostics::new();
    if let Some(t) = Table::load(&as_file, &mut checks) {
        for &usage in &table.usages {
            t.validate(usage, &mut checks);
        }
    }
    print_all(checks.iter());
    if checks.has_errors() {
        eprintln!("{}: not rebuilt", db.display());
        return Outcome::Failed;
    }

    // makemap reads the same file with the same parser, so its warnings were printed above
    // (with the table's name); only its errors (a failed write) are new.
    let mut diags = Diagnostics::new();
    let result = makemap(&source, table.kind(), &mut diags);
    print_all(diags.iter().filter(|d| d.is_error()));
    match result {
        Ok(written) if !diags.has_errors() => {
            eprintln!("{}: written", written.display());
            Outcome::Rebuilt
        }
        _ => {
            eprintln!("{}: not rebuilt", db.display());
            Outcome::Failed
        }
    }
}

/// `FILE:LINE:COL: message` on stderr.
fn print_one(d: &Diagnostic) {
    eprintln!("{d}");
}

fn print_all<'a>(diags: impl Iterator<Item = &'a Diagnostic>) {
    diags.for_each(print_one);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write_conf(dir: &Path, text: &str) -> PathBuf {
        let conf = dir.join("smtpd.conf");
        fs::write(&conf, text.replace("DIR", &dir.display().to_string())).unwrap();
        conf
    }

    fn db_kind(db: &Path) -> String {
        let text = fs::read_to_string(db).unwrap();
        text.lines().nth(2).unwrap().to_string()
    }

    const CONF: &str = "table aliases db:DIR/aliases.db\n\
        table vusers db:DIR/vusers.db\n\
        table domains db:DIR/domains.db\n\
        table gone db:DIR/gone.db\n\
        action local maildir alias <aliases>\n\
        action virt maildir virtual <vusers>\n\
        match from any for domain <domains> action virt\n\
        match for local action local\n";

    #[test]
    fn kinds_follow_the_use_and_missing_sources_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("aliases"), "root: alice\npostmaster: root\n").unwrap();
        fs::write(d.join("vusers"), "@example.org alice\nexample.org: true\n").unwrap();
        fs::write(d.join("domains"), "example.org\n").unwrap();
        let conf = write_conf(d, CONF);
        let parsed = parse_file(&conf, &ParseOptions::default());
        assert!(!parsed.diags.has_errors(), "{:?}", parsed.diags);
        let tables = db_tables(&parsed.config);
        assert_eq!(tables.len(), 4);
        let outcomes: Vec<Outcome> = tables.iter().map(rebuild).collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Rebuilt,
                Outcome::Rebuilt,
                Outcome::Rebuilt,
                Outcome::Skipped
            ]
        );
        assert_eq!(db_kind(&d.join("aliases.db")), "kind\taliases");
        assert_eq!(db_kind(&d.join("vusers.db")), "kind\tmap");
        assert_eq!(db_kind(&d.join("domains.db")), "kind\tmap");
        assert!(!d.join("gone.db").exists());
        assert_eq!(
            newaliases(&conf, Path::new("/nonexistent")),
            ExitCode::SUCCESS
        );
    }

    #[test]
    fn a_source_with_an_error_leaves_its_database_alone() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("aliases"), "root: alice\n").unwrap();
        fs::write(d.join("vusers"), "alice@example.org alice\n").unwrap();
        fs::write(d.join("domains"), "example.org\n").unwrap();
        let conf = write_conf(d, CONF);
        assert_eq!(
            newaliases(&conf, Path::new("/nonexistent")),
            ExitCode::SUCCESS
        );
        let good = fs::read(d.join("vusers.db")).unwrap();
        // A malformed virtual key: an error for a virtual table only.
        fs::write(d.join("vusers"), "alice@ alice\n").unwrap();
        fs::write(d.join("aliases"), "root: alice, bob\n").unwrap();
        assert_eq!(
            newaliases(&conf, Path::new("/nonexistent")),
            ExitCode::FAILURE
        );
        assert_eq!(fs::read(d.join("vusers.db")).unwrap(), good);
        // The other tables were still rebuilt.
        assert!(fs::read_to_string(d.join("aliases.db"))
            .unwrap()
            .contains("alice, bob"));
    }

    #[test]
    fn two_names_for_one_database_are_rebuilt_once_with_both_uses() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let conf = write_conf(
            d,
            "table a db:DIR/aliases.db\ntable b db:DIR/aliases.db\n\
             action x maildir alias <b>\nmatch for local action x\n",
        );
        let parsed = parse_file(&conf, &ParseOptions::default());
        let tables = db_tables(&parsed.config);
        assert_eq!(tables.len(), 1);
        assert_eq!(tables[0].decl.name, "a");
        assert_eq!(tables[0].kind(), MakemapKind::Aliases);
    }

    #[test]
    fn no_db_tables_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let conf = write_conf(
            dir.path(),
            "table aliases file:DIR/aliases\naction x maildir alias <aliases>\nmatch for local action x\n",
        );
        let parsed = parse_file(&conf, &ParseOptions::default());
        assert!(db_tables(&parsed.config).is_empty());
        assert_eq!(
            newaliases(&conf, Path::new("/nonexistent")),
            ExitCode::SUCCESS
        );
    }

    #[test]
    fn source_is_the_path_without_db() {
        assert_eq!(
            source_of(Path::new("/etc/mail/aliases.db")),
            Some(PathBuf::from("/etc/mail/aliases"))
        );
        assert_eq!(source_of(Path::new("/etc/mail/aliases")), None);
    }
}
