//! `ownmail serve`: wires configuration, queue, couriers and listeners together, and handles
//! signals (SIGTERM/SIGINT stop, SIGHUP reloads).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ownmail_config::check::{load_pki, resolve_listen};
use ownmail_config::model::{ActionKind, Config, ListenOn, ListenTls, TableOrValue};
use ownmail_config::table::Table;
use ownmail_config::{check_file, Checked, ParseOptions};
use ownmail_delivery::{Dispatcher, LocalCourier, LocalOptions};
use ownmail_queue::{Queue, QueueOptions};
use ownmail_relay::{RelayCourier, RelayOptions, RelayRoute};
use ownmail_rules::Ruleset;
use ownmail_smtp::{AuthPolicy, Limits, ListenerCtx, Runtime, Shared, TlsMode};
use ownmail_types::MessageSink;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{error, info, warn};

pub struct ServeArgs {
    pub file: PathBuf,
    pub spool: PathBuf,
    pub pki_dir: PathBuf,
    pub verbose: bool,
}

/// How long SIGTERM waits for sessions and deliveries before exiting anyway.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub fn serve(args: ServeArgs) -> ExitCode {
    init_logging(args.verbose);
    let opts = ParseOptions {
        pki_dir: args.pki_dir.clone(),
    };
    let checked = check_file(&args.file, &opts);
    for d in checked.diags.iter() {
        eprintln!("{d}");
    }
    if !checked.ok() {
        error!("configuration has errors; not starting");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, opts, checked)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: bool) {
    let level = if verbose {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_max_level(level)
        .init();
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Rules, limits and DKIM keys from a checked configuration, and its relay actions for the
/// relay courier. Fails (naming the `dkim sign` lines) when a DKIM key cannot sign.
fn runtime_of(
    checked: Checked,
    hostname: &str,
    listen_addrs: &[IpAddr],
    spool: &Path,
    previous: Option<&Runtime>,
) -> Result<(Runtime, HashMap<String, RelayRoute>), String> {
    let signer = crate::dkim_cmd::signer_of(&checked.config, &checked.tables)?;
    let checker = ownmail_policy::InboundChecks::from_config(&checked.config, hostname)?
        .map(|c| Arc::new(c) as Arc<dyn ownmail_types::InboundChecker>);
    let mut our_names = vec![hostname.to_lowercase()];
    our_names.extend(
        checked
            .config
            .listeners
            .iter()
            .filter_map(|l| l.hostname.as_ref().map(|h| h.to_lowercase())),
    );
    let antispam = ownmail_smtp::AntiSpam::from_config(
        &checked.config,
        hostname,
        our_names,
        spool,
        previous.and_then(|r| r.antispam.as_deref()),
    )?
    .map(Arc::new);
    let routes = relay_routes(&checked.config, &checked.tables);
    let config = Arc::new(checked.config);
    let limits = limits_of(&config);
    let rules = Ruleset::new(config, Arc::new(checked.tables), hostname, listen_addrs);
    Ok((
        Runtime {
            rules: Arc::new(rules),
            limits,
            signer,
            checker,
            antispam,
            // Filter processes live as long as the server: `run` starts them, `reload` keeps them.
            filters: previous.and_then(|r| r.filters.clone()),
            rdns: previous.and_then(|r| r.rdns.clone()),
        },
        routes,
    ))
}

/// With greylisting, the hosts we relay mail to are spared it (as OpenBSD's spamlogd does):
/// their replies to our users' mail are not delayed.
fn delivered_hook(runtime: &Runtime) -> Option<ownmail_relay::DeliveredHook> {
    let greylist = runtime.antispam.as_ref()?.greylist_state()?;
    Some(Arc::new(move |host| {
        greylist.allow_host(host, std::time::SystemTime::now())
    }))
}

/// Each `relay` action as the relay courier needs it, its smarthost credentials looked up in
/// the action's secrets table (by the URL's LABEL, else by the host name).
fn relay_routes(config: &Config, tables: &HashMap<String, Table>) -> HashMap<String, RelayRoute> {
    let mut routes = HashMap::new();
    for action in &config.actions {
        let ActionKind::Relay(r) = &action.kind else {
            continue;
        };
        let auth = match (&r.auth, &r.host) {
            (Some(t), Some(url)) => {
                let label = url.label.as_deref().unwrap_or(&url.host);
                let found = tables.get(&t.name).and_then(|table| table.secret(label));
                if found.is_none() {
                    warn!(
                        "relay action={} event=no-secret label={label} table={}",
                        action.name, t.name
                    );
                }
                found
            }
            _ => None,
        };
        let src = match &r.src {
            Some(TableOrValue::Value(v)) => v.parse().ok(),
            _ => None,
        };
        let route = RelayRoute {
            host: r.host.clone(),
            auth,
            helo: r.helo.clone(),
            tls: r.tls,
            backup: r.backup.clone(),
            mail_from: r.mail_from.clone(),
            src,
        };
        routes.insert(action.name.clone(), route);
    }
    routes
}

fn limits_of(config: &Config) -> Limits {
    let mut l = Limits::default();
    if let Some(n) = config.smtp.max_message_size {
        l.max_message_size = n;
    }
    if let Some(n) = config.smtp.max_rcpt {
        l.max_rcpt = n as usize;
    }
    l
}

pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = if addr.is_ipv6() {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if addr.is_ipv6() {
        // `any` binds 0.0.0.0 and :: on the same port: keep them apart.
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

async fn run(args: ServeArgs, opts: ParseOptions, checked: Checked) -> Result<(), String> {
    let host = hostname();
    let (stop_tx, stop_rx) = watch::channel(false);

    // Listeners first: a port we cannot bind is an error before anything else starts.
    let mut bound = Vec::new();
    // The local submission socket always exists (`sendmail`); `listen on socket` may tag it.
    let mut local_socket_tag = None;
    let mut local_socket_filter = None;
    let mut listen_addrs = Vec::new();
    let mut tls_configs: HashMap<String, Arc<rustls::ServerConfig>> = HashMap::new();
    for l in &checked.config.listeners {
        if l.on == ListenOn::Socket {
            local_socket_tag = l.tag.clone();
            local_socket_filter = l.filter.clone();
            continue;
        }
        let addrs = resolve_listen(&l.on, l.family).map_err(|e| format!("{}: {e}", l.on_pos))?;
        let tls = match &l.pki {
            Some(name) => Some(tls_for(&checked.config, name, &mut tls_configs)?),
            None => None,
        };
        let tls_mode = match l.tls {
            ListenTls::None => TlsMode::None,
            ListenTls::Offer => TlsMode::Offer,
            ListenTls::Require { .. } => TlsMode::Require,
            ListenTls::Smtps { .. } => TlsMode::Implicit,
        };
        let ctx = Arc::new(ListenerCtx {
            hostname: l.hostname.clone().unwrap_or_else(|| host.clone()),
            tls_mode,
            tls,
            tag: l.tag.clone(),
            auth: l.auth.as_ref().map(|a| AuthPolicy {
                required: !a.optional,
                // `auth` without a table would mean the system's accounts, which ownmail does
                // not read: no login succeeds (`check` warns).
                table: a.table.as_ref().map(|t| t.name.clone()).unwrap_or_default(),
            }),
            senders: l
                .senders
                .as_ref()
                .map(|(t, masquerade)| (t.name.clone(), *masquerade)),
            filter: l.filter.clone(),
        });
        for ip in addrs {
            let addr = SocketAddr::new(ip, l.effective_port());
            let listener = bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            info!("smtp event=listen address={addr} tls={tls_mode:?}");
            listen_addrs.push(ip);
            bound.push((listener, ctx.clone()));
        }
    }

    let imap_bound = crate::imap::bind_all(&checked.config, &host, &mut tls_configs).await?;

    let _lock = lock_spool(&args.spool)?;
    let defaults = QueueOptions::default();
    let queue_opts = QueueOptions {
        ttl: checked.config.queue.ttl.unwrap_or(defaults.ttl),
        warn_intervals: if checked.config.queue.warn_intervals.is_empty() {
            defaults.warn_intervals.clone()
        } else {
            checked.config.queue.warn_intervals.clone()
        },
        ..defaults
    };
    let queue = Queue::open(&args.spool, queue_opts)
        .map_err(|e| format!("cannot open the spool {}: {e}", args.spool.display()))?;
    let relay_opts = RelayOptions {
        hostname: host.clone(),
        local_addrs: listen_addrs.clone(),
        resolvers: checked.config.resolvers.clone(),
        port: 25,
        connect_timeout: Duration::from_secs(30),
        command_timeout: Duration::from_secs(120),
        data_timeout: Duration::from_secs(600),
        max_received: 100,
    };
    let relay = match RelayCourier::new(relay_opts.clone()) {
        Ok(r) => r,
        // A host without a usable /etc/resolv.conf still receives mail; relaying waits (and
        // retries) until DNS answers on the local resolver address.
        Err(e) if relay_opts.resolvers.is_empty() => {
            warn!("relay event=no-system-dns error=\"{e}\": using 127.0.0.1:53; set `resolver` in the configuration");
            RelayCourier::new(RelayOptions {
                resolvers: vec![SocketAddr::from(([127, 0, 0, 1], 53))],
                ..relay_opts
            })?
        }
        Err(e) => return Err(e),
    };
    let courier = Arc::new(Dispatcher::new(
        LocalCourier::new(LocalOptions {
            hostname: host.clone(),
            mda_timeout: Duration::from_secs(600),
            lmtp_timeout: Duration::from_secs(300),
        }),
        Some(relay.clone()),
    ));

    let sink: Arc<dyn MessageSink> = queue.clone();
    let filters = if checked.config.listeners.iter().any(|l| l.filter.is_some()) {
        let settings = ownmail_filter::Settings {
            admd: Some(host.clone()),
            ..Default::default()
        };
        Some(Arc::new(
            ownmail_filter::Filters::start(
                &checked.config,
                settings,
                Arc::new(checked.tables.clone()),
            )
            .await?,
        ))
    } else {
        None
    };
    let rdns = match &filters {
        Some(_) => {
            let dns =
                ownmail_policy::resolver(&checked.config.resolvers, ownmail_smtp::SCREEN_TIMEOUT)?;
            Some(Arc::new(ownmail_policy::Screener::new(
                dns,
                Vec::new(),
                ownmail_smtp::SCREEN_TIMEOUT,
            )))
        }
        None => None,
    };
    let (mut runtime, routes) = runtime_of(checked, &host, &listen_addrs, &args.spool, None)?;
    runtime.filters = filters;
    runtime.rdns = rdns;
    relay.set_routes(routes);
    relay.on_delivered(delivered_hook(&runtime));
    let shared = Shared::new(runtime, sink.clone());
    let bouncer = Arc::new(crate::bounce::Bouncer::new(
        host.clone(),
        shared.clone(),
        sink,
    ));
    let scheduler = queue.start(courier, bouncer, stop_rx.clone());
    let control = crate::control::serve_control(&args.spool, queue.clone(), stop_rx.clone())
        .await
        .map_err(|e| {
            format!(
                "cannot open the control socket in {}: {e}",
                args.spool.display()
            )
        })?;
    let mut servers = Vec::new();
    servers.push(tokio::spawn(ownmail_smtp::serve_unix(
        bind_local_socket(&args.spool)?,
        Arc::new(ListenerCtx {
            hostname: host.clone(),
            tls_mode: TlsMode::None,
            tls: None,
            tag: local_socket_tag,
            auth: None,
            senders: None,
            filter: local_socket_filter,
        }),
        shared.clone(),
        stop_rx.clone(),
    )));
    for (listener, ctx) in bound {
        servers.push(tokio::spawn(ownmail_smtp::serve(
            listener,
            ctx,
            shared.clone(),
            stop_rx.clone(),
        )));
    }
    servers.extend(crate::imap::spawn_all(
        imap_bound,
        shared.clone(),
        stop_rx.clone(),
    ));
    // The handlers before "ready": a SIGHUP (a reload) sent as soon as we say we are ready
    // must not find the default action, which ends the process.
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    info!(
        "ownmail ready: {} listener(s), spool {}",
        servers.len(),
        args.spool.display()
    );
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload(&args.file, &args.spool, &opts, &shared, &relay, &host, &listen_addrs),
        }
    }
    info!("ownmail stopping");
    let _ = stop_tx.send(true);
    let wait = async {
        for s in servers {
            let _ = s.await;
        }
        let _ = scheduler.await;
        let _ = control.await;
    };
    if tokio::time::timeout(STOP_GRACE, wait).await.is_err() {
        warn!(
            "ownmail event=stop-timeout: exiting with work in flight (queued mail is safe on disk)"
        );
    }
    info!("ownmail stopped");
    Ok(())
}

/// SIGHUP: read the configuration again; keep the old one if the new one has errors.
/// Listeners stay as they were started (changing them needs a restart).
fn reload(
    file: &Path,
    spool: &Path,
    opts: &ParseOptions,
    shared: &Shared,
    relay: &RelayCourier,
    host: &str,
    listen_addrs: &[IpAddr],
) {
    let checked = check_file(file, opts);
    if !checked.ok() {
        let errors: Vec<String> = checked
            .diags
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.to_string())
            .collect();
        error!(
            "reload failed, keeping the running configuration: {}",
            errors.join("; ")
        );
        return;
    }
    let previous = shared.runtime();
    // Filter processes and listeners were started with the server: say so when the new
    // configuration would change them, instead of silently running the old ones.
    let filters_of = |c: &Config| {
        (
            format!(
                "{:?}",
                c.filters
                    .iter()
                    .map(|f| (&f.name, &f.kind))
                    .collect::<Vec<_>>()
            ),
            c.listeners
                .iter()
                .map(|l| l.filter.clone())
                .collect::<Vec<_>>(),
        )
    };
    if filters_of(&checked.config) != filters_of(previous.rules.config()) {
        warn!(
            "reload event=filters-changed: the filter lines changed; the running filters are              kept until ownmail is restarted"
        );
    }
    let (runtime, routes) = match runtime_of(checked, host, listen_addrs, spool, Some(&previous)) {
        Ok(r) => r,
        Err(e) => {
            error!("reload failed, keeping the running configuration: {e}");
            return;
        }
    };
    relay.set_routes(routes);
    relay.on_delivered(delivered_hook(&runtime));
    shared.replace_runtime(runtime);
    info!("configuration reloaded from {}", file.display());
}

/// `SPOOL/sendmail.sock`, where local programs submit mail (`ownmail sendmail`). Every local
/// user may connect (mode 0666): the session knows the caller's uid and is local mail.
fn bind_local_socket(spool: &Path) -> Result<tokio::net::UnixListener, String> {
    use std::os::unix::fs::PermissionsExt;
    let path = spool.join("sendmail.sock");
    let _ = std::fs::remove_file(&path);
    let l = tokio::net::UnixListener::bind(&path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| format!("cannot open {} to local users: {e}", path.display()))?;
    info!("smtp event=listen socket={}", path.display());
    Ok(l)
}

/// One daemon per spool: two schedulers on one queue would deliver everything twice.
fn lock_spool(spool: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    std::fs::create_dir_all(spool)
        .map_err(|e| format!("cannot create the spool {}: {e}", spool.display()))?;
    let path = spool.join("ownmail.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        format!(
            "the spool {} is in use by another ownmail ({e})",
            spool.display()
        )
    })
}

/// The TLS configuration of pki `name`, loaded once and shared by every listener naming it.
pub(crate) fn tls_for(
    config: &Config,
    name: &str,
    cache: &mut HashMap<String, Arc<rustls::ServerConfig>>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    if let Some(c) = cache.get(name) {
        return Ok(c.clone());
    }
    let pki = config
        .pki(name)
        .ok_or_else(|| format!("pki {name} missing"))?;
    let c = tls_config(pki)?;
    cache.insert(name.to_string(), c.clone());
    Ok(c)
}

fn tls_config(pki: &ownmail_config::model::Pki) -> Result<Arc<rustls::ServerConfig>, String> {
    let pair = load_pki(pki)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(pair.certs, pair.key)
        .map_err(|e| format!("pki {}: {e}", pki.name))?;
    Ok(Arc::new(cfg))
}
