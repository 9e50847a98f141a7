//! Dedup stage, pending queue: messages waiting for the broker, at most one per topic.

use std::sync::Arc;

use indexmap::IndexMap;

use crate::model::Message;

/// What happened to a message put into the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Queued {
    /// New topic, appended.
    Added,
    /// Identical to the unsent message for the topic: discarded.
    Identical,
    /// Replaced the unsent, older payload for the topic in its queue position.
    Replaced,
    /// The queue was full: the oldest topic's message was dropped to make room.
    DroppedOldest(Arc<str>),
}

/// FIFO of unsent messages keyed by topic. A newer payload replaces the queued one in place,
/// so the broker can never end up retaining a value older than the newest reading.
#[derive(Debug)]
pub(crate) struct PendingQueue {
    messages: IndexMap<Arc<str>, Arc<str>>,
    cap: usize,
}

impl PendingQueue {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            messages: IndexMap::new(),
            cap: cap.max(1),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub(crate) fn get(&self, topic: &str) -> Option<&str> {
        self.messages.get(topic).map(Arc::as_ref)
    }

    pub(crate) fn push(&mut self, message: Message) -> Queued {
        if let Some(queued) = self.messages.get_mut(&message.topic) {
            if *queued == message.payload {
                return Queued::Identical;
            }
            *queued = message.payload;
            return Queued::Replaced;
        }
        let dropped = (self.messages.len() >= self.cap)
            .then(|| self.messages.shift_remove_index(0).map(|(t, _)| t))
            .flatten();
        self.messages.insert(message.topic, message.payload);
        dropped.map_or(Queued::Added, Queued::DroppedOldest)
    }

    /// Puts a message that was sent but not acknowledged back at the front, unless a newer
    /// payload for its topic is already queued.
    pub(crate) fn push_front(&mut self, message: Message) {
        if !self.messages.contains_key(&message.topic) && self.messages.len() < self.cap {
            self.messages
                .shift_insert(0, message.topic, message.payload);
        }
    }

    pub(crate) fn remove(&mut self, topic: &str) -> bool {
        self.messages.shift_remove(topic).is_some()
    }

    /// The oldest message whose topic passes `ready`.
    pub(crate) fn pop_first(&mut self, ready: impl Fn(&str) -> bool) -> Option<Message> {
        let index = self.messages.keys().position(|t| ready(t))?;
        self.messages
            .shift_remove_index(index)
            .map(|(topic, payload)| Message { topic, payload })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(topic: &str, payload: &str) -> Message {
        Message::new(topic, payload)
    }

    #[test]
    fn identical_unsent_message_is_discarded() {
        let mut q = PendingQueue::new(10);
        assert_eq!(q.push(m("a", "1")), Queued::Added);
        assert_eq!(q.push(m("a", "1")), Queued::Identical);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn newer_payload_replaces_in_place_and_keeps_order() {
        let mut q = PendingQueue::new(10);
        q.push(m("a", "1"));
        q.push(m("b", "1"));
        assert_eq!(q.push(m("a", "2")), Queued::Replaced);
        // The v4 DSMR-reader failure mode: [a=1, a=2] + a=1 must not leave a stale value.
        assert_eq!(q.push(m("a", "1")), Queued::Replaced);
        assert_eq!(q.pop_first(|_| true), Some(m("a", "1")));
        assert_eq!(q.pop_first(|_| true), Some(m("b", "1")));
        assert!(q.is_empty());
    }

    #[test]
    fn cap_drops_the_oldest_topic() {
        let mut q = PendingQueue::new(2);
        q.push(m("a", "1"));
        q.push(m("b", "1"));
        assert_eq!(q.push(m("c", "1")), Queued::DroppedOldest(Arc::from("a")));
        assert_eq!(q.len(), 2);
        assert_eq!(q.get("a"), None);
    }

    #[test]
    fn pop_skips_topics_that_are_not_ready_and_push_front_yields_to_newer() {
        let mut q = PendingQueue::new(10);
        q.push(m("a", "1"));
        q.push(m("b", "1"));
        assert_eq!(q.pop_first(|t| t != "a"), Some(m("b", "1")));
        q.push_front(m("a", "0"));
        assert_eq!(q.get("a"), Some("1"));
        q.push_front(m("c", "0"));
        assert_eq!(q.pop_first(|_| true), Some(m("c", "0")));
    }
}
