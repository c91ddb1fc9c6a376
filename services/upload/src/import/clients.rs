//! Upload slots per client (`CSVBUS_MAX_UPLOADS_PER_CLIENT`): the API key a request presents,
//! else its peer address, holds at most so many of the service's upload slots at once, so that
//! one client — twenty slow connections, say — cannot take them all while every other client
//! gets `429`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap};

/// The peer address of a request's connection (set by [`crate::http::server`]).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Who a request is, for its slot count: a digest of its bearer key, else of its peer's IP
/// address (every port of one host is one client).
pub fn client_of(headers: &HeaderMap, peer: Option<Peer>) -> u64 {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (key, peer) {
        (Some(k), _) => xxhash_rust::xxh3::xxh3_64_with_seed(k.as_bytes(), 1),
        (None, Some(Peer(addr))) => {
            xxhash_rust::xxh3::xxh3_64_with_seed(addr.ip().to_string().as_bytes(), 2)
        }
        (None, None) => 0,
    }
}

/// The slots each client holds.
#[derive(Debug)]
pub struct ClientSlots {
    max: usize,
    held: Mutex<HashMap<u64, usize>>,
}

/// A slot of one client, given back when dropped.
#[derive(Debug)]
pub struct ClientSlot {
    slots: Arc<ClientSlots>,
    client: u64,
}

impl ClientSlots {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            held: Mutex::default(),
        })
    }

    /// The most slots one client may hold.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for `client`, unless it holds the most it may.
    pub fn try_take(self: &Arc<Self>, client: u64) -> Option<ClientSlot> {
        let mut held = self.held.lock().ok()?;
        let n = held.entry(client).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            slots: self.clone(),
            client,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Ok(mut held) = self.slots.held.lock() {
            if let Some(n) = held.get_mut(&self.client) {
                *n -= 1;
                if *n == 0 {
                    held.remove(&self.client);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_share_and_gets_slots_back() {
        let slots = ClientSlots::new(2);
        let (a, b) = (1, 2);
        let first = slots.try_take(a).unwrap();
        let _second = slots.try_take(a).unwrap();
        assert!(slots.try_take(a).is_none(), "a holds its two");
        assert!(slots.try_take(b).is_some(), "b is not held back by a");
        drop(first);
        assert!(
            slots.try_take(a).is_some(),
            "a slot comes back when dropped"
        );
    }

    #[test]
    fn the_key_decides_over_the_address() {
        let peer = Some(Peer("10.0.0.1:5000".parse().unwrap()));
        let other_port = Some(Peer("10.0.0.1:6000".parse().unwrap()));
        let mut keyed = HeaderMap::new();
        keyed.insert(header::AUTHORIZATION, "Bearer k1".parse().unwrap());
        assert_eq!(
            client_of(&HeaderMap::new(), peer),
            client_of(&HeaderMap::new(), other_port)
        );
        assert_ne!(client_of(&keyed, peer), client_of(&HeaderMap::new(), peer));
        assert_eq!(client_of(&keyed, peer), client_of(&keyed, None));
    }
}
