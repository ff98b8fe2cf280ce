//! Webhooks: signed pushes of the handoff lifecycle to the organization's endpoints.
//!
//! Policy:
//! - **Outbox.** Ingest writes the batch's messages (what each is about: type, time, subject;
//!   one delivery per message and subscribed endpoint) as one outbox row in the batch's own
//!   transaction ([`outbox::prepare`], [`outbox::enqueue`]): an acknowledged event will be
//!   delivered, a refused batch delivers nothing. The workers fan the row out into one delivery
//!   row each (one fan-out at a time across servers, oldest batch first, the row deleted in the
//!   same transaction: once, in order), rendering each body then: the record as the batch left
//!   it (a later batch that changes a record a waiting message shows keeps it first, see
//!   [`outbox`]). Every attempt sends the same bytes under the same `webhook-id`.
//! - **Delivery.** Every server runs a [`worker::Deliverer`] (unless its concurrency is 0);
//!   workers coordinate only through PostgreSQL (`for update skip locked` plus a lease on
//!   `next_attempt_at`), so N servers make each attempt once, and a server killed mid-attempt
//!   leaves the delivery to be retried (at least once). A message waits while an earlier message
//!   with the same ordering key (the handoff, session or call) to the same endpoint is pending:
//!   in order per handoff. Claims go endpoint by endpoint, each up to its free room; attempts run
//!   concurrently, bounded per server and per endpoint, each with a deadline, so one slow
//!   receiver (or one large backlog) does not hold up the others. Successes are recorded many
//!   per statement, each with its own status code and attempt. Claims do not wait for their
//!   commit to be flushed (one lost in a database crash only repeats an attempt); outcomes and
//!   ingest do.
//! - **Retries.** Exponential backoff with jitter until the message is older than the retry
//!   window (3 days); any 2xx is a success; 410 disables the endpoint; an endpoint failing
//!   without a success for 3 days is disabled, with the reason stored.
//! - **Signatures.** Standard Webhooks ([`signing`]).
//! - **SSRF.** Destinations on loopback, private, link-local, CGNAT, multicast, unspecified or
//!   metadata addresses are refused ([`destination`]), at creation and again after DNS
//!   resolution at each attempt (the HTTP client connects to the checked address), unless
//!   `--webhooks-allow-private`. Redirects are never followed.

pub mod destination;
pub mod outbox;
pub mod signing;
pub mod worker;

use std::time::Duration;

/// The event types an endpoint can subscribe to. `data` is the handoff record as
/// `GET /v1/handoffs/{handoff_id}` answers it for `handoff.*`, the session for `session.ended`,
/// the call for `call.completed`.
pub const EVENT_TYPES: &[&str] = &[
    "handoff.initiated",
    "handoff.completed",
    "handoff.failed",
    "handoff.abandoned",
    "handoff.state",
    "session.ended",
    "call.completed",
];

/// Whether `t` is a webhook event type.
pub fn is_event_type(t: &str) -> bool {
    EVENT_TYPES.contains(&t)
}

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Allow destinations on loopback and private networks (`--webhooks-allow-private`).
    pub allow_private: bool,
    /// Deadline of one attempt (connect, send, response head).
    pub attempt_timeout: Duration,
    /// The first retry's delay; each further one doubles, up to `backoff_max`, with jitter.
    pub backoff_base: Duration,
    /// The longest delay between two attempts.
    pub backoff_max: Duration,
    /// A message is retried until it is this old, then marked failed.
    pub retry_window: Duration,
    /// An endpoint failing without a success for this long is disabled.
    pub disable_after: Duration,
    /// Attempts in flight per server.
    pub concurrency: usize,
    /// Attempts in flight per server and endpoint.
    pub per_endpoint: usize,
    /// How often a worker looks for due deliveries when not woken by a notification.
    pub poll_interval: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allow_private: false,
            attempt_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(4 * 3600),
            retry_window: Duration::from_secs(3 * 86_400),
            disable_after: Duration::from_secs(3 * 86_400),
            concurrency: 64,
            per_endpoint: 8,
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl WebhookConfig {
    /// The delay before the attempt after `attempts` failed ones: `base · 2^(attempts−1)`, at
    /// most `backoff_max`, times a random factor in [0.8, 1.2) so that endpoints recovering from
    /// an outage are not hit by every retry at once.
    pub fn backoff(&self, attempts: i32) -> Duration {
        let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let raw = self
            .backoff_base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.backoff_max);
        let jitter: f64 = rand::Rng::gen_range(&mut rand::thread_rng(), 0.8..1.2);
        raw.mul_f64(jitter)
    }

    /// The lease a claimed attempt holds: twice its deadline plus a second (21 s by default),
    /// room for the attempt and for recording its outcome. Another server retries a delivery
    /// whose lease passed without an outcome (its server died).
    pub fn lease(&self) -> Duration {
        self.attempt_timeout * 2 + Duration::from_secs(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let c = WebhookConfig::default();
        for (attempts, base) in [(1, 5.0), (2, 10.0), (3, 20.0), (10, 2560.0), (40, 14_400.0)] {
            let d = c.backoff(attempts).as_secs_f64();
            assert!(d >= base * 0.8 && d < base * 1.2, "{attempts}: {d}");
        }
        // Retried for the whole window: the sum of delays stays below 3 days only after many
        // attempts, so the window, not an attempt count, ends the retries.
        let total: f64 = (1..=20).map(|a| c.backoff(a).as_secs_f64()).sum();
        assert!(total < 3.0 * 86_400.0);
    }
}
