//! Builds the running application: storage opened, relay built, listener bound
//! (port 0 in tests), delivery workers spawned; and shuts it down cleanly.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::sync::{watch, Notify};

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::relay::Relay;
use crate::store::{self, Store};

/// What the HTTP handlers and the workers share.
pub struct Shared {
    pub relay: ArcSwap<Relay>,
    pub store: Arc<dyn Store>,
    pub metrics: Metrics,
    /// Woken when deliveries become due (new ones stored, here or by another
    /// process on the same store).
    pub notify: Arc<Notify>,
    /// Woken after a reload.
    pub reloaded: Notify,
    pub http: crate::destinations::Http,
    pub config_path: PathBuf,
    /// Wrong admin tokens per client address (admin API and web page sign-in).
    pub wrong_tokens: crate::auth::WrongTokens,
    /// Destinations a reload removed, each with the last relay that had it:
    /// deliveries queued for them before the reload are still sent with it.
    pub retired: std::sync::Mutex<std::collections::HashMap<String, Arc<Relay>>>,
}

impl Shared {
    /// Re-reads the config file and templates. On any error the old relay keeps
    /// serving and the errors are returned.
    pub fn reload(&self) -> Result<(), String> {
        let env = std::env::vars().collect();
        let relay = Relay::load(&self.config_path, &env, &self.http).map_err(|e| e.to_string())?;
        let old = self.relay.load_full();
        if let Ok(mut retired) = self.retired.lock() {
            for name in old.destinations.keys() {
                if !relay.destinations.contains_key(name) {
                    retired.insert(name.clone(), old.clone());
                }
            }
            retired.retain(|name, _| !relay.destinations.contains_key(name));
        }
        self.relay.store(Arc::new(relay));
        self.reloaded.notify_waiters();
        self.notify.notify_waiters();
        Ok(())
    }

    /// The last relay that had destination `name`, if a reload removed it.
    pub fn retired(&self, name: &str) -> Option<Arc<Relay>> {
        self.retired.lock().ok()?.get(name).cloned()
    }
}

/// The HTTP client every destination shares (redirects never followed; see
/// [`crate::destinations::http_client`]).
pub fn http_client() -> crate::destinations::Http {
    crate::destinations::http_client()
}

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    /// The delivery loops; `None` when built without them.
    worker: Option<tokio::task::JoinHandle<()>>,
    /// SIGHUP, listened for from before the server answers: a SIGHUP sent as soon
    /// as `/readyz` says ready reloads instead of ending the process (the
    /// default action of a signal nobody listens for).
    hup: Option<tokio::signal::unix::Signal>,
}

impl Application {
    /// Opens storage, builds the relay, binds `server.listen` and starts the
    /// delivery workers. Call from within a Tokio runtime.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Self::build_with(settings, true).await
    }

    /// [`build`](Self::build) without the delivery loops: deliveries stay queued
    /// until [`worker::drain`](crate::worker::drain) sends them. Tests use this to
    /// decide when delivery happens instead of waiting on the schedule.
    pub async fn build_without_workers(settings: Settings) -> anyhow::Result<Application> {
        Self::build_with(settings, false).await
    }

    async fn build_with(settings: Settings, workers: bool) -> anyhow::Result<Application> {
        let http = http_client();
        let path = settings.file.clone();
        let listen = settings.server.listen.clone();
        let server_cfg = settings.server.clone();
        let notify = Arc::new(Notify::new());
        let opts = store::Options {
            wake: notify.clone(),
        };
        // The config's own mistakes first: a broken template is reported as such,
        // without creating or opening a database for a relay that cannot run.
        let url = settings.storage.url.clone();
        let relay = Relay::build(settings, &http).map_err(|e| anyhow::anyhow!("{e}"))?;
        let store = store::open(url.expose(), opts)
            .await
            .context("cannot open storage")?;
        let shared = Arc::new(Shared {
            relay: ArcSwap::from_pointee(relay),
            store,
            metrics: Metrics::new(),
            notify,
            reloaded: Notify::new(),
            http,
            config_path: path,
            wrong_tokens: Default::default(),
            retired: Default::default(),
        });
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let listener =
            TcpListener::bind(&listen).with_context(|| format!("cannot listen on {listen}"))?;
        let port = listener.local_addr()?.port();
        let server = crate::http::server(listener, shared.clone(), &server_cfg)?;
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(retention(shared.clone(), stop_rx.clone()));
        if workers {
            // Missed-backup deadlines fire on the delivery side: an app built
            // without its loops fires them through `watch::scan`.
            tokio::spawn(crate::watch::run(shared.clone(), stop_rx.clone()));
            // Held groups go out from here too (`group::flush` without the loops).
            tokio::spawn(crate::group::run(shared.clone(), stop_rx.clone()));
            // And digests (`digest::tick` without the loops).
            tokio::spawn(crate::digest::run(shared.clone(), stop_rx.clone()));
        }
        let worker = workers.then(|| tokio::spawn(crate::worker::run(shared.clone(), stop_rx)));
        Ok(Application {
            port,
            server,
            shared,
            stop,
            worker,
            hup,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves until SIGTERM/SIGINT (or the server handle stops): stops accepting,
    /// lets in-flight requests and sends finish (bounded), then returns.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let shared = self.shared.clone();
        let signal = self.hup;
        let hup = tokio::spawn(async move { reload_on_sighup(shared, signal).await });
        let served = self.server.await;
        hup.abort();
        let _ = self.stop.send(true);
        if let Some(w) = self.worker {
            let _ = w.await;
        }
        served.context("server error")
    }
}

/// Events deleted per batch: a short write, so ingest never waits long for it.
const PURGE_BATCH: usize = 200;

/// Deletes finished events older than `storage.retention`, a small batch at a
/// time, and the last runs of digest schedules no longer configured that are as
/// old, until stopped.
async fn retention(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let relay = shared.relay.load_full();
        let keep = relay.settings.storage.retention;
        let mut pause = Duration::from_secs(60);
        if !keep.is_zero() {
            // A short retention is checked more often (it is seconds in tests).
            pause = (keep / 10).clamp(Duration::from_millis(100), pause);
            let mut backlog = false;
            match shared.store.purge(keep, PURGE_BATCH).await {
                Ok(n) if n == PURGE_BATCH => {
                    log::debug!("retention: deleted {n} events; more to delete");
                    // More to delete: the next batch soon, after ingest had a turn.
                    pause = Duration::from_millis(50);
                    backlog = true;
                }
                Ok(n) if n > 0 => log::debug!("retention: deleted {n} events"),
                Ok(_) => {}
                Err(e) => log::error!("retention: {e}"),
            }
            // Once a backlog of events is gone, not at every batch of it.
            if !backlog {
                let digests: Vec<String> = relay.digests.iter().map(|d| d.key.clone()).collect();
                match shared.store.prune_digest_runs(keep, &digests).await {
                    Ok(n) if n > 0 => log::debug!(
                        "retention: deleted the last runs of {n} digest schedules no longer \
                         configured"
                    ),
                    Ok(_) => {}
                    Err(e) => log::error!("retention: {e}"),
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn reload_on_sighup(shared: Arc<Shared>, hup: Option<tokio::signal::unix::Signal>) {
    let Some(mut hup) = hup else {
        return;
    };
    while hup.recv().await.is_some() {
        match shared.reload() {
            Ok(()) => {
                log::info!("reloaded {}", shared.config_path.display());
                for w in shared.relay.load().settings.warnings() {
                    log::warn!("{}: {w}", shared.config_path.display());
                }
            }
            Err(e) => log::error!("reload failed, keeping the running config: {e}"),
        }
    }
}
