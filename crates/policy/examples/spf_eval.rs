//! SPF evaluation as ownmail does it for incoming mail ([`InboundChecks::spf`]), for the
//! RFC 7208 test-suite runner (`tests/e2e/test_spf_suite.py`): `spf_eval SERVER:PORT`, then
//! one case a line on stdin, `IP<TAB>HELO<TAB>MAIL-FROM` (MAIL FROM empty for `<>`); prints
//! one line a case, in order: `RESULT<TAB>EXPLANATION`. All cases of a run are evaluated at
//! once (those that wait for a DNS timeout then cost the time of one).

use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ownmail_policy::authres::{AuthResult, LocalPolicy};
use ownmail_policy::InboundChecks;

#[tokio::main]
async fn main() -> Result<(), String> {
    let server: SocketAddr = std::env::args()
        .nth(1)
        .ok_or("usage: spf_eval SERVER:PORT")?
        .parse()
        .map_err(|e| format!("SERVER:PORT: {e}"))?;
    let checks = std::sync::Arc::new(InboundChecks::new(
        "receiver.test",
        &[server],
        LocalPolicy::default(),
        Duration::from_secs(10),
    )?);
    let mut tasks = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let mut parts = line.split('\t');
        let (ip, helo, from) = (parts.next(), parts.next(), parts.next());
        let ip: IpAddr = ip
            .unwrap_or("")
            .parse()
            .map_err(|e| format!("{line:?}: {e}"))?;
        let (helo, from) = (
            helo.unwrap_or("").to_string(),
            from.unwrap_or("").to_string(),
        );
        let checks = checks.clone();
        tasks.push(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let out = checks.spf(ip, &helo, &from, deadline).await;
            let result = ownmail_policy::spf_auth_result(out.result());
            (
                result,
                out.explanation().unwrap_or("").replace(['\t', '\n'], " "),
            )
        }));
    }
    let mut stdout = std::io::stdout().lock();
    for t in tasks {
        let (result, exp): (AuthResult, String) = t.await.map_err(|e| e.to_string())?;
        writeln!(stdout, "{}\t{exp}", result.as_str()).map_err(|e| e.to_string())?;
    }
    Ok(())
}
