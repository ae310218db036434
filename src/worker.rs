//! Delivery: claim -> render -> send -> delivered | retry later | dead.
//!
//! Each destination has its own loop, its own concurrency limit
//! (`delivery.workers`) and its own rate limiter, so a slow or dead destination
//! never delays another. The queue stays in the database: a loop claims at most
//! `delivery.workers` deliveries ahead (and no more than the rate limit allows),
//! each under a lease, so a crash mid-send means the delivery is sent again —
//! never lost.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

use crate::config::RateLimit;
use crate::destinations::{Destination, Request, SendError, Sent};
use crate::relay::Relay;
use crate::startup::Shared;
use crate::store::{Attempt, Claimed, Ordered, Outcome, SendSlot, Take};

/// The hard bound on one send beyond the destination's own timeout (DNS, a stuck
/// TLS handshake): see `attempt`.
const SEND_SLACK: Duration = Duration::from_secs(5);
/// A lease never ends closer than this to the end of the send it covers.
const LEASE_MARGIN: Duration = Duration::from_secs(1);
/// Longest a loop sleeps before looking at the queue again.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// `Retry-After` is honoured up to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// After the schedule runs out, retries come this often.
const AFTER_SCHEDULE: Duration = Duration::from_secs(3600);
/// In-flight sends get this long to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Sends whose record may wait for its commit at once, per `delivery.workers`:
/// see `attempt`.
const RECORDS_PER_WORKER: usize = 8;

/// The longest one send to a destination with `timeout` can take.
fn send_bound(timeout: Duration) -> Duration {
    timeout + SEND_SLACK
}

/// One send, given up after the destination's `timeout` plus `slack`: the
/// destination bounds its own requests; this bounds everything else (DNS, a stuck
/// TLS handshake) so a lease is never held forever. The error states that bound
/// as it is, sub-second parts included.
async fn send_bounded(
    sender: &dyn Destination,
    req: &Request,
    delivery_id: &str,
    reached: &mut Vec<String>,
    timeout: Duration,
    slack: Duration,
) -> Result<Sent, SendError> {
    let bound = timeout + slack;
    let send = sender.send_unreached(req, delivery_id, reached);
    match tokio::time::timeout(bound, send).await {
        Ok(r) => r,
        Err(_) => Err(SendError::transient(format!(
            "timed out after {bound:?} (the destination's timeout, {timeout:?}, plus {slack:?})"
        ))),
    }
}

/// The lease a delivery is claimed with: `delivery.lease`, or longer if the
/// destination's send could outlast it. At least one [`LEASE_MARGIN`] more than
/// `attempt` needs, so a row claimed ahead that starts within that margin is sent
/// without renewing its lease (a round trip and a commit per send on PostgreSQL
/// when the destination's timeout sets the lease).
fn lease_for(configured: Duration, timeout: Duration) -> Duration {
    configured.max(send_bound(timeout) + 2 * LEASE_MARGIN)
}

/// The delay before attempt `attempt + 1`, after `attempt` failed attempts:
/// the schedule's entry (hourly once it runs out) with ±20% jitter, or what the
/// destination asked for with `Retry-After` (clamped to an hour, at least a second).
pub fn retry_delay(attempt: u32, schedule: &[Duration], retry_after: Option<Duration>) -> Duration {
    if let Some(ra) = retry_after {
        return ra.clamp(Duration::from_secs(1), MAX_RETRY_AFTER);
    }
    let base = schedule
        .get(attempt.saturating_sub(1) as usize)
        .copied()
        .unwrap_or(AFTER_SCHEDULE);
    base.mul_f64(0.8 + 0.4 * fastrand::f64())
}

/// When a failed delivery of age `age` is tried again, `after` from now by the
/// schedule: then, or at `max_age` if the schedule's next try falls after it, so
/// that the last try is made when the window ends rather than up to a whole
/// (jittered) step before it. `None` once the window is over: the delivery is
/// dead. A window with less than [`LAST_TRY_MIN`] left takes no further try.
pub fn next_try(age: Duration, after: Duration, max_age: Duration) -> Option<Duration> {
    let left = max_age.checked_sub(age)?;
    if after <= left {
        Some(after)
    } else if left >= LAST_TRY_MIN {
        Some(left)
    } else {
        None
    }
}

/// The least time left in a delivery's window that still takes a last try.
const LAST_TRY_MIN: Duration = Duration::from_secs(1);

/// On a shared store, how long after its `max_age` window ended (and after it was
/// due) a delivery to a destination this process's config lacks is ended, when no
/// replica took it: a replica that has the destination makes its last try when the
/// window ends, or when a `Retry-After` pause (at most this long) lets it.
const UNSENT_GRACE: Duration = MAX_RETRY_AFTER;

/// Runs the delivery loops until `stop` turns true, then lets in-flight sends
/// finish (up to [`SHUTDOWN_GRACE`]).
pub async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut loops: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    // Destinations whose deliveries are left to other replicas, already warned about.
    let mut lacking: BTreeSet<String> = BTreeSet::new();
    loop {
        let relay = shared.relay.load_full();
        let mut names: BTreeSet<String> = relay.destinations.keys().cloned().collect();
        let mut others: BTreeSet<String> = BTreeSet::new();
        match shared.store.pending_destinations().await {
            Ok(p) => {
                for name in p {
                    if shared.store.is_shared()
                        && !relay.destinations.contains_key(&name)
                        && shared.retired(&name).is_none()
                    {
                        others.insert(name);
                    } else {
                        names.insert(name);
                    }
                }
            }
            Err(e) => log::error!("delivery: cannot read the queue: {e}"),
        }
        // Warned again if they come back after their queue emptied.
        lacking.retain(|name| others.contains(name));
        for name in others {
            let first = lacking.insert(name.clone());
            leave_to_others(&shared, &relay, &name, first).await;
        }
        for name in names {
            if loops.get(&name).is_none_or(|h| h.is_finished()) {
                let task = destination_loop(shared.clone(), name.clone(), stop.clone());
                loops.insert(name, tokio::spawn(task));
            }
        }
        tokio::select! {
            _ = stop.changed() => break,
            _ = shared.reloaded.notified() => {}
            _ = tokio::time::sleep(IDLE_POLL) => {}
        }
    }
    for (_, h) in loops {
        let _ = h.await;
    }
}

/// Pending deliveries to `name`, which this process's config lacks and never had,
/// on a store other processes share: they may be another replica's (a rolling
/// deploy, or a reload applied one replica at a time, that adds the destination),
/// so they are left pending for a replica that has it, or for a reload that adds it
/// here. Warned about when first seen (`first`). Only those no replica took, well
/// past their `max_age` window (see [`UNSENT_GRACE`]), end dead.
async fn leave_to_others(shared: &Shared, relay: &Relay, name: &str, first: bool) {
    if first {
        log::warn!(
            "delivery: destination {name:?} has pending deliveries, but this replica's config \
             lacks it: left pending for a replica that has it (or a reload that adds it here); \
             every replica should have the same destinations"
        );
    }
    let window = relay.settings.delivery.max_age;
    let msg = format!(
        "not sent: no replica with destination {name:?} in its config took it within \
         delivery.max_age ({}), and this one's config lacks it",
        crate::watch::human(window)
    );
    match shared
        .store
        .bury_unsent(name, window, UNSENT_GRACE, &msg)
        .await
    {
        Ok(n) if n > 0 => {
            log::error!("delivery: {n} pending deliveries to {name} marked dead: {msg}")
        }
        Ok(_) => {}
        Err(e) => log::error!("delivery to {name}: {e}"),
    }
}

/// The snapshot of the relay this destination is sent with: the current one if it
/// still has the destination, else the last one that had it, so deliveries queued
/// before a reload keep their destination.
fn snapshot(shared: &Shared, name: &str, last: &mut Option<Arc<Relay>>) -> Option<Arc<Relay>> {
    let cur = shared.relay.load_full();
    if cur.destinations.contains_key(name) {
        *last = Some(cur);
    } else if last.is_none() {
        // A loop that first runs after the reload that removed its destination.
        *last = shared.retired(name);
    }
    last.clone()
}

async fn destination_loop(shared: Arc<Shared>, name: String, mut stop: watch::Receiver<bool>) {
    let mut last: Option<Arc<Relay>> = None;
    let Some(first) = snapshot(&shared, &name, &mut last) else {
        if shared.store.is_shared() {
            // Maybe another replica's: `run` leaves them to it (`leave_to_others`).
            return;
        }
        // Queued for a destination the config no longer has, and this process never
        // had it: the only process on the store, so nothing can send these; say so
        // instead of leaving them pending.
        let msg = format!("destination {name:?} is not configured");
        match shared.store.bury(&name, &msg).await {
            Ok(n) if n > 0 => {
                log::error!("delivery: {n} pending deliveries to {name} marked dead: {msg}")
            }
            Ok(_) => {}
            Err(e) => log::error!("delivery: {e}"),
        }
        return;
    };
    let workers = first.settings.delivery.workers.max(1);
    let sem = Arc::new(Semaphore::new(workers));
    let max_records = workers * RECORDS_PER_WORKER;
    let records = Arc::new(Semaphore::new(max_records));
    // Woken when an attempt hands back the send it took from the rate limit (it
    // made none): the loop may be waiting for that very place.
    let given_back = Arc::new(Notify::new());
    drop(first);
    // Claimed ahead, waiting for a permit: under load a claim takes up to
    // `workers` rows instead of the one or two permits a finished send frees.
    // A row's lease is renewed when its send starts if it waited long (`attempt`).
    let mut ahead: VecDeque<Claimed> = VecDeque::new();

    // Waits, unless asked to stop (then the loop ends).
    macro_rules! sleep_or_stop {
        ($d:expr) => {
            tokio::select! {
                _ = tokio::time::sleep($d) => {}
                _ = stop.changed() => break,
            }
        };
    }

    while !*stop.borrow() {
        let Some(relay) = snapshot(&shared, &name, &mut last) else {
            break;
        };
        let Some(dest) = relay.destinations.get(&name) else {
            break;
        };
        // Read each round: a reload may change them.
        let rl = dest.cfg.rate_limit();
        let timeout = dest.cfg.common.timeout;
        let lease = lease_for(relay.settings.delivery.lease, timeout);

        // A pause a destination asked for (`Retry-After`) holds every process's
        // sends to it.
        match shared.store.paused_for(&name).await {
            Ok(p) if !p.is_zero() => {
                sleep_or_stop!(p);
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                log::error!("delivery to {name}: cannot read its pause: {e}");
                sleep_or_stop!(Duration::from_secs(1));
                continue;
            }
        }
        // In a burst of webhooks (see `IngestGauge`), one send at a time: an
        // attempt then holds every permit. Accepting goes first; the queue is on
        // disk and drains at full concurrency once the burst is over.
        let burst = shared.store.ingest_gauge().is_some_and(|g| g.in_burst());
        let first_permit = tokio::select! {
            p = sem.clone().acquire_many_owned(if burst { workers as u32 } else { 1 }) => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        let mut permits = vec![first_permit];
        // No more claimed than the limit can let through soon.
        let claim_max = match rl {
            Some(l) => (l.count as usize).clamp(1, workers),
            None => workers,
        };
        let free = if burst { 1 } else { claim_max };
        while permits.len() < free {
            match sem.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        if ahead.is_empty() {
            // Arm the wake-up before looking, so an event stored meanwhile is not missed.
            let notified = shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            // As many as may be sent soon, not only as many permits as are free
            // now (one or two, as sends finish one by one): the rest wait in
            // `ahead`, and a claim is made per batch rather than per send. In a
            // burst too, where they are sent one at a time: on PostgreSQL a
            // claim per send was most of what delivery cost the server beside
            // ingest (a statement and a commit each, reading past the rows
            // claimed before it).
            let claimed = match shared.store.claim(&name, claim_max, lease).await {
                Ok(c) => c,
                Err(e) => {
                    log::error!("delivery to {name}: cannot claim: {e}");
                    drop(permits);
                    sleep_or_stop!(Duration::from_secs(1));
                    continue;
                }
            };
            if claimed.is_empty() {
                drop(permits);
                // A destination a reload removed lives on until its queue is empty.
                let removed = !shared.relay.load().destinations.contains_key(&name);
                let idle = match shared.store.next_due(&name).await {
                    Ok(Some(due)) => due.clamp(Duration::from_millis(1), IDLE_POLL),
                    Ok(None) if removed => break,
                    Ok(None) | Err(_) => IDLE_POLL,
                };
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(idle) => {}
                    _ = stop.changed() => break,
                }
                continue;
            }
            ahead.extend(claimed);
        }
        permits.truncate(ahead.len());
        let mut wait = Duration::ZERO;
        for permit in permits {
            let mut rate = None;
            if rl.is_some() {
                // The rate limit is shared by every process on the store: a send
                // is taken from it just before it starts, and handed back by an
                // attempt that does not send (see `RateSlot`).
                match shared.store.take_send(&name, rl).await {
                    Ok(Take::Now(slot)) => {
                        rate = Some(RateSlot {
                            slot,
                            limit: rl,
                            given_back: given_back.clone(),
                        })
                    }
                    Ok(Take::Wait(w)) => {
                        wait = w;
                        break;
                    }
                    Err(e) => {
                        log::error!("delivery to {name}: cannot read its rate limit: {e}");
                        wait = Duration::from_secs(1);
                        break;
                    }
                }
            }
            if let Some(c) = ahead.pop_front() {
                let slots = Slots {
                    send: permit,
                    records: records.clone(),
                    rate,
                };
                tokio::spawn(attempt(shared.clone(), relay.clone(), c, slots, lease));
            }
        }
        if !wait.is_zero() {
            // Or until an attempt hands its send back: the place it took, which
            // this wait may be for, is free at once.
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = given_back.notified() => {}
                _ = stop.changed() => break,
            }
        }
    }
    // Let in-flight sends finish and their attempts be recorded, bounded.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        let _sends = sem.acquire_many(workers as u32).await;
        let _records = records.acquire_many(max_records as u32).await;
    })
    .await;
}

/// What one attempt holds: its send permit, where its record waits once the
/// send is over, and the send it took from the destination's rate limit.
struct Slots {
    send: OwnedSemaphorePermit,
    records: Arc<Semaphore>,
    rate: Option<RateSlot>,
}

/// A send taken from the destination's rate limit for one attempt. It is taken
/// before the attempt knows whether it will send (its message rendered, its turn
/// among the sends of its PagerDuty `dedup_key` decided): an attempt that sends
/// nothing hands it back ([`give_back`]), so that a send put back to wait for
/// another of its key, or superseded, costs no place in the limit and does not
/// hold up the sends that are made.
struct RateSlot {
    slot: SendSlot,
    limit: Option<RateLimit>,
    /// The destination loop's: woken once the send is handed back.
    given_back: Arc<Notify>,
}

/// Hands back the send `rate` took from `destination`'s rate limit: no send was
/// made with it.
async fn give_back(shared: &Shared, destination: &str, rate: Option<RateSlot>) {
    let Some(r) = rate else {
        return;
    };
    match shared
        .store
        .give_back_send(destination, r.limit, r.slot)
        .await
    {
        Ok(()) => r.given_back.notify_one(),
        // It stays taken: the next send waits for the limit as if it was made.
        Err(e) => log::warn!("delivery to {destination}: cannot hand back a send not made: {e}"),
    }
}

/// Deliveries [`drain`] claims per destination and pass.
const DRAIN_BATCH: usize = 1000;

/// Sends every delivery that is due now, one at a time and in queue order, each
/// attempt recorded exactly as the loops record it; repeats while a pass found
/// something due (a retry scheduled `0s` ahead is due at once), at most `passes`
/// times. Rate limits are not applied. Returns the number of attempts made.
///
/// For an application built without its delivery loops
/// ([`Application::build_without_workers`](crate::startup::Application::build_without_workers)):
/// tests drain the queue at a point they choose instead of waiting on a schedule.
pub async fn drain(shared: &Arc<Shared>, passes: usize) -> usize {
    let mut attempts = 0;
    for _ in 0..passes {
        let current = shared.relay.load_full();
        let mut names: BTreeSet<String> = current.destinations.keys().cloned().collect();
        if let Ok(p) = shared.store.pending_destinations().await {
            names.extend(p);
        }
        let before = attempts;
        for name in names {
            let mut last = None;
            let Some(relay) = snapshot(shared, &name, &mut last) else {
                continue;
            };
            let Some(dest) = relay.destinations.get(&name) else {
                continue;
            };
            let lease = lease_for(relay.settings.delivery.lease, dest.cfg.common.timeout);
            let claimed = match shared.store.claim(&name, DRAIN_BATCH, lease).await {
                Ok(c) => c,
                Err(e) => {
                    log::error!("drain {name}: cannot claim: {e}");
                    continue;
                }
            };
            let sem = Arc::new(Semaphore::new(1));
            let records = Arc::new(Semaphore::new(1));
            for c in claimed {
                let Ok(permit) = sem.clone().acquire_owned().await else {
                    break;
                };
                let slots = Slots {
                    send: permit,
                    records: records.clone(),
                    rate: None,
                };
                attempt(shared.clone(), relay.clone(), c, slots, lease).await;
                attempts += 1;
            }
        }
        if attempts == before {
            break;
        }
    }
    attempts
}

/// One attempt of one delivery, recorded whatever happens.
async fn attempt(
    shared: Arc<Shared>,
    relay: Arc<Relay>,
    mut c: Claimed,
    mut slots: Slots,
    lease: Duration,
) {
    // Handed back on every way out that sends nothing.
    let mut rate = slots.rate.take();
    let timeout = relay
        .destinations
        .get(&c.destination)
        .map(|d| d.cfg.common.timeout)
        .unwrap_or(Duration::from_secs(10));
    // A row claimed ahead may have waited for its permit (a burst serializes
    // sends; a rate limit spaces them): if what is left of its lease could run out
    // mid-send, it is renewed first, so the row cannot be claimed and sent twice.
    let left = lease.saturating_sub(c.claimed_at.elapsed());
    if left < send_bound(timeout) + LEASE_MARGIN {
        if let Err(e) = shared.store.renew(c.lease(), lease).await {
            // Not sent: another process has it, or its lease runs out and it is
            // claimed again.
            log::warn!(
                "delivery {} (event {}) to {}: not sent now: {e}",
                c.id,
                c.event_id,
                c.destination
            );
            give_back(&shared, &c.destination, rate).await;
            return;
        }
    }
    let started = Instant::now();
    let delivery_id = crate::relay::delivery_id(&c.event_id, c.id);
    // One event to a webhook with the default body needs no template context,
    // nor the tree of its `raw`.
    let direct = match c.group {
        None => relay.prepare_direct(
            &c.destination,
            &c.template,
            &c.event,
            c.raw_text.as_deref(),
            &delivery_id,
        ),
        Some(_) => None,
    };
    let prepared = match direct {
        Some(p) => Ok(p),
        None => match c.take_event() {
            // Nothing can send it: it ends dead, with the reason.
            Err(e) => Err(SendError::permanent(e.to_string())),
            Ok(event) => {
                // A group's delivery reads its events (a store read that may fail for now).
                let ctx =
                    crate::group::delivery_context(shared.store.as_ref(), event, c.group).await;
                ctx.map_err(SendError::transient).and_then(|mut ctx| {
                    crate::relay::set_delivery_id(&mut ctx, &delivery_id);
                    relay
                        .prepare(&c.destination, &c.template, c.channel.as_deref(), ctx)
                        .map_err(|msg| {
                            SendError::permanent(format!("cannot render the message: {msg}"))
                        })
                })
            }
        },
    };
    // Recipients earlier attempts reached (an email's, see `Attempt::reached`):
    // not sent it again, and stored with this attempt's record for the next.
    let mut reached = std::mem::take(&mut c.reached);
    let mut superseded = false;
    let result = match prepared {
        Ok((sender, req)) => {
            let key = sender.order_key(&req);
            match take_turn(&shared, &c, key).await {
                Turn::Send => {
                    if matches!(req, Request::Nothing(_)) {
                        // No request goes out (the template sends nothing).
                        give_back(&shared, &c.destination, rate.take()).await;
                    } else {
                        // Made: the send taken is spent.
                        rate = None;
                    }
                    // The destination bounds its own requests; this bounds everything
                    // else (DNS, a stuck TLS handshake) so a lease is never held forever.
                    send_bounded(
                        sender.as_ref(),
                        &req,
                        &delivery_id,
                        &mut reached,
                        timeout,
                        SEND_SLACK,
                    )
                    .await
                }
                Turn::Superseded(reason) => {
                    superseded = true;
                    Ok(crate::destinations::Sent::nothing(&reason))
                }
                // Not sent now: claimed again when its lease runs out (cut to
                // when the store said to ask again).
                Turn::NotNow => {
                    give_back(&shared, &c.destination, rate).await;
                    return;
                }
            }
        }
        Err(e) => Err(e),
    };
    // Superseded, or never rendered: nothing was sent.
    give_back(&shared, &c.destination, rate).await;
    let elapsed = started.elapsed();
    let attempt_no = c.attempts + 1;
    let delivery = &relay.settings.delivery;
    let (outcome, status, error) = match result {
        Ok(sent) => (
            Outcome::Delivered,
            sent.status,
            sent.note.map(|n| truncate(&n, 1000)),
        ),
        Err(e) => {
            if let Some(ra) = e.retry_after {
                if let Err(err) = shared
                    .store
                    .pause(&c.destination, ra.min(MAX_RETRY_AFTER))
                    .await
                {
                    log::error!(
                        "delivery to {}: cannot record its pause: {err}",
                        c.destination
                    );
                }
            }
            let outcome = if e.is_transient() {
                let after = retry_delay(attempt_no, &delivery.retry_schedule, e.retry_after);
                // The window's age by the store's clock at the claim, plus the
                // time since on this process's monotonic clock.
                match next_try(c.age + c.claimed_at.elapsed(), after, delivery.max_age) {
                    Some(after) => Outcome::Retry { after },
                    None => Outcome::Dead,
                }
            } else {
                Outcome::Dead
            };
            let mut msg = e.message.clone();
            if outcome == Outcome::Dead && e.is_transient() {
                let attempts = if attempt_no == 1 {
                    "attempt"
                } else {
                    "attempts"
                };
                msg = format!(
                    "{msg} (gave up after {attempt_no} {attempts}: max_age {} reached)",
                    humantime::format_duration(delivery.max_age)
                );
            }
            (outcome, e.status, Some(truncate(&msg, 1000)))
        }
    };
    let label = match &outcome {
        Outcome::Delivered if superseded => "superseded",
        Outcome::Delivered => "delivered",
        Outcome::Retry { .. } => "retry",
        Outcome::Dead => "dead",
    };
    // Written only if the line is logged (not for every delivery).
    let status_text = StatusText(status);
    match (&outcome, &error) {
        (Outcome::Delivered, Some(note)) if superseded => log::info!(
            "delivery {} (event {}) to {}: {note}",
            c.id, c.event_id, c.destination
        ),
        (Outcome::Delivered, _) => log::info!(
            "delivery {} (event {}) to {}: delivered ({status_text}{} ms, attempt {attempt_no})",
            c.id, c.event_id, c.destination, elapsed.as_millis()
        ),
        (Outcome::Retry { after }, Some(err)) => log::warn!(
            "delivery {} (event {}) to {}: failed ({status_text}{} ms, attempt {attempt_no}): {err}; retry at {}",
            c.id, c.event_id, c.destination, elapsed.as_millis(),
            crate::providers::rfc3339(chrono::Utc::now() + *after)
        ),
        (_, err) => log::error!(
            "delivery {} (event {}) to {}: dead ({status_text}{} ms, attempt {attempt_no}): {}",
            c.id, c.event_id, c.destination, elapsed.as_millis(), err.as_deref().unwrap_or("")
        ),
    }
    shared
        .metrics
        .delivery(&c.destination, label, elapsed.as_secs_f64());
    if outcome == Outcome::Delivered {
        // Nothing is left to send: nothing to keep.
        reached.clear();
    }
    let record = Attempt {
        status,
        error,
        duration_ms: elapsed.as_millis() as i64,
        reached,
    };
    let retry = matches!(outcome, Outcome::Retry { .. });
    // The send is over: the next one may start while this record waits for its
    // commit, so records commit many at a time instead of every send waiting for
    // a commit of its own (the delivery stays leased until its record is in).
    // Records waiting are bounded; past that the send permit is kept. In a burst
    // of webhooks the permit is kept too: accepting goes first (see the loop).
    let burst = shared.store.ingest_gauge().is_some_and(|g| g.in_burst());
    let _held = if burst {
        (Some(slots.send), None)
    } else {
        match slots.records.clone().acquire_owned().await {
            Ok(r) => (None, Some(r)),
            Err(_) => (Some(slots.send), None),
        }
    };
    match shared.store.complete(c.lease(), record, outcome).await {
        Ok(true) => {}
        Ok(false) => log::warn!(
            "delivery {} (event {}) to {}: this result is not recorded: the lease ran out \
             and another claim has the delivery",
            c.id,
            c.event_id,
            c.destination
        ),
        // The lease runs out and the delivery is tried again: at-least-once.
        Err(e) => log::error!("delivery {}: cannot record the attempt: {e}", c.id),
    }
    if retry {
        // The loop may be asleep until the lease would have run out; its next
        // due time is now the retry time.
        shared.notify.notify_waiters();
    }
}

/// Whether a delivery whose message belongs to an incident (see
/// [`Destination::order_key`](crate::destinations::Destination::order_key)) is
/// sent now.
enum Turn {
    /// Send it: it holds its key until its attempt is recorded.
    Send,
    /// It is not sent: a later event of its key was delivered. The reason says
    /// which.
    Superseded(String),
    /// Not now (another send of its key is in flight, the lease was lost, or the
    /// store could not say): claimed again when its lease runs out.
    NotNow,
}

/// Sends of one incident key go in their events' order: this says
/// [`Turn::Superseded`] when an event received after this one has already been
/// delivered for the key (a trigger retried after the resolve of a later success
/// would reopen the incident), and [`Turn::NotNow`] while another send of the key
/// is in flight (on any process sharing the store). It never waits: a waiting
/// attempt would hold its send permit (every permit in a burst) and its place in
/// the rate limit, stalling every other delivery to the destination for as long
/// as the other send (or a dead replica's lease) lasts. Its lease is cut to the
/// time the store said to ask again in, so it is claimed again then.
async fn take_turn(
    shared: &Shared,
    c: &Claimed,
    key: Option<crate::destinations::OrderKey>,
) -> Turn {
    let Some(key) = key else {
        return Turn::Send;
    };
    let turn = shared
        .store
        .begin_ordered(c.lease(), &c.destination, &key.key, &key.action)
        .await;
    match turn {
        Ok(Ordered::Send) => Turn::Send,
        Ok(Ordered::Superseded { event_id, action }) => {
            let what = if action.is_empty() {
                "message".to_string()
            } else {
                action
            };
            Turn::Superseded(format!(
                "superseded by the {what} of event {event_id}, received after this one \
                 and already delivered for dedup_key {:?}",
                key.key
            ))
        }
        Ok(Ordered::Wait(w)) => {
            log::debug!(
                "delivery {} (event {}) to {}: another delivery of dedup_key {:?} is being \
                 sent; tried again in {w:?}",
                c.id,
                c.event_id,
                c.destination,
                key.key
            );
            match shared.store.renew(c.lease(), w).await {
                // The loop may be asleep until the lease would have run out.
                Ok(()) => shared.notify.notify_waiters(),
                // Another claim has it, or it runs out as it was.
                Err(e) => log::warn!(
                    "delivery {} (event {}) to {}: not sent now: {e}",
                    c.id,
                    c.event_id,
                    c.destination
                ),
            }
            Turn::NotNow
        }
        Err(e) => {
            log::warn!(
                "delivery {} (event {}) to {}: not sent now: {e}",
                c.id,
                c.event_id,
                c.destination
            );
            Turn::NotNow
        }
    }
}

/// `status 200, ` in a delivery's log line, or nothing without a status.
struct StatusText(Option<u16>);

impl std::fmt::Display for StatusText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(s) => write!(f, "status {s}, "),
            None => Ok(()),
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A destination that never answers, ignoring its own timeout.
    struct Stuck;

    #[async_trait::async_trait]
    impl Destination for Stuck {
        fn prepare(&self, _msg: &crate::destinations::Message) -> Result<Request, SendError> {
            Ok(Request::Console(String::new()))
        }
        async fn send(&self, _req: &Request, _delivery_id: &str) -> Result<Sent, SendError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_send_past_its_bound_says_the_bound_it_was_given_up_at() {
        let req = Request::Console(String::new());
        let ms = Duration::from_millis;
        let e = send_bounded(&Stuck, &req, "d", &mut Vec::new(), ms(300), ms(200))
            .await
            .unwrap_err();
        assert!(e.is_transient());
        assert_eq!(
            e.message,
            "timed out after 500ms (the destination's timeout, 300ms, plus 200ms)"
        );
        let e = send_bounded(&Stuck, &req, "d", &mut Vec::new(), ms(1500), ms(100))
            .await
            .unwrap_err();
        assert_eq!(
            e.message,
            "timed out after 1.6s (the destination's timeout, 1.5s, plus 100ms)"
        );
    }

    #[test]
    fn the_last_try_is_made_when_max_age_ends_not_a_step_before() {
        let s = Duration::from_secs;
        // Within the window: the schedule's delay.
        assert_eq!(next_try(s(10), s(5), s(3600)), Some(s(5)));
        // The next step falls after max_age: one last try as the window ends.
        assert_eq!(next_try(s(3), s(3600), s(3600)), Some(s(3597)));
        assert_eq!(next_try(s(0), s(4320), s(3600)), Some(s(3600)));
        // That try made (the window over, or under a second of it left): dead.
        assert_eq!(next_try(s(3600), s(3600), s(3600)), None);
        assert_eq!(next_try(s(3601), s(5), s(3600)), None);
        assert_eq!(
            next_try(Duration::from_millis(3_599_500), s(3600), s(3600)),
            None
        );
        // A short max_age (tests, or a user who wants no retries past it).
        assert_eq!(
            next_try(
                Duration::from_millis(100),
                Duration::from_millis(50),
                Duration::from_millis(300)
            ),
            Some(Duration::from_millis(50))
        );
        assert_eq!(
            next_try(
                Duration::from_millis(280),
                Duration::from_millis(50),
                Duration::from_millis(300)
            ),
            None
        );
    }

    #[test]
    fn retry_delays_follow_the_schedule_with_jitter() {
        let s = [Duration::from_secs(5), Duration::from_secs(30)];
        for _ in 0..200 {
            let d = retry_delay(1, &s, None);
            assert!(
                d >= Duration::from_secs(4) && d <= Duration::from_secs(6),
                "{d:?}"
            );
            let d = retry_delay(2, &s, None);
            assert!(
                d >= Duration::from_secs(24) && d <= Duration::from_secs(36),
                "{d:?}"
            );
            let d = retry_delay(9, &s, None);
            assert!(
                d >= Duration::from_secs(2880) && d <= Duration::from_secs(4320),
                "{d:?}"
            );
        }
        assert_eq!(
            retry_delay(1, &s, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            retry_delay(1, &s, Some(Duration::from_secs(99999))),
            MAX_RETRY_AFTER
        );
        assert_eq!(
            retry_delay(1, &s, Some(Duration::ZERO)),
            Duration::from_secs(1)
        );
    }
}
