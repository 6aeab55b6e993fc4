//! What clients together may hold of the broker: connections (in all, and
//! per IP address) and the bytes of requests read but not yet answered.
//!
//! Kafka's names: `max.connections` (more connections wait in the listen
//! backlog until one closes), `max.connections.per.ip` (more are closed at
//! once) and `queued.max.request.bytes` (a connection stops reading until
//! what it has read fits under the bound: backpressure, not a queue).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::BrokerConfig;

/// The smallest request-bytes bound: room for one frame of the largest
/// size plus a read's worth, so a single large request can always pass.
const REQUEST_BYTES_FLOOR: usize = 2 * 1024 * 1024;

pub(super) struct Limits {
    connections: Arc<Semaphore>,
    per_ip_max: usize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    request_bytes: Semaphore,
    request_bytes_max: usize,
}

/// A connection's place under the limits; dropping it frees the place.
pub(super) struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
    ip: IpAddr,
    limits: Arc<Limits>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut per_ip = self.limits.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl Limits {
    pub(super) fn new(config: &BrokerConfig) -> Arc<Limits> {
        let floor = config
            .socket_request_max_bytes
            .saturating_add(4)
            .max(REQUEST_BYTES_FLOOR);
        let request_bytes_max = config
            .queued_max_request_bytes
            .clamp(floor.min(Semaphore::MAX_PERMITS), Semaphore::MAX_PERMITS);
        Arc::new(Limits {
            connections: Arc::new(Semaphore::new(config.max_connections.min(Semaphore::MAX_PERMITS))),
            per_ip_max: config.max_connections_per_ip,
            per_ip: Mutex::new(HashMap::new()),
            request_bytes: Semaphore::new(request_bytes_max),
            request_bytes_max,
        })
    }

    /// Waits for room for one more connection.
    pub(super) async fn connection_permit(&self) -> OwnedSemaphorePermit {
        self.connections
            .clone()
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed")
    }

    /// Takes a place for a connection from `ip`, or says how many that
    /// address already has.
    pub(super) fn admit(self: &Arc<Self>, permit: OwnedSemaphorePermit, ip: IpAddr) -> Result<ConnectionSlot, usize> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= self.per_ip_max {
            return Err(*count);
        }
        *count += 1;
        Ok(ConnectionSlot {
            _permit: permit,
            ip,
            limits: self.clone(),
        })
    }

    /// Waits until `bytes` more request bytes fit under the bound, and
    /// takes them; [`release_request_bytes`](Self::release_request_bytes)
    /// gives them back.
    pub(super) async fn reserve_request_bytes(&self, bytes: usize) {
        let bytes = bytes.min(self.request_bytes_max).min(u32::MAX as usize) as u32;
        self.request_bytes
            .acquire_many(bytes)
            .await
            .expect("the request-bytes semaphore is never closed")
            .forget();
    }

    pub(super) fn release_request_bytes(&self, bytes: usize) {
        self.request_bytes.add_permits(bytes);
    }

    /// Request bytes held now, across connections.
    #[cfg(test)]
    fn request_bytes_held(&self) -> usize {
        self.request_bytes_max - self.request_bytes.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn per_ip_places_are_counted_and_given_back() {
        let limits = Limits::new(&BrokerConfig {
            max_connections_per_ip: 2,
            ..BrokerConfig::default()
        });
        let ip: IpAddr = [127, 0, 0, 1].into();
        let a = limits.admit(limits.connection_permit().await, ip).unwrap();
        let _b = limits.admit(limits.connection_permit().await, ip).unwrap();
        assert_eq!(limits.admit(limits.connection_permit().await, ip).err(), Some(2));
        let other: IpAddr = [127, 0, 0, 2].into();
        assert!(limits.admit(limits.connection_permit().await, other).is_ok());
        drop(a);
        assert!(limits.admit(limits.connection_permit().await, ip).is_ok());
    }

    #[tokio::test]
    async fn request_bytes_wait_for_room() {
        let limits = Limits::new(&BrokerConfig {
            socket_request_max_bytes: 1000,
            queued_max_request_bytes: 0,
            ..BrokerConfig::default()
        });
        assert_eq!(limits.request_bytes_max, REQUEST_BYTES_FLOOR);
        limits.reserve_request_bytes(REQUEST_BYTES_FLOOR - 10).await;
        let waiting = limits.reserve_request_bytes(20);
        tokio::pin!(waiting);
        assert!(futures_poll_once(waiting.as_mut()).await.is_none(), "no room yet");
        limits.release_request_bytes(10);
        waiting.await;
        assert_eq!(limits.request_bytes_held(), REQUEST_BYTES_FLOOR);
    }

    /// Polls a future once, without waiting.
    async fn futures_poll_once<F: std::future::Future + Unpin>(future: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            output = future => Some(output),
            () = std::future::ready(()) => None,
        }
    }
}
