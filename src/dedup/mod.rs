//! Dedup stage: decides which offered messages reach the sink, using the TTL cache of what the
//! broker accepted and the pending queue of what it has not yet received.

mod cache;
mod queue;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

pub use cache::SentCache;
pub(crate) use queue::{PendingQueue, Queued};

use crate::model::Message;

/// Hard cap of the pending queue. It holds one message per topic, about a hundred at most; the
/// cap only matters if something offers unbounded distinct topics.
pub(crate) const QUEUE_CAP: usize = 4096;

/// What dedup did with an offered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// The broker already holds this payload (within the TTL).
    Cached,
    /// Identical to a message still queued or in flight.
    Discarded,
    /// Replaced (or cancelled) an older unsent payload for the topic.
    Replaced,
}

/// Counters of what each mechanism saved, for the periodic summary and the benchmark.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub offered: u64,
    pub published: u64,
    pub(crate) published_bytes: u64,
    pub suppressed_by_cache: u64,
    pub discarded_in_queue: u64,
    pub replaced_in_queue: u64,
    pub dropped: u64,
    pub peak_queue: u64,
}

/// The message lifecycle between the map stage and the sink: offered → queued → in flight →
/// delivered (recorded in the cache), or back to queued when the connection drops.
#[derive(Debug)]
pub struct Dedup {
    cache: SentCache,
    queue: PendingQueue,
    /// Sent, not yet acknowledged; at most one per topic so per-topic order is kept.
    in_flight: HashMap<Arc<str>, Arc<str>>,
    stats: Stats,
}

impl Dedup {
    pub fn new(ttl: Duration) -> Self {
        Self::with_cap(ttl, QUEUE_CAP)
    }

    pub(crate) fn with_cap(ttl: Duration, cap: usize) -> Self {
        Self {
            cache: SentCache::new(ttl),
            queue: PendingQueue::new(cap),
            in_flight: HashMap::new(),
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Nothing queued and nothing unacknowledged.
    pub(crate) fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_empty()
    }

    pub fn offer(&mut self, message: Message) -> Offer {
        let outcome = self.decide(message);
        self.count(outcome);
        outcome
    }

    /// Offers again what the bridge already offered (its republish after a reconnect or a
    /// Home Assistant restart): a message identical to one still queued or in flight is the
    /// same message, not a new one discarded, so it counts for nothing.
    pub(crate) fn offer_again(&mut self, message: Message) -> Offer {
        let outcome = self.decide(message);
        if outcome != Offer::Discarded {
            self.count(outcome);
        }
        outcome
    }

    fn count(&mut self, outcome: Offer) {
        self.stats.offered += 1;
        match outcome {
            Offer::Queued => {}
            Offer::Cached => self.stats.suppressed_by_cache += 1,
            Offer::Discarded => self.stats.discarded_in_queue += 1,
            Offer::Replaced => self.stats.replaced_in_queue += 1,
        }
        self.stats.peak_queue = self.stats.peak_queue.max(self.queue.len() as u64);
    }

    fn decide(&mut self, message: Message) -> Offer {
        // What the broker will hold once everything already sent has arrived.
        let underway = self.in_flight.get(&message.topic);
        if let Some(queued) = self.queue.get(&message.topic) {
            if queued == &*message.payload {
                return Offer::Discarded;
            }
            let broker_will_hold = match underway {
                Some(sent) => sent == &message.payload,
                None => self.cache.holds(&message.topic, &message.payload),
            };
            if broker_will_hold {
                // The queued payload is now stale and the broker already has the newest.
                self.queue.remove(&message.topic);
            } else {
                self.queue.push(message);
            }
            return Offer::Replaced;
        }
        match underway {
            Some(sent) if *sent == message.payload => return Offer::Discarded,
            Some(_) => {}
            None if self.cache.holds(&message.topic, &message.payload) => return Offer::Cached,
            None => {}
        }
        if let Queued::DroppedOldest(topic) = self.queue.push(message) {
            self.stats.dropped += 1;
            warn!(topic = %topic, cap = QUEUE_CAP, "Pending queue full; dropped the oldest unsent message");
        }
        Offer::Queued
    }

    /// The next message to hand to the sink; its topic then counts as in flight until
    /// `delivered` or `connection_lost`.
    pub fn next_to_send(&mut self) -> Option<Message> {
        let in_flight = &self.in_flight;
        let message = self
            .queue
            .pop_first(|topic| !in_flight.contains_key(topic))?;
        self.in_flight
            .insert(message.topic.clone(), message.payload.clone());
        Some(message)
    }

    /// The broker accepted the message (PUBACK for QoS 1): only now is it cached, so a
    /// message lost in an outage cannot suppress its own retry.
    pub fn delivered(&mut self, message: &Message) {
        if self
            .in_flight
            .get(&message.topic)
            .is_some_and(|p| *p == message.payload)
        {
            self.in_flight.remove(&message.topic);
        }
        self.cache.record(&message.topic, &message.payload);
        self.stats.published += 1;
        self.stats.published_bytes += (message.topic.len() + message.payload.len()) as u64;
    }

    /// The connection dropped: whatever was unacknowledged goes back to the front of the
    /// queue, unless a newer payload for its topic is already waiting.
    pub fn connection_lost(&mut self) {
        for (topic, payload) in self.in_flight.drain() {
            self.queue.push_front(Message { topic, payload });
        }
    }

    /// The sink will never send this message (the broker cannot take it): no longer in
    /// flight, and not cached, so a later payload for the topic is sent as usual.
    pub(crate) fn refused(&mut self, message: &Message) {
        if self
            .in_flight
            .get(&message.topic)
            .is_some_and(|p| *p == message.payload)
        {
            self.in_flight.remove(&message.topic);
        }
    }

    /// The sink could not take the message after all: back to the front of the queue.
    pub(crate) fn send_failed(&mut self, message: Message) {
        self.in_flight.remove(&message.topic);
        self.queue.push_front(message);
    }

    /// Queues a message ahead of everything else (the `offline` status on shutdown), replacing
    /// any unsent payload for its topic.
    pub(crate) fn offer_first(&mut self, message: Message) {
        self.queue.remove(&message.topic);
        self.queue.push_front(message);
    }

    /// After a reconnect or a Home Assistant restart: send everything again once.
    pub(crate) fn forget_delivered(&self) {
        self.cache.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(topic: &str, payload: &str) -> Message {
        Message::new(topic, payload)
    }

    fn deliver_all(d: &mut Dedup) -> Vec<Message> {
        let mut sent = Vec::new();
        while let Some(msg) = d.next_to_send() {
            d.delivered(&msg);
            sent.push(msg);
        }
        sent
    }

    #[test]
    fn cache_suppresses_identical_values_after_delivery_only() {
        let mut d = Dedup::new(Duration::from_secs(60));
        assert_eq!(d.offer(m("t", "1")), Offer::Queued);
        // Queued but not delivered: identical is discarded by the queue, not the cache.
        assert_eq!(d.offer(m("t", "1")), Offer::Discarded);
        assert_eq!(deliver_all(&mut d).len(), 1);
        assert_eq!(d.offer(m("t", "1")), Offer::Cached);
        assert_eq!(d.offer(m("t", "2")), Offer::Queued);
        let s = d.stats();
        assert_eq!(
            (
                s.offered,
                s.published,
                s.suppressed_by_cache,
                s.discarded_in_queue
            ),
            (4, 1, 1, 1)
        );
    }

    #[test]
    fn lost_message_does_not_suppress_its_retry() {
        let mut d = Dedup::new(Duration::from_secs(60));
        d.offer(m("t", "1"));
        let sent = d.next_to_send().unwrap();
        assert_eq!(&*sent.payload, "1");
        // In flight: identical offers are discarded, not cached.
        assert_eq!(d.offer(m("t", "1")), Offer::Discarded);
        d.connection_lost();
        assert_eq!(deliver_all(&mut d), vec![m("t", "1")]);
    }

    #[test]
    fn queue_keeps_only_the_newest_value_per_topic() {
        let mut d = Dedup::new(Duration::from_secs(60));
        for v in ["1", "2", "3"] {
            d.offer(m("power", v));
        }
        d.offer(m("other", "x"));
        assert_eq!(deliver_all(&mut d), vec![m("power", "3"), m("other", "x")]);
        assert_eq!(d.stats().replaced_in_queue, 2);
    }

    #[test]
    fn going_back_to_the_delivered_value_cancels_the_queued_one() {
        let mut d = Dedup::new(Duration::from_secs(60));
        d.offer(m("t", "1"));
        deliver_all(&mut d);
        d.offer(m("t", "2"));
        assert_eq!(d.offer(m("t", "1")), Offer::Replaced);
        assert!(d.is_idle(), "broker already holds 1; nothing to send");
    }

    #[test]
    fn newer_value_while_one_is_in_flight_waits_its_turn() {
        let mut d = Dedup::new(Duration::from_secs(60));
        d.offer(m("t", "1"));
        let first = d.next_to_send().unwrap();
        d.offer(m("t", "2"));
        // Only one per topic in flight: 2 waits for 1's acknowledgement.
        assert_eq!(d.next_to_send(), None);
        d.delivered(&first);
        assert_eq!(d.next_to_send(), Some(m("t", "2")));
        // A lost connection requeues 2; an even newer 3 supersedes it.
        d.offer(m("t", "3"));
        d.connection_lost();
        assert_eq!(deliver_all(&mut d), vec![m("t", "3")]);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entry_lets_an_unchanged_value_out_once_more() {
        let mut d = Dedup::new(Duration::from_secs(3600));
        d.offer(m("t", "1"));
        deliver_all(&mut d);
        assert_eq!(d.offer(m("t", "1")), Offer::Cached);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(d.offer(m("t", "1")), Offer::Queued);
        deliver_all(&mut d);
        assert_eq!(d.offer(m("t", "1")), Offer::Cached);
    }

    #[test]
    fn cache_off_sends_every_offer() {
        let mut d = Dedup::new(Duration::ZERO);
        d.offer(m("t", "1"));
        deliver_all(&mut d);
        assert_eq!(d.offer(m("t", "1")), Offer::Queued);
    }

    /// A message the broker cannot take leaves flight without counting as delivered: the same
    /// payload offered again is queued again (the sink decides again), a new one too.
    #[test]
    fn a_refused_message_is_neither_in_flight_nor_cached() {
        let mut d = Dedup::new(Duration::from_secs(3600));
        let big = m("t", "big");
        assert_eq!(d.offer(big.clone()), Offer::Queued);
        let sent = d.next_to_send().unwrap();
        d.refused(&sent);
        assert!(d.is_idle());
        assert_eq!(d.offer(big), Offer::Queued);
    }

    #[test]
    fn forget_delivered_resends_everything() {
        let mut d = Dedup::new(Duration::from_secs(60));
        d.offer(m("t", "1"));
        deliver_all(&mut d);
        d.forget_delivered();
        assert_eq!(d.offer(m("t", "1")), Offer::Queued);
    }
}
