//! Trains a classifier store the way ownmail's IMAP moves do ([`ownmail_spam::learn_many`]):
//! `learn STORE spam|ham FILE...` learns every FILE (one message each) as that class into the
//! store file STORE (created when missing; files are written by the caller's user). Prints how
//! many messages changed the store and the store's totals. Used by `bench/antispam` to give
//! the recipient a trained classifier before the load starts.

use std::path::Path;

use ownmail_spam::{learn_many, Class, TokenStore};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: learn STORE spam|ham FILE...";
    let (store, class, files) = match args.as_slice() {
        [store, class, files @ ..] if !files.is_empty() => (store, class, files),
        _ => return Err(usage.into()),
    };
    let class = match class.as_str() {
        "spam" => Class::Spam,
        "ham" => Class::Ham,
        other => return Err(format!("{other:?}: not spam or ham ({usage})")),
    };
    let messages = files
        .iter()
        .map(|f| std::fs::read(f).map_err(|e| format!("{f}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let path = Path::new(store);
    let changed = learn_many(path, &refs, class, None).map_err(|e| e.to_string())?;
    let totals = TokenStore::load(path).map_err(|e| format!("{store}: {e}"))?;
    let (spam, ham) = totals.counts();
    println!(
        "learnt {changed} of {} as {}; {store}: {spam} spam, {ham} ham, {} tokens",
        messages.len(),
        args[1],
        totals.token_count()
    );
    Ok(())
}
